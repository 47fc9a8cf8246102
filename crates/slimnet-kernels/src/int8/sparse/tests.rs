//! Every variant against a plain reference on seeded random ragged shapes, bit-exact; the
//! dense int8 kernel on the same values; the constructors' checks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ops::{conv, linear};
use super::product::Variant;
use super::*;
use crate::int8::requant::requant_one;
use crate::int8::{qlinear_forward, QMatrix, QOutput, QuantParams, Requant, MAX_INNER};
use crate::isa::Isa;
use crate::threads;
use crate::ConvGeometry;

/// A dense i8 `[rows, cols]` with about `density` non-zeros (extremes ±127 included): row 0
/// fully dense, row 1 empty (when there are enough rows).
pub(super) fn random_i8(rng: &mut ChaCha8Rng, rows: usize, cols: usize, density: f64) -> Vec<i8> {
    random_i8_within(rng, rows, cols, density, 127)
}

/// [`random_i8`] with values in `-top..=top` (extremes included).
fn random_i8_within(
    rng: &mut ChaCha8Rng,
    rows: usize,
    cols: usize,
    density: f64,
    top: i8,
) -> Vec<i8> {
    let mut w = vec![0i8; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let keep = match r {
                0 => true,
                1 if rows > 2 => false,
                _ => rng.random_bool(density),
            };
            if keep {
                w[r * cols + c] = match rng.random_range(0..8) {
                    0 => top,
                    1 => -top,
                    _ => rng.random_range(-top..=top),
                };
            }
        }
    }
    w
}

/// The CSR form of the non-zeros of `w` (explicit zeros would be kept by a mask; none here).
pub(super) fn csr(w: &[i8], rows: usize, cols: usize, scales: Vec<f32>) -> QCsrMatrix {
    let (mut rp, mut ci, mut vals) = (vec![0u32], vec![], vec![]);
    for r in 0..rows {
        for c in 0..cols {
            if w[r * cols + c] != 0 {
                ci.push(c as u32);
                vals.push(w[r * cols + c]);
            }
        }
        rp.push(vals.len() as u32);
    }
    QCsrMatrix::from_parts(rows, cols, rp, ci, vals, scales).unwrap()
}

/// `acc[r][j] = sum_k w[r, k] * (x(k, j) - za)`, from the definition.
fn reference(
    w: &[i8],
    rows: usize,
    cols: usize,
    x: impl Fn(usize, usize) -> u8,
    n: usize,
    za: u8,
) -> Vec<i32> {
    let mut acc = vec![0; rows * n];
    for r in 0..rows {
        for j in 0..n {
            acc[r * n + j] = (0..cols)
                .map(|k| w[r * cols + k] as i32 * (x(k, j) as i32 - za as i32))
                .sum();
        }
    }
    acc
}

/// What `QOutput` says to write for `acc [channels, n]`, element `(c, j)` at `at(c, j)`.
#[allow(clippy::too_many_arguments)]
fn expected(
    acc: &[i32],
    channels: usize,
    n: usize,
    xq: QuantParams,
    scales: &[f32],
    oq: Option<(QuantParams, bool)>,
    bias: &[i32],
    at: impl Fn(usize, usize) -> usize,
) -> (Vec<u8>, Vec<f32>) {
    let (mut u, mut f) = (vec![0u8; channels * n], vec![0f32; channels * n]);
    for c in 0..channels {
        for j in 0..n {
            let a = acc[c * n + j];
            if let Some((p, relu)) = oq {
                let m = Requant::from_scale(xq.scale as f64 * scales[c] as f64 / p.scale as f64)
                    .unwrap();
                let zp = p.zero_point as i32;
                u[at(c, j)] = requant_one(a, bias[c], m, zp, if relu { zp } else { 0 });
            }
            f[at(c, j)] = a as f32 * (xq.scale * scales[c]) + bias[c] as f32;
        }
    }
    (u, f)
}

fn u8s(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random()).collect()
}

/// Runs `f(variant)` for every variant, with 1 and 2 threads.
fn each_variant(mut f: impl FnMut(Variant, usize)) {
    for nt in [1, 2] {
        threads::with(nt, || {
            for v in Variant::all() {
                f(v, nt);
            }
        });
    }
}

#[test]
fn linear_variants_bit_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for shape in [
        (1, 1, 1.0),
        (5, 7, 0.5),
        (37, 130, 0.1),
        (16, 64, 0.3),
        (50, 333, 0.02),
        (130, 517, 0.15),
        (3, 2000, 0.9),
    ]
    .into_iter()
    .flat_map(|s| [(s, 127), (s, crate::int8::NARROW_MAX)])
    {
        let ((rows, cols, density), top) = shape;
        let w = random_i8_within(&mut rng, rows, cols, density, top);
        let scales: Vec<f32> = (0..rows).map(|_| rng.random_range(0.001..0.02)).collect();
        let m = csr(&w, rows, cols, scales.clone());
        let narrow = w
            .iter()
            .all(|v| v.unsigned_abs() <= crate::int8::NARROW_MAX as u8);
        assert_eq!(m.is_narrow(), narrow);
        assert!(narrow || top > crate::int8::NARROW_MAX);
        let bias: Vec<i32> = (0..rows).map(|_| rng.random_range(-5000..5000)).collect();
        let fbias: Vec<f32> = bias.iter().map(|&b| b as f32).collect();
        let oq = QuantParams {
            scale: 0.3,
            zero_point: 90,
        };
        for batch in [1usize, 3, 17, 64, 70] {
            let x = u8s(&mut rng, batch * cols);
            let xq = QuantParams {
                scale: 0.02,
                zero_point: rng.random(),
            };
            let acc = reference(&w, rows, cols, |k, j| x[j * cols + k], batch, xq.zero_point);
            let at = |c, j| j * rows + c;
            for (relu, with_bias) in [(false, false), (true, true), (false, true)] {
                let b = if with_bias { &bias } else { &vec![0; rows] };
                let (want_u, want_f) =
                    expected(&acc, rows, batch, xq, &scales, Some((oq, relu)), b, at);
                each_variant(|v, nt| {
                    let what = format!(
                        "{v:?} {nt} threads {rows}x{cols} batch {batch} relu {relu} top {top}"
                    );
                    let mut y = vec![0u8; batch * rows];
                    let bias = with_bias.then_some(&bias[..]);
                    let out = QOutput::U8 {
                        out: &mut y,
                        params: oq,
                        bias,
                        relu,
                    };
                    linear(v, &m, batch, &x, xq, out).unwrap();
                    assert_eq!(y, want_u, "{what}");
                    let mut y = vec![0f32; batch * rows];
                    let bias = with_bias.then_some(&fbias[..]);
                    linear(v, &m, batch, &x, xq, QOutput::F32 { out: &mut y, bias }).unwrap();
                    assert_eq!(y, want_f, "{what} f32");
                });
            }
        }
    }
}

/// Large enough to run on two threads, with the non-zeros crowded into the first rows; the
/// public entry points at every supported level.
#[test]
fn thread_split_and_levels_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let (rows, cols) = (301, 1200);
    let mut w = random_i8(&mut rng, rows, cols, 0.05);
    for r in 0..20 {
        w[r * cols..(r + 1) * cols].fill(-3);
    }
    let m = csr(&w, rows, cols, vec![0.01; rows]);
    let xq = QuantParams {
        scale: 0.05,
        zero_point: 200,
    };
    for batch in [1usize, 40] {
        let x = u8s(&mut rng, batch * cols);
        let acc = reference(&w, rows, cols, |k, j| x[j * cols + k], batch, 200);
        let at = |c, j| j * rows + c;
        let (_, want) = expected(&acc, rows, batch, xq, &[0.01; 301], None, &[0; 301], at);
        for nt in [1, 2] {
            for isa in Isa::all_supported() {
                let mut y = vec![0f32; batch * rows];
                let out = QOutput::F32 {
                    out: &mut y,
                    bias: None,
                };
                threads::with(nt, || {
                    qsparse_linear_forward_with_isa(isa, &m, batch, &x, xq, out)
                })
                .unwrap();
                assert_eq!(y, want, "{isa:?} {nt} threads batch {batch}");
            }
        }
    }
}

/// Bit for bit the dense int8 kernel on a `QMatrix` holding the same values and scales.
#[test]
fn matches_dense_int8_kernel() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for (rows, cols) in [(40, 96), (67, 301)] {
        let w = random_i8(&mut rng, rows, cols, 0.2);
        let scales: Vec<f32> = (0..rows).map(|_| rng.random_range(0.001..0.02)).collect();
        let m = csr(&w, rows, cols, scales.clone());
        let d = QMatrix::new(rows, cols, w, scales).unwrap();
        let bias: Vec<i32> = (0..rows).map(|_| rng.random_range(-900..900)).collect();
        let oq = QuantParams::from_range(-4.0, 6.0);
        for batch in [1usize, 3, 64] {
            let x = u8s(&mut rng, batch * cols);
            let xq = QuantParams::from_range(-1.0, 2.0);
            for relu in [false, true] {
                let (mut want, mut got) = (vec![0u8; batch * rows], vec![1u8; batch * rows]);
                let b = Some(&bias[..]);
                let o = QOutput::U8 {
                    out: &mut want,
                    params: oq,
                    bias: b,
                    relu,
                };
                qlinear_forward(&d, batch, &x, xq, o).unwrap();
                let o = QOutput::U8 {
                    out: &mut got,
                    params: oq,
                    bias: b,
                    relu,
                };
                qsparse_linear_forward(&m, batch, &x, xq, o).unwrap();
                assert_eq!(got, want, "{rows}x{cols} batch {batch} relu {relu}");
            }
            let (mut want, mut got) = (vec![0f32; batch * rows], vec![1f32; batch * rows]);
            qlinear_forward(
                &d,
                batch,
                &x,
                xq,
                QOutput::F32 {
                    out: &mut want,
                    bias: None,
                },
            )
            .unwrap();
            let o = QOutput::F32 {
                out: &mut got,
                bias: None,
            };
            qsparse_linear_forward(&m, batch, &x, xq, o).unwrap();
            assert_eq!(got, want, "{rows}x{cols} batch {batch} f32");
        }
    }
}

#[test]
fn conv_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    for g in [
        ConvGeometry::new(2, 3, 7, 9, 5, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 6, 9, 8, 7, 3, 3)
            .with_stride(2, 2)
            .with_padding(1, 1),
        ConvGeometry::new(1, 4, 11, 6, 9, 3, 2)
            .with_stride(2, 1)
            .with_padding(2, 0)
            .with_dilation(1, 2),
        // pointwise, 70 output pixels (a 64-column tile and a 6-column one)
        ConvGeometry::new(1, 20, 7, 10, 12, 1, 1),
        // a single output pixel: the batch-1 kernels
        ConvGeometry::new(2, 8, 3, 3, 6, 3, 3),
    ] {
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let oc = g.out_channels;
        let w = random_i8(&mut rng, oc, kk, 0.3);
        let scales: Vec<f32> = (0..oc).map(|_| rng.random_range(0.001..0.01)).collect();
        let m = csr(&w, oc, kk, scales.clone());
        let x = u8s(&mut rng, g.input_len());
        let xq = QuantParams {
            scale: 0.05,
            zero_point: 37,
        };
        let (oh, ow) = (g.out_h(), g.out_w());
        let plane = oh * ow;
        let bias: Vec<i32> = (0..oc).map(|_| rng.random_range(-2000..2000)).collect();
        let oq = QuantParams {
            scale: 0.1,
            zero_point: 50,
        };
        let (mut want_u, mut want_f) = (Vec::new(), Vec::new());
        for n in 0..g.batch {
            // the input at padded positions is the zero point
            let xv = |k: usize, j: usize| {
                let (c, ki, kj) = (
                    k / (kk / g.in_channels),
                    k / g.kernel_w % g.kernel_h,
                    k % g.kernel_w,
                );
                let iy = (j / ow * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
                let ix = (j % ow * g.stride.1 + kj * g.dilation.1) as isize - g.padding.1 as isize;
                if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
                    37
                } else {
                    x[((n * g.in_channels + c) * g.in_h + iy as usize) * g.in_w + ix as usize]
                }
            };
            let acc = reference(&w, oc, kk, xv, plane, 37);
            let (u, f) = expected(
                &acc,
                oc,
                plane,
                xq,
                &scales,
                Some((oq, true)),
                &bias,
                |c, j| c * plane + j,
            );
            want_u.extend(u);
            want_f.extend(f);
        }
        let fbias: Vec<f32> = bias.iter().map(|&b| b as f32).collect();
        each_variant(|v, nt| {
            let mut y = vec![0u8; g.output_len()];
            let o = QOutput::U8 {
                out: &mut y,
                params: oq,
                bias: Some(&bias),
                relu: true,
            };
            conv(v, &g, &x, xq, &m, o).unwrap();
            assert_eq!(y, want_u, "{v:?} {nt} threads {g:?}");
            let mut y = vec![0f32; g.output_len()];
            conv(
                v,
                &g,
                &x,
                xq,
                &m,
                QOutput::F32 {
                    out: &mut y,
                    bias: Some(&fbias),
                },
            )
            .unwrap();
            assert_eq!(y, want_f, "{v:?} {nt} threads {g:?} f32");
        });
        let mut y = vec![0f32; g.output_len()];
        let o = QOutput::F32 {
            out: &mut y,
            bias: Some(&fbias),
        };
        qsparse_conv2d_forward(&g, &x, xq, &m, o).unwrap();
        assert_eq!(y, want_f);
        let o = QOutput::F32 {
            out: &mut y,
            bias: None,
        };
        assert!(qsparse_conv2d_forward(&g.with_groups(g.in_channels), &x, xq, &m, o).is_err());
    }
}

/// The widest inner dimension int8 allows, with non-zeros at its last column; one more is an
/// error.
#[test]
fn widest_inner_dimension() {
    let cols = MAX_INNER;
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let m = QCsrMatrix::from_parts(
        2,
        cols,
        vec![0, 3, 4],
        vec![0, 40_000, 65_535, 65_535],
        vec![127, -127, 5, -1],
        vec![0.01, 0.02],
    )
    .unwrap();
    assert_eq!(&*m.col_idx(), &[0, 40_000, 65_535, 65_535]);
    for batch in [1usize, 3] {
        let x = u8s(&mut rng, batch * cols);
        let xq = QuantParams {
            scale: 0.1,
            zero_point: 3,
        };
        let xs = |b: usize, k: usize| x[b * cols + k] as i32 - 3;
        each_variant(|v, _| {
            let mut y = vec![0f32; 2 * batch];
            linear(
                v,
                &m,
                batch,
                &x,
                xq,
                QOutput::F32 {
                    out: &mut y,
                    bias: None,
                },
            )
            .unwrap();
            for b in 0..batch {
                let r0 = 127 * xs(b, 0) - 127 * xs(b, 40_000) + 5 * xs(b, 65_535);
                assert_eq!(y[2 * b], r0 as f32 * (0.1f32 * 0.01), "{v:?}");
                assert_eq!(
                    y[2 * b + 1],
                    -xs(b, 65_535) as f32 * (0.1f32 * 0.02),
                    "{v:?}"
                );
            }
        });
    }
    let big = 70_000;
    assert!(QCsrMatrix::from_dense(1, big, &vec![0.0; big], None).is_err());
    assert!(QCsrMatrix::from_parts(1, big, vec![0, 0], vec![], vec![], vec![1.0]).is_err());
}

#[test]
fn entry_points_reject_bad_lengths() {
    let m = QCsrMatrix::from_dense(2, 3, &[1.0, 0.0, 2.0, 0.0, -1.0, 0.0], None).unwrap();
    let xq = QuantParams::from_range(0.0, 1.0);
    let mut y = [0f32; 2];
    let mut f = |batch, x: &[u8], len: usize, bias: Option<&[f32]>| {
        let o = QOutput::F32 {
            out: &mut y[..len],
            bias,
        };
        qsparse_linear_forward(&m, batch, x, xq, o)
    };
    assert!(f(1, &[1, 2, 3], 2, None).is_ok());
    assert!(f(1, &[1, 2], 2, None).is_err());
    assert!(f(1, &[1, 2, 3], 1, None).is_err());
    assert!(f(1, &[1, 2, 3], 2, Some(&[1.0])).is_err());
    assert!(f(usize::MAX, &[1, 2, 3], 2, None).is_err());
    assert!(f(0, &[], 0, None).is_ok());
    // no columns: the outputs are the bias
    let empty = QCsrMatrix::from_dense(3, 0, &[], None).unwrap();
    for batch in [1, 40] {
        each_variant(|v, _| {
            let mut y = vec![0f32; 3 * batch];
            let o = QOutput::F32 {
                out: &mut y,
                bias: Some(&[1.0, 2.0, 3.0]),
            };
            linear(v, &empty, batch, &[], xq, o).unwrap();
            assert_eq!(&y[3 * batch - 3..], &[1.0, 2.0, 3.0], "{v:?}");
        });
    }
    let tiny = QuantParams {
        scale: 1e30,
        zero_point: 0,
    };
    let mut y = [0u8; 2];
    let o = QOutput::U8 {
        out: &mut y,
        params: tiny,
        bias: None,
        relu: false,
    };
    assert!(qsparse_linear_forward(&m, 1, &[1, 2, 3], xq, o).is_err());
    let g = ConvGeometry::new(1, 3, 1, 1, 2, 1, 1);
    let mut y = [0f32; 2];
    let o = QOutput::F32 {
        out: &mut y,
        bias: None,
    };
    assert!(qsparse_conv2d_forward(&g, &[1, 2, 3], xq, &m, o).is_ok());
    let o = QOutput::F32 {
        out: &mut y,
        bias: None,
    };
    assert!(qsparse_conv2d_forward(&g, &[1, 2], xq, &m, o).is_err());
    let o = QOutput::F32 {
        out: &mut y,
        bias: None,
    };
    let g4 = ConvGeometry::new(1, 4, 1, 1, 2, 1, 1);
    assert!(qsparse_conv2d_forward(&g4, &[1, 2, 3, 4], xq, &m, o).is_err());
}

/// The extremes every product and partial sum must hold exactly: inputs 255 (and 128, the
/// smallest with the high bit) against rows of all 127 or all -127, dense, wide enough that the
/// batch-1 kernels add many steps into each row (the AVX2 one widens its 16-bit sums in runs).
#[test]
fn extreme_values_stay_exact() {
    let (rows, cols) = (19, 3001);
    let w: Vec<i8> = (0..rows * cols)
        .map(|i| if (i / cols) % 2 == 0 { 127 } else { -127 })
        .collect();
    let m = csr(&w, rows, cols, vec![1.0; rows]);
    for (fill, za) in [(255u8, 0u8), (128, 0), (255, 255), (0, 255)] {
        let x = vec![fill; cols];
        let xq = QuantParams {
            scale: 1.0,
            zero_point: za,
        };
        let acc = reference(&w, rows, cols, |k, _| x[k], 1, za);
        let (_, want) = expected(&acc, rows, 1, xq, &[1.0; 19], None, &[0; 19], |c, _| c);
        each_variant(|v, nt| {
            let mut y = vec![0f32; rows];
            let out = QOutput::F32 {
                out: &mut y,
                bias: None,
            };
            linear(v, &m, 1, &x, xq, out).unwrap();
            assert_eq!(
                y, want,
                "{v:?} {nt} threads, inputs {fill}, zero point {za}"
            );
        });
    }
}
