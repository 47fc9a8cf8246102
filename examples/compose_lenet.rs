//! The thesis's methods composed on one model, as a user would: low-rank convolutions, pruned
//! weights fine-tuned on their masks, whole-network int8, one file saved and loaded.
//!
//! ```text
//! cargo run --release --example compose_lenet -- [--sparsity F] [--mac-ratio F]
//!     [--prune-epochs N] [--finetune-epochs N] [--seed N] [--threads N]
//! ```
//! Prints each step's accuracy, size and batch-1 latency; the last line reads
//! `compose lenet5 base_acc=<f> acc=<f> size_ratio=<f> speedup=<f> f32_layers=<n>`.

use slimnet::core::data::{self, Split};
use slimnet::core::rewrite::Selector;
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{decompose, ConvMethod, LowRank};
use slimnet::prune::criterion::Magnitude;
use slimnet::prune::schedule::{Agp, PruneCallback, Unit};
use slimnet::prune::{Pruner, Scope};
use slimnet::quant::ptq::{f32_layers, quantize_static, PtqConfig};
use slimnet_testkit::baseline::{self, Recipe};
use slimnet_testkit::{Args, PrintEpochs, Res, Stages};

const USAGE: &str = "usage: compose_lenet [--sparsity F] [--mac-ratio F] [--prune-epochs N] \
                     [--finetune-epochs N] [--seed N] [--threads N]";
const INPUT: [usize; 4] = [1, 1, 28, 28];

fn main() {
    slimnet_testkit::run(compose);
}

fn compose() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let sparsity = args.get("sparsity", 0.96f32)?;
    let mac_ratio = args.get("mac-ratio", 0.3f64)?;
    let prune_epochs = args.get("prune-epochs", 4usize)?;
    let finetune_epochs = args.get("finetune-epochs", 4usize)?;
    let seed = args.get("seed", 1u64)?;
    let threads = args.get("threads", 2usize)?;
    args.finish()?;
    slimnet::kernels::threads::set_num_threads(threads);

    let train = data::mnist(Split::Train)?;
    let test = data::mnist(Split::Test)?;
    let dense = baseline::mnist("lenet5", &Recipe::of("lenet5"), seed)?;
    let mut stages = Stages::new(test.clone(), &INPUT);
    stages.measure("f32 LeNet-5", &dense)?;

    // 1. low-rank: conv2 as a Tucker-2 chain (1x1, 5x5 core, 1x1) at a fraction of its MACs
    let mut model = dense.clone();
    let rule = LowRank::new(ConvMethod::Tucker2, RankPolicy::MacRatio(mac_ratio));
    let lowrank = decompose(
        &mut model,
        &INPUT,
        &Selector::Paths(vec!["conv2".into()]),
        &rule,
    )?;
    println!("{lowrank}");
    // fine-tuning: SGD with momentum, weight decay 5e-4, cosine from 0.01
    let fine_tune = |epochs| Recipe::sgd(epochs, 0.01).with_weight_decay(5e-4).trainer(0);
    fine_tune(1)
        .callback(PrintEpochs::new())
        .fit(&mut model, &train, Some(&test))?;
    stages.measure("low-rank conv2", &model)?;

    // 2. prune every weight, the factors of conv2 included, to `sparsity` (one global
    //    magnitude threshold, raised gradually while fine-tuning on the masks)
    let steps = prune_epochs * train.len().div_ceil(64);
    let pruning = PruneCallback::new(
        Pruner::new(Magnitude).scope(Scope::Global),
        Agp::new(0.0, sparsity, 0, steps, steps / 20),
        Unit::Step,
    );
    fine_tune(prune_epochs + finetune_epochs)
        .callback(pruning)
        .callback(PrintEpochs::new())
        .fit(&mut model, &train, Some(&test))?;
    stages.measure("pruned", &model)?;

    // 3. the whole network in int8: the low-rank chain in dense int8, the pruned layers in
    //    sparse int8, u8 codes handed from layer to layer
    let calibration = train.take(2048);
    let int8 = quantize_static(&model, calibration.batches(64), &PtqConfig::default())?;
    stages.measure("int8", &int8)?;

    // 4. one file with the compact tensors, loaded back
    let path = std::path::Path::new("target/slimnet/compose_lenet5.safetensors");
    slimnet::save(&int8, path)?;
    let loaded = slimnet::load(path)?;
    stages.measure("saved and loaded", &loaded)?;
    println!("{stages}");
    for (name, layer) in loaded.freeze(&INPUT)?.layers() {
        println!("  {name:<16} {}", layer.kind());
    }

    let (base, last) = stages.first_last().expect("steps measured");
    println!(
        "compose lenet5 base_acc={:.4} acc={:.4} size_ratio={:.1} speedup={:.2} f32_layers={}",
        base.accuracy,
        last.accuracy,
        base.bytes as f64 / last.bytes as f64,
        base.latency_us / last.latency_us,
        f32_layers(&loaded).len()
    );
    Ok(())
}
