//! Low-rank decomposition of LeNet-5 on MNIST: channel SVD for conv1, Tucker-2 for conv2, SVD
//! for fc1 (each rewrite kept only when it is measurably faster), a short fine-tune, and a
//! before/after comparison.
//!
//! ```text
//! cargo run --release --example decompose_lenet -- [--model PATH] [--epochs N] [--threads N]
//! ```
//! Starts from the trained LeNet-5 baseline (trained once with `train_lenet`'s recipe and
//! cached, `slimnet::pipeline::Baseline`), or from the model file `--model PATH`. Prints the per-layer report, a table, and
//! last: `decompose lenet5 mnist acc_before=<f> acc_after=<f> macs_ratio=<before/after>
//! params_ratio=<before/after> speedup=<f>` (speedup: whole-model latency at batch 1 on one
//! thread, dense over decomposed, the fastest of 20 rounds over 20 test images).

use std::sync::Arc;

use slimnet::core::data::{self, Split};
use slimnet::core::rewrite::Selector;
use slimnet::core::summary::Summary;
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{decompose, ConvMethod, DecomposeReport, LowRank, SpeedCheck};
use slimnet::pipeline::{Baseline, Data, FineTune};
use slimnet_testkit::{Args, PrintEpochs, Res, Stages};

const USAGE: &str = "usage: decompose_lenet [--model PATH] [--epochs N] [--threads N]";
const INPUT: [usize; 4] = [1, 1, 28, 28];

fn main() {
    slimnet_testkit::run(decompose_lenet);
}

fn decompose_lenet() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let file = args.get_opt::<String>("model")?;
    let epochs = args.get("epochs", 3usize)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.get("threads", cores)?;
    args.finish()?;
    slimnet::kernels::threads::set_num_threads(threads);

    let train_set = Arc::new(data::mnist(Split::Train)?);
    let test = Arc::new(data::mnist(Split::Test)?);
    let dense = match file {
        Some(path) => slimnet::load(path)?,
        None => {
            let mnist = Data::shared("mnist", train_set.clone(), test.clone())?;
            Baseline::new("lenet5", "mnist", 1).load_or_train(&mnist, true)?
        }
    };
    let mut stages = Stages::new((*test).clone(), &INPUT)
        .timed_on_test_images(20, 20)
        .fastest();
    stages.measure("dense", &dense)?;

    // each layer gets the method and budget that suit its shape; the speed check keeps a
    // rewrite only when it is measurably faster on the layer's real input
    let check = SpeedCheck::default().with_margin(1.0);
    let plan = [
        ("conv1", ConvMethod::Channel, RankPolicy::MacRatio(0.5)),
        ("conv2", ConvMethod::Tucker2, RankPolicy::MacRatio(0.45)),
        ("fc1", ConvMethod::Channel, RankPolicy::ParamRatio(0.18)),
    ];
    let mut model = dense.clone();
    let mut report = DecomposeReport::default();
    for (path, method, rank) in plan {
        let rule = LowRank::new(method, rank).with_speed_check(check.clone());
        let layer = Selector::Paths(vec![path.into()]);
        report
            .layers
            .extend(decompose(&mut model, &INPUT, &layer, &rule)?.layers);
    }
    println!("{report}");
    stages.measure("decomposed", &model)?;

    // fine-tune the factors: SGD with Nesterov momentum, cosine from 0.005
    let fine_tune = FineTune::sgd(epochs, 0.005)
        .with_nesterov(true)
        .with_weight_decay(5e-4)
        .with_seed(2);
    fine_tune
        .trainer(epochs, true)
        .callback(PrintEpochs::new())
        .fit(&mut model, &train_set, Some(&test))?;
    stages.measure("fine-tuned", &model)?;
    println!("{stages}");

    // the targets are stated in convolution MACs and fully-connected parameters
    let (sd, sm) = (Summary::of(&dense, &INPUT)?, Summary::of(&model, &INPUT)?);
    let (conv, fc) = (
        (part(&sd, "conv").0, part(&sm, "conv").0),
        (part(&sd, "fc").1, part(&sm, "fc").1),
    );
    println!(
        "conv MACs {} -> {} ({:.2}x fewer)",
        conv.0,
        conv.1,
        conv.0 as f64 / conv.1 as f64
    );
    println!(
        "FC parameters {} -> {} ({:.2}x fewer)",
        fc.0,
        fc.1,
        fc.0 as f64 / fc.1 as f64
    );
    let (d, f) = stages.first_last().expect("steps measured");
    println!(
        "decompose lenet5 mnist acc_before={:.4} acc_after={:.4} macs_ratio={:.3} \
         params_ratio={:.3} speedup={:.3}",
        d.accuracy,
        f.accuracy,
        sd.macs() as f64 / sm.macs() as f64,
        sd.params() as f64 / sm.params() as f64,
        d.latency_us / f.latency_us
    );
    Ok(())
}

/// The MACs and parameters of the layers whose name starts with `prefix`.
fn part(s: &Summary, prefix: &str) -> (usize, usize) {
    let rows = s.rows.iter().filter(|r| r.name.starts_with(prefix));
    rows.fold((0, 0), |(m, p), r| (m + r.cost.macs, p + r.cost.params))
}
