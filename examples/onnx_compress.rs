//! A CNN that arrives as an ONNX file, compressed and handed back as one: imported, its wide
//! convolutions made low-rank, every weight pruned with fine-tuning, the whole network in
//! int8 calibrated on training images, exported, and the original and the compressed model
//! compared in slimnet and in ONNX Runtime (accuracy, file size, batch-1 latency).
//!
//! ```text
//! cargo run --release --example onnx_compress -- [--model PATH.onnx] [--shape N,C,H,W]
//!     [--sparsity F] [--mac-ratio F] [--epochs N] [--seed N] [--threads N] [--rounds N]
//! ```
//! Without `--model`: the trained LeNet-5 baseline exported to ONNX, standing in for a user's
//! file, measured on MNIST; another classifier is measured on random inputs labelled by itself
//! (accuracy = agreement). Last line: `onnx_compress <model> base_acc=<f> acc=<f> size_ratio=<f>
//! slimnet_speedup=<f> ort_speedup=<f>` (slimnet accuracies, ONNX file sizes, batch 1).

use std::path::{Path, PathBuf};
use std::time::Instant;

use slimnet::core::data::Dataset;
use slimnet::onnx::ImportOptions;
use slimnet::pipeline::{
    Baseline, Data, Decompose, Event, FineTune, Method, Pipeline, Prune, Quantize, Rank, Schedule,
    Scope, ToSparse,
};
use slimnet_testkit::onnx_side::{measure, self_labelled, wide_convs, SideTable};
use slimnet_testkit::{Args, Res};

const USAGE: &str = "usage: onnx_compress [--model PATH.onnx] [--shape N,C,H,W] [--sparsity F] \
                     [--mac-ratio F] [--epochs N] [--seed N] [--threads N] [--rounds N]";

fn main() {
    slimnet_testkit::run(onnx_compress);
}

fn onnx_compress() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let model: Option<PathBuf> = args.get_opt("model")?;
    let shape: Option<String> = args.get_opt("shape")?;
    let sparsity = args.get("sparsity", 0.9f32)?;
    let mac_ratio = args.get("mac-ratio", 0.3f64)?;
    let epochs = args.get("epochs", 3usize)?;
    let seed = args.get("seed", 1u64)?;
    let threads = args.get("threads", 2usize)?;
    let rounds = args.get("rounds", 20usize)?;
    args.finish()?;
    let dir = Path::new("target/slimnet/onnx_compress");
    std::fs::create_dir_all(dir)?;

    // 1. the ONNX file: the user's, or the LeNet-5 baseline exported as one
    let mnist = Data::mnist()?;
    let original = match model {
        Some(path) => path,
        None => {
            let dense = Baseline::new("lenet5", "mnist", seed).load_or_train(&mnist, true)?;
            slimnet::export_onnx(&dense, &mnist.input, dir.join("lenet5.onnx"))?;
            dir.join("lenet5.onnx")
        }
    };
    let name = original
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();

    // 2. import it (int8 ops as slimnet's int8 layers; the declared input shape unless given)
    let mut opts = ImportOptions::new().with_int8(slimnet::int8_import());
    if let Some(folder) = original.parent() {
        opts = opts.with_base_dir(folder);
    }
    if let Some(s) = shape {
        opts = opts.with_input_shape(
            &s.split(',')
                .map(str::parse)
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    let start = Instant::now();
    let imported = slimnet::onnx::from_bytes_with(&std::fs::read(&original)?, &opts)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "imported {} in {ms:.1} ms: {:?} -> {:?}",
        original.display(),
        imported.input_shape,
        imported.output_shape
    );

    // the data: MNIST for an MNIST classifier, else inputs labelled by the original model
    let data = if imported.input_shape[1..] == mnist.input[1..] && imported.output_shape == [1, 10]
    {
        mnist
    } else {
        let train = self_labelled(&imported.graph, &imported.input_shape, 4096, seed)?;
        let validation = self_labelled(&imported.graph, &imported.input_shape, 512, seed + 1)?;
        Data::new("self-labelled", train, validation)?
    };

    // 3. compress: Tucker-2 on convolutions with at least 4 input channels and a spatial
    //    kernel, global magnitude pruning raised gradually while fine-tuning, sparse kernels,
    //    int8 calibrated on 2048 training images
    let wide = wide_convs(&imported.graph, 4);
    let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
    let tune = |epochs| FineTune::sgd(epochs, 0.01).with_weight_decay(5e-4);
    let mut pipeline = Pipeline::new(&name).threads(threads);
    if !wide.is_empty() {
        pipeline = pipeline.step(
            Decompose::new(Method::Tucker2, Rank::MacRatio(mac_ratio))
                .with_layers(&wide)
                .with_fine_tune(tune(1)),
        );
    }
    let pipeline = pipeline
        .step(
            Prune::new(sparsity)
                .with_scope(Scope::Global)
                .with_schedule(Schedule::Agp {
                    epochs,
                    updates: 20,
                })
                .with_fine_tune(tune(epochs)),
        )
        .step(ToSparse::default())
        .step(Quantize::new(2048));
    let out = pipeline.run_with(imported.graph.clone(), &data, &mut |e: Event<'_>| {
        if let Event::StepFinished(r) = e {
            println!("{}", r.details);
        }
    })?;
    println!("{}", out.report);

    // 4. export the compressed model
    let compressed = dir.join(format!("{name}.compressed.onnx"));
    slimnet::export_onnx(&out.model, &data.input, &compressed)?;

    // 5. both models in both runtimes
    let timed = Dataset::first(&data.validation, 200)?;
    let pair = [
        ("original", &imported.graph, original.as_path()),
        ("compressed", &out.model, compressed.as_path()),
    ];
    let m = measure(&pair, &data.validation, &timed, rounds)?;
    println!("{}", SideTable(&m));
    println!(
        "onnx_compress {name} base_acc={:.4} acc={:.4} size_ratio={:.2} slimnet_speedup={:.2} ort_speedup={:.2}",
        m[0].slimnet_acc,
        m[1].slimnet_acc,
        m[0].onnx_bytes as f64 / m[1].onnx_bytes as f64,
        m[0].slimnet_us / m[1].slimnet_us,
        m[0].ort_us / m[1].ort_us
    );
    Ok(())
}
