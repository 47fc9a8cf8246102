//! The thesis's methods composed on one model, as a user would: low-rank convolutions, pruned
//! weights fine-tuned on their masks, sparse kernels, whole-network int8, one file saved and
//! loaded. The steps are a `slimnet::pipeline::Pipeline`, the same that
//! `recipes/lenet5_deep_compression.toml` describes and `slimnet compress` runs, so the
//! example and the recipe give the same numbers for the same seed.
//!
//! ```text
//! cargo run --release --example compose_lenet -- [--sparsity F] [--mac-ratio F]
//!     [--prune-epochs N] [--finetune-epochs N] [--seed N] [--threads N]
//! ```
//! Prints each step's accuracy, size and batch-1 latency; the last line reads
//! `compose lenet5 base_acc=<f> acc=<f> size_ratio=<f> speedup=<f> f32_layers=<n>`.

use slimnet::core::Layer;
use slimnet::pipeline::{
    Baseline, Data, Decompose, Event, FineTune, Method, Pipeline, Prune, Quantize, Rank, Schedule,
    Scope, ToSparse,
};
use slimnet::quant::ptq::f32_layers;
use slimnet_testkit::{Args, Res};

const USAGE: &str = "usage: compose_lenet [--sparsity F] [--mac-ratio F] [--prune-epochs N] \
                     [--finetune-epochs N] [--seed N] [--threads N]";

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

    let data = Data::mnist()?;
    let dense = Baseline::new("lenet5", "mnist", seed).load_or_train(&data, true)?;
    // fine-tuning: SGD with momentum, weight decay 5e-4, cosine from 0.01
    let tune = |epochs| FineTune::sgd(epochs, 0.01).with_weight_decay(5e-4);
    let pipeline = Pipeline::new("lenet5")
        .threads(threads)
        // 1. low-rank: conv2 as a Tucker-2 chain (1x1, 5x5 core, 1x1) at a fraction of its MACs
        .step(
            Decompose::new(Method::Tucker2, Rank::MacRatio(mac_ratio))
                .with_layers(&["conv2"])
                .with_fine_tune(tune(1)),
        )
        // 2. prune every weight, the factors of conv2 included, to `sparsity` (one global
        //    magnitude threshold, raised gradually while fine-tuning on the masks)
        .step(
            Prune::new(sparsity)
                .with_scope(Scope::Global)
                .with_schedule(Schedule::Agp {
                    epochs: prune_epochs,
                    updates: 20,
                })
                .with_fine_tune(tune(finetune_epochs)),
        )
        // 3. the pruned layers on the sparse kernels
        .step(ToSparse::default())
        // 4. the whole network in int8: the low-rank chain in dense int8, the pruned layers
        //    in sparse int8, u8 codes handed from layer to layer
        .step(Quantize::new(2048));
    let out = pipeline.run_with(dense, &data, &mut print_event)?;

    // 5. one file with the compact tensors, loaded back
    let path = std::path::Path::new("target/slimnet/compose_lenet5.safetensors");
    slimnet::save(&out.model, path)?;
    let loaded = slimnet::load(path)?;
    let x = data.validation.load(&[0, 1, 2, 3])?.0;
    assert_eq!(
        loaded.forward(&x)?,
        out.model.forward(&x)?,
        "file round trip"
    );
    println!("{}", out.report);
    for (name, layer) in loaded.freeze(&data.input)?.layers() {
        println!("  {name:<16} {}", layer.kind());
    }

    let r = &out.report;
    println!(
        "compose lenet5 base_acc={:.4} acc={:.4} size_ratio={:.1} speedup={:.2} f32_layers={}",
        r.base.accuracy,
        r.last().accuracy,
        r.size_ratio(),
        r.speedup(),
        f32_layers(&loaded).len()
    );
    Ok(())
}

/// Prints the pipeline's step starts, training epochs and finished steps.
fn print_event(e: Event<'_>) {
    if let Some(line) = e.line() {
        println!("{line}");
    }
}
