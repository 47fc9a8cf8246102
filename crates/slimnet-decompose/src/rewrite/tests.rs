use slimnet_core::layers::{BatchNormConfig, Conv2dConfig, LinearConfig};
use slimnet_core::rewrite::Selector;
use slimnet_core::{io, models, tensor, Graph, Layer, Sequential, Tensor};

use super::*;
use crate::util::tests::cp_tensor;

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    crate::util::relative_error(a.iter().copied(), b.iter().copied())
}

/// A conv with every geometry option away from its default, and a bias.
fn odd_conv(seed: u64) -> Conv2d {
    let mut cfg = Conv2dConfig::new(6, 8, 3).with_padding2(1, 2);
    cfg.stride = [2, 1];
    cfg.dilation = [1, 2];
    let mut c = cfg.init(&mut tensor::rng(seed)).unwrap();
    *c.bias.as_mut().unwrap().value_mut() =
        tensor::uniform(&[8], -1.0, 1.0, &mut tensor::rng(seed + 1));
    c
}

fn single(name: &str, layer: impl Layer + 'static) -> Graph {
    Sequential::new().push(name, layer).build().unwrap()
}

#[test]
fn full_rank_rewrites_reproduce_the_layer() {
    let input = [2, 6, 11, 13];
    let x = tensor::uniform(&input, -1.0, 1.0, &mut tensor::rng(5));
    for (method, rank) in [
        (ConvMethod::Spatial, 18),
        (ConvMethod::Channel, 8),
        (ConvMethod::Tucker2, 8),
    ] {
        let mut g = single("conv", odd_conv(1));
        let y0 = g.forward(&x).unwrap();
        let rule = LowRank::new(method, RankPolicy::Fixed(rank));
        let r = decompose(&mut g, &input, &Selector::All, &rule).unwrap();
        assert_eq!(r.layers.len(), 1);
        assert!(
            r.layers[0].rel_error < 1e-5,
            "{method:?}: {}",
            r.layers[0].rel_error
        );
        let y1 = g.forward(&x).unwrap();
        assert_eq!(y0.shape(), y1.shape());
        assert!(rel(&y0, &y1) < 1e-4, "{method:?}: {}", rel(&y0, &y1));
    }
    // CP: a kernel of exact CP rank 5 is reproduced at rank 5
    let mut c = odd_conv(2);
    *c.weight.value_mut() = cp_tensor(&[8, 6, 3, 3], 5, 0.0, 3);
    let mut g = single("conv", c);
    let y0 = g.forward(&x).unwrap();
    let rule = LowRank::new(ConvMethod::Cp, RankPolicy::Fixed(5)).with_cp(
        crate::cp::CpConfig::default()
            .with_tol(1e-12)
            .with_strict(false)
            .with_max_iterations(2000),
    );
    let r = decompose(&mut g, &input, &Selector::All, &rule).unwrap();
    assert!(r.layers[0].rel_error < 1e-5, "{}", r.layers[0].rel_error);
    assert!(rel(&y0, &g.forward(&x).unwrap()) < 1e-4);
    // CP with LM refinement: an exact rank-5 kernel from a few ALS sweeps
    let mut c = odd_conv(2);
    *c.weight.value_mut() = cp_tensor(&[8, 6, 3, 3], 5, 0.0, 3);
    let mut g = single("conv", c);
    let rule = LowRank::new(ConvMethod::Cp, RankPolicy::Fixed(5))
        .with_cp(
            crate::cp::CpConfig::default()
                .with_strict(false)
                .with_max_iterations(3),
        )
        .with_cp_refine(
            crate::cp::LmConfig::default()
                .with_tol(1e-12)
                .with_max_iterations(300),
        );
    let r = decompose(&mut g, &input, &Selector::All, &rule).unwrap();
    let l = &r.layers[0];
    assert!(l.rel_error < 1e-5, "{}", l.rel_error);
    assert!(
        l.note.contains("CP-ALS 3 sweeps, not converged; LM "),
        "{}",
        l.note
    );
    assert!(rel(&y0, &g.forward(&x).unwrap()) < 1e-4);
    // Linear at full rank
    let mut fc = LinearConfig::new(12, 7).init(&mut tensor::rng(4)).unwrap();
    *fc.bias.as_mut().unwrap().value_mut() = tensor::uniform(&[7], -1.0, 1.0, &mut tensor::rng(6));
    let mut g = single("fc", fc);
    let x = tensor::uniform(&[3, 12], -1.0, 1.0, &mut tensor::rng(7));
    let y0 = g.forward(&x).unwrap();
    let r = decompose(
        &mut g,
        &[3, 12],
        &Selector::All,
        &LowRank::new(ConvMethod::Cp, RankPolicy::Fixed(7)),
    )
    .unwrap();
    assert_eq!(r.layers[0].method, "svd");
    assert!(rel(&y0, &g.forward(&x).unwrap()) < 1e-5);
}

#[test]
fn error_falls_and_budgets_hold() {
    let input = [1, 6, 11, 13];
    for method in [
        ConvMethod::Spatial,
        ConvMethod::Channel,
        ConvMethod::Tucker2,
        ConvMethod::Cp,
    ] {
        let mut last = f64::INFINITY;
        for q in [0.2, 0.5, 0.9] {
            let mut g = single("conv", odd_conv(1));
            let rule = LowRank::new(method, RankPolicy::MacRatio(q));
            let r = decompose(&mut g, &input, &Selector::All, &rule).unwrap();
            let l = &r.layers[0];
            assert!(
                l.macs.1 as f64 <= q * l.macs.0 as f64,
                "{method:?} {q}: {:?}",
                l.macs
            );
            assert!(
                l.rel_error <= last + 1e-9,
                "{method:?} {q}: {} > {last}",
                l.rel_error
            );
            last = l.rel_error;
        }
    }
}

#[test]
fn bad_input_names_the_layer() {
    let input = [1, 6, 11, 13];
    let run = |g: &mut Graph, rule: &LowRank| {
        decompose(g, &input, &Selector::All, rule)
            .unwrap_err()
            .to_string()
    };
    let e = run(
        &mut single("conv", odd_conv(1)),
        &LowRank::new(ConvMethod::Spatial, RankPolicy::Fixed(0)),
    );
    assert!(
        e.contains("conv") && e.contains("rank 0 is out of range 1..=18"),
        "{e}"
    );
    let e = run(
        &mut single("conv", odd_conv(1)),
        &LowRank::new(ConvMethod::Channel, RankPolicy::Fixed(9)),
    );
    assert!(e.contains("rank 9 is out of range 1..=8"), "{e}");
    let mut c = odd_conv(1);
    c.weight.value_mut()[[1, 2, 0, 1]] = f32::NAN;
    let e = run(
        &mut single("conv", c),
        &LowRank::new(ConvMethod::Tucker2, RankPolicy::Fixed(2)),
    );
    assert!(
        e.contains("conv") && e.contains("weight holds a non-finite value (NaN)"),
        "{e}"
    );
    let grouped = Conv2dConfig::new(6, 8, 3)
        .with_groups(2)
        .init(&mut tensor::rng(0))
        .unwrap();
    let e = run(
        &mut single("gconv", grouped),
        &LowRank::new(ConvMethod::Cp, RankPolicy::Fixed(2)),
    );
    assert!(
        e.contains("gconv") && e.contains("grouped convolutions (2 groups)"),
        "{e}"
    );
    let bn = BatchNormConfig::new(6).init().unwrap();
    let e = run(
        &mut single("bn", bn),
        &LowRank::new(ConvMethod::Cp, RankPolicy::Fixed(2)),
    );
    assert!(
        e.contains("bn") && e.contains("`BatchNorm2d` has no low-rank rewrite"),
        "{e}"
    );
    let strict = crate::cp::CpConfig::default()
        .with_max_iterations(2)
        .with_tol(1e-12);
    let e = run(
        &mut single("conv", odd_conv(1)),
        &LowRank::new(ConvMethod::Cp, RankPolicy::Fixed(4)).with_cp(strict),
    );
    assert!(
        e.contains("conv") && e.contains("CP-ALS did not converge: 2 iterations"),
        "{e}"
    );
    let e = run(
        &mut single("conv", odd_conv(1)),
        &LowRank::new(ConvMethod::Cp, RankPolicy::Fixed(4)).with_cp_refine(
            crate::cp::LmConfig::default()
                .with_max_iterations(1)
                .with_tol(1e-12),
        ),
    );
    assert!(
        e.contains("conv") && e.contains("CP-LM did not converge: 1 iterations"),
        "{e}"
    );
    let e = run(
        &mut single("conv", odd_conv(1)),
        &LowRank::new(ConvMethod::Channel, RankPolicy::ParamRatio(0.001)),
    );
    assert!(e.contains("budget"), "{e}");
}

#[test]
fn speed_check_can_reject_and_models_round_trip() {
    let input = [1, 1, 28, 28];
    let mut g = models::lenet5(&mut tensor::rng(0)).unwrap();
    // an impossible margin: every rewrite is measured and rejected
    let rule = LowRank::new(ConvMethod::Channel, RankPolicy::Fixed(3))
        .with_speed_check(SpeedCheck::default().with_margin(1e6).with_runs(2));
    let r = decompose(
        &mut g,
        &input,
        &Selector::Kinds(vec!["Conv2d".into()]),
        &rule,
    )
    .unwrap();
    assert_eq!(r.layers.len(), 2);
    assert!(r.layers.iter().all(|l| !l.kept && l.time_us.is_some()));
    assert_eq!(g.layer("conv1").unwrap().kind(), "Conv2d");
    // a real rewrite saves and loads through the core registry
    let rule = LowRank::new(ConvMethod::Tucker2, RankPolicy::Energy(0.9));
    decompose(
        &mut g,
        &input,
        &Selector::Kinds(vec!["Conv2d".into(), "Linear".into()]),
        &rule,
    )
    .unwrap();
    assert_eq!(g.layer("conv2").unwrap().kind(), "Graph");
    let x = tensor::uniform(&input, 0.0, 1.0, &mut tensor::rng(1));
    let back = io::from_bytes(&io::to_bytes(&g).unwrap(), &io::Registry::core()).unwrap();
    assert_eq!(g.forward(&x).unwrap(), back.forward(&x).unwrap());
    let text = format!("{r}");
    assert!(text.contains("conv1") && text.contains("channel-svd"));
}

#[test]
fn rank_multiple_rounds_within_the_policy() {
    let conv = Conv2dConfig::new(32, 32, 3)
        .with_padding(1)
        .init(&mut tensor::rng(3))
        .unwrap();
    let input = [1, 32, 8, 8];
    for method in [
        ConvMethod::Spatial,
        ConvMethod::Channel,
        ConvMethod::Tucker2,
        ConvMethod::Cp,
    ] {
        let plain = LowRank::new(method, RankPolicy::MacRatio(0.4));
        let rounded = plain.clone().with_rank_multiple(8);
        let (_, a) = plain.replacement("c", &conv, &input).unwrap().unwrap();
        let (_, b) = rounded.replacement("c", &conv, &input).unwrap().unwrap();
        for (&ra, &rb) in a.ranks.iter().zip(&b.ranks) {
            assert_eq!(
                rb,
                ra - ra % 8,
                "{method:?}: {:?} -> {:?}",
                a.ranks,
                b.ranks
            );
        }
        // the budget still holds
        assert!(b.macs.1 as f64 <= 0.4 * b.macs.0 as f64, "{method:?}");
    }
    // error policies round up, fixed ranks stay
    let plain = LowRank::new(ConvMethod::Channel, RankPolicy::Energy(0.5));
    let (_, a) = plain.replacement("c", &conv, &input).unwrap().unwrap();
    let (_, b) = plain
        .clone()
        .with_rank_multiple(8)
        .replacement("c", &conv, &input)
        .unwrap()
        .unwrap();
    assert!(a.ranks[0] % 8 != 0, "{:?}", a.ranks);
    assert_eq!(b.ranks[0], a.ranks[0] + 8 - a.ranks[0] % 8);
    assert!(b.rel_error < a.rel_error);
    let fixed = LowRank::new(ConvMethod::Channel, RankPolicy::Fixed(5)).with_rank_multiple(8);
    let (_, f) = fixed.replacement("c", &conv, &input).unwrap().unwrap();
    assert_eq!(f.ranks, vec![5]);
}

/// Tucker-2 of a 1x1 convolution from 20 to 10 channels: the input mode's rank is at most 10
/// (the product of the other modes), whatever the policy asks (it used to slice past the
/// factor's width and panic).
#[test]
fn tucker_ranks_stay_within_the_unfoldings() {
    let conv = Conv2dConfig::new(20, 10, 1)
        .init(&mut tensor::rng(4))
        .unwrap();
    for policy in [
        RankPolicy::ParamRatio(0.3),
        RankPolicy::Energy(0.99),
        RankPolicy::Fixed(20),
    ] {
        let mut g = single("conv", conv.clone());
        let r = decompose(
            &mut g,
            &[1, 20, 6, 6],
            &Selector::All,
            &LowRank::new(ConvMethod::Tucker2, policy.clone()),
        )
        .unwrap();
        assert!(
            r.layers[0].ranks.iter().all(|&k| k <= 10),
            "{policy:?}: {r}"
        );
    }
    // asked of the decomposition directly, too large a rank is an error, not a panic
    let w = conv.weight.value().view();
    assert!(crate::tucker::tucker2(w, 10, 15, &Default::default()).is_err());
}

/// A policy that would grow a layer (LeNet-5's conv1 at 90% energy needs a rank whose two
/// factors hold more than the kernel) keeps the layer and says why.
#[test]
fn rewrites_that_would_grow_a_layer_are_not_made() {
    let mut g = models::lenet5(&mut tensor::rng(0)).unwrap();
    let before = g.num_params();
    let r = decompose(
        &mut g,
        &[1, 1, 28, 28],
        &Selector::Paths(vec!["conv1".into()]),
        &LowRank::new(ConvMethod::Channel, RankPolicy::Energy(0.999)),
    )
    .unwrap();
    assert!(!r.layers[0].kept, "{r}");
    assert!(r.layers[0].note.contains("would not reduce"), "{r}");
    assert_eq!(g.num_params(), before);
    assert_eq!(r.rewrite.changes().count(), 0);
}
