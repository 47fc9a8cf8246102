//! Han et al. style pruning of LeNet-300-100 and LeNet-5 on MNIST: magnitude pruning with a
//! global threshold raised gradually (AGP, by step) while fine-tuning, then conversion to sparse
//! deploy layers that run on the sparse kernels and store their compact arrays.
//!
//! With `--model resnet` it prunes structurally instead: half of the channels of every
//! convolution of the small ResNet are removed (L1 filter norm, channels tied across residual
//! adds), then the smaller dense model is fine-tuned.
//!
//! ```text
//! cargo run --release --example prune_lenet -- [--model lenet300|lenet5|both|resnet] [--sparsity F]
//!     [--prune-epochs N] [--finetune-epochs N] [--baseline-epochs N] [--lr F] [--threads N]
//!     [--seed N] [--sensitivity]
//! ```
//! The dense baselines are trained once with `train_lenet`'s recipes (`--baseline-epochs`
//! changes the epochs) and cached. `--sensitivity` first sweeps each layer's sparsity against
//! test accuracy (analysis only: the pruning does not use it), printing a table and writing
//! `target/slimnet/sensitivity_<model>.svg`. The sparse model is saved as
//! `target/slimnet/<model>_sparse.safetensors` and measured as loaded back. Each step's
//! accuracy, size and batch-1 latency (one thread, 200 test images) is printed as a table; the
//! last line per model reads
//! `prune <model> mnist acc_before=<f> acc_after=<f> sparsity=<f> file_bytes_before=<n>
//! file_bytes_after=<n> speedup=<f>` (sparsity: the fraction of zero conv/linear weights), or for
//! `resnet` `structured resnet mnist acc_before=<f> acc_after=<f> channels_removed=<f>
//! macs_before=<n> macs_after=<n> file_bytes_before=<n> file_bytes_after=<n> speedup=<f>`.

use std::sync::Arc;

use slimnet::core::data::{self, Split};
use slimnet::core::rewrite::Selector;
use slimnet::core::Graph;
use slimnet::pipeline::{Baseline, Data, FineTune};
use slimnet::prune::criterion::{L1Norm, Magnitude};
use slimnet::prune::schedule::{Agp, PruneCallback, Unit};
use slimnet::prune::structured::StructuredPruner;
use slimnet::prune::{convert, sparsity_report, Pruner, Scope};
use slimnet_testkit::{sweep, Args, PrintEpochs, Res, Stages, Usage};

const USAGE: &str = "usage: prune_lenet [--model lenet300|lenet5|both|resnet] [--sparsity F] \
                     [--prune-epochs N] [--finetune-epochs N] [--baseline-epochs N] [--lr F] \
                     [--threads N] [--seed N] [--sensitivity]";
const INPUT: [usize; 4] = [1, 1, 28, 28];
/// The fraction of channels `--model resnet` removes.
const CHANNELS_REMOVED: f32 = 0.5;

fn main() {
    slimnet_testkit::run(prune);
}

fn prune() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let which = args.get("model", "both".to_string())?;
    let sparsity = args.get("sparsity", 0.925f32)?;
    let prune_epochs = args.get_opt::<usize>("prune-epochs")?;
    let finetune_epochs = args.get_opt::<usize>("finetune-epochs")?;
    let baseline_epochs = args.get_opt::<usize>("baseline-epochs")?;
    let lr = args.get_opt::<f32>("lr")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.get("threads", cores)?;
    let seed = args.get("seed", 1u64)?;
    let sensitivity = args.switch("sensitivity")?;
    args.finish()?;
    let models = match which.as_str() {
        "both" => vec!["lenet300", "lenet5"],
        "lenet300" | "lenet5" | "resnet" => vec![which.as_str()],
        other => return Err(Usage(format!("unknown model {other}\n{USAGE}")).into()),
    };
    if prune_epochs == Some(0) {
        let e = "--prune-epochs: pruning runs during its epochs; give at least 1";
        return Err(Usage(e.into()).into());
    }
    slimnet::kernels::threads::set_num_threads(threads);
    let (train, test) = (data::mnist(Split::Train)?, data::mnist(Split::Test)?);
    let (train, test) = (Arc::new(train), Arc::new(test));
    let mnist = Data::shared("mnist", train.clone(), test.clone())?;

    let mut lines = Vec::new();
    for name in models {
        let recipe = FineTune::zoo(name);
        let epochs = baseline_epochs.unwrap_or(recipe.epochs);
        let dense = Baseline::new(name, "mnist", seed)
            .with_recipe(recipe.clone().with_epochs(epochs))
            .load_or_train(&mnist, true)?;
        let mut stages = Stages::new((*test).clone(), &INPUT).timed_on_test_images(200, 7);
        stages.measure("dense", &dense)?;
        // per model: epochs of pruning, then of fine-tuning, at this peak learning rate
        let (prune, finetune, rate) = match name {
            "lenet300" => (10, 10, 0.05),
            "resnet" => (0, 4, 0.01),
            _ => (4, 4, 0.01),
        };
        // structured pruning removes the channels at once: no pruning epochs
        let prune = if name == "resnet" {
            0
        } else {
            prune_epochs.unwrap_or(prune)
        };
        let finetune = finetune_epochs.unwrap_or(finetune);
        let fine_tune = recipe
            .with_epochs(prune + finetune)
            .with_lr(lr.unwrap_or(rate))
            .with_seed(seed + 1);
        let mut model = dense.clone();

        // what each method adds to the last line, between the accuracies and the sizes
        let (method, figures) = if name == "resnet" {
            // remove channels, then fine-tune the smaller dense model
            let pruner = StructuredPruner::new(L1Norm);
            let removed = pruner.prune(&mut model, &INPUT, CHANNELS_REMOVED)?;
            println!("{removed}");
            stages.measure("channels removed", &model)?;
            if finetune > 0 {
                fine_tune
                    .trainer(fine_tune.epochs, true)
                    .callback(PrintEpochs::new())
                    .fit(&mut model, &train, Some(&test))?;
                stages.measure("fine-tuned", &model)?;
            }
            let (before, after) = removed.macs;
            let removed = format!("channels_removed={CHANNELS_REMOVED:.2}");
            (
                "structured",
                format!("{removed} macs_before={before} macs_after={after}"),
            )
        } else {
            if sensitivity {
                let svg = format!("target/slimnet/sensitivity_{name}.svg");
                sweep::prune_sensitivity(&dense, &test, svg.as_ref())?;
            }
            // one global magnitude threshold, raised from 0 to `sparsity` in 20 steps over the
            // pruning epochs (AGP) while training on the masks, then fine-tuning on them
            let steps = prune * train.len().div_ceil(64);
            let agp = Agp::new(0.0, sparsity, 0, steps, steps / 20);
            let pruner = Pruner::new(Magnitude).scope(Scope::Global);
            let zeros = |g: &Graph| sparsity_report(g, &Selector::All).sparsity();
            fine_tune
                .trainer(fine_tune.epochs, true)
                .callback(PruneCallback::new(pruner, agp, Unit::Step))
                .callback(PrintEpochs::new().with_column("sparsity", zeros))
                .fit(&mut model, &train, Some(&test))?;
            let report = sparsity_report(&model, &Selector::All);
            println!("{report}");
            stages.measure("pruned (masks)", &model)?;
            // the masked layers become sparse layers: compact arrays, sparse kernels
            println!("{}", convert::to_sparse(&mut model, &INPUT, Selector::All)?);
            let path = format!("target/slimnet/{name}_sparse.safetensors");
            slimnet::save(&model, &path)?;
            stages.measure("sparse, saved and loaded", &slimnet::load(&path)?)?;
            ("prune", format!("sparsity={:.4}", report.sparsity()))
        };
        println!("{stages}");
        let (d, p) = stages.first_last().expect("steps measured");
        let speedup = d.latency_us / p.latency_us;
        lines.push(format!(
            "{method} {name} mnist acc_before={:.4} acc_after={:.4} {figures} \
             file_bytes_before={} file_bytes_after={} speedup={speedup:.2}",
            d.accuracy, p.accuracy, d.bytes, p.bytes
        ));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
