//! Times one training step (forward, cross-entropy, backward, SGD update with momentum) at
//! batch 64: of LeNet-5 for the PyTorch comparison in `benches/peers/train_step.py`, or of the
//! character CNN at 3,755 classes (`hanzi`), whose wide classifier makes the element-wise work
//! and the optimizer's update a large share of the step.
//!
//! `cargo run --release --example peer_train_step -- [THREADS] [lenet5|hanzi]` (default 1 and
//! `lenet5`) prints `slimnet_ms=<median ms>` over 50 timed steps after 10 untimed ones.

use slimnet::core::optim::{Optimizer, Sgd};
use slimnet::core::timing::{time, TimingConfig};
use slimnet::core::{loss, models, tensor, Layer};

fn main() -> slimnet::Result<()> {
    let mut args = std::env::args().skip(1);
    let threads = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let model = args.next().unwrap_or_else(|| "lenet5".into());
    let mut rng = tensor::rng(0);
    let (mut model, input, classes) = match model.as_str() {
        "lenet5" => (models::lenet5(&mut rng)?, [64, 1, 28, 28], 10),
        "hanzi" => (models::hanzi_cnn(3755, &mut rng)?, [64, 1, 32, 32], 3755),
        other => {
            return Err(slimnet::Error::Invalid(format!(
                "unknown model `{other}`: lenet5 or hanzi"
            )))
        }
    };
    let x = tensor::uniform(&input, -1.0, 1.0, &mut rng);
    let y: Vec<usize> = (0..64).map(|i| i % classes).collect();
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
