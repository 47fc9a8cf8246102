//! The image-to-image layers (transposed convolution, resizing, padding, instance
//! normalization) against their definitions, hand-computed values and finite differences, and
//! through model files; the image losses' shape checks and Gram matrices.

use slimnet_core::layers::{
    Activation, ActivationKind, ConvTranspose2d, ConvTransposeConfig, CoordMode,
    InstanceNormConfig, NearestMode, Pad, PadMode, Resize2d, ResizeMode, ResizeTarget,
};
use slimnet_core::{models, tensor, Layer, Tensor};

/// Relative error of the input gradient of `sum(w * layer(x))` against central differences.
fn grad_error(layer: &mut dyn Layer, x: &Tensor) -> f32 {
    let y = layer.forward_train(x).unwrap();
    let w = tensor::uniform(y.shape(), -1.0, 1.0, &mut tensor::rng(3));
    let g = layer.backward(&w).unwrap();
    let loss = |x: &Tensor| (layer.forward(x).unwrap() * &w).sum();
    let h = 1e-2;
    let mut worst = 0.0f32;
    for i in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[i] += h;
        xm.as_slice_mut().unwrap()[i] -= h;
        let num = (loss(&xp) - loss(&xm)) / (2.0 * h);
        let ana = g.as_slice().unwrap()[i];
        worst = worst.max((num - ana).abs() / (1.0 + num.abs()));
    }
    worst
}

/// ONNX `ConvTranspose` by its definition: every input value scatters its kernel window into
/// the full output, which is then cropped by the pads.
fn naive_conv_transpose(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    c: &ConvTransposeConfig,
) -> Tensor {
    let (n, ci, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (cog, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
    let co = cog * c.groups;
    let cig = ci / c.groups;
    let full = [
        c.stride[0] * (h - 1) + (kh - 1) * c.dilation[0] + 1 + c.output_padding[0],
        c.stride[1] * (wd - 1) + (kw - 1) * c.dilation[1] + 1 + c.output_padding[1],
    ];
    let out = [
        full[0] - c.pads[0] - c.pads[2],
        full[1] - c.pads[1] - c.pads[3],
    ];
    let mut y = Tensor::zeros(ndarray::IxDyn(&[n, co, out[0], out[1]]));
    for b_ in 0..n {
        for i in 0..ci {
            let grp = i / cig;
            for (yy, xx) in (0..h).flat_map(|a| (0..wd).map(move |b| (a, b))) {
                for o in 0..cog {
                    for (ki, kj) in (0..kh).flat_map(|a| (0..kw).map(move |b| (a, b))) {
                        let r = (yy * c.stride[0] + ki * c.dilation[0]) as i64 - c.pads[0] as i64;
                        let s = (xx * c.stride[1] + kj * c.dilation[1]) as i64 - c.pads[1] as i64;
                        if r < 0 || s < 0 || r >= out[0] as i64 || s >= out[1] as i64 {
                            continue;
                        }
                        y[[b_, grp * cog + o, r as usize, s as usize]] +=
                            x[[b_, i, yy, xx]] * w[[i, o, ki, kj]];
                    }
                }
            }
        }
    }
    if let Some(b) = b {
        for ((_, ch, _, _), v) in y
            .view_mut()
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap()
            .indexed_iter_mut()
        {
            *v += b[ch];
        }
    }
    y
}

fn conv_transpose_cases() -> Vec<(usize, usize, [usize; 2], ConvTransposeConfig)> {
    vec![
        // (C_in, C_out per group, kernel, config)
        (4, 3, [2, 2], ConvTransposeConfig::new().with_stride(2, 2)),
        // an output as large as the full one but shifted by a row: the crop must still happen
        (
            4,
            3,
            [3, 3],
            ConvTransposeConfig::new()
                .with_stride(2, 2)
                .with_pads([1, 0, 0, 1])
                .with_output_padding(1, 1),
        ),
        (
            3,
            2,
            [3, 3],
            ConvTransposeConfig::new().with_pads([1, 1, 1, 1]),
        ),
        (
            4,
            1,
            [3, 2],
            ConvTransposeConfig::new()
                .with_stride(3, 2)
                .with_dilation(2, 1)
                .with_pads([2, 0, 1, 1])
                .with_output_padding(1, 1)
                .with_groups(2),
        ),
        (
            2,
            2,
            [4, 4],
            ConvTransposeConfig::new()
                .with_stride(2, 2)
                .with_pads([1, 1, 1, 1]),
        ),
        (
            2,
            3,
            [2, 3],
            ConvTransposeConfig::new()
                .with_stride(1, 2)
                .with_output_padding(2, 3)
                .with_pads([0, 1, 1, 0]),
        ),
    ]
}

#[test]
fn conv_transpose_matches_its_definition() {
    for (k, (ci, cog, ks, cfg)) in conv_transpose_cases().into_iter().enumerate() {
        let r = &mut tensor::rng(10 + k as u64);
        let w = tensor::uniform(&[ci, cog, ks[0], ks[1]], -1.0, 1.0, r);
        let b = tensor::uniform(&[cog * cfg.groups], -1.0, 1.0, r);
        let x = tensor::uniform(&[2, ci, 5, 4], -1.0, 1.0, r);
        let l = ConvTranspose2d::new(w.clone(), Some(b.clone()), cfg).unwrap();
        let want = naive_conv_transpose(&x, &w, Some(&b), &cfg);
        let got = l.forward(&x).unwrap();
        assert_eq!(got.shape(), want.shape(), "case {k}");
        assert_eq!(l.output_shape(x.shape()).unwrap(), want.shape(), "case {k}");
        assert!(tensor::max_abs_diff(&got, &want) < 1e-5, "case {k}");
    }
}

#[test]
fn conv_transpose_gradients_match_finite_differences() {
    for (k, (ci, cog, ks, cfg)) in conv_transpose_cases().into_iter().enumerate() {
        let r = &mut tensor::rng(20 + k as u64);
        let w = tensor::uniform(&[ci, cog, ks[0], ks[1]], -1.0, 1.0, r);
        let b = tensor::uniform(&[cog * cfg.groups], -1.0, 1.0, r);
        let x = tensor::uniform(&[2, ci, 3, 3], -1.0, 1.0, r);
        let mut l = ConvTranspose2d::new(w.clone(), Some(b.clone()), cfg).unwrap();
        assert!(grad_error(&mut l, &x) < 1e-2, "input gradient, case {k}");
        // parameter gradients of sum(g * y): y is linear in w and b
        l.zero_grad();
        let y = l.forward_train(&x).unwrap();
        let g = tensor::uniform(y.shape(), -1.0, 1.0, &mut tensor::rng(3));
        l.backward(&g).unwrap();
        let loss = |w: &Tensor, b: &Tensor| {
            let m = ConvTranspose2d::new(w.clone(), Some(b.clone()), cfg).unwrap();
            f64::from((m.forward(&x).unwrap() * &g).sum())
        };
        let h = 1e-2;
        for i in [0, w.len() / 2, w.len() - 1] {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp.as_slice_mut().unwrap()[i] += h;
            wm.as_slice_mut().unwrap()[i] -= h;
            let num = (loss(&wp, &b) - loss(&wm, &b)) / (2.0 * f64::from(h));
            let ana = f64::from(l.weight.grad.as_slice().unwrap()[i]);
            assert!(
                (num - ana).abs() < 1e-2 * (1.0 + num.abs()),
                "weight {i}, case {k}: {num} vs {ana}"
            );
        }
        let db: f32 = g
            .sum_axis(ndarray::Axis(0))
            .sum_axis(ndarray::Axis(1))
            .sum_axis(ndarray::Axis(1))[0];
        let ana = l.bias.as_ref().unwrap().grad[0];
        assert!((db - ana).abs() < 1e-3 * (1.0 + db.abs()), "bias, case {k}");
    }
}

#[test]
fn resize_values_and_gradients() {
    let x = tensor::from_vec(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let row = |l: &Resize2d| l.forward(&x).unwrap().iter().copied().collect::<Vec<_>>();
    // bilinear, align_corners, 2x2 -> 3x3: the centre is the mean
    let lin = Resize2d::new(
        ResizeMode::Linear,
        CoordMode::AlignCorners,
        ResizeTarget::Sizes([3, 3]),
    )
    .unwrap();
    assert_eq!(row(&lin), [1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0]);
    // half_pixel bilinear 2x: positions -0.25, 0.25, 0.75, 1.25 with the edges repeated
    let hp = Resize2d::new(
        ResizeMode::Linear,
        CoordMode::HalfPixel,
        ResizeTarget::Scales([1.0, 2.0]),
    )
    .unwrap();
    assert_eq!(row(&hp), [1.0, 1.25, 1.75, 2.0, 3.0, 3.25, 3.75, 4.0]);
    // nearest, 2x: positions 0, 0.5, 1, 1.5, 2, 2.5; halves go down or up by the mode
    let near = |m, s| {
        let l = Resize2d::new(
            ResizeMode::Nearest(m),
            CoordMode::Asymmetric,
            ResizeTarget::Scales([1.0, s]),
        )
        .unwrap();
        let z = tensor::from_vec(&[1, 1, 1, 4], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        l.forward(&z).unwrap().iter().copied().collect::<Vec<_>>()
    };
    assert_eq!(
        near(NearestMode::RoundPreferFloor, 1.5),
        [0.0, 1.0, 1.0, 2.0, 3.0, 3.0]
    );
    assert_eq!(
        near(NearestMode::RoundPreferCeil, 1.5),
        [0.0, 1.0, 1.0, 2.0, 3.0, 3.0]
    );
    assert_eq!(
        near(NearestMode::RoundPreferFloor, 2.0),
        [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    );
    assert_eq!(
        near(NearestMode::RoundPreferCeil, 2.0),
        [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0]
    );
    assert_eq!(
        near(NearestMode::Ceil, 2.0),
        [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0]
    );
    // shrinking by 0.75: positions 0, 4/3, 8/3; `Simple` rounds up there, `Floor` down
    assert_eq!(near(NearestMode::Floor, 0.75), [0.0, 1.0, 2.0]);
    assert_eq!(near(NearestMode::Simple, 0.75), [0.0, 2.0, 3.0]);
    assert_eq!(
        near(NearestMode::Simple, 2.0),
        near(NearestMode::Floor, 2.0)
    );
    // keep aspect ratio: 2x2 into at most 3x5 is 3x3
    let fit = Resize2d::new(
        ResizeMode::Linear,
        CoordMode::HalfPixel,
        ResizeTarget::KeepAspect {
            sizes: [3, 5],
            fit: true,
        },
    )
    .unwrap();
    assert_eq!(fit.output_shape(&[1, 1, 2, 2]).unwrap(), vec![1, 1, 3, 3]);
    // gradients
    let x = tensor::uniform(&[2, 3, 4, 5], -1.0, 1.0, &mut tensor::rng(5));
    for mode in [
        ResizeMode::Linear,
        ResizeMode::Nearest(NearestMode::RoundPreferFloor),
    ] {
        for target in [
            ResizeTarget::Scales([2.0, 1.5]),
            ResizeTarget::Sizes([3, 7]),
        ] {
            let mut l = Resize2d::new(mode, CoordMode::HalfPixel, target).unwrap();
            assert!(grad_error(&mut l, &x) < 1e-2, "{mode:?} {target:?}");
        }
    }
    assert!(Resize2d::new(
        ResizeMode::Linear,
        CoordMode::HalfPixel,
        ResizeTarget::Scales([0.0, 1.0])
    )
    .is_err());
    assert!(lin.output_shape(&[1, 2, 3]).is_err());
}

#[test]
fn new_layers_round_trip_through_model_files() {
    // every kind here is a core kind: no other crate's registry is needed
    let r = slimnet_core::io::Registry::core();
    let w = tensor::uniform(&[4, 2, 2, 2], -1.0, 1.0, &mut tensor::rng(1));
    let model = slimnet_core::Sequential::new()
        .push(
            "up",
            ConvTranspose2d::new(
                w,
                Some(tensor::zeros(&[2]) + 0.5),
                ConvTransposeConfig::new()
                    .with_stride(2, 2)
                    .with_pads([1, 0, 0, 1]),
            )
            .unwrap(),
        )
        .push(
            "resize",
            Resize2d::new(
                ResizeMode::Nearest(NearestMode::Simple),
                CoordMode::Asymmetric,
                ResizeTarget::Scales([0.5, 2.0]),
            )
            .unwrap(),
        )
        .push("pad", Pad::spatial([1, 2, 0, 1], PadMode::Reflect).unwrap())
        .push("norm", {
            let mut n = InstanceNormConfig::new(2).with_eps(1e-3).init().unwrap();
            n.weight.value_mut()[1] = -0.5;
            n.bias.value_mut()[0] = 0.25;
            n
        })
        .push("norm_act", {
            let cfg = InstanceNormConfig::new(2)
                .with_activation(ActivationKind::LeakyRelu { alpha: 0.1 });
            let mut n = cfg.init().unwrap();
            n.bias.value_mut()[1] = -0.3;
            n
        })
        .push(
            "fit",
            Resize2d::new(
                ResizeMode::Linear,
                CoordMode::AlignCorners,
                ResizeTarget::KeepAspect {
                    sizes: [9, 9],
                    fit: false,
                },
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let bytes = slimnet_core::io::to_bytes(&model).unwrap();
    let back = slimnet_core::io::from_bytes(&bytes, &r).unwrap();
    let x = tensor::uniform(&[1, 4, 3, 5], -1.0, 1.0, &mut tensor::rng(2));
    assert_eq!(back.forward(&x).unwrap(), model.forward(&x).unwrap());
}

#[test]
fn pad_values_gradients_and_bad_shapes() {
    let x = tensor::from_vec(&[1, 1, 1, 3], vec![1.0, 2.0, 3.0]).unwrap();
    let pad = |m| Pad::new(vec![(0, 0), (0, 0), (0, 0), (2, 2)], m).unwrap();
    let row = |l: &dyn Layer| l.forward(&x).unwrap().iter().copied().collect::<Vec<_>>();
    assert_eq!(
        row(&pad(PadMode::Reflect)),
        [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    );
    assert_eq!(
        row(&pad(PadMode::Edge)),
        [1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    );
    assert_eq!(
        row(&pad(PadMode::Wrap)),
        [2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0]
    );
    assert_eq!(
        row(&pad(PadMode::Constant(-1.0))),
        [-1.0, -1.0, 1.0, 2.0, 3.0, -1.0, -1.0]
    );
    // every mode, with pads wider than the axis (reflect twice, wrap around) and crops
    let x = tensor::uniform(&[2, 3, 4, 5], -2.0, 2.0, &mut tensor::rng(1));
    for (pads, mode) in [
        (vec![(0, 0), (1, 0), (2, 1), (0, 3)], PadMode::Constant(0.3)),
        (vec![(0, 0), (0, 0), (2, 1), (3, 3)], PadMode::Reflect),
        (vec![(0, 0), (0, 0), (5, 6), (1, 7)], PadMode::Reflect),
        (vec![(0, 0), (0, 0), (-1, 2), (1, -2)], PadMode::Edge),
        (vec![(0, 0), (0, 0), (3, 6), (7, 1)], PadMode::Wrap),
    ] {
        let mut l = Pad::new(pads.clone(), mode).unwrap();
        let e = grad_error(&mut l, &x);
        assert!(e < 2e-2, "{mode:?} {pads:?}: {e}");
    }
    assert!(Pad::new(vec![(0, 0)], PadMode::Reflect)
        .unwrap()
        .output_shape(&[1, 1])
        .is_err());
    assert!(Pad::new(vec![(i64::MIN, 0)], PadMode::Edge).is_err());
    assert!(Pad::spatial([1; 4], PadMode::Reflect)
        .unwrap()
        .output_shape(&[1, 2, 3])
        .is_err());
    let mut l = Pad::spatial([1; 4], PadMode::Reflect).unwrap();
    assert!(
        l.backward(&tensor::zeros(&[1, 1, 4, 4])).is_err(),
        "no forward_train"
    );
    l.forward_train(&tensor::zeros(&[1, 1, 2, 2])).unwrap();
    assert!(
        l.backward(&tensor::zeros(&[1, 1, 3, 4])).is_err(),
        "wrong gradient shape"
    );
}

#[test]
fn upsample_constructors() {
    let x = tensor::uniform(&[2, 3, 4, 5], -1.0, 1.0, &mut tensor::rng(8));
    let near = Resize2d::upsample(3, ResizeMode::Nearest(NearestMode::Floor)).unwrap();
    let y = near.forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 3, 12, 15]);
    for ((n, c, i, j), v) in y
        .view()
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap()
        .indexed_iter()
    {
        assert_eq!(*v, x[[n, c, i / 3, j / 3]]);
    }
    let lin = Resize2d::upsample(2, ResizeMode::Linear).unwrap();
    assert_eq!(lin.parts().1, CoordMode::HalfPixel);
    assert!(Resize2d::upsample(0, ResizeMode::Linear).is_err());
    let up = ConvTransposeConfig::upsample2x()
        .init(3, 4, 3, &mut tensor::rng(9))
        .unwrap();
    assert_eq!(up.output_shape(&[2, 3, 4, 5]).unwrap(), vec![2, 4, 8, 10]);
    assert!(up.bias.as_ref().unwrap().value().iter().all(|&b| b == 0.0));
    let std =
        (up.weight.value().iter().map(|v| v * v).sum::<f32>() / up.weight.len() as f32).sqrt();
    // fan_in = 3 * 3 * 3 / 4 = 6.75: std sqrt(2 / 6.75) = 0.544
    assert!((std - 0.544).abs() < 0.15, "weight std {std}");
    assert!(ConvTransposeConfig::new()
        .with_groups(2)
        .init(3, 4, 3, &mut tensor::rng(0))
        .is_err());
    assert!(ConvTransposeConfig::new()
        .init(3, 0, 3, &mut tensor::rng(0))
        .is_err());
}

/// Instance normalization by its definition, in f64.
fn naive_instance_norm(x: &Tensor, scale: &[f32], bias: &[f32], eps: f64) -> Tensor {
    let s = x.shape();
    let mut y = x.clone();
    for n in 0..s[0] {
        for c in 0..s[1] {
            let plane: Vec<f64> = (0..s[2])
                .flat_map(|i| (0..s[3]).map(move |j| (i, j)))
                .map(|(i, j)| f64::from(x[[n, c, i, j]]))
                .collect();
            let m = plane.len() as f64;
            let mean = plane.iter().sum::<f64>() / m;
            let var = plane.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
            for i in 0..s[2] {
                for j in 0..s[3] {
                    let v = (f64::from(x[[n, c, i, j]]) - mean) / (var + eps).sqrt();
                    y[[n, c, i, j]] = (v * f64::from(scale[c]) + f64::from(bias[c])) as f32;
                }
            }
        }
    }
    y
}

#[test]
fn instance_norm_values_and_errors() {
    let x = tensor::uniform(&[2, 3, 4, 5], -3.0, 5.0, &mut tensor::rng(4));
    let mut l = InstanceNormConfig::new(3).with_eps(1e-3).init().unwrap();
    let (scale, bias) = (vec![0.5, -1.5, 2.0], vec![0.1, 0.0, -0.7]);
    l.weight
        .value_mut()
        .assign(&tensor::from_vec(&[3], scale.clone()).unwrap());
    l.bias
        .value_mut()
        .assign(&tensor::from_vec(&[3], bias.clone()).unwrap());
    let want = naive_instance_norm(&x, &scale, &bias, 1e-3);
    assert!(tensor::max_abs_diff(&l.forward(&x).unwrap(), &want) < 1e-5);
    assert_eq!(l.forward_train(&x).unwrap(), l.forward(&x).unwrap());
    assert!(l.forward(&tensor::zeros(&[2, 4, 4, 5])).is_err());
    assert!(l.forward(&tensor::zeros(&[2, 3, 0, 5])).is_err());
    assert!(l.forward(&tensor::zeros(&[3, 4, 5])).is_err());
    assert!(l.backward(&tensor::zeros(&[2, 3, 4, 4])).is_err());
    assert!(InstanceNormConfig::new(0).init().is_err());
    assert!(InstanceNormConfig::new(2).with_eps(0.0).init().is_err());
    assert!(InstanceNormConfig::new(2)
        .with_eps(f32::NAN)
        .init()
        .is_err());
    let cost = l.cost(&[2, 3, 4, 5]).unwrap();
    assert_eq!((cost.params, cost.output), (6, vec![2, 3, 4, 5]));
}

#[test]
fn image_losses_refuse_bad_shapes() {
    use slimnet_core::loss;
    let f = tensor::zeros(&[2, 3, 4, 4]);
    assert!(loss::gram_matrix(&tensor::zeros(&[2, 3, 4])).is_err());
    assert!(loss::gram_matrix(&tensor::zeros(&[2, 3, 0, 4])).is_err());
    assert!(loss::gram_style(&f, &tensor::zeros(&[2, 3, 4])).is_err());
    assert!(loss::gram_style(&f, &tensor::zeros(&[3, 3, 3])).is_err());
    assert!(loss::gram_style(&f, &tensor::zeros(&[3, 3])).is_err());
    assert!(loss::gram_style(&f, &tensor::zeros(&[2, 3, 3])).is_ok());
    assert!(loss::gram_style(&f, &tensor::zeros(&[1, 3, 3])).is_ok());
    assert!(loss::total_variation(&tensor::zeros(&[2, 3, 1, 1])).is_err());
    assert!(loss::total_variation(&tensor::zeros(&[2, 3, 4])).is_err());
    assert!(loss::total_variation(&tensor::zeros(&[0, 3, 4, 4])).is_err());
    let flow = tensor::zeros(&[2, 2, 4, 4]);
    assert!(loss::epe(&flow, &tensor::zeros(&[2, 2, 4, 5])).is_err());
    assert!(loss::epe(&tensor::zeros(&[2, 3, 4, 4]), &tensor::zeros(&[2, 3, 4, 4])).is_err());
    assert!(loss::epe(&tensor::zeros(&[2, 2, 4]), &tensor::zeros(&[2, 2, 4])).is_err());
    assert!(loss::epe(&flow, &flow).is_ok());
}

#[test]
fn gram_matrix_matches_its_definition() {
    use slimnet_core::loss;
    let f = tensor::uniform(&[2, 3, 4, 5], -1.0, 1.0, &mut tensor::rng(12));
    let g = loss::gram_matrix(&f).unwrap();
    assert_eq!(g.shape(), &[2, 3, 3]);
    for n in 0..2 {
        for i in 0..3 {
            for j in 0..3 {
                let mut s = 0.0f64;
                for y in 0..4 {
                    for x in 0..5 {
                        s += f64::from(f[[n, i, y, x]]) * f64::from(f[[n, j, y, x]]);
                    }
                }
                let want = s / 60.0;
                assert!(
                    (f64::from(g[[n, i, j]]) - want).abs() < 1e-6,
                    "G[{n}, {i}, {j}]"
                );
            }
        }
    }
    // the loss is the mean squared difference of the Gram matrices
    let t = tensor::uniform(&[1, 3, 3], -1.0, 1.0, &mut tensor::rng(13));
    let (l, _) = loss::gram_style(&f, &t).unwrap();
    let want = g
        .outer_iter()
        .flat_map(|gn| {
            gn.iter()
                .zip(t.iter())
                .map(|(a, b)| f64::from(a - b).powi(2))
                .collect::<Vec<_>>()
        })
        .sum::<f64>()
        / 18.0;
    assert!((f64::from(l) - want).abs() < 1e-6);
}

#[test]
fn instance_norm_with_a_fused_activation() {
    let x = tensor::uniform(&[2, 3, 4, 5], -3.0, 5.0, &mut tensor::rng(5));
    for kind in [
        ActivationKind::Relu,
        ActivationKind::LeakyRelu { alpha: 0.2 },
        ActivationKind::Tanh,
    ] {
        let mut plain = InstanceNormConfig::new(3).init().unwrap();
        plain.weight.value_mut()[1] = -1.5;
        plain.bias.value_mut()[2] = 0.4;
        let mut fused = InstanceNormConfig::new(3)
            .with_activation(kind)
            .init()
            .unwrap();
        fused.weight.value_mut()[1] = -1.5;
        fused.bias.value_mut()[2] = 0.4;
        // the same bits as the two layers one after the other
        let want = Activation::new(kind)
            .unwrap()
            .forward(&plain.forward(&x).unwrap())
            .unwrap();
        assert_eq!(fused.forward(&x).unwrap(), want, "{kind:?}");
        assert_eq!(fused.forward_train(&x).unwrap(), want, "{kind:?}");
    }
    // the gradient goes through the activation (a smooth one, for finite differences)
    let mut l = InstanceNormConfig::new(3)
        .with_activation(ActivationKind::Tanh)
        .init()
        .unwrap();
    l.bias.value_mut()[0] = 0.5;
    let e = grad_error(
        &mut l,
        &tensor::uniform(&[1, 3, 3, 4], -1.0, 1.0, &mut tensor::rng(6)),
    );
    assert!(e < 2e-3, "input gradient error {e}");
    assert!(InstanceNormConfig::new(2)
        .with_activation(ActivationKind::LeakyRelu { alpha: f32::NAN })
        .init()
        .is_err());
}

#[test]
fn frozen_style_network_fuses_its_activations() {
    let g = models::style_net(4, &mut tensor::rng(7)).unwrap();
    let plan = g.freeze(&[1, 3, 24, 24]).unwrap();
    let kinds: Vec<&str> = plan.layers().map(|(_, l)| l.kind()).collect();
    assert!(!kinds.contains(&"ReLU"), "{kinds:?}");
    let x = tensor::uniform(&[1, 3, 24, 24], 0.0, 1.0, &mut tensor::rng(8));
    let d = tensor::max_abs_diff(&plan.run(&x).unwrap(), &g.forward(&x).unwrap());
    assert!(d < 1e-4, "plan against graph: {d}");
}
