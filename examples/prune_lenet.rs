//! Han et al. style pruning of LeNet-300-100 and LeNet-5 on MNIST: magnitude pruning with a
//! global threshold raised gradually (AGP, by step) while fine-tuning, then conversion to sparse
//! deploy layers that run on the sparse kernels and store their compact arrays.
//!
//! With `--model resnet` it prunes structurally instead: half of the channels of every
//! convolution of the small ResNet are removed (L1 filter norm, channels tied across residual
//! adds), then the smaller dense model is fine-tuned; its last line reads `structured resnet
//! mnist acc_before=<f> acc_after=<f> channels_removed=<f> macs_before=<n> macs_after=<n>
//! file_bytes_before=<n> file_bytes_after=<n> speedup=<f>`.
//!
//! ```text
//! cargo run --release --example prune_lenet -- [--model lenet300|lenet5|both|resnet] [--sparsity F]
//!     [--prune-epochs N] [--finetune-epochs N] [--baseline-epochs N] [--lr F] [--threads N]
//!     [--seed N] [--sensitivity]
//! ```
//! The dense baseline is loaded from `target/slimnet/<model>.safetensors` when present (as
//! written by `cargo run --release --example train_lenet -- --model <model>`), else trained here.
//! `--sensitivity` first sweeps each layer's sparsity against test accuracy (for analysis only:
//! the pruning run below does not use it), printing a table and writing
//! `target/slimnet/sensitivity_<model>.svg`.
//! The last line per model reads
//! `prune <model> mnist acc_before=<f> acc_after=<f> sparsity=<f> file_bytes_before=<n>
//! file_bytes_after=<n> speedup=<f>`, where sparsity is the fraction of zero conv/linear weights
//! and speedup is dense over sparse latency at batch 1 on one thread.

use std::path::Path;
use std::time::Instant;

use slimnet::core::data::{self, Dataset};
use slimnet::core::rewrite::Selector;
use slimnet::core::{io, models, optim, tensor, train, Graph, Layer};
use slimnet::prune::criterion::{L1Norm, Magnitude};
use slimnet::prune::schedule::{Agp, PruneCallback, Unit};
use slimnet::prune::sensitivity::sensitivity;
use slimnet::prune::structured::StructuredPruner;
use slimnet::prune::{convert, sparsity_report, Pruner, Scope};

struct Args {
    models: Vec<String>,
    sparsity: f32,
    prune_epochs: Option<usize>,
    finetune_epochs: Option<usize>,
    baseline_epochs: Option<usize>,
    lr: Option<f32>,
    sensitivity: bool,
    threads: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        models: vec!["lenet300".into(), "lenet5".into()],
        sparsity: 0.925,
        prune_epochs: None,
        finetune_epochs: None,
        baseline_epochs: None,
        lr: None,
        sensitivity: false,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--model" => {
                a.models = match val()?.as_str() {
                    "both" => vec!["lenet300".into(), "lenet5".into()],
                    m @ ("lenet300" | "lenet5" | "resnet") => vec![m.to_string()],
                    other => return Err(format!("unknown model {other}")),
                }
            }
            "--sparsity" => a.sparsity = val()?.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--prune-epochs" => {
                let n = num(val()?)?;
                if n == 0 {
                    return Err(format!(
                        "{flag}: pruning runs during its epochs; give at least 1"
                    ));
                }
                a.prune_epochs = Some(n);
            }
            "--finetune-epochs" => a.finetune_epochs = Some(num(val()?)?),
            "--baseline-epochs" => a.baseline_epochs = Some(num(val()?)?),
            "--lr" => a.lr = Some(val()?.parse().map_err(|e| format!("{flag}: {e}"))?),
            "--threads" => a.threads = num(val()?)?,
            "--sensitivity" => a.sensitivity = true,
            "--seed" => a.seed = num(val()?)? as u64,
            "-h" | "--help" => {
                return Err(
                    "usage: prune_lenet [--model lenet300|lenet5|both|resnet] [--sparsity F] \
                            [--prune-epochs N] [--finetune-epochs N] [--baseline-epochs N] \
                            [--lr F] [--threads N] [--seed N] [--sensitivity]"
                        .into(),
                )
            }
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    Ok(a)
}

/// Per model: baseline (epochs, lr, weight decay), pruning epochs, fine-tuning epochs, lr.
fn recipe(model: &str) -> ((usize, f32, f32), usize, usize, f32) {
    match model {
        "lenet300" => ((20, 0.05, 1e-4), 10, 10, 0.05),
        "resnet" => ((8, 0.05, 5e-4), 0, 4, 0.01),
        _ => ((15, 0.01, 5e-4), 4, 4, 0.01),
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
    let mut lines = Vec::new();
    for m in &args.models {
        match run(&args, m) {
            Ok(line) => lines.push(line),
            Err(e) => {
                eprintln!("error: {m}: {e}");
                std::process::exit(1);
            }
        }
    }
    for l in lines {
        println!("{l}");
    }
}

fn baseline(args: &Args, model: &str, tr: &Dataset, te: &Dataset) -> slimnet::core::Result<Graph> {
    let file = format!("target/slimnet/{model}.safetensors");
    if Path::new(&file).exists() && args.baseline_epochs.is_none() {
        println!("{model}: loading the dense baseline from {file}");
        return io::load(&file);
    }
    let ((epochs, lr, wd), ..) = recipe(model);
    let epochs = args.baseline_epochs.unwrap_or(epochs);
    println!("{model}: training the dense baseline for {epochs} epochs");
    let mut g = models::by_name(model, &mut tensor::rng(args.seed))?;
    train::Trainer::new(cfg(epochs, args.seed))
        .optimizer(
            optim::Sgd::new(lr)
                .with_momentum(0.9)
                .with_nesterov(true)
                .with_weight_decay(wd),
        )
        .schedule(optim::CosineLr::new(lr, epochs))
        .callback(Printer)
        .fit(&mut g, tr, Some(te))?;
    Ok(g)
}

fn cfg(epochs: usize, seed: u64) -> train::TrainConfig {
    train::TrainConfig::default()
        .with_epochs(epochs)
        .with_batch_size(64)
        .with_seed(seed)
        .with_progress(false)
}

fn run(args: &Args, model: &str) -> slimnet::core::Result<String> {
    slimnet::kernels::threads::set_num_threads(args.threads);
    if model == "resnet" {
        return run_structured(args, model);
    }
    let tr = data::mnist(data::Split::Train)?;
    let te = data::mnist(data::Split::Test)?;
    let dense = baseline(args, model, &tr, &te)?;
    let acc_before = train::accuracy(&dense, &te)?;
    let bytes_before = io::to_bytes(&dense)?.len();
    if args.sensitivity {
        sweep(model, &dense, &te)?;
    }

    // AGP from 0 to the target over `prune` epochs (pruning 20 times), then fine-tuning.
    let ((_, _, wd), prune, finetune, lr) = recipe(model);
    let lr = args.lr.unwrap_or(lr);
    let prune = args.prune_epochs.unwrap_or(prune);
    let epochs = prune + args.finetune_epochs.unwrap_or(finetune);
    let spe = tr.len().div_ceil(64);
    let end = prune * spe;
    let pruner = Pruner::new(Magnitude).scope(Scope::Global);
    let mut cb = PruneCallback::new(
        pruner,
        Agp::new(0.0, args.sparsity, 0, end, end / 20),
        Unit::Step,
    );
    let mut pruned = dense.clone();
    println!(
        "{model}: pruning to {} over {prune} epochs, {epochs} epochs in all",
        args.sparsity
    );
    train::Trainer::new(cfg(epochs, args.seed + 1))
        .optimizer(
            optim::Sgd::new(lr)
                .with_momentum(0.9)
                .with_nesterov(true)
                .with_weight_decay(wd),
        )
        .schedule(optim::CosineLr::new(lr, epochs))
        .callback(&mut cb)
        .callback(Printer)
        .fit(&mut pruned, &tr, Some(&te))?;
    let report = sparsity_report(&pruned, &Selector::All);
    println!("{report}");

    let mut sparse = pruned.clone();
    let conv = convert::to_sparse(&mut sparse, &[1, 1, 28, 28], Selector::All)?;
    println!("{conv}");
    let acc_after = train::accuracy(&sparse, &te)?;
    let bytes_after = io::to_bytes(&sparse)?.len();
    // the file must load back to the same model
    let mut reg = io::Registry::core();
    slimnet::prune::register(&mut reg);
    let back = io::from_bytes(&io::to_bytes(&sparse)?, &reg)?;
    let probe = te.batch(&[0, 1, 2, 3]).0;
    assert_eq!(back.forward(&probe)?, sparse.forward(&probe)?);

    slimnet::kernels::threads::set_num_threads(1);
    let t_dense = latency(&dense, &te)?;
    let t_sparse = latency(&sparse, &te)?;
    let nnz = report.nonzero();
    println!(
        "{:<10} {:>9} {:>12} {:>12} {:>14}",
        "model", "accuracy", "non-zeros", "file bytes", "latency (us)"
    );
    println!(
        "{:<10} {:>9.4} {:>12} {:>12} {:>14.2}",
        "dense",
        acc_before,
        report.total(),
        bytes_before,
        t_dense * 1e6
    );
    println!(
        "{:<10} {:>9.4} {:>12} {:>12} {:>14.2}",
        "sparse",
        acc_after,
        nnz,
        bytes_after,
        t_sparse * 1e6
    );
    println!(
        "{model}: {:.1}x fewer non-zero weights, accuracy {:+.2} points",
        report.compression(),
        (acc_after - acc_before) * 100.0
    );
    let line = format!(
        "prune {model} mnist acc_before={acc_before:.4} acc_after={acc_after:.4} sparsity={:.4} \
         file_bytes_before={bytes_before} file_bytes_after={bytes_after} speedup={:.2}",
        report.sparsity(),
        t_dense / t_sparse
    );
    Ok(line)
}

/// Per-layer sensitivity on the test set: table and SVG plot.
fn sweep(model: &str, dense: &Graph, val: &Dataset) -> slimnet::core::Result<()> {
    let sparsities = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98];
    let s = sensitivity(dense, &Selector::All, &Magnitude, &sparsities, &mut |g| {
        train::accuracy(g, val)
    })?;
    println!("{s}");
    let path = format!("target/slimnet/sensitivity_{model}.svg");
    std::fs::create_dir_all("target/slimnet")?;
    s.save_svg(&path)?;
    println!("wrote {path}");
    Ok(())
}

/// Structured pruning: remove half the channels, fine-tune the smaller dense model.
fn run_structured(args: &Args, model: &str) -> slimnet::core::Result<String> {
    let tr = data::mnist(data::Split::Train)?;
    let te = data::mnist(data::Split::Test)?;
    let dense = baseline(args, model, &tr, &te)?;
    let input = [1, 1, 28, 28];
    let acc_before = train::accuracy(&dense, &te)?;
    let bytes_before = io::to_bytes(&dense)?.len();
    let ratio = 0.5;
    let mut small = dense.clone();
    let report = StructuredPruner::new(L1Norm).prune(&mut small, &input, ratio)?;
    println!("{report}");
    println!(
        "{model}: accuracy right after removing channels {:.4}",
        train::accuracy(&small, &te)?
    );
    let ((_, _, wd), _, finetune, lr) = recipe(model);
    // 0 fine-tuning epochs measures the pruned model as it is (sizes and speed do not change)
    let epochs = args.finetune_epochs.unwrap_or(finetune);
    let lr = args.lr.unwrap_or(lr);
    if epochs > 0 {
        train::Trainer::new(cfg(epochs, args.seed + 1))
            .optimizer(
                optim::Sgd::new(lr)
                    .with_momentum(0.9)
                    .with_nesterov(true)
                    .with_weight_decay(wd),
            )
            .schedule(optim::CosineLr::new(lr, epochs))
            .callback(Printer)
            .fit(&mut small, &tr, Some(&te))?;
    }
    let acc_after = train::accuracy(&small, &te)?;
    let bytes_after = io::to_bytes(&small)?.len();
    slimnet::kernels::threads::set_num_threads(1);
    let t_dense = latency(&dense, &te)?;
    let t_small = latency(&small, &te)?;
    println!(
        "{:<10} {:>9} {:>10} {:>12} {:>12} {:>14}",
        "model", "accuracy", "params", "MACs", "file bytes", "latency (us)"
    );
    for (name, g, acc, bytes, t) in [
        ("dense", &dense, acc_before, bytes_before, t_dense),
        ("pruned", &small, acc_after, bytes_after, t_small),
    ] {
        let c = g.cost(&input)?;
        println!(
            "{name:<10} {acc:>9.4} {:>10} {:>12} {bytes:>12} {:>14.2}",
            c.params,
            c.macs,
            t * 1e6
        );
    }
    Ok(format!(
        "structured {model} mnist acc_before={acc_before:.4} acc_after={acc_after:.4} \
         channels_removed={ratio:.2} macs_before={} macs_after={} file_bytes_before={bytes_before} \
         file_bytes_after={bytes_after} speedup={:.2}",
        report.macs.0,
        report.macs.1,
        t_dense / t_small
    ))
}

/// Median over 7 rounds of the mean seconds per batch-1 forward pass over 200 test images.
fn latency(model: &Graph, te: &Dataset) -> slimnet::core::Result<f64> {
    let xs: Vec<_> = (0..200).map(|i| te.batch(&[i]).0).collect();
    for x in &xs {
        model.forward(x)?;
    }
    let mut rounds = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for x in &xs {
            std::hint::black_box(model.forward(x)?);
        }
        rounds.push(t.elapsed().as_secs_f64() / xs.len() as f64);
    }
    rounds.sort_by(f64::total_cmp);
    Ok(rounds[3])
}

struct Printer;

impl train::Callback for Printer {
    fn on_epoch_end(
        &mut self,
        model: &mut Graph,
        s: &train::EpochStats,
    ) -> slimnet::core::Result<()> {
        let r = sparsity_report(model, &Selector::All);
        println!(
            "  epoch {:>2}  train_loss {:.4}  test_acc {:.4}  sparsity {:.4}  lr {:.5}  {:.0}s",
            s.epoch + 1,
            s.train_loss,
            s.test_accuracy.unwrap_or(f32::NAN),
            r.sparsity(),
            s.lr,
            s.seconds
        );
        Ok(())
    }
}
