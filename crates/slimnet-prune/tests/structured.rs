//! Structured pruning: removed channels vanish everywhere they flow, and removing channels that
//! carry nothing leaves the outputs unchanged.

use slimnet_core::graph::Graph;
use slimnet_core::layers::{
    Activation, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, Linear,
};
use slimnet_core::rewrite::Selector;
use slimnet_core::{models, tensor, Layer, Result as CoreResult, Tensor};
use slimnet_prune::criterion::{Fpgm, L1Norm, L2Norm};
use slimnet_prune::structured::StructuredPruner;
use slimnet_prune::PruneError;

const MNIST: [usize; 4] = [1, 1, 28, 28];

fn conv_mut<'a>(g: &'a mut Graph, name: &str) -> &'a mut Conv2d {
    g.layer_mut(name).unwrap().downcast_mut::<Conv2d>().unwrap()
}

/// Zeroes the filters `chans` of a convolution (weights and bias).
fn silence(g: &mut Graph, name: &str, chans: std::ops::Range<usize>) {
    let c = conv_mut(g, name);
    for o in chans.clone() {
        c.weight
            .value_mut()
            .index_axis_mut(ndarray::Axis(0), o)
            .fill(0.0);
        if let Some(b) = &mut c.bias {
            b.value_mut()[o] = 0.0;
        }
    }
}

fn silence_bn(g: &mut Graph, name: &str, chans: std::ops::Range<usize>) {
    let bn = g
        .layer_mut(name)
        .unwrap()
        .downcast_mut::<BatchNorm2d>()
        .unwrap();
    for o in chans {
        bn.weight.value_mut()[o] = 0.0;
        bn.bias.value_mut()[o] = 0.0;
    }
}

fn input(shape: &[usize]) -> Tensor {
    tensor::uniform(shape, -1.0, 1.0, &mut tensor::rng(7))
}

#[test]
fn lenet5_through_pool_relu_flatten_into_linear() {
    let mut g = models::lenet5(&mut tensor::rng(0)).unwrap();
    silence(&mut g, "conv1", 0..10);
    silence(&mut g, "conv2", 0..25);
    let x = input(&[2, 1, 28, 28]);
    let before = g.forward(&x).unwrap();
    let r = StructuredPruner::new(L1Norm)
        .prune(&mut g, &MNIST, 0.5)
        .unwrap();
    assert_eq!(r.groups.len(), 2, "{r}");
    let after = g.forward(&x).unwrap();
    assert!(tensor::max_abs_diff(&before, &after) < 1e-5);
    assert_eq!(conv_mut(&mut g, "conv2").config().in_channels, 10);
    assert_eq!(conv_mut(&mut g, "conv2").config().out_channels, 25);
    let fc1 = g.layer("fc1").unwrap().downcast_ref::<Linear>().unwrap();
    assert_eq!(fc1.config().in_features, 25 * 16);
    assert!(r.params.1 < r.params.0 / 2 + 1000, "{r}");
}

#[test]
fn resnet_half_channels_runs_with_far_fewer_macs() {
    let mut g = models::resnet_small(&mut tensor::rng(0)).unwrap();
    let groups = StructuredPruner::new(L2Norm).groups(&g, &MNIST).unwrap();
    let tied: Vec<_> = groups.iter().filter(|g| g.producers.len() == 2).collect();
    assert_eq!(tied.len(), 3, "{groups:?}");
    assert!(tied[0].producers.contains(&"stem_conv".to_string()));
    assert!(tied[0].producers.contains(&"block1_conv2".to_string()));
    let macs = g.cost(&MNIST).unwrap().macs;
    let r = StructuredPruner::new(L2Norm)
        .prune(&mut g, &MNIST, 0.5)
        .unwrap();
    assert_eq!(r.macs.0, macs);
    for grp in &r.groups {
        assert_eq!(grp.after * 2, grp.before, "{r}");
    }
    // inner 3x3 convolutions lose half their inputs and half their outputs
    assert!(r.macs.1 * 10 < macs * 3, "{r}");
    assert!(r.macs.1 * 4 > macs, "{r}");
    assert_eq!(
        g.forward(&input(&[3, 1, 28, 28])).unwrap().shape(),
        &[3, 10]
    );
    for n in g.nodes() {
        if let slimnet_core::graph::Op::Layer(l) = &n.op {
            if let Some(c) = l.downcast_ref::<Conv2d>() {
                let cfg = c.config();
                assert!(cfg.out_channels <= 32, "{}", n.name);
                if n.name.ends_with("conv2") {
                    assert_eq!(cfg.in_channels, cfg.out_channels, "{}", n.name);
                }
            }
        }
    }
    // a model file round trip keeps the shrunk model
    let back = slimnet_core::io::from_bytes(
        &slimnet_core::io::to_bytes(&g).unwrap(),
        &slimnet_core::io::Registry::core(),
    )
    .unwrap();
    let x = input(&[1, 1, 28, 28]);
    assert_eq!(back.forward(&x).unwrap(), g.forward(&x).unwrap());
}

#[test]
fn residual_adds_tie_channels() {
    let mut g = models::resnet_small(&mut tensor::rng(0)).unwrap();
    let x = input(&[2, 1, 28, 28]);
    for _ in 0..2 {
        g.forward_train(&x).unwrap(); // non-trivial running statistics
    }
    silence(&mut g, "stem_conv", 0..8);
    silence(&mut g, "block1_conv2", 0..8);
    silence_bn(&mut g, "stem_bn", 0..8);
    silence_bn(&mut g, "block1_bn2", 0..8);
    let before = g.forward(&x).unwrap();
    let r = StructuredPruner::new(L1Norm)
        .select(Selector::Paths(vec!["stem_conv".into()]))
        .prune(&mut g, &MNIST, 0.5)
        .unwrap();
    let changed: Vec<_> = r.groups.iter().filter(|g| g.after < g.before).collect();
    assert_eq!(changed.len(), 1, "{r}");
    assert_eq!(conv_mut(&mut g, "block1_conv1").config().in_channels, 8);
    assert_eq!(conv_mut(&mut g, "block2_down").config().in_channels, 8);
    let after = g.forward(&x).unwrap();
    assert!(
        tensor::max_abs_diff(&before, &after) < 1e-5,
        "{}",
        tensor::max_abs_diff(&before, &after)
    );
}

#[test]
fn concat_and_depthwise() {
    let mut rng = tensor::rng(3);
    let mut g = Graph::new();
    let i = g.input();
    let a = g
        .add_layer(
            "a",
            Conv2dConfig::new(2, 4, 3)
                .with_padding(1)
                .init(&mut rng)
                .unwrap(),
            i,
        )
        .unwrap();
    let b = g
        .add_layer("b", Conv2dConfig::new(2, 6, 1).init(&mut rng).unwrap(), i)
        .unwrap();
    let c = g.concat("cat", &[a, b]).unwrap();
    let d = g
        .add_layer(
            "dw",
            Conv2dConfig::new(10, 10, 3)
                .with_padding(1)
                .with_groups(10)
                .with_bias(false)
                .init(&mut rng)
                .unwrap(),
            c,
        )
        .unwrap();
    let d = g
        .add_layer("bn", BatchNormConfig::new(10).init().unwrap(), d)
        .unwrap();
    let d = g.add_layer("relu", Activation::relu6(), d).unwrap();
    g.add_layer(
        "out",
        Conv2dConfig::new(10, 3, 1).init(&mut rng).unwrap(),
        d,
    )
    .unwrap();
    silence(&mut g, "a", 2..4);
    silence(&mut g, "b", 3..6);
    let x = input(&[1, 2, 5, 5]);
    let before = g.forward(&x).unwrap();
    StructuredPruner::new(L1Norm)
        .prune(&mut g, &[1, 2, 5, 5], 0.5)
        .unwrap();
    assert_eq!(conv_mut(&mut g, "dw").config().groups, 5);
    assert_eq!(conv_mut(&mut g, "out").config().in_channels, 5);
    let after = g.forward(&x).unwrap();
    assert!(tensor::max_abs_diff(&before, &after) < 1e-5);
}

#[derive(Clone)]
struct Double;

impl Layer for Double {
    fn kind(&self) -> &'static str {
        "Double"
    }
    fn forward(&self, x: &Tensor) -> CoreResult<Tensor> {
        Ok(x * 2.0)
    }
    fn output_shape(&self, input: &[usize]) -> CoreResult<Vec<usize>> {
        Ok(input.to_vec())
    }
}

#[test]
fn unknown_kinds_are_errors_unless_declared() {
    let mut rng = tensor::rng(3);
    let mut g = Graph::new();
    let i = g.input();
    let a = g
        .add_layer(
            "conv1",
            Conv2dConfig::new(1, 4, 3).init(&mut rng).unwrap(),
            i,
        )
        .unwrap();
    let a = g.add_layer("twice", Double, a).unwrap();
    g.add_layer(
        "conv2",
        Conv2dConfig::new(4, 2, 3).init(&mut rng).unwrap(),
        a,
    )
    .unwrap();
    let shape = [1, 1, 9, 9];
    let e = StructuredPruner::new(L1Norm)
        .prune(&mut g, &shape, 0.5)
        .unwrap_err();
    assert!(matches!(e, PruneError::UnknownKind { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("twice: no channel propagation rule for layer kind `Double`"),
        "{e}"
    );
    let r = StructuredPruner::new(Fpgm)
        .pass_through("Double")
        .prune(&mut g, &shape, 0.5)
        .unwrap();
    assert_eq!(conv_mut(&mut g, "conv2").config().in_channels, 2, "{r}");
    let e = StructuredPruner::new(L1Norm)
        .pass_through("Double")
        .prune(&mut g, &shape, 1.0)
        .unwrap_err();
    assert!(e.to_string().starts_with("conv1"), "{e}");
}
