//! The thesis's first verification: a Chinese-character CNN compressed by low-rank
//! convolutions, pruned fully-connected layers and whole-network int8, measured in slimnet and
//! against ONNX Runtime running the dense model.
//!
//! ```text
//! cargo run --release --example hanzi_compress -- [--classes N] [--mac-ratio F]
//!     [--sparsity F] [--prune-epochs N] [--distill ALPHA] [--weight-bits N] [--seed N]
//!     [--threads N] [--rounds N]
//! ```
//! The data are the first `--classes` level-1 GB2312 characters (default 200; 3755 for all)
//! rendered from Debian's CJK fonts (`slimnet::core::data::hanzi`); every accuracy is on the
//! test fonts, which training never sees. `--distill ALPHA` (0 for none) fine-tunes on the
//! dense network's outputs at temperature 4 as well as on the labels, its term weighted
//! ALPHA. `--weight-bits` (default 7) sets the int8 layers' weight grid: 7-bit weights are what
//! CPUs with AVX2 and no VNNI multiply fastest, exactly, and cost nothing measurable in accuracy
//! here; 8 gives the full grid. Prints each step's accuracy, size and batch-1
//! latency, the speed check's choice per convolution, and last
//! `hanzi classes=<n> base_acc=<f> acc=<f> speedup=<f> speedup_vs_ort=<f> size_ratio=<f>`.
//! Leaves the dense and compressed ONNX exports, the compressed model (`compressed.safetensors`,
//! for `slimnet::load`) and the model before int8 (`float.safetensors`) in
//! `target/slimnet/hanzi_compress`.

use std::path::Path;

use slimnet::core::data::hanzi::HanziConfig;
use slimnet::core::data::Dataset;
use slimnet::pipeline::{
    Baseline, Data, Decompose, Distill, Event, FineTune, FoldBn, Method, Pipeline, Prune, Qat,
    Quantize, Rank, Schedule, ToSparse,
};
use slimnet_testkit::onnx_side::{measure, SideTable};
use slimnet_testkit::{Args, Res};

const USAGE: &str = "usage: hanzi_compress [--classes N] [--mac-ratio F] [--sparsity F] \
                     [--prune-epochs N] [--distill ALPHA] [--weight-bits N] [--seed N] \
                     [--threads N] [--rounds N]";

fn main() {
    slimnet_testkit::run(hanzi_compress);
}

fn hanzi_compress() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let classes = args.get("classes", 200usize)?;
    let mac_ratio = args.get("mac-ratio", 0.15f64)?;
    let sparsity = args.get("sparsity", 0.9f32)?;
    let prune_epochs = args.get("prune-epochs", 4usize)?;
    let distill = args.get("distill", 0.0f32)?;
    let weight_bits = args.get("weight-bits", 7u32)?;
    let seed = args.get("seed", 1u64)?;
    let threads = args.get("threads", 2usize)?;
    let rounds = args.get("rounds", 5usize)?;
    args.finish()?;

    // the rendered characters and the dense baseline (trained once, then cached; a line per
    // epoch, since at 3,755 classes an epoch takes minutes)
    let data = Data::hanzi(&HanziConfig {
        classes,
        ..HanziConfig::quick()
    })?;
    let model = format!("hanzi-{classes}");
    let dense =
        Baseline::new(&model, &data.name, seed).load_or_train_with(&data, true, &mut |stats| {
            print_event(Event::Epoch { index: 0, stats })
        })?;

    // every fine-tuning: SGD from 0.005, and when asked, also learning the dense network's
    // softened outputs (knowledge distillation, the dense network run on each batch)
    let tune = |epochs| {
        let t = FineTune::sgd(epochs, 0.005).with_weight_decay(5e-4);
        if distill > 0.0 {
            t.with_distill(Distill::new(4.0, distill))
        } else {
            t
        }
    };
    let shrink = Pipeline::new("hanzi")
        .threads(threads)
        // 1. low-rank convolutions (Tucker-2 at a fraction of the multiply-adds), each kept
        //    only where it is measured at least 5% faster than the dense convolution; the
        //    batch norms stay for the fine-tuning (folded first, the same factors ended a
        //    point lower on the test fonts at 3,755 classes)
        .step(
            Decompose::new(Method::Tucker2, Rank::MacRatio(mac_ratio))
                .with_layers(&["conv2", "conv3", "conv4"])
                .with_speed_check(1.05)
                .with_fine_tune(tune(1)),
        )
        // 2. the fully-connected layers pruned gradually while fine-tuning on their masks
        .step(
            Prune::new(sparsity)
                .with_layers(&["fc1", "fc2"])
                .with_schedule(Schedule::Agp {
                    epochs: prune_epochs,
                    updates: 20,
                })
                .with_fine_tune(tune(prune_epochs)),
        )
        // 3. training done: batch norms into the convolutions, pruned layers onto the
        //    sparse kernels
        .step(FoldBn::default())
        .step(ToSparse::default());
    let small = shrink.run_with(dense.clone(), &data, &mut print_event)?;
    println!("{}", small.report);

    let dir = Path::new("target/slimnet/hanzi_compress");
    std::fs::create_dir_all(dir)?;
    slimnet::save(&small.model, dir.join("float.safetensors"))?;

    // 4. the whole network in int8 (7-bit weights by default): post-training first,
    //    quantization-aware training when that loses more than half a point
    let quantize = Quantize::new(1024).with_weight_bits(weight_bits);
    let ptq = Pipeline::new("hanzi-int8").step(quantize);
    let mut int8 = ptq.run_with(small.model.clone(), &data, &mut print_event)?;
    if int8.report.base.accuracy - int8.report.last().accuracy > 0.005 {
        let mut qat = Qat::default();
        qat.fine_tune = tune(1);
        qat.weight_bits = weight_bits;
        let qat = Pipeline::new("hanzi-qat").threads(threads).step(qat);
        int8 = qat.run_with(small.model, &data, &mut print_event)?;
    }
    println!("{}", int8.report);

    // 5. the dense model in ONNX Runtime and the compressed one in slimnet, on the same images
    let (dense_onnx, small_onnx) = (dir.join("dense.onnx"), dir.join("compressed.onnx"));
    // the compressed model as slimnet stores it (sparse int8 weights), to load and time again
    slimnet::save(&int8.model, dir.join("compressed.safetensors"))?;
    slimnet::export_onnx(&dense, &data.input, &dense_onnx)?;
    slimnet::export_onnx(&int8.model, &data.input, &small_onnx)?;
    let timed = Dataset::first(&data.validation, 100)?;
    let pair = [
        ("dense", &dense, dense_onnx.as_path()),
        ("compressed", &int8.model, small_onnx.as_path()),
    ];
    let m = measure(&pair, &data.validation, &timed, rounds)?;
    println!("{}", SideTable(&m));

    let (base, last) = (&small.report.base, int8.report.last());
    println!(
        "hanzi classes={classes} base_acc={:.4} acc={:.4} speedup={:.2} speedup_vs_ort={:.2} size_ratio={:.1}",
        base.accuracy,
        last.accuracy,
        m[0].slimnet_us / m[1].slimnet_us,
        m[0].ort_us / m[1].slimnet_us,
        base.bytes as f64 / last.bytes as f64
    );
    Ok(())
}

/// Prints the pipeline's step starts, training epochs and finished steps.
fn print_event(e: Event<'_>) {
    if let Some(line) = e.line() {
        println!("{line}");
    }
}
