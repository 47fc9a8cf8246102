//! Training checkpoints: a run stopped (or killed) after some epochs and resumed from its
//! checkpoint ends with the same weights, bit for bit, as a run that was never stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slimnet_core::data::Dataset;
use slimnet_core::layers::{Activation, Dropout, Flatten, LinearConfig};
use slimnet_core::train::{Callback, EpochStats, TrainConfig, Trainer};
use slimnet_core::{optim, tensor, Graph, Layer, Sequential};

/// A toy problem: the class is which half of the image is brighter.
fn data() -> Dataset {
    let n = 256;
    let mut x = tensor::uniform(&[n, 1, 8, 8], 0.0, 0.5, &mut tensor::rng(1));
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    for (i, &y) in labels.iter().enumerate() {
        for r in 0..4 {
            for c in 0..8 {
                x[[i, 0, r + 4 * y, c]] += 0.5;
            }
        }
    }
    Dataset::new(x, labels, 2).unwrap()
}

/// A model with a dropout layer, whose random generator must resume where it stopped.
fn model() -> Graph {
    let mut rng = tensor::rng(2);
    Sequential::new()
        .push("flat", Flatten::new())
        .push("fc1", LinearConfig::new(64, 32).init(&mut rng).unwrap())
        .push("drop", Dropout::new(0.3, 7).unwrap())
        .push("relu", Activation::relu())
        .push("fc2", LinearConfig::new(32, 2).init(&mut rng).unwrap())
        .build()
        .unwrap()
}

/// Slows every epoch down, so a parent process can kill the run between checkpoints.
struct Slow;

impl Callback for Slow {
    fn on_epoch_end(&mut self, _: &mut Graph, _: &EpochStats) -> slimnet_core::Result<()> {
        std::thread::sleep(Duration::from_millis(150));
        Ok(())
    }
}

fn train(g: &mut Graph, epochs: usize, checkpoint: Option<&Path>, slow: bool) {
    train_with(g, epochs, checkpoint, slow, false);
}

/// [`train`] with Adam, or with SGD and momentum when `sgd`.
fn train_with(g: &mut Graph, epochs: usize, checkpoint: Option<&Path>, slow: bool, sgd: bool) {
    let mut cfg = TrainConfig::default()
        .with_epochs(epochs)
        .with_batch_size(16)
        .with_seed(3)
        .with_progress(false);
    if let Some(p) = checkpoint {
        cfg = cfg.with_checkpoint(p);
    }
    let mut t = if sgd {
        Trainer::new(cfg).optimizer(optim::Sgd::new(0.05).with_momentum(0.9))
    } else {
        Trainer::new(cfg).optimizer(optim::Adam::new(0.01))
    };
    if slow {
        t = t.callback(Slow);
    }
    t.fit(g, &data(), None).unwrap();
}

fn weights(g: &Graph) -> Vec<u32> {
    let mut w = Vec::new();
    g.visit_params(&mut |_, p| w.extend(p.value().iter().map(|v| v.to_bits())));
    w
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("slimnet-{name}-{}.ckpt", std::process::id()));
    std::fs::remove_file(&p).ok();
    p
}

#[test]
fn a_stopped_run_resumes_to_the_same_weights() {
    // Adam's moments and step count, SGD's velocities: both must come back from the file
    for sgd in [false, true] {
        let mut whole = model();
        train_with(&mut whole, 6, None, false, sgd);
        let path = temp(&format!("stopped-{sgd}"));
        let mut first = model();
        train_with(&mut first, 3, Some(&path), false, sgd);
        // a fresh process would start from a fresh model and optimizer
        let mut resumed = model();
        train_with(&mut resumed, 6, Some(&path), false, sgd);
        std::fs::remove_file(&path).ok();
        assert_eq!(weights(&resumed), weights(&whole), "sgd={sgd}");
        assert_ne!(weights(&first), weights(&whole));
    }
}

#[test]
fn a_checkpoint_of_another_run_is_refused() {
    let path = temp("other");
    train(&mut model(), 1, Some(&path), false);
    let e = Trainer::new(
        TrainConfig::default()
            .with_epochs(2)
            .with_seed(99)
            .with_checkpoint(&path),
    )
    .fit(&mut model(), &data(), None)
    .unwrap_err();
    std::fs::remove_file(&path).ok();
    assert!(e.to_string().contains("made for seed 3"), "{e}");
}

/// The child side of [`a_killed_training_process_resumes`]: trains slowly with a checkpoint
/// until the parent kills it.
#[test]
fn child_training_until_killed() {
    let Ok(path) = std::env::var("SLIMNET_CHECKPOINT_CHILD") else {
        return; // only meaningful as the child of the test below
    };
    train(&mut model(), 1000, Some(Path::new(&path)), true);
}

#[test]
fn a_killed_training_process_resumes() {
    let path = temp("killed");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_training_until_killed", "--nocapture"])
        .env("SLIMNET_CHECKPOINT_CHILD", &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait for a few checkpoints, then kill the run in the middle of an epoch
    let start = Instant::now();
    let epochs_done = loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint written"
        );
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(bytes) = std::fs::read(&path) {
            let done = epochs_in(&bytes);
            if done >= 3 {
                break done;
            }
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // resume to a few epochs past the last checkpoint of the killed run
    let total = epochs_in(&std::fs::read(&path).unwrap()) + 2;
    assert!(total >= epochs_done + 2);
    let mut resumed = model();
    train(&mut resumed, total, Some(&path), false);
    std::fs::remove_file(&path).ok();
    let mut whole = model();
    train(&mut whole, total, None, false);
    assert_eq!(weights(&resumed), weights(&whole));
}

/// Epochs a checkpoint file has finished (read from its metadata).
fn epochs_in(bytes: &[u8]) -> usize {
    let (_, meta) = slimnet_core::io::from_bytes_with(
        bytes,
        &slimnet_core::io::Registry::core(),
        Some("#optimizer."),
    )
    .map(|(_, e)| e)
    .unwrap_or_default();
    meta.get("slimnet.checkpoint")
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v["epoch"].as_u64())
        .map_or(0, |e| e as usize + 1)
}
