//! int8 variants against a plain reference on seeded random ragged shapes, bit-exact.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::isa::Isa;
use crate::ConvGeometry;

fn u8s(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random()).collect()
}

/// Extreme weights (all of -127, 127) included on purpose: they would saturate
/// `vpmaddubsw` with activations near 255.
fn i8s(rng: &mut ChaCha8Rng, len: usize) -> Vec<i8> {
    i8s_within(rng, len, 127)
}

/// Weights in `-top..=top`, a seventh of them at each extreme. At `top` = [`NARROW_MAX`] the
/// extremes are the largest that `vpmaddubsw` takes without saturating.
fn i8s_within(rng: &mut ChaCha8Rng, len: usize, top: i8) -> Vec<i8> {
    (0..len)
        .map(|i| match i % 7 {
            0 => top,
            1 => -top,
            _ => rng.random_range(-top..=top),
        })
        .collect()
}

/// The weight range of each run of a test: 8-bit, and narrow (the AVX2 kernels' `vpmaddubsw`
/// paths).
const TOPS: [i8; 2] = [127, NARROW_MAX];

fn reference_acc(w: &QMatrix, x: impl Fn(usize, usize) -> u8, n: usize, za: u8) -> Vec<i32> {
    let (rows, k) = (w.rows(), w.cols());
    let mut acc = vec![0; rows * n];
    for r in 0..rows {
        for j in 0..n {
            acc[r * n + j] = (0..k)
                .map(|i| (x(i, j) as i32 - za as i32) * w.values()[r * k + i] as i32)
                .sum();
        }
    }
    acc
}

#[test]
fn linear_all_variants_bit_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for shape in [
        (1, 1, 1),
        (5, 7, 1),
        (9, 130, 1),
        (21, 300, 1),
        (4, 64, 3),
        (13, 67, 17),
        (33, 200, 70),
    ]
    .into_iter()
    .flat_map(|s| TOPS.map(|t| (s, t)))
    {
        let ((out, inp, batch), top) = shape;
        let w = QMatrix::new(
            out,
            inp,
            i8s_within(&mut rng, out * inp, top),
            vec![0.01; out],
        );
        let w = w.unwrap();
        assert_eq!(w.is_narrow(), top <= NARROW_MAX);
        let x = u8s(&mut rng, batch * inp);
        let xq = QuantParams {
            scale: 0.02,
            zero_point: rng.random(),
        };
        let acc = reference_acc(&w, |i, j| x[j * inp + i], batch, xq.zero_point);
        let bias: Vec<i32> = (0..out).map(|_| rng.random_range(-5000..5000)).collect();
        let oq = QuantParams {
            scale: 0.5,
            zero_point: 100,
        };
        let mut want = vec![0u8; batch * out];
        for r in 0..out {
            let m = Requant::from_scale(0.02 * 0.01 / 0.5).unwrap();
            for j in 0..batch {
                let v = 100 + m.apply(acc[r * batch + j] + bias[r]);
                want[j * out + r] = v.clamp(100, 255) as u8;
            }
        }
        for isa in Isa::all_supported() {
            let mut y = vec![0u8; batch * out];
            let o = QOutput::U8 {
                out: &mut y,
                params: oq,
                bias: Some(&bias),
                relu: true,
            };
            qlinear_forward_with_isa(isa, &w, batch, &x, xq, o).unwrap();
            assert_eq!(y, want, "{isa:?} {out}x{inp} batch {batch} top {top}");
            let mut f = vec![0f32; batch * out];
            qlinear_forward_with_isa(
                isa,
                &w,
                batch,
                &x,
                xq,
                QOutput::F32 {
                    out: &mut f,
                    bias: None,
                },
            )
            .unwrap();
            for r in 0..out {
                for j in 0..batch {
                    assert_eq!(f[j * out + r], acc[r * batch + j] as f32 * (0.02f32 * 0.01));
                }
            }
        }
    }
}

#[test]
fn conv_all_variants_bit_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (g, top) in [
        ConvGeometry::new(2, 3, 7, 9, 5, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 6, 8, 5, 7, 3, 2)
            .with_stride(2, 1)
            .with_padding(2, 0)
            .with_dilation(1, 2),
        ConvGeometry::new(1, 9, 6, 6, 4, 1, 1),
        // enough output channels for the AMX kernel: 37 (a 5-row last block), k = 171 (three
        // 64-byte steps, the last partial), 143 columns (tiles of 64, 64 and 16 columns)
        ConvGeometry::new(2, 19, 11, 13, 37, 3, 3).with_padding(1, 1),
        // a pointwise layer through the plain packing, 1 x 1 over 40 input channels
        ConvGeometry::new(1, 40, 5, 7, 48, 1, 1),
        // the AMX direct convolution: 128 input channels (two 64-channel steps per tap), 40 output
        // channels, uneven padding of a 3 x 5 kernel, rows shorter than one 16-pixel tile
        ConvGeometry::new(2, 128, 9, 6, 40, 3, 5).with_padding(2, 1),
        ConvGeometry::new(1, 64, 1, 1, 16, 1, 1),
        // steps of 16 and 32 channels: 48 input channels (three 16-channel steps per tap) and
        // 32 with a 5x5 kernel
        ConvGeometry::new(1, 48, 7, 10, 20, 3, 3).with_padding(1, 1),
        ConvGeometry::new(2, 32, 9, 9, 33, 5, 5).with_padding(2, 2),
        // the hanzi network's first layer: one input channel, 3x3, "same", 32 x 32
        ConvGeometry::new(1, 1, 32, 32, 32, 3, 3).with_padding(1, 1),
    ]
    .into_iter()
    .flat_map(|g| TOPS.map(|t| (g, t)))
    {
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let w = QMatrix::new(
            g.out_channels,
            kk,
            i8s_within(&mut rng, g.out_channels * kk, top),
            vec![0.003; g.out_channels],
        )
        .unwrap();
        assert_eq!(w.is_narrow(), top <= NARROW_MAX);
        let x = u8s(&mut rng, g.input_len());
        let xq = QuantParams {
            scale: 0.05,
            zero_point: 37,
        };
        // reference straight from the definition, padding at the zero point
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut want = vec![0f32; g.output_len()];
        for n in 0..g.batch {
            for o in 0..g.out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0i32;
                        for c in 0..g.in_channels {
                            for ki in 0..g.kernel_h {
                                for kj in 0..g.kernel_w {
                                    let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize
                                        - g.padding.0 as isize;
                                    let ix = (ox * g.stride.1 + kj * g.dilation.1) as isize
                                        - g.padding.1 as isize;
                                    let v = if iy < 0
                                        || ix < 0
                                        || iy >= g.in_h as isize
                                        || ix >= g.in_w as isize
                                    {
                                        xq.zero_point
                                    } else {
                                        x[((n * g.in_channels + c) * g.in_h + iy as usize) * g.in_w
                                            + ix as usize]
                                    };
                                    let wv = w.values()
                                        [o * kk + (c * g.kernel_h + ki) * g.kernel_w + kj];
                                    s += (v as i32 - 37) * wv as i32;
                                }
                            }
                        }
                        want[((n * g.out_channels + o) * oh + oy) * ow + ox] =
                            s as f32 * (0.05f32 * 0.003);
                    }
                }
            }
        }
        for isa in Isa::all_supported() {
            let mut y = vec![0f32; g.output_len()];
            qconv2d_forward_with_isa(
                isa,
                &g,
                &x,
                xq,
                &w,
                QOutput::F32 {
                    out: &mut y,
                    bias: None,
                },
            )
            .unwrap();
            assert_eq!(y, want, "{isa:?} {g:?} top {top}");
        }
    }
}

#[test]
fn depthwise_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let g = ConvGeometry::new(2, 5, 9, 7, 5, 3, 3)
        .with_padding(1, 1)
        .with_stride(2, 1)
        .with_groups(5);
    let w = QMatrix::new(5, 9, i8s(&mut rng, 45), vec![0.01; 5]).unwrap();
    let x = u8s(&mut rng, g.input_len());
    let xq = QuantParams {
        scale: 0.1,
        zero_point: 128,
    };
    let mut y = vec![0f32; g.output_len()];
    qdepthwise_forward(
        &g,
        &x,
        xq,
        &w,
        QOutput::F32 {
            out: &mut y,
            bias: None,
        },
    )
    .unwrap();
    for isa in Isa::all_supported() {
        let mut z = vec![0f32; g.output_len()];
        let o = QOutput::F32 {
            out: &mut z,
            bias: None,
        };
        qdepthwise_forward_with_isa(isa, &g, &x, xq, &w, o).unwrap();
        assert_eq!(z, y, "{isa:?}");
    }
    let (oh, ow) = (g.out_h(), g.out_w());
    for n in 0..2 {
        for c in 0..5 {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0i32;
                    for ki in 0..3 {
                        for kj in 0..3 {
                            let iy = (oy * 2 + ki) as isize - 1;
                            let ix = ox as isize + kj as isize - 1;
                            if iy >= 0 && ix >= 0 && iy < 9 && ix < 7 {
                                let v = x[((n * 5 + c) * 9 + iy as usize) * 7 + ix as usize];
                                s += (v as i32 - 128) * w.values()[c * 9 + ki * 3 + kj] as i32;
                            }
                        }
                    }
                    assert_eq!(
                        y[((n * 5 + c) * oh + oy) * ow + ox],
                        s as f32 * (0.1f32 * 0.01)
                    );
                }
            }
        }
    }
    assert!(qdepthwise_forward(
        &g.with_groups(1),
        &x,
        xq,
        &w,
        QOutput::F32 {
            out: &mut y,
            bias: None
        }
    )
    .is_err());
}

#[test]
fn rejects_bad_inputs() {
    assert!(QMatrix::new(2, 3, vec![0; 5], vec![1.0; 2]).is_err());
    assert!(QMatrix::new(2, 3, vec![0; 6], vec![1.0, 0.0]).is_err());
    assert!(QMatrix::new(1, MAX_INNER + 1, vec![0; MAX_INNER + 1], vec![1.0]).is_err());
    let w = QMatrix::quantize(&[0.5, -0.25, 1.0, 0.0], 2, 2).unwrap();
    assert_eq!(w.values(), &[127, -64, 127, 0]);
    let xq = QuantParams::from_range(0.0, 1.0);
    let mut y = [0u8; 3];
    let o = QOutput::U8 {
        out: &mut y,
        params: xq,
        bias: None,
        relu: false,
    };
    assert!(qlinear_forward(&w, 1, &[1, 2], xq, o).is_err());
    let mut y = [0u8; 2];
    let tiny = QuantParams {
        scale: 1e30,
        zero_point: 0,
    };
    let o = QOutput::U8 {
        out: &mut y,
        params: tiny,
        bias: None,
        relu: false,
    };
    assert!(qlinear_forward(&w, 1, &[1, 2], xq, o).is_err());
}

#[test]
fn requant_row_variants_bit_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for real in [1e-9, 3.1e-4, 0.0123, 0.5, 0.99, 7.5, 1e6] {
        let m = Requant::from_scale(real).unwrap();
        for (bias, zp, relu) in [
            (0, 0, false),
            (-12345, 128, true),
            (i32::MAX, 3, false),
            (i32::MIN, 255, true),
        ] {
            let mut acc: Vec<i32> = (0..203)
                .map(|_| rng.random_range(-2_000_000..2_000_000))
                .collect();
            acc[0] = i32::MAX;
            acc[1] = i32::MIN;
            acc[2] = 0;
            let lo = if relu { zp } else { 0 };
            let want: Vec<u8> = acc
                .iter()
                .map(|a| super::requant::requant_one(*a, bias, m, zp, lo))
                .collect();
            for isa in Isa::all_supported() {
                let mut got = vec![0u8; acc.len()];
                super::requant::requant_row(isa, &acc, bias, m, zp, lo, &mut got);
                assert_eq!(got, want, "{isa:?} scale {real} bias {bias}");
            }
        }
    }
}

#[test]
fn im2col_u8_matches_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    for g in [
        ConvGeometry::new(1, 2, 5, 6, 1, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 3, 7, 4, 1, 5, 5).with_padding(2, 2),
        ConvGeometry::new(1, 2, 4, 5, 1, 3, 1).with_padding(0, 0),
        ConvGeometry::new(1, 2, 6, 6, 1, 3, 3)
            .with_padding(1, 1)
            .with_stride(2, 2),
        ConvGeometry::new(1, 1, 3, 3, 1, 3, 3).with_padding(2, 1),
        ConvGeometry::new(1, 2, 7, 9, 1, 3, 3)
            .with_padding(1, 1)
            .with_stride(1, 2),
        ConvGeometry::new(1, 2, 9, 7, 1, 3, 2)
            .with_padding(2, 0)
            .with_stride(3, 2),
    ] {
        let x = u8s(&mut rng, g.input_len());
        let (oh, ow) = (g.out_h(), g.out_w());
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let mut col = vec![0u8; kk * oh * ow];
        super::ops::im2col_u8(&g, &x, 7, &mut col);
        for c in 0..g.in_channels {
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.stride.0 + ki) as isize - g.padding.0 as isize;
                            let ix = (ox * g.stride.1 + kj) as isize - g.padding.1 as isize;
                            let inside =
                                iy >= 0 && ix >= 0 && iy < g.in_h as isize && ix < g.in_w as isize;
                            let want = if inside {
                                x[(c * g.in_h + iy as usize) * g.in_w + ix as usize]
                            } else {
                                7
                            };
                            assert_eq!(
                                col[(row * oh + oy) * ow + ox],
                                want,
                                "{g:?} {row} {oy} {ox}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The fused unfold-and-pack gives the bytes of `pack_a` over `im2col_u8`, including the zero
/// padding of the last k quad and of the columns past the plane.
#[test]
fn im2col_pack_u8_equals_pack_of_im2col() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    for g in [
        ConvGeometry::new(1, 3, 9, 9, 1, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 2, 12, 11, 1, 5, 5).with_padding(2, 2),
        ConvGeometry::new(1, 5, 10, 13, 1, 3, 3)
            .with_padding(1, 1)
            .with_stride(2, 2),
        ConvGeometry::new(1, 1, 20, 20, 1, 3, 2)
            .with_padding(2, 0)
            .with_stride(3, 2),
        ConvGeometry::new(1, 4, 14, 14, 1, 3, 3)
            .with_padding(2, 2)
            .with_dilation(2, 2),
        // stride 2 read from the image's phases: odd and even sizes, 3x3, 2x2 and 1x1
        ConvGeometry::new(1, 3, 7, 9, 1, 3, 3)
            .with_padding(1, 1)
            .with_stride(2, 2),
        ConvGeometry::new(1, 2, 28, 28, 1, 3, 3)
            .with_padding(1, 1)
            .with_stride(2, 2),
        ConvGeometry::new(1, 3, 7, 7, 1, 1, 1).with_stride(2, 2),
        ConvGeometry::new(1, 2, 8, 6, 1, 2, 2).with_stride(2, 2),
        ConvGeometry::new(1, 2, 9, 9, 1, 1, 3)
            .with_padding(0, 1)
            .with_stride(2, 2),
    ] {
        let x = u8s(&mut rng, g.input_len());
        let plane = g.out_h() * g.out_w();
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let mut col = vec![0u8; kk * plane];
        super::ops::im2col_u8(&g, &x, 9, &mut col);
        let view = super::gemm::U8View {
            data: &col,
            k: kk,
            n: plane,
            rs: plane,
            cs: 1,
        };
        let (mut want, mut got) = (Vec::new(), vec![0xAAu8; 7]);
        let npad = super::gemm::pack_a(&view, &mut want);
        assert_eq!(
            super::ops::im2col_pack_u8(&g, &x, 9, &mut got),
            npad,
            "{g:?}"
        );
        let len = kk.div_ceil(4) * npad * 4;
        assert_eq!(&got[..len], &want[..len], "{g:?}");
    }
}
