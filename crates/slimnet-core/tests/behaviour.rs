//! Errors that name layers, NaN detection, determinism, graph editing, and MNIST loading.

use slimnet_core::data::{self, Dataset, Split};
use slimnet_core::layers::*;
use slimnet_core::optim::{Adam, Optimizer, Sgd};
use slimnet_core::train::{TrainConfig, Trainer};
use slimnet_core::{models, tensor, Error, Graph, Layer, Tensor};

fn synthetic(n: usize, seed: u64) -> Dataset {
    // Two classes: the top half of the image is bright (class 1) or dark (class 0), plus noise.
    let mut rng = tensor::rng(seed);
    let mut x = tensor::uniform(&[n, 1, 28, 28], -0.5, 0.5, &mut rng);
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    for (mut img, &l) in x.outer_iter_mut().zip(&labels) {
        img.slice_mut(ndarray::s![.., 0..14, ..])
            .mapv_inplace(|v| v + if l == 1 { 1.0 } else { -1.0 });
    }
    Dataset::new(x, labels, 10).unwrap()
}

#[test]
fn shape_errors_name_the_layer_and_both_shapes() {
    let m = models::lenet5(&mut tensor::rng(0)).unwrap();
    let e = m.forward(&tensor::zeros(&[1, 3, 28, 28])).unwrap_err();
    let s = e.to_string();
    assert!(
        matches!(e, Error::Shape { ref layer, .. } if layer == "conv1"),
        "{s}"
    );
    assert!(
        s.contains("[N, 1, H, W]") && s.contains("[1, 3, 28, 28]"),
        "{s}"
    );

    let e = m
        .forward(&tensor::zeros(&[1, 1, 28]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv1") && e.contains("[1, 1, 28]"), "{e}");

    // Deeper: a wrong spatial size reaches fc1 with the wrong feature count.
    let e = m
        .forward(&tensor::zeros(&[1, 1, 32, 32]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("fc1:") && e.contains("[N, 800]") && e.contains("[1, 1250]"),
        "{e}"
    );

    // Nested graphs prefix the path.
    let inner = models::lenet300(&mut tensor::rng(0)).unwrap();
    let mut outer = Graph::new();
    let x = outer.input();
    outer.add_layer("body", inner, x).unwrap();
    let e = outer
        .forward(&tensor::zeros(&[2, 5]))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("body.fc1:"), "{e}");
}

#[test]
fn backward_without_forward_is_an_error() {
    let mut c = Conv2dConfig::new(1, 1, 1)
        .init(&mut tensor::rng(0))
        .unwrap();
    let e = c
        .backward(&tensor::zeros(&[1, 1, 2, 2]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("without a preceding forward_train"), "{e}");
}

#[test]
fn nan_loss_stops_training_with_epoch_and_batch() {
    let mut m = models::lenet300(&mut tensor::rng(0)).unwrap();
    let train = synthetic(256, 1);
    let e = Trainer::new(TrainConfig::default().with_epochs(3).with_progress(false))
        .optimizer(Sgd::new(1e12))
        .fit(&mut m, &train, None)
        .unwrap_err();
    match e {
        Error::NonFinite { epoch, batch, .. } => {
            assert_eq!(epoch, 0);
            assert!((1..4).contains(&batch), "batch {batch}");
        }
        other => panic!("expected a NonFinite error, got {other}"),
    }
}

#[test]
fn training_is_deterministic_and_learns() {
    let train = synthetic(512, 2);
    let run = || {
        let mut m = models::lenet5(&mut tensor::rng(3)).unwrap();
        let h = Trainer::new(
            TrainConfig::default()
                .with_epochs(2)
                .with_seed(5)
                .with_progress(false),
        )
        .optimizer(Adam::new(1e-3))
        .fit(&mut m, &train, Some(&train))
        .unwrap();
        (m, h)
    };
    let (a, ha) = run();
    let (b, hb) = run();
    let numbers = |h: &[slimnet_core::train::EpochStats]| {
        h.iter()
            .map(|s| (s.train_loss, s.train_accuracy, s.test_loss, s.test_accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(numbers(&ha), numbers(&hb));
    let mut wa = Vec::new();
    a.visit_params(&mut |_, p| wa.extend(p.value().iter().copied()));
    let mut wb = Vec::new();
    b.visit_params(&mut |_, p| wb.extend(p.value().iter().copied()));
    assert!(wa == wb, "same seed, different weights");
    assert!(ha[1].test_accuracy.unwrap() > 0.9, "{:?}", ha[1]);
}

/// A fresh layer or optimizer of one kind.
type MakeLayer = fn() -> Box<dyn Layer>;
type MakeOptimizer = fn() -> Box<dyn Optimizer>;

/// Element-wise layers, pooling, batch norm, the optimizers and masks split large batches and
/// large parameters across the kernel threads; every value must come out as on one thread. The
/// shapes are large enough that each of them splits in two (2^19 values).
#[test]
fn element_wise_layers_and_optimizers_give_the_bits_of_one_thread_on_two() {
    let mut rng = tensor::rng(11);
    let x = tensor::uniform(&[8, 16, 64, 64], -1.0, 1.0, &mut rng);
    let layers: [(&str, MakeLayer); 3] = [
        ("relu", || Box::new(Activation::relu())),
        ("batch norm", || {
            Box::new(BatchNormConfig::new(16).init().unwrap())
        }),
        ("max pool", || {
            Box::new(MaxPool2d::new(PoolConfig::new(2)).unwrap())
        }),
    ];
    for (name, make) in &layers {
        let run = |threads: usize| {
            slimnet_kernels::threads::with(threads, || {
                let mut l = make();
                let y = l.forward_train(&x).unwrap();
                let dy = tensor::uniform(y.shape(), -1.0, 1.0, &mut tensor::rng(3));
                let dx = l.backward(&dy).unwrap();
                let mut grads = Vec::new();
                l.visit_params(&mut |_, p| grads.extend(p.grad.iter().copied()));
                (y, dx, grads)
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.0 == two.0, "{name}: outputs differ");
        assert!(one.1 == two.1, "{name}: input gradients differ");
        assert!(one.2 == two.2, "{name}: parameter gradients differ");
    }
    let optimizers: [(&str, MakeOptimizer); 3] = [
        ("sgd", || Box::new(Sgd::new(0.1).with_weight_decay(1e-3))),
        ("sgd with momentum", || {
            Box::new(Sgd::new(0.1).with_momentum(0.9))
        }),
        ("adam", || Box::new(Adam::new(1e-3))),
    ];
    for (name, make) in &optimizers {
        let run = |threads: usize| {
            slimnet_kernels::threads::with(threads, || {
                let mut fc = LinearConfig::new(1 << 13, 64)
                    .init(&mut tensor::rng(4))
                    .unwrap();
                // every third weight pruned: the masks are applied on every thread too
                let mask = Tensor::from_shape_fn(fc.weight.value().raw_dim(), |ix| {
                    ((ix[0] + ix[1]) % 3 != 0) as u8 as f32
                });
                fc.weight.set_mask(mask).unwrap();
                let mut opt = make();
                for step in 0..3 {
                    fc.visit_params_mut(&mut |_, p| {
                        let g =
                            tensor::uniform(p.value().shape(), -1.0, 1.0, &mut tensor::rng(step));
                        p.value_and_grad_mut().1.assign(&g);
                    });
                    opt.step(&mut fc).unwrap();
                }
                let mut w = Vec::new();
                fc.visit_params(&mut |_, p| w.extend(p.value().iter().copied()));
                (fc.weight.nonzeros(), w)
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one == two, "{name}: weights differ");
        assert_eq!(
            one.0,
            (1 << 13) * 64 * 2 / 3,
            "{name}: a pruned weight moved"
        );
    }
}

/// Training on two threads repeats itself bit for bit (no sum depends on which thread finishes
/// first), with every layer kind of the character CNN.
#[test]
fn training_on_two_threads_repeats_itself() {
    let n = 8;
    let x = tensor::uniform(&[n, 2, 64, 64], -1.0, 1.0, &mut tensor::rng(11));
    let train = Dataset::new(x, (0..n).map(|i| i % 4).collect(), 32).unwrap();
    let run = || {
        slimnet_kernels::threads::with(2, || {
            let mut rng = tensor::rng(2);
            let mut m = slimnet_core::Sequential::new()
                .push(
                    "conv",
                    Conv2dConfig::new(2, 16, 3)
                        .with_padding(1)
                        .init(&mut rng)
                        .unwrap(),
                )
                .push("bn", BatchNormConfig::new(16).init().unwrap())
                .push("relu", Activation::relu())
                .push("pool", MaxPool2d::new(PoolConfig::new(2)).unwrap())
                .push("flatten", Flatten::new())
                .push(
                    "fc",
                    LinearConfig::new(16 * 32 * 32, 32).init(&mut rng).unwrap(),
                )
                .build()
                .unwrap();
            let before = params(&m);
            Trainer::new(
                TrainConfig::default()
                    .with_epochs(2)
                    .with_batch_size(n)
                    .with_seed(1)
                    .with_progress(false),
            )
            .optimizer(Sgd::new(0.05).with_momentum(0.9))
            .fit(&mut m, &train, None)
            .unwrap();
            let after = params(&m);
            assert!(before != after, "training changed nothing");
            after
        })
    };
    let (a, b) = (run(), run());
    for (a, b) in a.iter().zip(&b) {
        assert!(a.1 == b.1, "`{}` differs between two runs", a.0);
    }
}

/// Every parameter's values by name.
fn params(m: &Graph) -> Vec<(String, Vec<f32>)> {
    let mut v = Vec::new();
    m.visit_params(&mut |name, p| v.push((name.to_string(), p.value().iter().copied().collect())));
    v
}

#[test]
fn masks_keep_pruned_weights_at_zero_through_training() {
    let train = synthetic(256, 4);
    let mut m = models::lenet300(&mut tensor::rng(0)).unwrap();
    let fc1 = m
        .layer_mut("fc1")
        .unwrap()
        .downcast_mut::<Linear>()
        .unwrap();
    let mask = Tensor::from_shape_fn(fc1.weight.value().raw_dim(), |ix| (ix[1] % 2) as f32);
    fc1.weight.set_mask(mask).unwrap();
    for mut opt in [
        Box::new(Sgd::new(0.1).with_momentum(0.9)) as Box<dyn Optimizer>,
        Box::new(Adam::adamw(1e-2, 0.1)),
    ] {
        for _ in 0..3 {
            let (x, y) = train.batch(&(0..64).collect::<Vec<_>>());
            let out = m.forward_train(&x).unwrap();
            let (_, g) = slimnet_core::loss::softmax_cross_entropy(&out, &y).unwrap();
            m.backward(&g).unwrap();
            opt.step(&mut m).unwrap();
            (&mut m as &mut dyn Layer).zero_grad();
        }
    }
    let fc1 = m.layer("fc1").unwrap().downcast_ref::<Linear>().unwrap();
    let zeros = fc1
        .weight
        .value()
        .indexed_iter()
        .filter(|(ix, _)| ix[1] % 2 == 0)
        .all(|(_, v)| *v == 0.0);
    assert!(zeros, "a masked weight moved");
    assert!(fc1.weight.nonzeros() > 100_000);
    let bad = fc1.weight.clone().set_mask(tensor::zeros(&[3, 3]));
    assert!(bad.is_err());
}

/// Momenta of pruned weights decay with no gradient to renew them; without a flush they settle
/// on subnormals for good (0.9 times a few units of the last place rounds back to itself), and
/// subnormal arithmetic is slow. After the decay every optimizer state entry is exactly zero.
#[test]
fn decayed_momenta_become_zero_not_subnormal() {
    let mut fc = LinearConfig::new(16, 8).init(&mut tensor::rng(3)).unwrap();
    let mask = Tensor::from_shape_fn(fc.weight.value().raw_dim(), |ix| (ix[1] % 2) as f32);
    fc.weight.set_mask(mask).unwrap();
    for (name, mut opt) in [
        (
            "sgd",
            Box::new(Sgd::new(0.01).with_momentum(0.9)) as Box<dyn Optimizer>,
        ),
        ("adam", Box::new(Adam::new(1e-3).with_betas(0.9, 0.99))),
    ] {
        // one step with small gradients everywhere, then steps without any: the momenta decay
        fc.weight.grad.fill(1e-12);
        opt.step(&mut fc).unwrap();
        (&mut fc as &mut dyn Layer).zero_grad();
        for _ in 0..12_000 {
            opt.step(&mut fc).unwrap();
        }
        for (entry, t) in opt.state() {
            let odd = t.iter().find(|v| **v != 0.0 && !v.is_normal());
            assert!(odd.is_none(), "{name} {entry}: subnormal {odd:?}");
            if entry != "t" {
                assert!(t.iter().all(|v| *v == 0.0), "{name} {entry}: {t:?}");
            }
        }
    }
}

#[test]
fn graph_bypass_and_replace() {
    let mut rng = tensor::rng(0);
    let mut g = models::vgg_small(&mut rng).unwrap();
    let x = tensor::uniform(&[1, 1, 28, 28], -1.0, 1.0, &mut rng);
    let before = g.forward(&x).unwrap();
    let n = g.nodes().len();
    // BatchNorm in eval with default statistics is the identity up to eps.
    g.bypass("bn1_1").unwrap();
    assert_eq!(g.nodes().len(), n - 1);
    let after = g.forward(&x).unwrap();
    assert!(tensor::max_abs_diff(&before, &after) < 1e-3);
    let old = g
        .replace_layer("relu1_1", Box::new(Activation::relu6()))
        .unwrap();
    assert_eq!(old.kind(), "ReLU");
    assert!(g.replace_layer("nope", Box::new(Flatten::new())).is_err());
    assert!(
        g.add_layer("conv1_1", Flatten::new(), g.output()).is_err(),
        "duplicate name"
    );
}

#[test]
fn mnist_loads_with_checked_digests() {
    let test = data::mnist(Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.example_shape(), &[1, 28, 28]);
    let mut counts = [0usize; 10];
    test.labels.iter().for_each(|&l| counts[l] += 1);
    assert_eq!(
        counts,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let mean = test.inputs.mean().unwrap();
    assert!(mean.abs() < 0.05, "normalized mean {mean}");
}

#[test]
fn fashion_mnist_loads_from_the_debian_package() {
    let test = data::fashion_mnist(Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    let mut counts = [0usize; 10];
    test.labels.iter().for_each(|&l| counts[l] += 1);
    assert_eq!(counts, [1000; 10]);
}

#[test]
fn short_mnist_training_reaches_ninety_percent() {
    let train = data::mnist(Split::Train).unwrap().take(10_000);
    let test = data::mnist(Split::Test).unwrap().take(2_000);
    let mut m = models::lenet300(&mut tensor::rng(0)).unwrap();
    let h = Trainer::new(TrainConfig::default().with_epochs(1).with_progress(false))
        .optimizer(Sgd::new(0.05).with_momentum(0.9))
        .fit(&mut m, &train, Some(&test))
        .unwrap();
    assert!(h[0].test_accuracy.unwrap() > 0.9, "{:?}", h[0]);
}

#[test]
fn visit_layers_recurses_into_nested_graphs() {
    let inner = models::lenet300(&mut tensor::rng(0)).unwrap();
    let mut outer = Graph::new();
    let x = outer.input();
    let b = outer.add_layer("body", inner, x).unwrap();
    outer.add_layer("out", Activation::relu(), b).unwrap();
    let mut paths = Vec::new();
    outer.visit_layers(&mut |p, l| paths.push(format!("{p}:{}", l.kind())));
    assert_eq!(
        paths,
        [
            "body:Graph",
            "body.flatten:Flatten",
            "body.fc1:Linear",
            "body.relu1:ReLU",
            "body.fc2:Linear",
            "body.relu2:ReLU",
            "body.fc3:Linear",
            "out:ReLU"
        ]
    );
}

/// A weight edited into a non-contiguous layout (transposed in place) still runs, as its
/// contiguous copy would.
#[test]
fn non_contiguous_weights_run() {
    let mut fc = LinearConfig::new(3, 3).init(&mut tensor::rng(0)).unwrap();
    let t = fc.weight.value().clone();
    let want = {
        let mut copy = fc.clone();
        *copy.weight.value_mut() = t.t().as_standard_layout().into_owned().into_dyn();
        copy
    };
    *fc.weight.value_mut() = t.reversed_axes();
    assert!(!fc.weight.value().is_standard_layout());
    let x = tensor::uniform(&[2, 3], -1.0, 1.0, &mut tensor::rng(1));
    assert_eq!(fc.forward(&x).unwrap(), want.forward(&x).unwrap());
    let mut fc = fc;
    let y = fc.forward_train(&x).unwrap();
    fc.backward(&y).unwrap();
}

/// NaN is not hidden by an activation: a NaN input gives a NaN output, not a plausible 0.
#[test]
fn relu_passes_nan_on() {
    let x = tensor::from_vec(&[1, 3], vec![f32::NAN, -1.0, 2.0]).unwrap();
    for a in [Activation::relu(), Activation::relu6()] {
        let y = a.forward(&x).unwrap();
        assert!(y[[0, 0]].is_nan(), "{}", a.kind());
        assert_eq!((y[[0, 1]], y[[0, 2]]), (0.0, 2.0));
    }
}

#[test]
fn quantized_sums_add_codes_like_reals_and_survive_files() {
    use slimnet_core::value::{Codes, QuantParams, Value};
    let mut g = Graph::new();
    let x = g.input();
    let a = g.add_layer("relu", Activation::relu(), x).unwrap();
    g.add("sum", a, x).unwrap();
    let p = QuantParams::from_range(-2.0, 4.0);
    // only sums can be quantized, with a usable scale
    assert!(g.quantize_add("relu", p).is_err());
    let bad = QuantParams {
        scale: 0.0,
        zero_point: 0,
    };
    assert!(g.quantize_add("sum", bad).is_err());
    g.quantize_add("sum", p).unwrap();
    assert_eq!(g.nodes()[2].op.name(), "QuantAdd");

    let xs = tensor::uniform(&[2, 3, 4, 4], -2.0, 2.0, &mut tensor::rng(0));
    // typed inference writes codes; their real values are what f32 inference returns
    let codes = Codes::quantize(&xs, QuantParams::from_range(-2.0, 2.0));
    let y = g.forward_value(&Value::U8(codes.clone())).unwrap();
    let Value::U8(yc) = &y else {
        panic!("a quantized sum writes codes, got {:?}", y.kind())
    };
    assert_eq!(yc.params, p);
    let reals = codes.dequantize();
    assert_eq!(y.clone().into_f32(), g.forward(&reals).unwrap());
    // the same as quantizing the real sum
    let want = Codes::quantize(&(&reals.mapv(|v| v.max(0.0)) + &reals), p);
    assert_eq!(yc.data, want.data);
    // a frozen plan hands codes on without converting them
    let plan = g.freeze(&[2, 3, 4, 4]).unwrap();
    assert_eq!(plan.conversions(), 0);
    assert_eq!(
        plan.run_value(&Value::F32(reals.clone())).unwrap().kind(),
        y.kind()
    );
    // and model files keep the quantization
    let back = slimnet_core::io::from_bytes(
        &slimnet_core::io::to_bytes(&g).unwrap(),
        &slimnet_core::io::Registry::core(),
    )
    .unwrap();
    assert_eq!(back.forward(&reals).unwrap(), g.forward(&reals).unwrap());
    assert_eq!(back.nodes()[2].op.name(), "QuantAdd");
}

/// A side output (not on the way to the graph's output) trained with its own weighted loss
/// term: the input and parameter gradients of `sum(main * r) + w * sum(side * s)` match
/// central differences.
#[test]
fn side_outputs_train_with_their_own_loss_terms() {
    let mut g = Graph::new();
    let x = g.input();
    let conv = |ci, co, k: usize, seed| {
        Conv2dConfig::new(ci, co, k)
            .with_padding(k / 2)
            .init(&mut tensor::rng(seed))
            .unwrap()
    };
    let h = g.add_layer("conv", conv(2, 3, 3, 0), x).unwrap();
    let h = g.add_layer("act", Activation::tanh(), h).unwrap();
    let side = g.add_layer("side", conv(3, 2, 1, 1), h).unwrap();
    let down = g
        .add_layer("pool", AvgPool2d::new(PoolConfig::new(2)).unwrap(), h)
        .unwrap();
    let main = g.add_layer("head", conv(3, 2, 3, 2), down).unwrap();
    g.set_output(main).unwrap();
    let xs = tensor::uniform(&[2, 2, 6, 6], -1.0, 1.0, &mut tensor::rng(3));
    let r = tensor::uniform(&[2, 2, 3, 3], -1.0, 1.0, &mut tensor::rng(4));
    let s = tensor::uniform(&[2, 2, 6, 6], -1.0, 1.0, &mut tensor::rng(5));
    let w = 0.3f32;
    let objective = |g: &Graph, x: &Tensor| -> f64 {
        let ys = g.clone().forward_train_at(x, &[main, side]).unwrap();
        ((&ys[0] * &r).sum() + w * (&ys[1] * &s).sum()) as f64
    };
    let ys = g.forward_train_at(&xs, &[main, side]).unwrap();
    assert_eq!(ys[0].shape(), &[2, 2, 3, 3]);
    assert_eq!(ys[1].shape(), &[2, 2, 6, 6]);
    g.zero_grad();
    let dx = g
        .backward_from(&[(main, r.clone()), (side, &s * w)])
        .unwrap();
    let h = 1e-2f32;
    let close = |num: f64, ana: f64| (num - ana).abs() <= 2e-2 * (num.abs() + ana.abs()).max(1e-2);
    for i in (0..xs.len()).step_by(7) {
        let (mut xp, mut xm) = (xs.clone(), xs.clone());
        xp.as_slice_mut().unwrap()[i] += h;
        xm.as_slice_mut().unwrap()[i] -= h;
        let num = (objective(&g, &xp) - objective(&g, &xm)) / (2.0 * h as f64);
        let ana = dx.as_slice().unwrap()[i] as f64;
        assert!(close(num, ana), "input {i}: {num} vs {ana}");
    }
    // the side head's weights get gradient from its own term only
    let gw = g.layer("side").unwrap();
    let mut grad = None;
    gw.visit_params(&mut |name, p| {
        if name == "weight" {
            grad = Some(p.grad.clone());
        }
    });
    let grad = grad.unwrap();
    for k in [0, 3, 5] {
        let mut gp = g.clone();
        let mut gm = g.clone();
        for (gg, sign) in [(&mut gp, 1.0), (&mut gm, -1.0)] {
            gg.layer_mut("side")
                .unwrap()
                .visit_params_mut(&mut |name, p| {
                    if name == "weight" {
                        let mut v = p.value().clone();
                        v.as_slice_mut().unwrap()[k] += sign * h;
                        p.set_value(v).unwrap();
                    }
                });
        }
        let num = (objective(&gp, &xs) - objective(&gm, &xs)) / (2.0 * h as f64);
        assert!(
            close(num, grad.as_slice().unwrap()[k] as f64),
            "side weight {k}"
        );
    }
    // with the output's gradient alone it is the ordinary backward pass
    let mut a = g.clone();
    let mut b = g.clone();
    a.forward_train_at(&xs, &[main, side]).unwrap();
    let da = a.backward_from(&[(main, r.clone())]).unwrap();
    b.forward_train(&xs).unwrap();
    assert_eq!(da, b.backward(&r).unwrap());
    // gradients at nodes the pass did not compute, or of the wrong shape, are errors
    g.forward_train_at(&xs, &[main]).unwrap();
    assert!(g.backward_from(&[(side, s.clone())]).is_err());
    g.forward_train_at(&xs, &[main, side]).unwrap();
    assert!(g.backward_from(&[(side, r.clone())]).is_err());
    assert!(g.forward_train_at(&xs, &[]).is_err());
}

#[test]
fn the_character_cnn_starts_every_class_near_one_over_the_classes() {
    // A classifier that starts far from uniform at 3,755 classes killed fc1's ReLUs in the
    // first steps and left the network at chance for an epoch.
    let classes = 3755;
    let cnn = models::hanzi_cnn(classes, &mut tensor::rng(1)).unwrap();
    let mut rng = tensor::rng(2);
    let x = tensor::normal(&[32, 1, 32, 32], 0.0, 1.0, &mut rng);
    let labels: Vec<usize> = (0..32).map(|i| i * 117 % classes).collect();
    let (loss, _) =
        slimnet_core::loss::softmax_cross_entropy(&cnn.forward(&x).unwrap(), &labels).unwrap();
    let uniform = (classes as f32).ln();
    assert!(
        (loss - uniform).abs() < 0.05,
        "initial loss {loss}, uniform {uniform}"
    );
}

/// Max pooling of codes is the codes of the max-pooled reals, for the 2x2 window (its own
/// kernel) and another window, over odd plane sizes too.
#[test]
fn max_pooling_codes_pools_their_reals() {
    use slimnet_core::value::{Codes, QuantParams, Value};
    let p = QuantParams::from_range(-1.0, 3.0);
    for (kernel, stride) in [(2, 2), (3, 2)] {
        let pool = MaxPool2d::new(PoolConfig::new(kernel).with_stride(stride)).unwrap();
        for (h, w) in [(32, 32), (9, 13), (8, 40)] {
            let xs = tensor::uniform(&[2, 3, h, w], -1.0, 3.0, &mut tensor::rng(h as u64));
            let codes = Codes::quantize(&xs, p);
            let Value::U8(y) = pool.forward_value(&Value::U8(codes.clone())).unwrap() else {
                panic!("max pooling keeps codes")
            };
            let want = Codes::quantize(&pool.forward(&codes.dequantize()).unwrap(), p);
            assert_eq!(y.data, want.data, "{kernel}x{kernel} on {h}x{w}");
        }
    }
}
