//! Whole-graph behaviour: static quantization plans and accuracy against the f32 graph, bad
//! calibration input, QAT straight-through gradients and conversion, and weight sharing with
//! pruning masks, fine-tuning and Huffman-coded files.

use slimnet_core::graph::Graph;
use slimnet_core::rewrite::Selector;
use slimnet_core::{io, models, tensor, Layer, Tensor};
use slimnet_quant::observer::{ObserverKind, RangeMethod};
use slimnet_quant::ptq::{self, PtqConfig};
use slimnet_quant::share::{share_weights, ShareConfig, SharedWeights};
use slimnet_quant::{qat, QuantError};

fn registry() -> io::Registry {
    let mut r = io::Registry::core();
    slimnet_quant::register(&mut r);
    r
}

fn batches(n: usize, seed: u64) -> Vec<Tensor> {
    (0..n)
        .map(|i| tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(seed + i as u64)))
        .collect()
}

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.nodes().iter().map(|n| n.op.name()).collect()
}

/// Relative error of the quantized graph's logits: below 5% of the largest logit (8-bit
/// activations and weights through 5 to 9 layers, one rounding step each).
fn close(a: &Tensor, b: &Tensor) -> bool {
    let m = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    tensor::max_abs_diff(a, b) <= 0.05 * m
}

#[test]
fn resnet_plan_adds_codes_and_converts_only_at_the_ends() {
    let mut model = models::resnet_small(&mut tensor::rng(0)).unwrap();
    let x = tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    for _ in 0..2 {
        model.forward_train(&x).unwrap(); // non-trivial BatchNorm statistics
    }
    // entropy calibration clips tails on purpose (it trades the largest errors for resolution
    // of the bulk), so it is held to the mean error, not the worst case
    for (obs, worst) in [
        (ObserverKind::MinMax, true),
        (ObserverKind::Histogram(RangeMethod::Mse), true),
        (ObserverKind::Histogram(RangeMethod::Entropy), false),
    ] {
        let cfg = PtqConfig::default().with_observer(obs);
        let q = ptq::quantize_static(&model, batches(3, 10), &cfg).unwrap();
        let k = kinds(&q);
        assert!(!k.contains(&"BatchNorm2d") && !k.contains(&"Conv2d") && !k.contains(&"Linear"));
        assert_eq!(k.iter().filter(|s| **s == "QConv2d").count(), 9);
        // the residual sums add codes; ReLUs inside blocks and after the stem fuse, the
        // ones after the sums clamp codes
        assert_eq!(k.iter().filter(|s| **s == "QuantAdd").count(), 3);
        assert!(!k.contains(&"Add"), "{k:?}");
        assert_eq!(k.iter().filter(|s| **s == "ReLU").count(), 3);
        assert!(
            !k.contains(&"Quantize") && !k.contains(&"Dequantize"),
            "{k:?}"
        );
        // codes from the first convolution to the pooling: values convert only at the input,
        // for the global average pool (an f32 layer) and for the classifier after it
        let plan = q.freeze(&[1, 1, 28, 28]).unwrap();
        assert_eq!(plan.conversions(), 3, "{obs:?}");
        let y = model.forward(&x).unwrap();
        let yq = q.forward(&x).unwrap();
        if worst {
            assert!(close(&y, &yq), "{obs:?}: {}", tensor::max_abs_diff(&y, &yq));
        }
        let mean_err = (&y - &yq).mapv(f32::abs).mean().unwrap();
        let mean_abs = y.mapv(f32::abs).mean().unwrap();
        assert!(
            mean_err <= 0.1 * mean_abs,
            "{obs:?}: {mean_err} vs {mean_abs}"
        );
        let back = io::from_bytes(&io::to_bytes(&q).unwrap(), &registry()).unwrap();
        assert_eq!(back.forward(&x).unwrap(), q.forward(&x).unwrap());
    }
}

#[test]
fn lenet5_runs_int8_end_to_end() {
    let model = models::lenet5(&mut tensor::rng(3)).unwrap();
    let q = ptq::quantize_static(&model, batches(2, 20), &PtqConfig::default()).unwrap();
    // codes flow conv -> pool -> relu -> conv -> pool -> relu -> flatten -> fc -> fc (the
    // ReLU after fc1 fused), converted once at the input
    assert_eq!(
        kinds(&q),
        [
            "Input",
            "QConv2d",
            "MaxPool2d",
            "ReLU",
            "QConv2d",
            "MaxPool2d",
            "ReLU",
            "Flatten",
            "QLinear",
            "QLinear"
        ]
    );
    assert_eq!(q.freeze(&[1, 1, 28, 28]).unwrap().conversions(), 1);
    let x = tensor::uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(4));
    assert!(close(&model.forward(&x).unwrap(), &q.forward(&x).unwrap()));
    let skip = PtqConfig::default().with_skip(vec!["fc2".into()]);
    let q = ptq::quantize_static(&model, batches(2, 20), &skip).unwrap();
    assert_eq!(kinds(&q).last(), Some(&"Linear"));
    // fc1 writes f32 for the f32 layer after it
    assert_eq!(q.freeze(&[1, 1, 28, 28]).unwrap().conversions(), 1);
}

#[test]
fn bad_calibration_input_gives_clear_errors() {
    let model = models::lenet300(&mut tensor::rng(0)).unwrap();
    let e = ptq::quantize_static(&model, Vec::<Tensor>::new(), &PtqConfig::default()).unwrap_err();
    assert!(matches!(e, QuantError::EmptyCalibration), "{e}");
    let mut bad = batches(1, 0);
    bad[0][[0, 0, 3, 3]] = f32::NAN;
    let e = ptq::quantize_static(&model, bad, &PtqConfig::default()).unwrap_err();
    // named by the first layer whose input holds the NaN
    assert!(
        matches!(&e, QuantError::NonFinite { layer, .. } if layer == "fc1"),
        "{e}"
    );
    let inf = vec![tensor::zeros(&[2, 1, 28, 28]).mapv(|_| f32::INFINITY)];
    assert!(ptq::quantize_static(&model, inf, &PtqConfig::default()).is_err());
    let wrong = vec![tensor::zeros(&[2, 3, 28, 28])];
    assert!(ptq::quantize_static(&model, wrong, &PtqConfig::default()).is_err());
    // a constant (zero-range) calibration set is an error naming the first layer whose input
    // took one value only: its int8 outputs would be wrong for any other input
    let zeros = vec![tensor::zeros(&[2, 1, 28, 28])];
    let e = ptq::quantize_static(&model, zeros, &PtqConfig::default()).unwrap_err();
    assert!(
        matches!(&e, QuantError::ConstantCalibration { layer, value } if layer == "fc1" && *value == 0.0),
        "{e}"
    );
    assert!(
        e.to_string().contains("fc1: every calibration value"),
        "{e}"
    );
}

#[test]
fn dynamic_and_weight_only_passes() {
    let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(5));
    let model = models::lenet5(&mut tensor::rng(5)).unwrap();
    let y = model.forward(&x).unwrap();
    let mut d = model.clone();
    let r = ptq::quantize_dynamic(&mut d, &[1, 1, 28, 28], Selector::All).unwrap();
    assert_eq!(r.changes().count(), 2);
    assert!(close(&y, &d.forward(&x).unwrap()));
    let mut w = model.clone();
    let scheme = slimnet_quant::scheme::QScheme::symmetric(8).unwrap();
    ptq::quantize_weights(&mut w, &[1, 1, 28, 28], Selector::All, scheme).unwrap();
    assert!(close(&y, &w.forward(&x).unwrap()));
    assert!(io::to_bytes(&w).unwrap().len() * 3 < io::to_bytes(&model).unwrap().len());
}

#[test]
fn qat_gradients_pass_straight_through_and_convert() {
    let model = models::lenet5(&mut tensor::rng(6)).unwrap();
    let mut g = qat::prepare(&model, &[4, 1, 28, 28], &qat::QatConfig::default()).unwrap();
    assert_eq!(kinds(&g).iter().filter(|k| **k == "QatWeights").count(), 4);
    let x = tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(7));
    let y = g.forward_train(&x).unwrap();
    g.backward(&y.mapv(|_| 1.0)).unwrap();
    // every float weight received a gradient through the fake quantizers
    g.visit_params(&mut |n, p| {
        if n.ends_with("weight") {
            assert!(p.grad.iter().any(|v| *v != 0.0), "{n}");
        }
    });
    // the fake-quantized graph predicts what the int8 graph computes
    qat::freeze(&mut g);
    let int8 = qat::convert(&g, &[1, 1, 28, 28]).unwrap();
    let (a, b) = (g.forward(&x).unwrap(), int8.forward(&x).unwrap());
    assert!(close(&a, &b), "{}", tensor::max_abs_diff(&a, &b));
    // QAT graphs save and load mid-training
    let back = io::from_bytes(&io::to_bytes(&g).unwrap(), &registry()).unwrap();
    assert_eq!(back.forward(&x).unwrap(), g.forward(&x).unwrap());
    // a quantizer that never saw data is named
    let fresh = qat::prepare(&model, &[1, 1, 28, 28], &qat::QatConfig::default()).unwrap();
    let e = qat::convert(&fresh, &[1, 1, 28, 28]).unwrap_err();
    assert!(matches!(e, QuantError::NoData { .. }), "{e}");
}

fn pruned_lenet300() -> Graph {
    let mut g = models::lenet300(&mut tensor::rng(8)).unwrap();
    g.visit_params_mut(&mut |n, p| {
        if n.ends_with("weight") {
            let mut mags: Vec<f32> = p.value().iter().map(|v| v.abs()).collect();
            mags.sort_by(f32::total_cmp);
            let t = mags[mags.len() * 9 / 10];
            let m = p.value().mapv(|v| if v.abs() >= t { 1.0 } else { 0.0 });
            p.set_mask(m).unwrap();
        }
    });
    g
}

#[test]
fn sharing_respects_masks_and_round_trips_with_huffman() {
    let model = pruned_lenet300();
    for huffman in [false, true] {
        let mut g = model.clone();
        let cfg = ShareConfig::new(5)
            .unwrap()
            .with_huffman(huffman)
            .with_layer_bits("fc3", 3)
            .unwrap();
        share_weights(&mut g, &[1, 1, 28, 28], Selector::All, &cfg).unwrap();
        let fc1 = g
            .layer("fc1")
            .unwrap()
            .downcast_ref::<SharedWeights>()
            .unwrap();
        assert_eq!(fc1.codebook().len(), 32);
        assert_eq!(
            g.layer("fc3")
                .unwrap()
                .downcast_ref::<SharedWeights>()
                .unwrap()
                .codebook()
                .len(),
            8
        );
        // masked weights stay zero, kept ones take a shared value
        let (mut orig, mut shared) = (None, None);
        model.visit_params(&mut |n, p| {
            if n == "fc1.weight" {
                orig = Some(p.clone())
            }
        });
        fc1.inner().visit_params(&mut |n, p| {
            if n == "weight" {
                shared = Some(p.value().clone())
            }
        });
        let (orig, shared) = (orig.unwrap(), shared.unwrap());
        let mask = orig.mask().unwrap();
        for ((m, s), o) in mask.iter().zip(shared.iter()).zip(orig.value().iter()) {
            if *m == 0.0 {
                assert_eq!(*s, 0.0);
            } else {
                assert!(fc1.codebook().contains(s));
                assert!((s - o).abs() < 0.1);
            }
        }
        assert_eq!(fc1.kept(), mask.iter().filter(|v| **v != 0.0).count());
        let bytes = io::to_bytes(&g).unwrap();
        let back = io::from_bytes(&bytes, &registry()).unwrap();
        let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(9));
        assert_eq!(back.forward(&x).unwrap(), g.forward(&x).unwrap());
        assert_eq!(io::to_bytes(&back).unwrap(), bytes);
        let dense = io::to_bytes(&models::lenet300(&mut tensor::rng(0)).unwrap())
            .unwrap()
            .len();
        let ratio = dense as f64 / bytes.len() as f64;
        assert!(
            ratio > if huffman { 20.0 } else { 12.0 },
            "{huffman}: {ratio}"
        );
    }
}

#[test]
fn centroid_gradients_are_summed_per_cluster() {
    let mut g = pruned_lenet300();
    share_weights(
        &mut g,
        &[1, 1, 28, 28],
        Selector::All,
        &ShareConfig::new(2).unwrap(),
    )
    .unwrap();
    let mut float = g.clone();
    let x = tensor::uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(2));
    let y = g.forward_train(&x).unwrap();
    g.backward(&y.mapv(|_| 1.0)).unwrap();
    // the same gradients from the plain float layer, summed by cluster by hand
    let fc3 = float
        .layer_mut("fc3")
        .unwrap()
        .downcast_mut::<SharedWeights>()
        .unwrap()
        .clone();
    let mut inner = fc3.inner().clone_box();
    let h = float.forward(&x).unwrap();
    let _ = h;
    // feed fc3's input: run the graph up to relu2 by hand
    let mut a = x.clone();
    for name in ["flatten", "fc1", "relu1", "fc2", "relu2"] {
        a = float.layer(name).unwrap().forward(&a).unwrap();
    }
    inner.forward_train(&a).unwrap();
    inner.backward(&y.mapv(|_| 1.0)).unwrap();
    let mut wg = None;
    inner.visit_params(&mut |n, p| {
        if n == "weight" {
            wg = Some(p.grad.clone())
        }
    });
    let (wg, cb) = (wg.unwrap(), fc3.codebook().to_vec());
    let mut want = [0.0f32; 4];
    let mut w = None;
    inner.visit_params(&mut |n, p| {
        if n == "weight" {
            w = Some((p.value().clone(), p.mask().cloned()))
        }
    });
    let (w, m) = w.unwrap();
    for ((v, gr), k) in w.iter().zip(wg.iter()).zip(m.unwrap().iter()) {
        if *k != 0.0 {
            want[cb.iter().position(|c| c == v).unwrap()] += gr;
        }
    }
    let mut got = None;
    g.layer("fc3").unwrap().visit_params(&mut |n, p| {
        if n == "codebook" {
            got = Some(p.grad.clone())
        }
    });
    let got = got.unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!(
            (a - b).abs() <= 1e-3 * b.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
    // a step on the codebook moves every weight of a cluster together
    float.visit_params_mut(&mut |_, _| {});
    let mut s = g
        .layer("fc3")
        .unwrap()
        .downcast_ref::<SharedWeights>()
        .unwrap()
        .clone();
    s.visit_params_mut(&mut |n, p| {
        if n == "codebook" {
            p.value_mut()[[0]] += 1.0;
        }
    });
    let before = g.layer("fc3").unwrap().forward(&a).unwrap();
    assert_ne!(s.forward(&a).unwrap(), before);
    assert!(SharedWeights::new(Box::new(slimnet_core::layers::Flatten::new()), 4, false).is_err());
    assert!(ShareConfig::new(0).is_err() && ShareConfig::new(9).is_err());
}

/// The thesis's recipe on one model: a pruned network quantized as a whole keeps its sparsity
/// (sparse int8 layers, stored compactly) instead of baking the mask into dense int8.
#[test]
fn pruned_layers_become_sparse_int8() {
    let model = pruned_lenet300();
    let q = ptq::quantize_static(&model, batches(2, 30), &PtqConfig::default()).unwrap();
    assert_eq!(
        kinds(&q),
        [
            "Input",
            "Flatten",
            "QSparseLinear",
            "QSparseLinear",
            "QSparseLinear"
        ]
    );
    let x = tensor::uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(31));
    assert!(close(&model.forward(&x).unwrap(), &q.forward(&x).unwrap()));
    let bytes = io::to_bytes(&q).unwrap();
    // 10% of the weights, one byte each plus about one byte of position
    let dense = io::to_bytes(&models::lenet300(&mut tensor::rng(0)).unwrap())
        .unwrap()
        .len();
    assert!(bytes.len() * 15 < dense, "{} vs {dense}", bytes.len());
    let back = io::from_bytes(&bytes, &registry()).unwrap();
    assert_eq!(back.forward(&x).unwrap(), q.forward(&x).unwrap());
    // the same through QAT
    let mut g = qat::prepare(&model, &[8, 1, 28, 28], &qat::QatConfig::default()).unwrap();
    g.forward_train(&batches(1, 40)[0]).unwrap();
    let int8 = qat::convert(&g, &[1, 1, 28, 28]).unwrap();
    assert_eq!(kinds(&int8)[2..], ["QSparseLinear"; 3]);
}

#[test]
fn the_report_says_which_sums_add_codes_and_why_others_stay_f32() {
    let model = models::resnet_small(&mut tensor::rng(0)).unwrap();
    let shape = [8, 1, 28, 28];
    let g = ptq::float_for_int8(&model, &shape).unwrap();
    let sums = |cfg: &PtqConfig| {
        let ranges = ptq::calibrate(&g, batches(2, 10), cfg).unwrap();
        let (q, report) = ptq::convert(&g, &ranges, cfg, &shape).unwrap();
        let recs: Vec<_> = report
            .records
            .into_iter()
            .filter(|r| r.rule == "int8-sum")
            .collect();
        (q, recs)
    };
    let (_, recs) = sums(&PtqConfig::default());
    assert_eq!(recs.len(), 3);
    assert!(recs.iter().all(|r| r.changed && r.kind_after == "QuantAdd"));
    // a skipped convolution feeds block 1's sum in f32: that sum stays f32 and says why
    let cfg = PtqConfig::default().with_skip(vec!["block1_conv2".into()]);
    let (q, recs) = sums(&cfg);
    let b1 = recs.iter().find(|r| r.path == "block1_add").unwrap();
    assert!(!b1.changed, "{b1:?}");
    assert!(b1.note.contains("block1_conv2"), "{}", b1.note);
    assert_eq!(kinds(&q).iter().filter(|k| **k == "QuantAdd").count(), 2);
}

#[test]
fn products_of_two_activations_stay_f32_and_the_report_names_them() {
    use slimnet_core::layers::Conv2dConfig;
    // attention-like: scores = x @ f(x) on stacks of 6x6 matrices, then a 1x1 convolution
    let mut rng = tensor::rng(4);
    let mut g = Graph::new();
    let x = g.input();
    let f = Conv2dConfig::new(2, 2, 1).init(&mut rng).unwrap();
    let f = g.add_layer("f", f, x).unwrap();
    let s = g.matmul("scores", x, f).unwrap();
    let out = Conv2dConfig::new(2, 3, 1).init(&mut rng).unwrap();
    g.add_layer("out", out, s).unwrap();
    let shape = [4, 2, 6, 6];
    let batches: Vec<Tensor> = (0..3)
        .map(|i| tensor::uniform(&shape, -1.0, 1.0, &mut tensor::rng(20 + i)))
        .collect();
    let cfg = PtqConfig::default();
    let ranges = ptq::calibrate(&g, batches.clone(), &cfg).unwrap();
    let (q, report) = ptq::convert(&g, &ranges, &cfg, &shape).unwrap();
    let products: Vec<_> = report
        .records
        .iter()
        .filter(|r| r.rule == "int8-matmul")
        .collect();
    assert_eq!(products.len(), 1, "{report}");
    assert_eq!(products[0].path, "scores");
    assert!(!products[0].changed && products[0].note.contains("stays f32"));
    assert_eq!(kinds(&q), ["Input", "QConv2d", "MatMul", "QConv2d"]);
    assert!(close(
        &g.forward(&batches[0]).unwrap(),
        &q.forward(&batches[0]).unwrap()
    ));
}

/// The largest stored level of every int8 layer of `g`, by path.
fn top_levels(g: &Graph) -> Vec<(String, i8)> {
    use slimnet_quant::layers::{QConv2d, QLinear};
    let mut out = Vec::new();
    g.visit_layers(&mut |path, l| {
        let levels = if let Some(c) = l.downcast_ref::<QConv2d>() {
            c.weight_levels()
        } else if let Some(f) = l.downcast_ref::<QLinear>() {
            f.weight_levels()
        } else {
            return;
        };
        let top = levels.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        out.push((path.to_string(), top as i8));
    });
    out
}

#[test]
fn seven_bit_weights_through_ptq_and_qat() {
    let model = pruned_lenet300();
    let x = tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(31));
    let y = model.forward(&x).unwrap();
    // every layer, dense or sparse, stores levels in -63..=63 and reaches the edge of that
    // grid (each channel's largest weight maps to 63); 8-bit weights reach 127
    let eight = ptq::quantize_static(&model, batches(2, 30), &PtqConfig::default()).unwrap();
    let cfg = PtqConfig::default().with_weight_bits(7);
    let seven = ptq::quantize_static(&model, batches(2, 30), &cfg).unwrap();
    assert_eq!(top_levels(&eight).len(), 3);
    assert!(top_levels(&eight).iter().all(|(_, t)| *t == 127));
    assert_eq!(top_levels(&seven).len(), 3);
    assert!(
        top_levels(&seven).iter().all(|(_, t)| *t == 63),
        "{:?}",
        top_levels(&seven)
    );
    assert!(kinds(&seven).contains(&"QSparseLinear"));
    assert!(close(&y, &seven.forward(&x).unwrap()));
    // and the levels survive a save and a load
    let back = io::from_bytes(&io::to_bytes(&seven).unwrap(), &registry()).unwrap();
    assert_eq!(back.forward(&x).unwrap(), seven.forward(&x).unwrap());
    let bad = PtqConfig::default().with_weight_bits(9);
    assert!(ptq::quantize_static(&model, batches(1, 30), &bad).is_err());

    // QAT fake-quantizes to the same grid, keeps it through a save mid-training, and converts
    // to it
    let cfg = qat::QatConfig::default().with_weight_bits(7);
    let mut g = qat::prepare(&model, &[4, 1, 28, 28], &cfg).unwrap();
    g.forward_train(&x).unwrap();
    let back = io::from_bytes(&io::to_bytes(&g).unwrap(), &registry()).unwrap();
    assert_eq!(back.forward(&x).unwrap(), g.forward(&x).unwrap());
    let eight = qat::prepare(&model, &[4, 1, 28, 28], &qat::QatConfig::default()).unwrap();
    let mut eight = eight;
    eight.forward_train(&x).unwrap();
    assert_ne!(eight.forward(&x).unwrap(), g.forward(&x).unwrap());
    let int8 = qat::convert(&back, &[1, 1, 28, 28]).unwrap();
    assert!(top_levels(&int8).iter().all(|(_, t)| *t == 63));
    let (a, b) = (g.forward(&x).unwrap(), int8.forward(&x).unwrap());
    assert!(close(&a, &b), "{}", tensor::max_abs_diff(&a, &b));
    let bad = qat::QatConfig::default().with_weight_bits(1);
    assert!(qat::prepare(&model, &[4, 1, 28, 28], &bad).is_err());
}
