//! Whole networks as deployed, the slimnet half of `benches/peers/networks.py`.
//!
//! For each network (LeNet-5, the small ResNet, and the compressed LeNet-5 that
//! `cargo run --release --example compose_lenet` saves, when it has been run) this writes the
//! ONNX files ONNX Runtime will run (`<name>-<variant>.onnx` for the variants `f32`, `int8` and
//! `int8_w7` (7-bit weights, the range ONNX Runtime's quantizer keeps its weights to with
//! `reduce_range`, for CPUs without VNNI), with a symbolic batch) and the slimnet latencies of
//! the frozen plans,
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

/// One network to time: its variants (`f32`, `int8`, `int8_w7`), as far as it has them.
struct Network {
    name: &'static str,
    variants: Vec<(&'static str, Graph)>,
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
        for (variant, model) in &net.variants {
            let file = out.join(format!("{}-{variant}.onnx", net.name));
            slimnet::export_onnx(model, &shape(1), &file)?;
            for &b in &batches {
                let plan = model.freeze(&shape(b))?;
                for &t in &threads {
                    let ms = time_ms(&plan, &shape(b), t)?;
                    println!("  {variant:<7} batch {b:>3} threads {t}: {ms:.4} ms");
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
    Ok(Network {
        name: "lenet5",
        variants: quantized(model, 1)?,
        origin,
    })
}

fn resnet() -> Res<Network> {
    let mut model = models::resnet_small(&mut tensor::rng(0))?;
    for x in random_batches(4, 2) {
        model.forward_train(&x)?; // batch-norm statistics off their defaults
    }
    Ok(Network {
        name: "resnet_small",
        variants: quantized(model, 3)?,
        origin: "initialized from seed 0, calibrated on random images".into(),
    })
}

fn compressed_lenet5() -> Res<Network> {
    let file = Path::new("target/slimnet/compose_lenet5.safetensors");
    let (variants, origin) = if file.exists() {
        let origin = format!("{}", file.display());
        (vec![("int8", slimnet::load(file)?)], origin)
    } else {
        let why = "not timed: run `cargo run --release --example compose_lenet` first";
        (Vec::new(), why.to_string())
    };
    Ok(Network {
        name: "compose_lenet5",
        variants,
        origin,
    })
}

/// `model` and its int8 models with 8-bit and 7-bit weights, calibrated on random images drawn
/// from `seed`.
fn quantized(model: Graph, seed: u64) -> Res<Vec<(&'static str, Graph)>> {
    let calib = random_batches(8, seed);
    let int8 = quantize_static(&model, calib.clone(), &PtqConfig::default())?;
    let seven = PtqConfig::default().with_weight_bits(7);
    let int8_w7 = quantize_static(&model, calib, &seven)?;
    Ok(vec![("f32", model), ("int8", int8), ("int8_w7", int8_w7)])
}
