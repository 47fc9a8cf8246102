//! Times one LeNet-5 training step (forward, cross-entropy, backward, SGD update) at batch 64,
//! for the PyTorch comparison in `benches/peers/train_step.py`.
//!
//! `cargo run --release --example peer_train_step -- [THREADS]` (default 1) prints
//! `slimnet_ms=<median ms>` over 50 timed steps after 10 untimed ones.

use slimnet::core::optim::{Optimizer, Sgd};
use slimnet::core::timing::{time, TimingConfig};
use slimnet::core::{loss, models, tensor, Layer};

fn main() -> slimnet::Result<()> {
    let threads = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let mut rng = tensor::rng(0);
    let mut model = models::lenet5(&mut rng)?;
    let x = tensor::uniform(&[64, 1, 28, 28], -1.0, 1.0, &mut rng);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut opt = Sgd::new(0.01).with_momentum(0.9);
    let step = || {
        let out = model.forward_train(&x)?;
        let (_, g) = loss::softmax_cross_entropy(&out, &y)?;
        model.backward(&g)?;
        opt.step(&mut model)?;
        (&mut model as &mut dyn Layer).zero_grad();
        Ok(())
    };
    let mut cfg = TimingConfig::quick().with_runs(50);
    cfg.warmup = 10;
    let t = slimnet::kernels::threads::with(threads, || time(step, &cfg))?;
    println!("slimnet_ms={:.3}", t.median_us / 1e3);
    Ok(())
}
