use super::*;
use slimnet_core::{tensor, Layer};

/// Every block trains: its backward returns the input gradient and fills parameter gradients,
/// and the gradient matches finite differences of a linear functional of the output.
#[test]
fn every_block_has_a_consistent_backward() {
    let kinds = [
        BlockKind::DepthwiseSeparable,
        BlockKind::InvertedResidual { expansion: 2 },
        BlockKind::Shuffle { groups: 2 },
        BlockKind::Fire,
        BlockKind::Basic,
    ];
    for kind in kinds {
        for stride in [1, 2] {
            let mut g = Graph::new();
            let x0 = g.input();
            kind.append(&mut g, "b", x0, 8, 8, stride, &mut tensor::rng(0))
                .unwrap();
            let x = tensor::uniform(&[3, 8, 6, 6], -1.0, 1.0, &mut tensor::rng(1));
            let y = g.forward_train(&x).unwrap();
            assert_eq!(y.shape(), &[3, 8, 6 / stride, 6 / stride], "{kind:?}");
            let w = tensor::uniform(y.shape(), -1.0, 1.0, &mut tensor::rng(2));
            let gx = g.backward(&w).unwrap();
            let mut gsum = 0.0;
            g.visit_params(&mut |_, p| gsum += p.grad.iter().map(|v| v.abs()).sum::<f32>());
            assert!(gsum > 0.0, "{kind:?}");
            // Directional derivative along a random direction d: <gx, d> vs FD of <w, f(x)>.
            let d = tensor::uniform(x.shape(), -1.0, 1.0, &mut tensor::rng(3));
            // A small step: larger ones cross the ReLU kinks of many elements at once (with h = 1e-2
            // the estimate is off by 30%; it converges to the analytic value as h shrinks).
            let h = 3e-4;
            let f = |x: &slimnet_core::Tensor| {
                let mut probe = g.clone();
                (&probe.forward_train(x).unwrap() * &w).sum()
            };
            let num = (f(&(&x + &(&d * h))) - f(&(&x - &(&d * h)))) / (2.0 * h);
            let ana = (&gx * &d).sum();
            assert!(
                (num - ana).abs() <= 2e-2 * ana.abs().max(1.0),
                "{kind:?} stride {stride}: {num} vs {ana}"
            );
        }
    }
}

#[test]
fn light_blocks_cost_less_than_a_dense_conv() {
    let mut dense = Graph::new();
    dense
        .add_layer(
            "conv",
            Conv2dConfig::new(32, 32, 3)
                .with_padding(1)
                .init(&mut tensor::rng(0))
                .unwrap(),
            dense.input(),
        )
        .unwrap();
    let base = dense.cost(&[1, 32, 14, 14]).unwrap().macs;
    for kind in [
        BlockKind::DepthwiseSeparable,
        BlockKind::InvertedResidual { expansion: 2 },
        BlockKind::Shuffle { groups: 4 },
        BlockKind::Fire,
    ] {
        let mut g = Graph::new();
        let x0 = g.input();
        kind.append(&mut g, "b", x0, 32, 32, 1, &mut tensor::rng(0))
            .unwrap();
        let m = g.cost(&[1, 32, 14, 14]).unwrap().macs;
        assert!(m * 3 < base * 2, "{kind:?}: {m} vs {base}");
    }
}

#[test]
fn bad_block_sizes_are_errors() {
    let mut g = Graph::new();
    let x = g.input();
    let r = &mut tensor::rng(0);
    assert!(shuffle_unit(&mut g, "a", x, 8, 10, 8, 4, 1, r).is_err());
    assert!(depthwise_separable(&mut g, "b", x, 0, 8, 1, r).is_err());
    assert!(BlockKind::Fire.append(&mut g, "c", x, 8, 7, 1, r).is_err());
}
