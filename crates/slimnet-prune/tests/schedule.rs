//! Schedules driven by the trainer's callbacks.

use slimnet_core::data::Dataset;
use slimnet_core::rewrite::Selector;
use slimnet_core::{models, optim, tensor, train};
use slimnet_prune::criterion::Magnitude;
use slimnet_prune::schedule::{Agp, Iterative, OneShot, PruneCallback, Schedule, Unit};
use slimnet_prune::{sparsity_report, Pruner, Scope};

fn data() -> Dataset {
    let x = tensor::uniform(&[64, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(5));
    Dataset::new(x, (0..64).map(|i| i % 10).collect(), 10).unwrap()
}

fn fit(cb: &mut PruneCallback, epochs: usize) -> slimnet_core::Graph {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let cfg = train::TrainConfig::default()
        .with_epochs(epochs)
        .with_batch_size(16)
        .with_progress(false);
    train::Trainer::new(cfg)
        .optimizer(optim::Sgd::new(0.05).with_momentum(0.9))
        .callback(cb)
        .fit(&mut g, &data(), None)
        .unwrap();
    g
}

#[test]
fn agp_by_step_follows_the_cubic_curve() {
    let agp = Agp::new(0.0, 0.8, 0, 8, 2);
    let mut cb = PruneCallback::new(Pruner::new(Magnitude).scope(Scope::Global), agp, Unit::Step);
    let g = fit(&mut cb, 3); // 4 steps per epoch
    let ts: Vec<usize> = cb.events().iter().map(|e| e.t).collect();
    assert_eq!(ts, [2, 4, 6, 8]);
    for e in cb.events() {
        let want = 0.8 * (1.0 - (1.0 - e.t as f32 / 8.0).powi(3));
        assert!((e.target - want).abs() < 1e-6);
        assert!((e.achieved - want as f64).abs() < 1e-3, "{e:?}");
    }
    // four more steps of training after the last pruning: pruned weights stayed zero
    let r = sparsity_report(&g, &Selector::All);
    assert!((r.sparsity() - 0.8).abs() < 1e-3, "{r}");
}

#[test]
fn iterative_and_one_shot_by_epoch() {
    let mut cb = PruneCallback::new(
        Pruner::new(Magnitude),
        Iterative::linear(0.6, 1, 1, 2),
        Unit::Epoch,
    );
    let g = fit(&mut cb, 3);
    let got: Vec<(usize, f32)> = cb.events().iter().map(|e| (e.t, e.target)).collect();
    assert_eq!(got, [(1, 0.3), (2, 0.6)]);
    assert!((sparsity_report(&g, &Selector::All).sparsity() - 0.6).abs() < 1e-3);

    let mut cb = PruneCallback::new(
        Pruner::new(Magnitude),
        OneShot {
            at: 2,
            sparsity: 0.5,
        },
        Unit::Epoch,
    );
    let g = fit(&mut cb, 3);
    assert_eq!(cb.events().len(), 1);
    assert!((sparsity_report(&g, &Selector::All).sparsity() - 0.5).abs() < 1e-3);
}

#[test]
fn agp_edges() {
    let agp = Agp::new(0.1, 0.9, 10, 20, 3);
    assert_eq!(agp.target(9), None);
    assert_eq!(agp.target(10), Some(0.1));
    assert_eq!(agp.target(11), None);
    assert!(agp.target(13).is_some());
    assert_eq!(agp.target(20), Some(0.9), "the end always prunes");
    assert_eq!(agp.target(22), None);
}

#[test]
fn a_bad_target_stops_training_with_the_layer_named() {
    let mut cb = PruneCallback::new(
        Pruner::new(Magnitude),
        OneShot {
            at: 1,
            sparsity: 1.0,
        },
        Unit::Step,
    );
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let e = train::Trainer::new(train::TrainConfig::default().with_progress(false))
        .callback(&mut cb)
        .fit(&mut g, &data(), None)
        .unwrap_err();
    assert!(e.to_string().contains("fc1"), "{e}");
    assert!(e.to_string().contains("sparsity 1"), "{e}");
}
