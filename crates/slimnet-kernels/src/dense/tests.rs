//! Convolution and depthwise kernels against a direct definition on seeded random shapes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::{Activation, ConvGeometry};

/// Relative tolerance of f32 convolution against the f64 definition, scaled by the sum of
/// absolute products.
const CONV_TOL: f64 = 1e-5;

fn randv(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Direct convolution in f64, plus the per-output magnitude for the tolerance.
fn direct(g: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let mut out = vec![0.0; g.output_len()];
    let mut mag = vec![0.0; g.output_len()];
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            let grp = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut s, mut m) = (bias.map_or(0.0, |b| b[o] as f64), 0.0);
                    for ci in 0..cig {
                        let c = grp * cig + ci;
                        for ki in 0..g.kernel_h {
                            for kj in 0..g.kernel_w {
                                let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize
                                    - g.padding.0 as isize;
                                let ix = (ox * g.stride.1 + kj * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize
                                {
                                    continue;
                                }
                                let xv = x[((n * g.in_channels + c) * g.in_h + iy as usize)
                                    * g.in_w
                                    + ix as usize];
                                let wv = w[((o * cig + ci) * g.kernel_h + ki) * g.kernel_w + kj];
                                s += xv as f64 * wv as f64;
                                m += (xv as f64 * wv as f64).abs();
                            }
                        }
                    }
                    let i = ((n * g.out_channels + o) * oh + oy) * ow + ox;
                    out[i] = s;
                    mag[i] = m + 1.0;
                }
            }
        }
    }
    (out, mag)
}

#[test]
fn conv_forward_matches_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let shapes = [
        ConvGeometry::new(2, 3, 9, 8, 5, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 16, 12, 12, 40, 3, 3).with_padding(1, 1),
        // Winograd F(2x2, 3x3): odd output sizes, no and double padding, several tile blocks
        ConvGeometry::new(2, 16, 70, 9, 17, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 20, 15, 21, 16, 3, 3),
        // the direct kernel (few channels; a 3x1 kernel with a batch of two)
        ConvGeometry::new(2, 8, 20, 18, 12, 3, 1).with_padding(1, 0),
        ConvGeometry::new(1, 16, 10, 11, 24, 3, 3).with_padding(2, 2),
        ConvGeometry::new(1, 3, 30, 25, 9, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 2, 5, 1, 3, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 2, 4, 2, 3, 5, 5).with_padding(2, 2),
        ConvGeometry::new(2, 4, 60, 50, 8, 3, 3)
            .with_stride(2, 2)
            .with_padding(1, 1),
        ConvGeometry::new(1, 20, 12, 12, 50, 5, 5),
        // strides in both axes unfold through phase planes (odd sizes, a 5x5 kernel, stride 3)
        ConvGeometry::new(1, 6, 13, 14, 10, 5, 5)
            .with_stride(3, 3)
            .with_padding(2, 2),
        ConvGeometry::new(1, 7, 11, 9, 9, 3, 3).with_stride(2, 2),
        // a stride wider than the image (found by the fuzz test)
        ConvGeometry::new(1, 2, 5, 3, 3, 3, 3)
            .with_stride(5, 5)
            .with_padding(1, 1),
        ConvGeometry::new(1, 24, 10, 9, 33, 1, 1),
        ConvGeometry::new(3, 6, 11, 7, 4, 3, 2)
            .with_stride(2, 1)
            .with_padding(2, 0)
            .with_dilation(1, 2),
        ConvGeometry::new(1, 8, 9, 9, 12, 3, 3)
            .with_groups(4)
            .with_padding(1, 1),
        ConvGeometry::new(2, 12, 13, 10, 12, 3, 3)
            .with_groups(12)
            .with_padding(1, 1),
        ConvGeometry::new(1, 5, 11, 11, 5, 5, 3)
            .with_groups(5)
            .with_stride(2, 2)
            .with_padding(2, 1),
        ConvGeometry::new(1, 3, 20, 37, 3, 5, 5)
            .with_groups(3)
            .with_padding(2, 2),
        ConvGeometry::new(2, 4, 9, 18, 4, 3, 3).with_groups(4),
        ConvGeometry::new(1, 2, 6, 17, 2, 3, 4)
            .with_groups(2)
            .with_padding(0, 3),
        ConvGeometry::new(1, 2, 11, 16, 2, 3, 3)
            .with_groups(2)
            .with_padding(1, 1),
        // depthwise kernels of 5, 7 and 9 rows (the tall-kernel path) and of 4 (the generic
        // one), bands of eight output rows with a remainder, partial column blocks
        ConvGeometry::new(1, 3, 27, 21, 3, 9, 9)
            .with_groups(3)
            .with_padding(4, 2),
        ConvGeometry::new(2, 2, 13, 35, 2, 5, 7)
            .with_groups(2)
            .with_padding(2, 3),
        ConvGeometry::new(1, 2, 19, 18, 2, 7, 5)
            .with_groups(2)
            .with_padding(1, 0),
        ConvGeometry::new(1, 2, 12, 10, 2, 4, 3)
            .with_groups(2)
            .with_padding(1, 1),
        // small planes with at least 64 output channels: prepared weights take the kernel with
        // output channels along the lanes, reading the input split into stride phases (a
        // partial second block of 6 channels; pointwise; strided with a batch of two; 1x1 with
        // stride 2; unequal strides and padding), or an im2col copy (dilation 2)
        ConvGeometry::new(1, 24, 7, 7, 70, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 33, 5, 6, 64, 1, 1),
        ConvGeometry::new(2, 8, 9, 9, 65, 3, 3)
            .with_stride(2, 2)
            .with_padding(1, 1),
        ConvGeometry::new(1, 32, 14, 14, 64, 1, 1).with_stride(2, 2),
        ConvGeometry::new(1, 12, 11, 9, 64, 5, 3)
            .with_padding(2, 0)
            .with_stride(2, 1),
        ConvGeometry::new(1, 10, 8, 7, 64, 3, 3)
            .with_dilation(2, 2)
            .with_padding(2, 2),
        // im2col panels of over a million values unfold in bands of rows (few output channels,
        // a 9x9 kernel; strided)
        ConvGeometry::new(1, 16, 97, 99, 3, 9, 9).with_padding(4, 4),
        ConvGeometry::new(1, 16, 190, 181, 5, 3, 3)
            .with_stride(2, 2)
            .with_padding(1, 1),
    ];
    for g in shapes {
        g.validate().unwrap();
        let x = randv(&mut rng, g.input_len());
        let w = randv(&mut rng, g.weight_len());
        let b = randv(&mut rng, g.out_channels);
        let (want, mag) = direct(&g, &x, &w, Some(&b));
        // one prepared weight for every run, so later runs use what the first one cached
        let prepared = ConvWeights::new(w.clone());
        for (nt, prep) in [(1, false), (2, false), (1, true), (2, true)] {
            let mut y = vec![f32::NAN; g.output_len()];
            let r = crate::threads::with(nt, || {
                if prep {
                    conv2d_forward_prepared(&g, &x, &prepared, Some(&b), Activation::Relu, &mut y)
                } else {
                    conv2d_forward(&g, &x, &w, Some(&b), Activation::Relu, &mut y)
                }
            });
            r.unwrap();
            for (i, ((y, w), m)) in y.iter().zip(&want).zip(&mag).enumerate() {
                let w = w.max(0.0);
                assert!(
                    ((*y as f64) - w).abs() <= CONV_TOL * m,
                    "{g:?} threads {nt} prepared {prep} at {i}: {y} vs {w}"
                );
            }
        }
    }
}

#[test]
fn prepared_weights_follow_the_geometry_they_are_used_with() {
    // the same 16 x 32 x 3 x 3 values as 16 -> 32 and as 32 -> 16 channels: the second use
    // must not reuse the first one's Winograd transform
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let w = ConvWeights::new(randv(&mut rng, 16 * 32 * 9));
    for (c, o) in [(16, 32), (32, 16), (16, 32)] {
        let g = ConvGeometry::new(1, c, 10, 10, o, 3, 3).with_padding(1, 1);
        let x = randv(&mut rng, g.input_len());
        let (want, mag) = direct(&g, &x, w.weight(), None);
        let mut y = vec![f32::NAN; g.output_len()];
        conv2d_forward_prepared(&g, &x, &w, None, Activation::Identity, &mut y).unwrap();
        for ((y, w), m) in y.iter().zip(&want).zip(&mag) {
            assert!(
                ((*y as f64) - w).abs() <= CONV_TOL * m,
                "{c}->{o}: {y} vs {w}"
            );
        }
    }
    let g = ConvGeometry::new(1, 16, 10, 10, 16, 3, 3);
    let mut y = vec![0.0; g.output_len()];
    let r = conv2d_forward_prepared(&g, &[0.0; 1600], &w, None, Activation::Identity, &mut y);
    assert!(r.is_err(), "a weight of the wrong length is an error");
}

#[test]
fn depthwise_variants_are_identical() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    for g in [
        ConvGeometry::new(1, 7, 19, 21, 7, 3, 3)
            .with_groups(7)
            .with_padding(1, 1),
        ConvGeometry::new(2, 3, 10, 33, 3, 5, 5)
            .with_groups(3)
            .with_padding(2, 2)
            .with_stride(1, 2),
    ] {
        let x = randv(&mut rng, g.input_len());
        let w = randv(&mut rng, g.weight_len());
        let (oh, ow) = (g.out_h(), g.out_w());
        let cols: Vec<(usize, usize, usize)> = (0..g.kernel_w)
            .map(|kj| {
                let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
                let (xlo, xhi) = crate::geometry::valid_range(ow, g.stride.1, off_x, g.in_w);
                (
                    xlo,
                    xhi,
                    ((xlo * g.stride.1) as isize + off_x).max(0) as usize,
                )
            })
            .collect();
        let plane = g.in_h * g.in_w;
        let kk = g.kernel_h * g.kernel_w;
        let mut a = vec![0.0; oh * ow];
        super::depthwise::plane_forward_for_test(false, &g, &cols, &x[..plane], &w[..kk], &mut a);
        if crate::isa::Isa::Avx512.is_supported() {
            let mut b = vec![1.0; oh * ow];
            super::depthwise::plane_forward_for_test(
                true,
                &g,
                &cols,
                &x[..plane],
                &w[..kk],
                &mut b,
            );
            assert_eq!(a, b);
        }
    }
}

/// Batched linear forward (the transposed own-kernel path above 32^3 multiply-adds, the `gemm`
/// crate below it) against the f64 definition, with bias and activation.
#[test]
fn linear_forward_matches_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for (batch, inf, outf) in [(37, 70, 50), (9, 4, 3), (64, 129, 17), (20, 300, 100)] {
        let x = randv(&mut rng, batch * inf);
        let w = randv(&mut rng, outf * inf);
        let b = randv(&mut rng, outf);
        for act in [Activation::Identity, Activation::Relu] {
            let mut y = vec![f32::NAN; batch * outf];
            linear_forward(batch, inf, outf, &x, &w, Some(&b), act, &mut y).unwrap();
            for n in 0..batch {
                for o in 0..outf {
                    let (mut s, mut m) = (b[o] as f64, 1.0);
                    for k in 0..inf {
                        let p = x[n * inf + k] as f64 * w[o * inf + k] as f64;
                        s += p;
                        m += p.abs();
                    }
                    let want = if act == Activation::Relu {
                        s.max(0.0)
                    } else {
                        s
                    };
                    let got = y[n * outf + o] as f64;
                    assert!(
                        (got - want).abs() <= CONV_TOL * m,
                        "{batch}x{inf}->{outf} {act:?} at ({n}, {o}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// The direct convolution (no im2col; AVX-512, or AVX2 at that level) against the definition,
/// including shapes its dispatch rule sends elsewhere: ragged output channel panels, `k x 1`
/// and `1 x k` kernels, padding 0 to 3, few input channels, planes narrower than a vector and
/// several column tiles, strides of 1 to 3 (equal and not), one and two threads, with and
/// without a bias and each activation.
#[cfg(target_arch = "x86_64")]
#[test]
fn direct_convolution_matches_definition() {
    if !crate::isa::features().avx2_fma {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let shapes = [
        ConvGeometry::new(1, 5, 13, 11, 8, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 7, 20, 19, 19, 3, 1).with_padding(1, 0),
        ConvGeometry::new(1, 9, 17, 23, 13, 1, 3).with_padding(0, 1),
        ConvGeometry::new(1, 3, 9, 40, 31, 3, 3),
        ConvGeometry::new(1, 4, 6, 5, 9, 3, 3).with_padding(2, 2),
        ConvGeometry::new(1, 100, 7, 7, 10, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 6, 15, 14, 12, 5, 5).with_padding(2, 2),
        ConvGeometry::new(1, 2, 3, 70, 17, 1, 5).with_padding(0, 2),
        ConvGeometry::new(1, 64, 12, 12, 16, 3, 1).with_padding(1, 0),
        // strided: the input split into its stride phases
        ConvGeometry::new(1, 16, 28, 28, 32, 3, 3)
            .with_padding(1, 1)
            .with_stride(2, 2),
        ConvGeometry::new(1, 5, 13, 11, 14, 3, 3)
            .with_padding(1, 1)
            .with_stride(2, 2),
        ConvGeometry::new(1, 3, 17, 19, 9, 5, 4)
            .with_padding(2, 1)
            .with_stride(3, 2),
        ConvGeometry::new(1, 8, 10, 12, 13, 3, 2).with_stride(1, 2),
        ConvGeometry::new(1, 8, 9, 9, 20, 1, 1).with_stride(2, 2),
        ConvGeometry::new(1, 6, 8, 8, 7, 7, 7)
            .with_padding(3, 3)
            .with_stride(2, 2),
    ];
    for g in shapes {
        g.validate().unwrap();
        assert!(super::direct_x86::direct_applies(&g), "{g:?}");
        let x = randv(&mut rng, g.input_len());
        let w = randv(&mut rng, g.weight_len());
        // a bias scaled so that some outputs pass 6 and some fall below 0
        let b: Vec<f32> = randv(&mut rng, g.out_channels)
            .iter()
            .map(|v| 4.0 * v)
            .collect();
        let ap = super::direct_x86::pack_direct(&g, &w);
        // (the bias and activation are applied as tiles are stored)
        let cases = [
            (None, Activation::Identity, 1),
            (Some(&b[..]), Activation::Relu, 2),
            (Some(&b[..]), Activation::Relu6, 1),
        ];
        for (bias, act, nt) in cases {
            let (want, mag) = direct(&g, &x, &w, bias);
            let mut y = vec![f32::NAN; g.output_len()];
            super::direct_x86::conv_direct(&g, &x, &ap, (bias, act), &mut y, nt);
            for (i, ((y, w), m)) in y.iter().zip(&want).zip(&mag).enumerate() {
                let w = act.apply(*w as f32) as f64;
                assert!(
                    ((*y as f64) - w).abs() <= CONV_TOL * m,
                    "{g:?} {act:?} threads {nt} at {i}: {y} vs {w}"
                );
            }
        }
    }
}

/// Winograd F(2, 3) down the rows (`3 x 1` kernels) against the definition: odd and even
/// output heights, row padding 0 to 2, several blocks (many channels and rows), batches of two,
/// one and two threads, through the public entry point.
#[test]
fn line_winograd_matches_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let shapes = [
        ConvGeometry::new(1, 16, 9, 10, 8, 3, 1).with_padding(1, 0),
        ConvGeometry::new(2, 17, 12, 7, 9, 3, 1),
        ConvGeometry::new(1, 20, 11, 13, 12, 3, 1).with_padding(2, 0),
        ConvGeometry::new(1, 24, 16, 5, 13, 3, 1).with_padding(1, 0),
        // blocks of several tile rows
        ConvGeometry::new(1, 128, 30, 28, 63, 3, 1).with_padding(1, 0),
        ConvGeometry::new(1, 64, 57, 40, 31, 3, 1).with_padding(1, 0),
    ];
    for g in shapes {
        g.validate().unwrap();
        assert_eq!(
            super::winograd_line::winograd_line_fits(&g),
            crate::isa::features().avx512,
            "{g:?}"
        );
        let x = randv(&mut rng, g.input_len());
        let w = randv(&mut rng, g.weight_len());
        let b = randv(&mut rng, g.out_channels);
        let (want, mag) = direct(&g, &x, &w, Some(&b));
        for nt in [1, 2] {
            let mut y = vec![f32::NAN; g.output_len()];
            crate::threads::with(nt, || {
                conv2d_forward(&g, &x, &w, Some(&b), Activation::Identity, &mut y)
            })
            .unwrap();
            for (i, ((y, w), m)) in y.iter().zip(&want).zip(&mag).enumerate() {
                assert!(
                    ((*y as f64) - w).abs() <= CONV_TOL * m,
                    "{g:?} threads {nt} at {i}: {y} vs {w}"
                );
            }
        }
    }
}

/// Shape products that overflow `usize` are rejected instead of wrapping around to a length
/// a short buffer happens to have.
#[test]
fn linear_rejects_shapes_whose_sizes_overflow() {
    let batch = (usize::MAX / 2) + 2; // batch * 2 wraps around to 2
    let mut y = [0.0f32; 2];
    let err = linear_forward(
        batch,
        2,
        1,
        &[0.0; 2],
        &[0.0; 2],
        None,
        Activation::Identity,
        &mut y,
    )
    .unwrap_err();
    assert!(matches!(err, crate::KernelError::Invalid { .. }), "{err}");
}
