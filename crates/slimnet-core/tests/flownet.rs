//! The FlowNetSimple-style model: shapes, size, and that it learns from flying shapes.

use slimnet_core::data::flow::{flying_shapes, FlowSplit, FlyingShapesConfig};
use slimnet_core::optim::{Adam, Optimizer};
use slimnet_core::summary::Summary;
use slimnet_core::{loss, models, tensor, Layer};

#[test]
fn flownet_maps_a_pair_to_a_full_resolution_flow() {
    let net = models::flownet_simple(&mut tensor::rng(0)).unwrap();
    let x = tensor::uniform(&[2, 2, 64, 64], 0.0, 1.0, &mut tensor::rng(1));
    let y = net.forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 2, 64, 64]);
    assert!(y.iter().all(|v| v.is_finite()));
    assert_eq!(
        net.output_shape(&[3, 2, 32, 48]).unwrap(),
        vec![3, 2, 32, 48]
    );
    let s = Summary::of(&net, &[1, 2, 64, 64]).unwrap();
    println!("flownet_simple: {} params, {} MACs", s.params(), s.macs());
    assert_eq!(s.params(), net.num_params());
    assert!(s.params() < 1_000_000 && s.macs() < 30_000_000);
    // not a classifier: the trainer's names do not offer it
    assert!(models::by_name("flownet", &mut tensor::rng(0)).is_err());
    // sides that are not multiples of 16 are an error, not a panic
    assert!(net.forward(&tensor::zeros(&[1, 2, 40, 40])).is_err());
}

/// A few full-batch Adam steps on 16 generated 32x32 pairs lower the training EPE well below
/// its start and below the zero-flow baseline's.
#[test]
fn a_few_adam_steps_reduce_the_epe() {
    let cfg = FlyingShapesConfig::new(32, 32)
        .with_max_translation(3.0)
        .with_seed(2);
    let data = flying_shapes(16, FlowSplit::Train, &cfg).unwrap();
    let mut net = models::flownet_simple(&mut tensor::rng(4)).unwrap();
    let mut opt = Adam::new(3e-3);
    let mut losses = Vec::new();
    for _ in 0..12 {
        net.zero_grad();
        let y = net.forward_train(&data.inputs).unwrap();
        let (l, g) = loss::epe(&y, &data.flows).unwrap();
        net.backward(&g).unwrap();
        opt.step(&mut net).unwrap();
        losses.push(l);
    }
    let zero = data.mean_flow_magnitude();
    println!("zero-flow EPE {zero}, losses {losses:?}");
    let last = *losses.last().unwrap();
    assert!(last.is_finite());
    assert!(last < 0.8 * losses[0], "EPE {losses:?}");
    assert!(last < zero, "EPE {last} vs zero-flow {zero}");
}
