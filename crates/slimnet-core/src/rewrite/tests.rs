use super::*;
use crate::layers::{Activation, BatchNorm2d, Conv2d, Conv2dConfig, Linear, LinearConfig};
use crate::{models, tensor, Sequential};

#[test]
fn folding_batchnorm_keeps_outputs() {
    let mut g = models::resnet_small(&mut tensor::rng(0)).unwrap();
    let x = tensor::uniform(&[2, 1, 28, 28], -1.0, 1.0, &mut tensor::rng(1));
    for _ in 0..3 {
        g.forward_train(&x).unwrap(); // move running statistics off their defaults
    }
    let before = g.forward(&x).unwrap();
    let report = fold_batchnorm(&mut g, &[2, 1, 28, 28]).unwrap();
    assert_eq!(report.changes().count(), 9, "{report}");
    assert!(g.nodes().iter().all(|n| n.op.name() != "BatchNorm2d"));
    let after = g.forward(&x).unwrap();
    assert!(tensor::max_abs_diff(&before, &after) < 1e-4);
}

/// A BatchNorm inside a nested graph is folded too (the old pass only saw the top level).
#[test]
fn rules_reach_nested_graphs() {
    let mut rng = tensor::rng(3);
    let block = Sequential::new()
        .push("conv", Conv2dConfig::new(2, 4, 3).init(&mut rng).unwrap())
        .push("bn", crate::layers::BatchNormConfig::new(4).init().unwrap())
        .push("relu", Activation::relu())
        .build()
        .unwrap();
    let mut g = Sequential::new()
        .push("block", block)
        .push("conv2", Conv2dConfig::new(4, 4, 1).init(&mut rng).unwrap())
        .build()
        .unwrap();
    let report = fold_batchnorm(&mut g, &[1, 2, 6, 6]).unwrap();
    assert_eq!(report.records.len(), 1);
    assert_eq!(report.records[0].path, "block.bn");
    assert_eq!(report.records[0].kind_before, "Conv2d+BatchNorm2d");
    let mut kinds = Vec::new();
    g.visit_layers(&mut |p, l| kinds.push(format!("{p}:{}", l.kind())));
    assert_eq!(
        kinds,
        [
            "block:Graph",
            "block.conv:Conv2d",
            "block.relu:ReLU",
            "conv2:Conv2d"
        ]
    );
}

/// A BatchNorm after a nested graph that ends in a convolution (a low-rank chain) goes into
/// that convolution; after a graph that ends in anything else it stays.
#[test]
fn batchnorm_folds_into_the_last_convolution_of_a_chain() {
    let mut rng = tensor::rng(4);
    let chain = |rng: &mut tensor::SlimRng| {
        Sequential::new()
            .push("reduce", Conv2dConfig::new(2, 3, 1).init(rng).unwrap())
            .push("core", Conv2dConfig::new(3, 3, 3).init(rng).unwrap())
            .push("restore", Conv2dConfig::new(3, 4, 1).init(rng).unwrap())
            .build()
            .unwrap()
    };
    let ends_in_relu = Sequential::new()
        .push("conv", Conv2dConfig::new(4, 4, 1).init(&mut rng).unwrap())
        .push("relu", Activation::relu())
        .build()
        .unwrap();
    let mut g = Sequential::new()
        .push("conv2", chain(&mut rng))
        .push(
            "bn2",
            crate::layers::BatchNormConfig::new(4).init().unwrap(),
        )
        .push("block", ends_in_relu)
        .push(
            "bn3",
            crate::layers::BatchNormConfig::new(4).init().unwrap(),
        )
        .build()
        .unwrap();
    let x = tensor::uniform(&[2, 2, 6, 6], -1.0, 1.0, &mut tensor::rng(5));
    for _ in 0..3 {
        g.forward_train(&x).unwrap(); // move running statistics off their defaults
    }
    let before = g.forward(&x).unwrap();
    let report = fold_batchnorm(&mut g, &[2, 2, 6, 6]).unwrap();
    assert_eq!(report.changes().count(), 1, "{report}");
    let kept = report
        .records
        .iter()
        .find(|r| r.path == "bn3")
        .expect("bn3 is reported");
    assert!(
        kept.note
            .contains("not folded: `block` is not a convolution"),
        "{report}"
    );
    let mut kinds = Vec::new();
    g.visit_layers(&mut |p, l| kinds.push(format!("{p}:{}", l.kind())));
    assert_eq!(
        kinds,
        [
            "conv2:Graph",
            "conv2.reduce:Conv2d",
            "conv2.core:Conv2d",
            "conv2.restore:Conv2d",
            "block:Graph",
            "block.conv:Conv2d",
            "block.relu:ReLU",
            "bn3:BatchNorm2d"
        ]
    );
    assert!(tensor::max_abs_diff(&before, &g.forward(&x).unwrap()) < 1e-4);
}

#[test]
fn replacements_are_checked_and_recorded() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let mut widen = Rewriter::new()
        .select(Selector::Paths(vec!["fc1".into()]))
        .rule::<Linear>("widen", |_, _| {
            let l = LinearConfig::new(784, 301).init(&mut tensor::rng(0))?;
            Ok(Action::Replace(Box::new(l)))
        });
    let e = widen.run(&mut g, &[1, 1, 28, 28]).unwrap_err();
    assert!(
        e.to_string()
            .contains("fc1: rule `widen` changed the output shape"),
        "{e}"
    );
    // a rule for another type sees nothing; the Linear layers are listed as unhandled
    let r = Rewriter::new()
        .rule::<Conv2d>("nothing", |_, _| Ok(Action::Remove))
        .run(&mut g, &[1, 1, 28, 28])
        .unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.unhandled.len(), 3);
    assert_eq!(r.unhandled[0], ("fc1".to_string(), "Linear".to_string()));
}

/// A replacement is not shown to the rules again (a rule whose output contains its input
/// type would otherwise never finish), and fusions are retried until nothing changes.
#[test]
fn replacements_are_final_and_fusions_reach_a_fixed_point() {
    let mut rng = tensor::rng(1);
    let mut g = Sequential::new()
        .push("fc1", LinearConfig::new(8, 8).init(&mut rng).unwrap())
        .push("a1", Activation::relu())
        .push("a2", Activation::relu())
        .push("a3", Activation::relu())
        .build()
        .unwrap();
    let x = tensor::uniform(&[2, 8], -1.0, 1.0, &mut rng);
    let want = g.forward(&x).unwrap();
    let report = Rewriter::new()
        .rule::<Linear>("wrap", |l, _| {
            let inner = Sequential::new().push("l", l.clone()).build()?;
            Ok(Action::Replace(Box::new(inner)))
        })
        // a ReLU after a ReLU is redundant: fuse it into the one before
        .rule::<Activation>("dedup", |_, ctx| {
            Ok(match ctx.producer() {
                Some(p) if p.sole_reader && p.layer.kind() == "ReLU" => {
                    Action::FuseIntoProducer(Box::new(Activation::relu()))
                }
                _ => Action::Keep,
            })
        })
        .run(&mut g, &[2, 8])
        .unwrap();
    assert_eq!(report.changes().count(), 3, "{report}");
    assert_eq!(g.nodes().len(), 3, "{:?}", g.nodes());
    assert_eq!(g.forward(&x).unwrap(), want);
}

#[test]
fn removal_and_downstream_context() {
    let mut rng = tensor::rng(2);
    let mut g = models::lenet5(&mut rng).unwrap();
    // every layer after conv1 up to the next layer that is not a pool or an activation
    let mut seen = Vec::new();
    Rewriter::new()
        .select(Selector::Paths(vec!["conv1".into()]))
        .rule::<Conv2d>("look", |_, ctx| {
            let after = ctx
                .downstream(|l| l.kind() == "MaxPool2d" || l.kind() == "ReLU")
                .expect("no merge after conv1");
            seen.extend(after.iter().map(|l| l.kind().to_string()));
            Ok(Action::Keep)
        })
        .run(&mut g, &[1, 1, 28, 28])
        .unwrap();
    assert_eq!(seen, ["Conv2d"]);
    let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut rng);
    let n = g.nodes().len();
    let r = Rewriter::new()
        .rule::<crate::layers::Dropout>("drop", |_, _| Ok(Action::Remove))
        .run(&mut g, &[1, 1, 28, 28])
        .unwrap();
    assert!(r.records.is_empty());
    assert_eq!(g.nodes().len(), n);
    let _ = g.forward(&x).unwrap();
    let _ = BatchNorm2d::from_parts; // the folding rule's type is public
}
