//! Whole networks as deployed, the slimnet half of `benches/peers/networks.py`.
//!
//! For each network (LeNet-5, the small ResNet, and the compressed LeNet-5 that
//! `cargo run --release --example compose_lenet` saves, when it has been run) this writes the
//! ONNX files ONNX Runtime will run (`<name>-f32.onnx` and, for an int8 model,
//! `<name>-int8.onnx`, with a symbolic batch) and the slimnet latencies of the frozen plans,
//! one line `<name> <variant> <batch> <threads> <median ms>` each, into `--out`
//! (`target/peers/networks` by default).
//!
//! ```text
//! cargo bench --bench networks -- [--out DIR] [--batches 1,16] [--threads 1,2]
//! ```
//!
//! LeNet-5 is the trained MNIST baseline when the testkit has it cached (the examples train it),
//! else a freshly initialized one: the timings do not depend on the weights. The ResNet is
//! initialized from a seed, its batch-norm statistics run on random images, and it is
//! calibrated for int8 on random images too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use slimnet::core::timing::{latency, TimingConfig};
use slimnet::core::{models, tensor, Graph, Layer};
use slimnet::pipeline::Baseline;
use slimnet::quant::ptq::{quantize_static, PtqConfig};
use slimnet_testkit::{Args, Res};

const USAGE: &str = "usage: cargo bench --bench networks -- [--out DIR] [--batches 1,16] \
                     [--threads 1,2]";
const MNIST: [usize; 3] = [1, 28, 28];

/// One network to time: its f32 model and, when it has one, the int8 model of it.
struct Network {
    name: &'static str,
    f32: Option<Graph>,
    int8: Option<Graph>,
    /// What the weights are (printed, so a reader knows what was timed).
    origin: String,
}

fn main() {
    slimnet_testkit::run(networks);
}

fn networks() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    args.switch("bench")?; // cargo bench passes it to every bench program
    let out = PathBuf::from(args.get("out", "target/peers/networks".to_string())?);
    let batches = numbers(&args.get("batches", "1,16".to_string())?)?;
    let threads = numbers(&args.get("threads", "1,2".to_string())?)?;
    args.finish()?;
    std::fs::create_dir_all(&out)?;

    let mut lines = String::new();
    for net in [lenet5()?, resnet()?, compressed_lenet5()?] {
        println!("{}: {}", net.name, net.origin);
        for (variant, model) in [("f32", &net.f32), ("int8", &net.int8)] {
            let Some(model) = model else { continue };
            let file = out.join(format!("{}-{variant}.onnx", net.name));
            slimnet::export_onnx(model, &shape(1), &file)?;
            for &b in &batches {
                let plan = model.freeze(&shape(b))?;
                for &t in &threads {
                    let ms = time_ms(&plan, &shape(b), t)?;
                    println!("  {variant:<5} batch {b:>3} threads {t}: {ms:.4} ms");
                    writeln!(lines, "{} {variant} {b} {t} {ms}", net.name)?;
                }
            }
        }
    }
    let report = out.join("slimnet.txt");
    std::fs::write(&report, lines)?;
    println!("wrote {}", report.display());
    Ok(())
}

/// `1,16` as numbers.
fn numbers(list: &str) -> Res<Vec<usize>> {
    let parse = |v: &str| v.parse().map_err(|e| format!("`{v}` in `{list}`: {e}"));
    Ok(list.split(',').map(parse).collect::<Result<_, _>>()?)
}

fn shape(batch: usize) -> Vec<usize> {
    std::iter::once(batch).chain(MNIST).collect()
}

/// The median time of one run of `model` on a random batch, with `threads` threads.
fn time_ms(model: &dyn Layer, shape: &[usize], threads: usize) -> Res<f64> {
    let cfg = TimingConfig::default().with_min_time(Duration::from_millis(500));
    let l = slimnet::kernels::threads::with(threads, || latency(model, shape, &cfg))?;
    Ok(l.median_us / 1e3)
}

/// Random images in `[0, 1)` for calibration.
fn random_batches(n: usize, seed: u64) -> Vec<tensor::Tensor> {
    let mut rng = tensor::rng(seed);
    (0..n)
        .map(|_| tensor::uniform(&shape(16), 0.0, 1.0, &mut rng))
        .collect()
}

fn lenet5() -> Res<Network> {
    let cached = Baseline::new("lenet5", "mnist", 1).path();
    let (model, origin) = if cached.exists() {
        let origin = format!("trained baseline {}", cached.display());
        (slimnet::load(&cached)?, origin)
    } else {
        let origin = "initialized from seed 0 (no cached baseline)".to_string();
        (models::lenet5(&mut tensor::rng(0))?, origin)
    };
    let int8 = quantize_static(&model, random_batches(8, 1), &PtqConfig::default())?;
    Ok(Network {
        name: "lenet5",
        f32: Some(model),
        int8: Some(int8),
        origin,
    })
}

fn resnet() -> Res<Network> {
    let mut model = models::resnet_small(&mut tensor::rng(0))?;
    for x in random_batches(4, 2) {
        model.forward_train(&x)?; // batch-norm statistics off their defaults
    }
    let int8 = quantize_static(&model, random_batches(8, 3), &PtqConfig::default())?;
    Ok(Network {
        name: "resnet_small",
        f32: Some(model),
        int8: Some(int8),
        origin: "initialized from seed 0, calibrated on random images".into(),
    })
}

fn compressed_lenet5() -> Res<Network> {
    let file = Path::new("target/slimnet/compose_lenet5.safetensors");
    let (int8, origin) = if file.exists() {
        (Some(slimnet::load(file)?), format!("{}", file.display()))
    } else {
        let why = "not timed: run `cargo run --release --example compose_lenet` first";
        (None, why.to_string())
    };
    Ok(Network {
        name: "compose_lenet5",
        f32: None,
        int8,
        origin,
    })
}
