//! Unstructured, block and N:M masks: what is pruned, that masks hold, and bad input.

use slimnet_core::rewrite::Selector;
use slimnet_core::{models, tensor, Graph, Layer, Param};
use slimnet_prune::criterion::{Magnitude, Random};
use slimnet_prune::{apply_masks, sparsity_report, Pattern, PruneError, Pruner, Scope};

fn weight(g: &Graph, name: &str) -> Param {
    let mut w = None;
    g.layer(name).unwrap().visit_params(&mut |n, p| {
        if n == "weight" {
            w = Some(p.clone());
        }
    });
    w.unwrap()
}

/// Largest pruned and smallest kept magnitude over the given layers.
fn split(g: &Graph, names: &[&str]) -> (f32, f32) {
    let (mut pruned, mut kept) = (0.0f32, f32::INFINITY);
    let orig = models::lenet300(&mut tensor::rng(0)).unwrap();
    for n in names {
        let o = weight(&orig, n);
        let p = weight(g, n);
        for (m, v) in p.mask().unwrap().iter().zip(o.value().iter()) {
            if *m == 0.0 {
                pruned = pruned.max(v.abs());
            } else {
                kept = kept.min(v.abs());
            }
        }
    }
    (pruned, kept)
}

#[test]
fn per_layer_magnitude_prunes_the_smallest_weights_of_each_layer() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = Pruner::new(Magnitude).prune(&mut g, 0.8).unwrap();
    for l in &r.layers {
        let s = 1.0 - l.nonzero as f64 / l.total as f64;
        assert!((s - 0.8).abs() < 1e-3, "{}: {s}", l.path);
    }
    for n in ["fc1", "fc2", "fc3"] {
        let (pruned, kept) = split(&g, &[n]);
        assert!(pruned <= kept, "{n}: pruned {pruned} > kept {kept}");
    }
}

#[test]
fn global_scope_uses_one_threshold() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = Pruner::new(Magnitude)
        .scope(Scope::Global)
        .prune(&mut g, 0.9)
        .unwrap();
    assert!((r.sparsity() - 0.9).abs() < 1e-4, "{}", r.sparsity());
    let (pruned, kept) = split(&g, &["fc1", "fc2", "fc3"]);
    assert!(pruned <= kept, "pruned {pruned} > kept {kept}");
    // fc1 (smallest init scale) ends sparser than fc3
    let s = |i: usize| 1.0 - r.layers[i].nonzero as f64 / r.layers[i].total as f64;
    assert!(s(0) > s(2), "{r}");
}

#[test]
fn selection_by_path_leaves_other_layers_alone() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    Pruner::new(Random::new(3))
        .select(Selector::Paths(vec!["fc2".into()]))
        .prune(&mut g, 0.5)
        .unwrap();
    assert!(weight(&g, "fc1").mask().is_none());
    assert!(weight(&g, "fc3").mask().is_none());
    assert_eq!(weight(&g, "fc2").nonzeros(), 15_000);
}

#[test]
fn masks_hold_during_training_and_only_grow() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let pruner = Pruner::new(Magnitude);
    pruner.prune(&mut g, 0.5).unwrap();
    let m1 = weight(&g, "fc1").mask().unwrap().clone();
    let mut opt = slimnet_core::optim::Sgd::new(0.1).with_momentum(0.9);
    let x = tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    let y: Vec<usize> = (0..8).collect();
    for _ in 0..3 {
        let out = g.forward_train(&x).unwrap();
        let (_, grad) = slimnet_core::loss::softmax_cross_entropy(&out, &y).unwrap();
        g.backward(&grad).unwrap();
        slimnet_core::optim::Optimizer::step(&mut opt, &mut g).unwrap();
        (&mut g as &mut dyn Layer).zero_grad();
    }
    let w = weight(&g, "fc1");
    for (m, v) in m1.iter().zip(w.value().iter()) {
        if *m == 0.0 {
            assert_eq!(*v, 0.0);
        }
    }
    pruner.prune(&mut g, 0.7).unwrap();
    let m2 = weight(&g, "fc1").mask().unwrap().clone();
    assert!(m1.iter().zip(m2.iter()).all(|(a, b)| *b <= *a));
    // asking for less sparsity keeps what was pruned
    pruner.prune(&mut g, 0.3).unwrap();
    assert_eq!(weight(&g, "fc1").mask().unwrap(), &m2);
}

#[test]
fn nm_and_block_patterns() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    Pruner::new(Magnitude)
        .pattern(Pattern::NM { n: 2, m: 4 })
        .select(Selector::Paths(vec!["fc1".into(), "fc2".into()]))
        .prune(&mut g, 0.5)
        .unwrap();
    for n in ["fc1", "fc2"] {
        let w = weight(&g, n);
        let v: Vec<f32> = w.value().iter().copied().collect();
        assert!(v
            .chunks(4)
            .all(|c| c.iter().filter(|x| **x != 0.0).count() <= 2));
        assert_eq!(w.nonzeros(), w.len() / 2);
    }
    let e = Pruner::new(Magnitude)
        .pattern(Pattern::NM { n: 2, m: 4 })
        .prune(&mut g, 0.6)
        .unwrap_err();
    assert!(matches!(e, PruneError::Sparsity { .. }), "{e}");
    let e = Pruner::new(Magnitude)
        .pattern(Pattern::NM { n: 2, m: 4 })
        .select(Selector::Paths(vec!["fc3".into()]))
        .masks(&g, 0.5);
    assert!(e.is_ok(), "100 inputs divide by 4");

    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = Pruner::new(Magnitude)
        .pattern(Pattern::Block { rows: 4, cols: 1 })
        .select(Selector::Paths(vec!["fc1".into()]))
        .prune(&mut g, 0.75)
        .unwrap();
    assert!((r.sparsity() - 0.75).abs() < 1e-3);
    let w = weight(&g, "fc1");
    let (rows, cols) = (300, 784);
    for bi in 0..rows / 4 {
        for c in 0..cols {
            let kept: Vec<bool> = (0..4)
                .map(|r| w.mask().unwrap()[[bi * 4 + r, c]] != 0.0)
                .collect();
            assert!(kept.iter().all(|k| *k == kept[0]), "block ({bi}, {c})");
        }
    }
    let e = Pruner::new(Magnitude)
        .pattern(Pattern::Block { rows: 7, cols: 1 })
        .select(Selector::Paths(vec!["fc2".into()]))
        .masks(&g, 0.5)
        .unwrap_err();
    assert!(e.to_string().starts_with("fc2.weight: "), "{e}");
}

#[test]
fn bad_input_names_the_layer() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    for s in [1.0, -0.1, f32::NAN] {
        let e = Pruner::new(Magnitude).prune(&mut g, s).unwrap_err();
        assert!(matches!(e, PruneError::Sparsity { .. }), "{e}");
        assert!(e.to_string().contains("fc1"), "{e}");
    }
    let e = apply_masks(&mut g, &[("fc2.weight".into(), tensor::zeros(&[3, 3]))]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("fc2.weight: mask of shape [3, 3] for a weight of shape [100, 300]"),
        "{e}"
    );
    let e = apply_masks(&mut g, &[("fc9.weight".into(), tensor::zeros(&[3]))]).unwrap_err();
    assert!(e.to_string().starts_with("fc9.weight: "), "{e}");
    // a global threshold that would empty a layer of tiny weights
    g.layer_mut("fc3")
        .unwrap()
        .visit_params_mut(&mut |_, p| p.value_mut().mapv_inplace(|v| v * 1e-6));
    let e = Pruner::new(Magnitude)
        .scope(Scope::Global)
        .prune(&mut g, 0.5)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("fc3.weight: pruning would remove all 1000 weights"),
        "{e}"
    );
    assert_eq!(sparsity_report(&g, &Selector::All).nonzero(), 266_200);
}
