//! Trains a model on MNIST, saves it as one safetensors file, and prints its summary table.
//!
//! ```text
//! cargo run --release --example train_lenet -- [--model lenet5|lenet300|resnet] [--epochs N]
//!     [--threads N] [--seed N] [--out PATH]
//! ```
//! The last line reads
//! `train <model> mnist test_accuracy=<f> epochs=<n> seconds=<s> params=<n>`.

use std::time::Instant;

use slimnet::core::{data, io, models, optim, summary::Summary, tensor, train, Layer};

struct Args {
    model: String,
    epochs: Option<usize>,
    threads: usize,
    seed: u64,
    lr: Option<f32>,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: "lenet5".into(),
        epochs: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: 1,
        lr: None,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = val()?,
            "--epochs" => a.epochs = Some(val()?.parse().map_err(|e| format!("--epochs: {e}"))?),
            "--threads" => a.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--seed" => a.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--lr" => a.lr = Some(val()?.parse().map_err(|e| format!("--lr: {e}"))?),
            "--out" => a.out = Some(val()?),
            "-h" | "--help" => return Err(
                "usage: train_lenet [--model lenet5|lenet300|resnet] [--epochs N] [--threads N] \
                            [--seed N] [--lr F] [--out PATH]"
                    .into(),
            ),
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    Ok(a)
}

/// Default recipe per model: (epochs, peak learning rate, weight decay).
fn recipe(model: &str) -> (usize, f32, f32) {
    match model {
        "lenet300" => (20, 0.05, 1e-4),
        "resnet" => (8, 0.05, 5e-4),
        _ => (15, 0.01, 5e-4),
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> slimnet::core::Result<()> {
    slimnet::kernels::threads::set_num_threads(args.threads);
    let (default_epochs, default_lr, wd) = recipe(&args.model);
    let lr = args.lr.unwrap_or(default_lr);
    let epochs = args.epochs.unwrap_or(default_epochs);
    let mut model = models::by_name(&args.model, &mut tensor::rng(args.seed))?;
    let train_set = data::mnist(data::Split::Train)?;
    let test_set = data::mnist(data::Split::Test)?;
    let start = Instant::now();
    let history = train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(epochs)
            .with_batch_size(64)
            .with_seed(args.seed),
    )
    .optimizer(
        optim::Sgd::new(lr)
            .with_momentum(0.9)
            .with_nesterov(true)
            .with_weight_decay(wd),
    )
    .schedule(optim::CosineLr::new(lr, epochs))
    .callback(Printer)
    .fit(&mut model, &train_set, Some(&test_set))?;
    let seconds = start.elapsed().as_secs_f64();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("target/slimnet/{}.safetensors", args.model));
    io::save(&model, &out)?;
    let summary = Summary::of(&model, &[1, 1, 28, 28])?;
    println!("{summary}");
    println!("saved {out} ({} bytes)", std::fs::metadata(&out)?.len());
    let acc = history.last().and_then(|h| h.test_accuracy).unwrap_or(0.0);
    println!(
        "train {} mnist test_accuracy={acc:.4} epochs={epochs} seconds={seconds:.1} params={}",
        args.model,
        (&model as &dyn Layer).num_params()
    );
    Ok(())
}

struct Printer;

impl train::Callback for Printer {
    fn on_epoch_end(
        &mut self,
        _: &mut slimnet::core::Graph,
        s: &train::EpochStats,
    ) -> slimnet::core::Result<()> {
        println!(
            "epoch {:>2}  train_loss {:.4}  train_acc {:.4}  test_acc {:.4}  lr {:.4}  {:.1}s",
            s.epoch + 1,
            s.train_loss,
            s.train_accuracy,
            s.test_accuracy.unwrap_or(f32::NAN),
            s.lr,
            s.seconds
        );
        Ok(())
    }
}
