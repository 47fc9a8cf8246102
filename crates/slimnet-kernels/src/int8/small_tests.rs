//! The small-layer paths — convolution through the padded copy (fused requantization with
//! VNNI, the packed kernels otherwise), the dense and sparse entry points on ragged shapes, the
//! requantization of rows and of per-channel outputs, the multiplier cache — against plain
//! references on seeded random shapes, bit-exact, at every supported level, with one and two
//! threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::requant::requant_one;
use super::*;
use crate::isa::Isa;
use crate::threads;
use crate::ConvGeometry;

/// i8 weights in `-127..=127`, about `density` of them non-zero, with the extremes (which
/// would saturate `vpmaddubsw` next to inputs near 255) on purpose.
fn i8s(rng: &mut ChaCha8Rng, len: usize, density: f64) -> Vec<i8> {
    (0..len)
        .map(|_| {
            if !rng.random_bool(density) {
                return 0;
            }
            match rng.random_range(0..6) {
                0 => 127,
                1 => -127,
                _ => rng.random_range(-127..=127),
            }
        })
        .collect()
}

/// `len` codes, about `at_zp` of them at the zero point `zp`, the others spread with the
/// extremes 0 and 255 among them.
fn codes(rng: &mut ChaCha8Rng, len: usize, zp: u8, at_zp: f64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            if rng.random_bool(at_zp) {
                zp
            } else {
                match rng.random_range(0..8) {
                    0 => 0,
                    1 => 255,
                    _ => rng.random(),
                }
            }
        })
        .collect()
}

/// A valid geometry: 1 to 33 input and 1 to 37 output channels, kernels of 1 to 7 per side,
/// stride 1 or 2, padding, dilation, inputs 1x1 to 30x30.
fn random_geometry(rng: &mut ChaCha8Rng) -> ConvGeometry {
    loop {
        let k = [1, 3, 5, 7, 2];
        let (kh, kw) = (k[rng.random_range(0..5)], k[rng.random_range(0..5)]);
        let c = [1, 2, 3, 5, 8, 16, 17, 20, 33][rng.random_range(0..9)];
        let o = [1, 3, 4, 5, 7, 16, 20, 23, 37][rng.random_range(0..9)];
        let (h, w) = (rng.random_range(1..=30), rng.random_range(1..=30));
        let stride = if rng.random_bool(0.7) { 1 } else { 2 };
        let dil = if rng.random_bool(0.8) { 1 } else { 2 };
        let (ph, pw) = (
            rng.random_range(0..=kh / 2 + 1),
            rng.random_range(0..=kw / 2),
        );
        let g = ConvGeometry::new(rng.random_range(1..=3), c, h, w, o, kh, kw)
            .with_stride(stride, if rng.random_bool(0.8) { stride } else { 1 })
            .with_padding(ph, pw)
            .with_dilation(dil, dil);
        if g.validate().is_ok() && g.out_h() > 0 && g.out_w() > 0 {
            return g;
        }
    }
}

/// The accumulators `[N][O][oh * ow]` from the definition, padding at the zero point.
fn conv_acc(g: &ConvGeometry, x: &[u8], w: &[i8], za: u8) -> Vec<i32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (c, kh, kw) = (g.in_channels, g.kernel_h, g.kernel_w);
    let mut acc = vec![0i32; g.batch * g.out_channels * oh * ow];
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut s = 0i32;
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (y * g.stride.0 + i * g.dilation.0) as isize
                                    - g.padding.0 as isize;
                                let ix = (xo * g.stride.1 + j * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                let inside = iy >= 0
                                    && ix >= 0
                                    && iy < g.in_h as isize
                                    && ix < g.in_w as isize;
                                let v = if inside {
                                    x[((n * c + ci) * g.in_h + iy as usize) * g.in_w + ix as usize]
                                } else {
                                    za
                                };
                                let wv = w[((o * c + ci) * kh + i) * kw + j];
                                s += (v as i32 - za as i32) * wv as i32;
                            }
                        }
                    }
                    acc[((n * g.out_channels + o) * oh + y) * ow + xo] = s;
                }
            }
        }
    }
    acc
}

/// What a u8 output holds for `acc [N][channels][plane]`.
fn expect_u8(
    acc: &[i32],
    (channels, plane): (usize, usize),
    mult: &[Requant],
    bias: &[i32],
    oq: QuantParams,
    relu: bool,
) -> Vec<u8> {
    let zp = oq.zero_point as i32;
    let lo = if relu { zp } else { 0 };
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let c = i / plane % channels;
            requant_one(a, bias[c], mult[c], zp, lo)
        })
        .collect()
}

/// Output parameters, multipliers and biases (some extreme) for `channels` channels.
fn outputs(
    rng: &mut ChaCha8Rng,
    xq: QuantParams,
    scales: &[f32],
) -> (QuantParams, Vec<Requant>, Vec<i32>) {
    let oq = QuantParams {
        scale: rng.random_range(0.05..2.0),
        zero_point: rng.random(),
    };
    let mult = scales
        .iter()
        .map(|s| Requant::from_scale(xq.scale as f64 * *s as f64 / oq.scale as f64).unwrap())
        .collect();
    let bias = scales
        .iter()
        .map(|_| match rng.random_range(0..12) {
            0 => i32::MAX,
            1 => i32::MIN,
            _ => rng.random_range(-50_000..50_000),
        })
        .collect();
    (oq, mult, bias)
}

/// Every level, one and two threads, u8 outputs with and without ReLU and f32 outputs, against
/// the definition, on the LeNet-5 layers, pointwise ones and 40 random ragged shapes (most of
/// them stride 1, so through the padded copy or, narrow at the AVX2 level, the channel quads;
/// the others through the plain unfolding), with 8-bit and 7-bit weights.
#[test]
fn conv_levels_and_threads_bit_exact_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut shapes = vec![
        ConvGeometry::new(1, 1, 28, 28, 20, 5, 5),
        ConvGeometry::new(1, 10, 12, 12, 23, 5, 5),
        ConvGeometry::new(2, 20, 12, 12, 10, 1, 1),
        ConvGeometry::new(1, 23, 8, 8, 50, 1, 1),
        ConvGeometry::new(1, 16, 30, 30, 37, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 3, 1, 1, 5, 3, 3).with_padding(1, 1),
        // 49 and 196 columns: the last 1 and 4 by dot products with VNNI
        ConvGeometry::new(1, 64, 7, 7, 37, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 9, 14, 14, 6, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 5, 2, 2, 7, 3, 3).with_padding(1, 1),
        // the ResNet downsampling layers (stride 2, through the phases of the quad image with
        // narrow weights at the AVX2 level), and odd sizes, whose odd phases end in padding
        ConvGeometry::new(1, 16, 28, 28, 32, 3, 3)
            .with_stride(2, 2)
            .with_padding(1, 1),
        ConvGeometry::new(2, 12, 15, 13, 9, 3, 5)
            .with_stride(2, 2)
            .with_padding(2, 1),
        // windows wider than 128 bytes: the fused kernel on a packed panel
        ConvGeometry::new(1, 8, 10, 10, 9, 7, 7)
            .with_padding(6, 6)
            .with_dilation(2, 2),
    ];
    shapes.extend((0..40).map(|_| random_geometry(&mut rng)));
    // each shape with 8-bit and with narrow (7-bit) weights, the AVX2 level's other kernels
    for (g, narrow) in shapes.into_iter().flat_map(|g| [(g, false), (g, true)]) {
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let oc = g.out_channels;
        let mut wv = i8s(&mut rng, oc * kk, 0.9);
        if narrow {
            wv.iter_mut().for_each(|v| *v /= 2);
        }
        let scales: Vec<f32> = (0..oc).map(|_| rng.random_range(0.001..0.02)).collect();
        let w = QMatrix::new(oc, kk, wv.clone(), scales.clone()).unwrap();
        assert_eq!(
            w.is_narrow(),
            narrow || wv.iter().all(|v| v.abs() <= NARROW_MAX)
        );
        let xq = QuantParams {
            scale: 0.03,
            zero_point: rng.random(),
        };
        let x = codes(&mut rng, g.input_len(), xq.zero_point, 0.3);
        let acc = conv_acc(&g, &x, &wv, xq.zero_point);
        let (oq, mult, bias) = outputs(&mut rng, xq, &scales);
        let fbias: Vec<f32> = bias.iter().map(|&b| b as f32 * 1e-6).collect();
        let plane = g.out_h() * g.out_w();
        let want_f: Vec<f32> = (acc.iter().enumerate())
            .map(|(i, &a)| {
                let c = i / plane % oc;
                a as f32 * (xq.scale * scales[c]) + fbias[c]
            })
            .collect();
        let zeros = vec![0; oc];
        // with ReLU, no bias
        for relu in [false, true] {
            let b = if relu { &zeros } else { &bias };
            let want = expect_u8(&acc, (oc, plane), &mult, b, oq, relu);
            for isa in Isa::all_supported() {
                for nt in [1, 2] {
                    let mut y = vec![0u8; g.output_len()];
                    threads::with(nt, || {
                        let o = QOutput::U8 {
                            out: &mut y,
                            params: oq,
                            bias: (!relu).then_some(&bias[..]),
                            relu,
                        };
                        qconv2d_forward_with_isa(isa, &g, &x, xq, &w, o).unwrap()
                    });
                    assert_eq!(y, want, "{isa:?} {nt} threads relu {relu} {g:?}");
                }
            }
        }
        for isa in Isa::all_supported() {
            for nt in [1, 2] {
                let mut y = vec![0f32; g.output_len()];
                threads::with(nt, || {
                    let o = QOutput::F32 {
                        out: &mut y,
                        bias: Some(&fbias),
                    };
                    qconv2d_forward_with_isa(isa, &g, &x, xq, &w, o).unwrap()
                });
                assert_eq!(y, want_f, "{isa:?} {nt} threads f32 {g:?}");
            }
        }
    }
}

/// The sparse convolution on the same kind of shapes, weights at 5% to 60% density.
#[test]
fn sparse_conv_levels_and_threads_bit_exact_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    let mut shapes = vec![
        ConvGeometry::new(1, 10, 12, 12, 23, 5, 5),
        ConvGeometry::new(1, 1, 28, 28, 20, 5, 5),
    ];
    shapes.extend((0..30).map(|_| random_geometry(&mut rng)));
    for g in shapes {
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let oc = g.out_channels;
        let density = rng.random_range(0.05..0.6);
        let wv = i8s(&mut rng, oc * kk, density);
        let scales: Vec<f32> = (0..oc).map(|_| rng.random_range(0.001..0.02)).collect();
        let dense: Vec<f32> = (wv.iter().enumerate())
            .map(|(i, &v)| v as f32 * scales[i / kk.max(1)])
            .collect();
        let w = QCsrMatrix::from_dense(oc, kk, &dense, None).unwrap();
        let xq = QuantParams {
            scale: 0.03,
            zero_point: rng.random(),
        };
        let x = codes(&mut rng, g.input_len(), xq.zero_point, 0.3);
        // the values as `from_dense` quantized them back
        let mut back = vec![0i8; oc * kk];
        let (rp, ci) = (w.row_ptr(), w.col_idx());
        for r in 0..oc {
            for i in rp[r] as usize..rp[r + 1] as usize {
                back[r * kk + ci[i] as usize] = w.values()[i];
            }
        }
        let acc = conv_acc(&g, &x, &back, xq.zero_point);
        let (oq, mult, bias) = outputs(&mut rng, xq, w.scales());
        let plane = g.out_h() * g.out_w();
        for relu in [false, true] {
            let want = expect_u8(&acc, (oc, plane), &mult, &bias, oq, relu);
            for isa in Isa::all_supported() {
                for nt in [1, 2] {
                    let mut y = vec![0u8; g.output_len()];
                    threads::with(nt, || {
                        let o = QOutput::U8 {
                            out: &mut y,
                            params: oq,
                            bias: Some(&bias),
                            relu,
                        };
                        qsparse_conv2d_forward_with_isa(isa, &g, &x, xq, &w, o).unwrap()
                    });
                    assert_eq!(y, want, "{isa:?} {nt} threads relu {relu} {g:?}");
                }
            }
        }
    }
}

/// Per-channel requantization (the batch-1 output of a linear layer) at every level, on
/// extreme accumulators, biases and every shift, against [`requant_one`].
#[test]
fn per_channel_requantization_bit_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    for channels in [1usize, 7, 8, 9, 16, 61, 500] {
        let mult: Vec<Requant> = (0..channels)
            .map(|c| Requant {
                multiplier: rng.random_range(1 << 30..i32::MAX),
                shift: if c % 5 == 0 {
                    rng.random_range(1..=62)
                } else {
                    rng.random_range(30..=50)
                },
            })
            .collect();
        let special = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX];
        let pick = |rng: &mut ChaCha8Rng| {
            if rng.random_bool(0.2) {
                special[rng.random_range(0..special.len())]
            } else {
                rng.random_range(-3_000_000..3_000_000)
            }
        };
        let acc: Vec<i32> = (0..channels).map(|_| pick(&mut rng)).collect();
        let bias: Vec<i32> = (0..channels).map(|_| pick(&mut rng)).collect();
        for (zp, relu, with_bias) in [(0, false, true), (128, true, true), (255, false, false)] {
            let lo = if relu { zp } else { 0 };
            let want: Vec<u8> = (0..channels)
                .map(|c| {
                    let b = if with_bias { bias[c] } else { 0 };
                    requant_one(acc[c], b, mult[c], zp, lo)
                })
                .collect();
            let params = QuantParams {
                scale: 1.0,
                zero_point: zp as u8,
            };
            for isa in Isa::all_supported() {
                let mut y = vec![0u8; channels];
                let mut o = QOutput::U8 {
                    out: &mut y,
                    params,
                    bias: with_bias.then_some(&bias[..]),
                    relu,
                };
                let sc = vec![1.0; channels];
                super::requant::finish(isa, &acc, channels, 1, params, &sc, &mult, &mut o, 0, true);
                assert_eq!(y, want, "{isa:?} {channels} channels zp {zp}");
            }
        }
    }
}

/// The vectorized multipliers are `from_scale`'s one by one, the first bad scale is reported,
/// and the cache follows the scales it is asked for.
#[test]
fn multipliers_match_one_by_one_and_the_cache_follows() {
    let mut rng = ChaCha8Rng::seed_from_u64(34);
    let scales: Vec<f32> = (0..1000)
        .map(|i| {
            if i % 50 == 0 {
                f32::powi(2.0, rng.random_range(-12..4))
            } else {
                rng.random_range(1e-6..1.0)
            }
        })
        .collect();
    for (s_in, s_out) in [(0.02f32, 0.05f32), (1.0, 3e-3), (0.5, 0.5)] {
        let want: Vec<Requant> = scales
            .iter()
            .map(|s| Requant::from_scale(s_in as f64 * *s as f64 / s_out as f64).unwrap())
            .collect();
        assert_eq!(Requant::from_scales(s_in, s_out, &scales).unwrap(), want);
    }
    assert!(Requant::from_scales(1.0, 1e-30, &scales).is_err());
    assert!(Requant::from_scales(1.0, 1.0, &[0.5, f32::NAN]).is_err());
    let cache = super::quant::Multipliers::default();
    let a = cache.get(0.02, 0.05, &scales[..10]).unwrap();
    assert_eq!(
        &a[..],
        &Requant::from_scales(0.02, 0.05, &scales[..10]).unwrap()[..]
    );
    let b = cache.get(0.02, 0.07, &scales[..10]).unwrap();
    assert_eq!(
        &b[..],
        &Requant::from_scales(0.02, 0.07, &scales[..10]).unwrap()[..]
    );
    assert!(cache.get(1.0, 1e-30, &scales).is_err());
}
