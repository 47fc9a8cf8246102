//! Low-rank decomposition of LeNet-5 on MNIST: channel SVD for conv1, Tucker-2 for conv2, SVD
//! for fc1, a short fine-tune, and a before/after comparison.
//!
//! ```text
//! cargo run --release --example decompose_lenet -- [--model PATH] [--epochs N] [--threads N]
//! ```
//! Loads `target/slimnet/lenet5.safetensors` (written by `train_lenet`) or trains a LeNet-5 when
//! it is missing. Prints the per-layer report, and last:
//! `decompose lenet5 mnist acc_before=<f> acc_after=<f> macs_ratio=<before/after>
//! params_ratio=<before/after> speedup=<f>` (speedup: whole-model latency at batch 1 on one
//! thread, dense over decomposed).

use slimnet::core::rewrite::Selector;
use slimnet::core::summary::Summary;
use slimnet::core::{data, io, models, optim, tensor, train, Graph, Result};
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{
    decompose, time_layer, ConvMethod, DecomposeReport, LowRank, SpeedCheck,
};

struct Args {
    model: String,
    epochs: usize,
    threads: usize,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        model: "target/slimnet/lenet5.safetensors".into(),
        epochs: 3,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = val()?,
            "--epochs" => a.epochs = val()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--threads" => a.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "-h" | "--help" => {
                return Err(
                    "usage: decompose_lenet [--model PATH] [--epochs N] [--threads N]".into(),
                )
            }
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    Ok(a)
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

fn sgd(lr: f32) -> optim::Sgd {
    optim::Sgd::new(lr)
        .with_momentum(0.9)
        .with_nesterov(true)
        .with_weight_decay(5e-4)
}

/// Whole-model latency in microseconds at batch 1 on one thread (minimum of interleaved runs).
fn latency(a: &Graph, b: &Graph) -> Result<(f64, f64)> {
    let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(3));
    let (mut ta, mut tb) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..20 {
        ta = ta.min(time_layer(a, &x, 20).map_err(to_core)?);
        tb = tb.min(time_layer(b, &x, 20).map_err(to_core)?);
    }
    Ok((ta, tb))
}

fn to_core(e: slimnet::decompose::DecomposeError) -> slimnet::core::Error {
    e.into()
}

/// Conv MACs and FC parameters of a model.
fn split_costs(g: &Graph) -> Result<(usize, usize)> {
    let (mut conv_macs, mut fc_params) = (0, 0);
    for row in &Summary::of(g, &[1, 1, 28, 28])?.rows {
        if row.name.starts_with("conv") {
            conv_macs += row.cost.macs;
        } else if row.name.starts_with("fc") {
            fc_params += row.cost.params;
        }
    }
    Ok((conv_macs, fc_params))
}

fn run(args: &Args) -> Result<()> {
    slimnet::kernels::threads::set_num_threads(args.threads);
    let train_set = data::mnist(data::Split::Train)?;
    let test_set = data::mnist(data::Split::Test)?;
    let dense = match io::load(&args.model) {
        Ok(g) => {
            println!("loaded {}", args.model);
            g
        }
        Err(e) => {
            println!(
                "could not load {} ({e}); training a LeNet-5 for 4 epochs",
                args.model
            );
            let mut g = models::lenet5(&mut tensor::rng(1))?;
            train::Trainer::new(
                train::TrainConfig::default()
                    .with_epochs(4)
                    .with_seed(1)
                    .with_progress(false),
            )
            .optimizer(sgd(0.01))
            .schedule(optim::CosineLr::new(0.01, 4))
            .fit(&mut g, &train_set, Some(&test_set))?;
            g
        }
    };
    let acc_before = train::accuracy(&dense, &test_set)?;
    let input = [1, 1, 28, 28];
    let mut model = dense.clone();
    // each layer gets the method and budget that suit its shape; the speed check keeps a rewrite
    // only when it is measurably faster on the layer's real input
    let check = SpeedCheck::default().with_margin(1.0);
    let plan = [
        (
            "conv1",
            LowRank::new(ConvMethod::Channel, RankPolicy::MacRatio(0.5)),
        ),
        (
            "conv2",
            LowRank::new(ConvMethod::Tucker2, RankPolicy::MacRatio(0.45)),
        ),
        (
            "fc1",
            LowRank::new(ConvMethod::Channel, RankPolicy::ParamRatio(0.18)),
        ),
    ];
    let mut report = DecomposeReport::default();
    for (path, rule) in plan {
        let rule = rule.with_speed_check(check.clone());
        let r = decompose(
            &mut model,
            &input,
            &Selector::Paths(vec![path.into()]),
            &rule,
        )
        .map_err(to_core)?;
        report.layers.extend(r.layers);
    }
    let acc_decomposed = train::accuracy(&model, &test_set)?;
    let lr = 0.005;
    let history = train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(args.epochs)
            .with_seed(2)
            .with_progress(false),
    )
    .optimizer(sgd(lr))
    .schedule(optim::CosineLr::new(lr, args.epochs))
    .fit(&mut model, &train_set, Some(&test_set))?;
    for h in &history {
        println!(
            "fine-tune epoch {}  train_loss {:.4}  test_acc {:.4}  {:.1}s",
            h.epoch + 1,
            h.train_loss,
            h.test_accuracy.unwrap_or(f32::NAN),
            h.seconds
        );
    }
    let acc_after = train::accuracy(&model, &test_set)?;
    slimnet::kernels::threads::set_num_threads(1);
    let (t_dense, t_dec) = latency(&dense, &model)?;
    let (sd, sm) = (Summary::of(&dense, &input)?, Summary::of(&model, &input)?);
    let ((cm0, fp0), (cm1, fp1)) = (split_costs(&dense)?, split_costs(&model)?);
    println!("{report}");
    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "", "dense", "decomposed", "ratio"
    );
    let row =
        |name: &str, a: f64, b: f64| println!("{name:<28} {a:>12.0} {b:>12.0} {:>8.2}", a / b);
    row("conv MACs", cm0 as f64, cm1 as f64);
    row("FC parameters", fp0 as f64, fp1 as f64);
    row("model MACs", sd.macs() as f64, sm.macs() as f64);
    row("model parameters", sd.params() as f64, sm.params() as f64);
    row("latency us (batch 1, 1 thr)", t_dense, t_dec);
    println!(
        "{:<28} {:>12.4} {:>12.4}",
        "test accuracy", acc_before, acc_after
    );
    println!("accuracy right after decomposition, before fine-tuning: {acc_decomposed:.4}");
    println!(
        "decompose lenet5 mnist acc_before={acc_before:.4} acc_after={acc_after:.4} macs_ratio={:.3} params_ratio={:.3} speedup={:.3}",
        sd.macs() as f64 / sm.macs() as f64,
        sd.params() as f64 / sm.params() as f64,
        t_dense / t_dec
    );
    Ok(())
}
