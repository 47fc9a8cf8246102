//! Finite-difference checks of every layer's backward pass (input and parameter gradients) and
//! of the image losses' gradients.

use slimnet_core::graph::Graph;
use slimnet_core::layers::*;
use slimnet_core::{tensor, Layer, Tensor};

/// Relative error allowed between analytic and central-difference gradients in f32.
const FD_TOLERANCE: f64 = 2e-2;
/// Step of the central differences.
const FD_STEP: f32 = 1e-2;

/// `sum(forward(x) * r)` in f64, evaluated in training mode without touching caches' use.
fn objective(layer: &mut dyn Layer, x: &Tensor, r: &Tensor) -> f64 {
    let y = layer.forward_train(x).unwrap();
    y.iter()
        .zip(r.iter())
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum()
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / (a.abs() + b.abs()).max(1e-2)
}

/// Checks d objective / d x and d objective / d params by central differences.
fn check(name: &str, layer: &mut dyn Layer, shape: &[usize], seed: u64) {
    let x = tensor::uniform(shape, -1.0, 1.0, &mut tensor::rng(seed));
    check_at(name, layer, &x, seed);
}

/// Distinct values at least 0.05 apart (more than twice the step), shuffled: a max over a
/// window cannot change its arg-max under a finite-difference step.
fn separated(shape: &[usize], seed: u64) -> Tensor {
    use rand::seq::SliceRandom;
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - n as f32 * 0.025).collect();
    v.shuffle(&mut tensor::rng(seed));
    tensor::from_vec(shape, v).unwrap()
}

fn check_at(name: &str, layer: &mut dyn Layer, x: &Tensor, seed: u64) {
    let mut rng = tensor::rng(seed + 1000);
    let x = x.clone();
    let y = layer.forward_train(&x).unwrap();
    let r = tensor::uniform(y.shape(), -1.0, 1.0, &mut rng);
    layer.zero_grad();
    let dx = layer.backward(&r).unwrap();
    assert_eq!(dx.shape(), x.shape(), "{name}: input gradient shape");
    // Input gradient, at a spread of positions.
    let n = x.len();
    for k in (0..n).step_by((n / 23).max(1)) {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[k] += FD_STEP;
        xm.as_slice_mut().unwrap()[k] -= FD_STEP;
        let num = (objective(layer, &xp, &r) - objective(layer, &xm, &r)) / (2.0 * FD_STEP as f64);
        let ana = dx.as_slice().unwrap()[k] as f64;
        assert!(
            rel_err(num, ana) < FD_TOLERANCE,
            "{name}: d/dx[{k}] numeric {num} analytic {ana}"
        );
    }
    // Parameter gradients.
    let mut grads: Vec<(String, Tensor)> = Vec::new();
    layer.visit_params(&mut |p, v| grads.push((p.to_string(), v.grad.clone())));
    for (pname, g) in grads {
        let len = g.len();
        for k in (0..len).step_by((len / 11).max(1)) {
            let mut eval = |delta: f32| {
                layer.visit_params_mut(&mut |p, v| {
                    if p == pname {
                        v.value_mut().as_slice_mut().unwrap()[k] += delta;
                    }
                });
                let o = objective(layer, &x, &r);
                layer.visit_params_mut(&mut |p, v| {
                    if p == pname {
                        v.value_mut().as_slice_mut().unwrap()[k] -= delta;
                    }
                });
                o
            };
            let num = (eval(FD_STEP) - eval(-FD_STEP)) / (2.0 * FD_STEP as f64);
            let ana = g.as_slice().unwrap()[k] as f64;
            assert!(
                rel_err(num, ana) < FD_TOLERANCE,
                "{name}: d/d{pname}[{k}] numeric {num} analytic {ana}"
            );
        }
    }
}

#[test]
fn conv2d_variants() {
    let mut rng = tensor::rng(1);
    let cases = [
        ("plain", Conv2dConfig::new(3, 4, 3), [2, 3, 6, 7]),
        (
            "pad_stride",
            Conv2dConfig::new(3, 4, 3).with_padding(1).with_stride(2),
            [2, 3, 7, 6],
        ),
        (
            "dilation",
            Conv2dConfig::new(2, 3, 3).with_dilation(2).with_padding(2),
            [1, 2, 7, 7],
        ),
        (
            "groups",
            Conv2dConfig::new(4, 6, 3).with_groups(2).with_padding(1),
            [2, 4, 5, 5],
        ),
        (
            "depthwise",
            Conv2dConfig::new(4, 4, 3).with_groups(4).with_padding(1),
            [2, 4, 5, 6],
        ),
        ("pointwise", Conv2dConfig::new(5, 3, 1), [2, 5, 4, 4]),
        (
            "rect_nobias",
            Conv2dConfig::new(2, 3, 1)
                .with_kernel(3, 1)
                .with_padding2(1, 0)
                .with_bias(false),
            [1, 2, 5, 4],
        ),
    ];
    for (i, (name, cfg, shape)) in cases.into_iter().enumerate() {
        let mut l = cfg.init(&mut rng).unwrap();
        if let Some(b) = &mut l.bias {
            b.value_mut().mapv_inplace(|_| 0.3);
        }
        check(name, &mut l, &shape, i as u64);
    }
}

#[test]
fn linear_and_batchnorm() {
    let mut rng = tensor::rng(2);
    check(
        "linear",
        &mut LinearConfig::new(7, 5).init(&mut rng).unwrap(),
        &[3, 7],
        3,
    );
    let mut bn = BatchNormConfig::new(3).init().unwrap();
    bn.weight
        .value_mut()
        .assign(&tensor::from_vec(&[3], vec![0.5, 1.5, -1.0]).unwrap());
    check("batchnorm", &mut bn, &[4, 3, 3, 2], 4);
}

#[test]
fn activations() {
    // Inputs in [-1, 1] avoid kinks only by chance; use scaled inputs where kinks sit elsewhere.
    for (i, mut a) in [
        Activation::relu(),
        Activation::relu6(),
        Activation::leaky_relu(0.1),
        Activation::sigmoid(),
        Activation::tanh(),
        Activation::hard_sigmoid(),
        Activation::hard_swish(),
    ]
    .into_iter()
    .enumerate()
    {
        let name = a.kind();
        check(name, &mut a, &[3, 17], 10 + i as u64);
    }
}

#[test]
fn pooling_flatten_softmax_dropout() {
    check_at(
        "maxpool",
        &mut MaxPool2d::new(PoolConfig::new(2)).unwrap(),
        &separated(&[2, 3, 6, 6], 20),
        20,
    );
    check_at(
        "maxpool_overlap_pad",
        &mut MaxPool2d::new(PoolConfig::new(3).with_stride(2).with_padding(1)).unwrap(),
        &separated(&[1, 2, 7, 7], 21),
        21,
    );
    check(
        "avgpool",
        &mut AvgPool2d::new(PoolConfig::new(2)).unwrap(),
        &[2, 3, 6, 5],
        22,
    );
    check(
        "avgpool_pad",
        &mut AvgPool2d::new(
            PoolConfig::new(3)
                .with_stride(2)
                .with_padding(1)
                .with_count_include_pad(true),
        )
        .unwrap(),
        &[1, 2, 7, 6],
        23,
    );
    check("gap", &mut GlobalAvgPool::new(), &[2, 3, 4, 5], 24);
    check("flatten", &mut Flatten::new(), &[2, 3, 2, 2], 25);
    check("softmax", &mut Softmax::new(), &[3, 6], 26);
    check("logsoftmax", &mut Softmax::log(), &[3, 6], 27);
}

#[test]
fn graph_with_merges() {
    let mut rng = tensor::rng(5);
    let mut g = Graph::new();
    let x = g.input();
    let a = g
        .add_layer(
            "a",
            Conv2dConfig::new(3, 4, 3)
                .with_padding(1)
                .init(&mut rng)
                .unwrap(),
            x,
        )
        .unwrap();
    let b = g
        .add_layer("b", Conv2dConfig::new(3, 4, 1).init(&mut rng).unwrap(), x)
        .unwrap();
    let s = g.add("sum", a, b).unwrap();
    let gate = g.add_layer("gap", GlobalAvgPool::new(), s).unwrap();
    let gate = g.add_layer("sig", Activation::sigmoid(), gate).unwrap();
    let m = g.mul("scale", s, gate).unwrap();
    let c = g.concat("cat", &[m, a]).unwrap();
    g.add_layer("tanh", Activation::tanh(), c).unwrap();
    check("graph", &mut g, &[2, 3, 5, 5], 6);
}

#[test]
fn lenet_shapes() {
    let mut rng = tensor::rng(11);
    check(
        "c1",
        &mut Conv2dConfig::new(1, 20, 5).init(&mut rng).unwrap(),
        &[2, 1, 28, 28],
        12,
    );
    check(
        "c2",
        &mut Conv2dConfig::new(20, 50, 5).init(&mut rng).unwrap(),
        &[2, 20, 12, 12],
        13,
    );
}

#[test]
fn dropout_backward_uses_the_forward_mask() {
    // Random in training, so not a finite-difference check: the gradient must pass exactly where
    // the forward pass kept an element, scaled by 1 / (1 - p).
    let mut d = Dropout::new(0.25, 7).unwrap();
    let x = tensor::uniform(&[4, 50], 0.5, 1.0, &mut tensor::rng(1));
    let y = d.forward_train(&x).unwrap();
    let g = tensor::uniform(&[4, 50], -1.0, 1.0, &mut tensor::rng(2));
    let dx = d.backward(&g).unwrap();
    let mut dropped = 0;
    for ((xv, yv), (gv, dv)) in x.iter().zip(&y).zip(g.iter().zip(&dx)) {
        if *yv == 0.0 {
            dropped += 1;
            assert_eq!(*dv, 0.0);
        } else {
            assert!((yv / xv - 1.0 / 0.75).abs() < 1e-5);
            assert!((dv / gv - 1.0 / 0.75).abs() < 1e-5);
        }
    }
    assert!(
        (20..80).contains(&dropped),
        "{dropped} of 200 dropped at p = 0.25"
    );
    assert_eq!(d.forward(&x).unwrap(), x, "identity in evaluation");
}

#[test]
fn conv_transpose_variants() {
    let mut rng = tensor::rng(30);
    let cases = [
        (
            "stride2",
            ConvTransposeConfig::new().with_stride(2, 2),
            3,
            4,
            2,
        ),
        (
            "stride2_pad_outpad",
            ConvTransposeConfig::upsample2x(),
            3,
            4,
            3,
        ),
        (
            "groups2_asym_pads",
            ConvTransposeConfig::new()
                .with_stride(2, 1)
                .with_pads([1, 0, 0, 1])
                .with_output_padding(1, 0)
                .with_groups(2),
            4,
            6,
            3,
        ),
        (
            "groups2_stride2_outpad_dilation",
            ConvTransposeConfig::new()
                .with_stride(2, 2)
                .with_dilation(2, 1)
                .with_pads([1, 1, 2, 0])
                .with_output_padding(1, 1)
                .with_groups(2),
            2,
            4,
            3,
        ),
    ];
    for (i, (name, cfg, cin, cout, k)) in cases.into_iter().enumerate() {
        let mut l = cfg.init(cin, cout, k, &mut rng).unwrap();
        if let Some(b) = &mut l.bias {
            b.value_mut().mapv_inplace(|_| 0.3);
        }
        check(name, &mut l, &[2, cin, 4, 3], 30 + i as u64);
    }
}

#[test]
fn resize_upsampling() {
    for (i, mode) in [
        ResizeMode::Nearest(NearestMode::Floor),
        ResizeMode::Nearest(NearestMode::RoundPreferFloor),
        ResizeMode::Linear,
    ]
    .into_iter()
    .enumerate()
    {
        let mut l = Resize2d::upsample(2, mode).unwrap();
        check(
            &format!("{mode:?} x2"),
            &mut l,
            &[2, 3, 4, 5],
            40 + i as u64,
        );
    }
    // bilinear with corners aligned, to an odd size
    let mut l = Resize2d::new(
        ResizeMode::Linear,
        CoordMode::AlignCorners,
        ResizeTarget::Sizes([7, 9]),
    )
    .unwrap();
    check("linear_align_corners", &mut l, &[1, 2, 4, 5], 43);
}

#[test]
fn instance_norm() {
    let mut l = InstanceNormConfig::new(3).init().unwrap();
    l.weight
        .value_mut()
        .assign(&tensor::from_vec(&[3], vec![0.5, 1.5, -1.0]).unwrap());
    l.bias
        .value_mut()
        .assign(&tensor::from_vec(&[3], vec![0.1, -0.2, 0.3]).unwrap());
    check("instance_norm", &mut l, &[2, 3, 4, 5], 50);
    // a wider eps and a plane of one row
    let mut l = InstanceNormConfig::new(2).with_eps(0.1).init().unwrap();
    l.weight.value_mut().mapv_inplace(|_| 2.0);
    check("instance_norm_eps0.1", &mut l, &[3, 2, 1, 6], 51);
}

#[test]
fn pad_modes() {
    for (i, mode) in [
        PadMode::Reflect,
        PadMode::Edge,
        PadMode::Wrap,
        PadMode::Constant(0.5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut l = Pad::spatial([2, 1, 1, 3], mode).unwrap();
        check(
            &format!("pad_{mode:?}"),
            &mut l,
            &[2, 2, 4, 5],
            60 + i as u64,
        );
    }
}

/// Checks a loss's gradient against central differences of the loss itself, at a spread of
/// positions.
fn check_loss(name: &str, f: impl Fn(&Tensor) -> (f32, Tensor), x: &Tensor) {
    let (_, g) = f(x);
    assert_eq!(g.shape(), x.shape(), "{name}: gradient shape");
    let n = x.len();
    for k in (0..n).step_by((n / 29).max(1)) {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[k] += FD_STEP;
        xm.as_slice_mut().unwrap()[k] -= FD_STEP;
        let num = (f64::from(f(&xp).0) - f64::from(f(&xm).0)) / (2.0 * FD_STEP as f64);
        let ana = f64::from(g.as_slice().unwrap()[k]);
        assert!(
            rel_err(num, ana) < FD_TOLERANCE,
            "{name}: d/dx[{k}] numeric {num} analytic {ana}"
        );
    }
}

#[test]
fn image_losses() {
    use slimnet_core::loss;
    let mut rng = tensor::rng(70);
    // the losses are means over few values here, so their gradients are not tiny
    let x = tensor::uniform(&[2, 3, 4, 3], -1.0, 1.0, &mut rng);
    let style = tensor::uniform(&[1, 3, 5, 5], -1.0, 1.0, &mut rng);
    let target = loss::gram_matrix(&style).unwrap();
    check_loss(
        "gram_style_broadcast",
        |f| loss::gram_style(f, &target).unwrap(),
        &x,
    );
    let per_sample =
        loss::gram_matrix(&tensor::uniform(&[2, 3, 2, 2], -1.0, 1.0, &mut rng)).unwrap();
    check_loss(
        "gram_style_per_sample",
        |f| loss::gram_style(f, &per_sample).unwrap(),
        &x,
    );
    check_loss("total_variation", |f| loss::total_variation(f).unwrap(), &x);
    check_loss(
        "total_variation_one_row",
        |f| loss::total_variation(f).unwrap(),
        &tensor::uniform(&[2, 2, 1, 7], -1.0, 1.0, &mut rng),
    );
    // flows whose errors are at least 0.3 long, far from the kink of the norm at zero
    let pred = tensor::uniform(&[2, 2, 3, 4], -2.0, 2.0, &mut rng);
    let mut target = pred.clone();
    let len = tensor::uniform(&[2, 1, 3, 4], 0.3, 1.0, &mut rng);
    let ang = tensor::uniform(&[2, 1, 3, 4], 0.0, std::f32::consts::TAU, &mut rng);
    for n in 0..2 {
        for i in 0..3 {
            for j in 0..4 {
                let (r, a) = (len[[n, 0, i, j]], ang[[n, 0, i, j]]);
                target[[n, 0, i, j]] -= r * a.cos();
                target[[n, 1, i, j]] -= r * a.sin();
            }
        }
    }
    check_loss("epe", |p| loss::epe(p, &target).unwrap(), &pred);
    // an exact prediction: a finite loss of at most sqrt(eps) and a zero gradient
    let (l, g) = loss::epe(&pred, &pred).unwrap();
    assert!((0.0..=1e-6).contains(&l), "epe of an exact flow: {l}");
    assert!(g.iter().all(|v| *v == 0.0));
}

#[test]
fn graph_matrix_products() {
    // attention-like: scores = x @ f(x), then scores @ x, on stacks of 3x3 matrices
    let mut rng = tensor::rng(8);
    let mut g = Graph::new();
    let x = g.input();
    let f = g
        .add_layer("f", Conv2dConfig::new(2, 2, 1).init(&mut rng).unwrap(), x)
        .unwrap();
    let s = g.matmul("scores", x, f).unwrap();
    let s = g.add_layer("tanh", Activation::tanh(), s).unwrap();
    g.matmul("mix", s, x).unwrap();
    check("matmul", &mut g, &[2, 2, 3, 3], 9);
}

/// The gradients of `sum(matmul(a, b) * r)` for operands a graph (one input) cannot form:
/// broadcast leading axes and rank-1 operands.
#[test]
fn matrix_product_broadcast_and_vectors() {
    use slimnet_core::tensor::matmul;
    let mut rng = tensor::rng(3);
    for (ashape, bshape) in [
        (vec![2, 3, 4], vec![4, 5]),
        (vec![4], vec![2, 4, 3]),
        (vec![2, 1, 3, 4], vec![3, 4, 2]),
        (vec![3, 4], vec![4]),
    ] {
        let a = tensor::uniform(&ashape, -1.0, 1.0, &mut rng);
        let b = tensor::uniform(&bshape, -1.0, 1.0, &mut rng);
        let y = matmul(&a, &b).unwrap();
        // against a direct sum over the shared axis, for the plain 3-D case
        if ashape == [2, 3, 4] {
            for (n, i, j) in [(0, 0, 0), (1, 2, 4), (1, 1, 3)] {
                let want: f32 = (0..4).map(|k| a[[n, i, k]] * b[[k, j]]).sum();
                assert!((y[[n, i, j]] - want).abs() < 1e-5);
            }
        }
        let r = tensor::uniform(y.shape(), -1.0, 1.0, &mut rng);
        let obj = |a: &Tensor, b: &Tensor| -> f64 {
            matmul(a, b)
                .unwrap()
                .iter()
                .zip(r.iter())
                .map(|(p, q)| (*p as f64) * (*q as f64))
                .sum()
        };
        let (ga, gb) = tensor::matmul_grads(&a, &b, &r).unwrap();
        assert_eq!(ga.shape(), a.shape());
        assert_eq!(gb.shape(), b.shape());
        for (t, grad, is_a) in [(&a, &ga, true), (&b, &gb, false)] {
            for k in 0..t.len() {
                let bump = |d: f32| {
                    let mut u = t.clone();
                    u.as_slice_mut().unwrap()[k] += d;
                    if is_a {
                        obj(&u, &b)
                    } else {
                        obj(&a, &u)
                    }
                };
                let num = (bump(FD_STEP) - bump(-FD_STEP)) / (2.0 * FD_STEP as f64);
                let ana = grad.as_slice().unwrap()[k] as f64;
                assert!(
                    rel_err(num, ana) < FD_TOLERANCE,
                    "{ashape:?} @ {bshape:?}: d/d{}[{k}] numeric {num} analytic {ana}",
                    if is_a { "a" } else { "b" }
                );
            }
        }
    }
}

#[test]
fn batchnorm_in_training_normalizes_each_channel_by_its_own_batch_statistics() {
    // channel c holds values around 10 c with spread c + 1, so a statistic taken from the
    // wrong channel shows in the output and in the running averages
    let (n, c, h, w) = (3, 4, 2, 5);
    let mut rng = tensor::rng(7);
    let noise = tensor::normal(&[n, c, h, w], 0.0, 1.0, &mut rng);
    let x = ndarray::Array::from_shape_fn(noise.raw_dim(), |i| {
        let ch = i[1] as f32;
        10.0 * ch + (ch + 1.0) * noise[&i]
    });
    let mut bn = BatchNormConfig::new(c).init().unwrap();
    bn.weight
        .value_mut()
        .assign(&tensor::from_vec(&[c], vec![0.5, 1.5, -1.0, 2.0]).unwrap());
    bn.bias
        .value_mut()
        .assign(&tensor::from_vec(&[c], vec![1.0, -2.0, 0.0, 3.0]).unwrap());
    let y = bn.forward_train(&x).unwrap();
    let m = (n * h * w) as f32;
    for ch in 0..c {
        let xs: Vec<f32> = x.index_axis(ndarray::Axis(1), ch).iter().copied().collect();
        let mean = xs.iter().sum::<f32>() / m;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / m;
        let (g, b) = (bn.weight.value()[ch], bn.bias.value()[ch]);
        for (v, out) in xs.iter().zip(y.index_axis(ndarray::Axis(1), ch).iter()) {
            let want = (v - mean) / (var + 1e-5).sqrt() * g + b;
            assert!((out - want).abs() < 1e-4, "channel {ch}: {out} vs {want}");
        }
        assert!((bn.running_mean[ch] - 0.1 * mean).abs() < 1e-4);
        let unbiased = var * m / (m - 1.0);
        assert!((bn.running_var[ch] - (0.9 + 0.1 * unbiased)).abs() < 1e-3);
    }
}
