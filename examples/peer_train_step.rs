//! Times one LeNet-5 training step (forward, cross-entropy, backward, SGD update) at batch 64 on
//! one thread, for the PyTorch comparison in `benches/peers/train_step.py`.
//!
//! Prints `slimnet_ms=<median ms>` over the timed steps.

use std::time::Instant;

use slimnet::core::{loss, models, optim::Optimizer, optim::Sgd, tensor, Layer};

fn main() -> slimnet::core::Result<()> {
    let threads = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    slimnet::kernels::threads::set_num_threads(threads);
    let mut rng = tensor::rng(0);
    let mut model = models::lenet5(&mut rng)?;
    let x = tensor::uniform(&[64, 1, 28, 28], -1.0, 1.0, &mut rng);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut opt = Sgd::new(0.01).with_momentum(0.9);
    let mut step = || -> slimnet::core::Result<()> {
        let out = model.forward_train(&x)?;
        let (_, g) = loss::softmax_cross_entropy(&out, &y)?;
        model.backward(&g)?;
        opt.step(&mut model)?;
        (&mut model as &mut dyn Layer).zero_grad();
        Ok(())
    };
    for _ in 0..10 {
        step()?;
    }
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("slimnet_ms={:.3}", times[times.len() / 2]);
    Ok(())
}
