//! Convert masked layers to sparse deploy layers; model files round-trip them and shrink.

use slimnet_core::rewrite::Selector;
use slimnet_core::{io, models, tensor, Graph, Layer};
use slimnet_kernels::sparse::{SparseFormat, SparseWeight};
use slimnet_prune::sparse::{SparseConv2d, SparseLinear};
use slimnet_prune::{convert, criterion::Magnitude, Pattern, Pruner, Scope};

fn registry() -> io::Registry {
    let mut r = io::Registry::core();
    slimnet_prune::register(&mut r);
    r
}

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.nodes().iter().skip(1).map(|n| n.op.name()).collect()
}

#[test]
fn lenet5_converts_runs_the_same_and_round_trips_smaller() {
    let mut g = models::lenet5(&mut tensor::rng(0)).unwrap();
    Pruner::new(Magnitude)
        .scope(Scope::Global)
        .prune(&mut g, 0.92)
        .unwrap();
    let x = tensor::uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    let masked = g.forward(&x).unwrap();
    let masked_bytes = io::to_bytes(&g).unwrap().len();
    let report = convert::to_sparse(&mut g, &[1, 1, 28, 28], Selector::All).unwrap();
    assert!(report.changes().count() >= 3, "{report}");
    let ks = kinds(&g);
    assert!(
        ks.contains(&"SparseLinear") && ks.contains(&"SparseConv2d"),
        "{ks:?}"
    );
    // relu3 was fused into fc1
    assert!(g.node_id("relu3").is_none(), "{ks:?}");
    let sparse = g.forward(&x).unwrap();
    assert!(tensor::max_abs_diff(&masked, &sparse) < 1e-4);

    let bytes = io::to_bytes(&g).unwrap();
    assert!(
        bytes.len() * 4 < masked_bytes,
        "{} vs {masked_bytes}",
        bytes.len()
    );
    let back = io::from_bytes(&bytes, &registry()).unwrap();
    assert_eq!(kinds(&back), ks);
    assert_eq!(
        back.forward(&x).unwrap(),
        sparse,
        "bit-identical after loading"
    );
    assert!(io::from_bytes(&bytes, &io::Registry::core())
        .unwrap_err()
        .to_string()
        .contains("unknown layer kind `Sparse"));

    let path =
        std::env::temp_dir().join(format!("slimnet-prune-{}.safetensors", std::process::id()));
    io::save(&g, &path).unwrap();
    let loaded = io::load_with(&path, &registry()).unwrap();
    assert_eq!(loaded.forward(&x).unwrap(), sparse);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn every_format_round_trips() {
    let mut rng = tensor::rng(2);
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    Pruner::new(Magnitude)
        .select(Selector::Paths(vec!["fc2".into()]))
        .pattern(Pattern::NM { n: 2, m: 4 })
        .prune(&mut g, 0.5)
        .unwrap();
    let dense: Vec<f32> = {
        let l = g.layer("fc2").unwrap();
        let mut v = Vec::new();
        l.visit_params(&mut |n, p| {
            if n == "weight" {
                v = p.value().iter().copied().collect();
            }
        });
        v
    };
    let x = tensor::uniform(&[2, 300], -1.0, 1.0, &mut rng);
    let expect = g.layer("fc2").unwrap().forward(&x).unwrap();
    let bias: Vec<f32> = (0..100).map(|i| i as f32 * 0.01).collect();
    for format in [
        SparseFormat::Csr,
        SparseFormat::Bsr { block: (4, 1) },
        SparseFormat::Nm { n: 2, m: 4 },
        SparseFormat::Dense,
    ] {
        let w = SparseWeight::from_dense(format, &dense, 100, 300, None).unwrap();
        let mut one = Graph::new();
        let i = one.input();
        let l = SparseLinear::new(w, Some(bias.clone())).unwrap();
        one.add_layer("fc", l, i).unwrap();
        let y = one.forward(&x).unwrap();
        let mut want = expect.clone();
        want.rows_mut()
            .into_iter()
            .for_each(|mut r| r.iter_mut().zip(&bias).for_each(|(v, b)| *v += b));
        // fc2's own bias is zero at init, so adding ours gives the reference
        assert!(tensor::max_abs_diff(&y, &want) < 1e-4, "{format:?}");
        let back = io::from_bytes(&io::to_bytes(&one).unwrap(), &registry()).unwrap();
        assert_eq!(back.forward(&x).unwrap(), y, "{format:?}");
    }
}

/// At batch 1 a CSR layer walks only the columns of inputs that differ from zero or from the
/// first input (a normalized image's background); the result must equal the masked dense
/// layer whichever path runs.
#[test]
fn batch_one_column_walk_matches_the_masked_linear() {
    let mut g = models::lenet300(&mut tensor::rng(3)).unwrap();
    Pruner::new(Magnitude).prune(&mut g, 0.9).unwrap();
    let masked = g.clone();
    convert::to_sparse(&mut g, &[1, 1, 28, 28], Selector::All).unwrap();
    let fc1 = g
        .layer("fc1")
        .unwrap()
        .downcast_ref::<SparseLinear>()
        .unwrap();
    assert!(matches!(fc1.weight(), SparseWeight::Csr(_)));
    let mut rng = tensor::rng(4);
    let noise = tensor::uniform(&[1, 1, 28, 28], -1.0, 1.0, &mut rng);
    for background in [0.0f32, -0.42, 0.7] {
        // a digit-like input: a 10x10 block of values on a constant background
        let x = noise.mapv(|_| background);
        let mut x = x.clone();
        for (i, v) in x.iter_mut().enumerate() {
            let (r, c) = (i / 28, i % 28);
            if (9..19).contains(&r) && (9..19).contains(&c) {
                *v = noise.as_slice().unwrap()[i];
            }
        }
        let want = masked.forward(&x).unwrap();
        let got = g.forward(&x).unwrap();
        assert!(
            tensor::max_abs_diff(&got, &want) < 1e-4,
            "background {background}"
        );
    }
    let got = g.forward(&noise).unwrap();
    assert!(tensor::max_abs_diff(&got, &masked.forward(&noise).unwrap()) < 1e-4);
}

#[test]
fn deploy_layers_refuse_to_train_and_check_shapes() {
    let mut g = models::lenet5(&mut tensor::rng(0)).unwrap();
    Pruner::new(Magnitude).prune(&mut g, 0.9).unwrap();
    convert::to_sparse(&mut g, &[1, 1, 28, 28], Selector::All).unwrap();
    let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    let y = g.forward_train(&x).unwrap();
    let e = g.backward(&y).unwrap_err().to_string();
    assert!(e.contains("deploy layer and cannot be trained"), "{e}");
    assert!(e.starts_with("fc2: ") || e.starts_with("fc1: "), "{e}");
    let conv = g.layer("conv2").unwrap();
    assert!(conv.downcast_ref::<SparseConv2d>().is_some());
    let e = conv.forward(&tensor::zeros(&[1, 3, 8, 8])).unwrap_err();
    assert!(e.to_string().contains("[N, 20, H, W]"), "{e}");
    // cost counts stored values, not the dense size
    let c = g.cost(&[1, 1, 28, 28]).unwrap();
    let dense = models::lenet5(&mut tensor::rng(0))
        .unwrap()
        .cost(&[1, 1, 28, 28])
        .unwrap();
    assert!(
        c.params * 5 < dense.params,
        "{} vs {}",
        c.params,
        dense.params
    );
    assert!(c.macs * 3 < dense.macs, "{} vs {}", c.macs, dense.macs);
}

#[test]
fn dense_layers_stay_dense() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = convert::to_sparse(&mut g, &[64, 1, 28, 28], Selector::All).unwrap();
    assert_eq!(r.changes().count(), 0, "{r}");
    // each layer says why it stayed dense
    assert_eq!(r.records.len(), 3, "{r}");
}

#[test]
fn corrupt_sparse_arrays_are_rejected_on_load() {
    use safetensors::tensor::{SafeTensors, TensorView};
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    Pruner::new(Magnitude).prune(&mut g, 0.9).unwrap();
    convert::to_sparse(&mut g, &[1, 1, 28, 28], Selector::All).unwrap();
    let bytes = io::to_bytes(&g).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let col = owned
        .iter_mut()
        .find(|t| t.0 == "fc2.weight.col_idx")
        .expect("fc2 is stored as CSR");
    col.3[..4].copy_from_slice(&100_000u32.to_le_bytes());
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bad = safetensors::serialize(views, meta.metadata().clone()).unwrap();
    let e = io::from_bytes(&bad, &registry()).unwrap_err().to_string();
    assert!(
        e.contains("SparseLinear weight") && e.contains("col_idx"),
        "{e}"
    );
}

#[test]
fn taylor_scores_come_from_accumulated_gradients() {
    use slimnet_prune::criterion::Taylor;
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let x = tensor::uniform(&[32, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(5));
    let data = slimnet_core::data::Dataset::new(x, (0..32).map(|i| i % 10).collect(), 10).unwrap();
    let pruner = Pruner::new(Taylor);
    let e = pruner.prune(&mut g, 0.5).unwrap_err();
    assert!(e.to_string().starts_with("fc1.weight: Taylor"), "{e}");
    slimnet_prune::accumulate_gradients(&mut g, &data, 16, 2).unwrap();
    let masks = pruner.masks(&g, 0.5).unwrap();
    // the kept weights of fc1 have |g * w| no smaller than any pruned one
    let l = g.layer("fc1").unwrap();
    let mut score = Vec::new();
    l.visit_params(&mut |n, p| {
        if n == "weight" {
            score = (p.value() * &p.grad).iter().map(|v| v.abs()).collect();
        }
    });
    let (mut pruned, mut kept) = (0.0f32, f32::INFINITY);
    for (m, s) in masks[0].1.iter().zip(&score) {
        if *m == 0.0 {
            pruned = pruned.max(*s);
        } else {
            kept = kept.min(*s);
        }
    }
    assert!(pruned <= kept, "{pruned} > {kept}");
}
