//! Quantizes MNIST models with slimnet-quant and measures what it buys: static int8
//! quantization after training (PTQ), quantization-aware training (QAT), and Deep Compression
//! weight sharing.
//!
//! ```text
//! cargo run --release --example quantize_lenet -- [--method ptq|qat|share|all]
//!     [--model lenet5|resnet|lenet300] [--observer minmax|percentile|mse|entropy]
//!     [--calib N] [--qat-epochs F] [--threads N]
//! ```
//! Without options it runs int8 PTQ and QAT of LeNet-5 and of the small ResNet-style model, and
//! Deep Compression weight sharing (5 bits + Huffman) of a pruned LeNet-300-100. The float
//! models are trained once with `train_lenet`'s recipes and cached; the compressed ones are
//! saved as `target/slimnet/<model>_<method>.safetensors` and measured as loaded back. Each run
//! prints a table of its steps and ends with one line
//! `quant <method> <model> mnist acc_before=<f> acc_after=<f> file_bytes_before=<n>
//! file_bytes_after=<n> speedup=<f>`, where speedup is the f32 over the quantized model's latency
//! at batch 1 on one thread (median of 9 rounds over 100 test images).

use std::sync::Arc;

use slimnet::core::data::{self, Dataset, Split};
use slimnet::core::rewrite::Selector;
use slimnet::core::{train, Graph};
use slimnet::pipeline::{Baseline, Data, FineTune};
use slimnet::prune::criterion::Magnitude;
use slimnet::prune::schedule::{Agp, PruneCallback, Unit};
use slimnet::prune::{sparsity_report, Pruner, Scope};
use slimnet::quant::observer::{ObserverKind, RangeMethod};
use slimnet::quant::ptq::{f32_layers, float_for_int8, quantize_static, PtqConfig};
use slimnet::quant::{qat, share};
use slimnet_testkit::{Args, Res, Stages, Usage};

const USAGE: &str = "usage: quantize_lenet [--method ptq|qat|share|all] \
                     [--model lenet5|resnet|lenet300] [--observer minmax|percentile|mse|entropy] \
                     [--calib N] [--qat-epochs F] [--threads N]";
const INPUT: [usize; 4] = [1, 1, 28, 28];

fn main() {
    slimnet_testkit::run(quantize);
}

fn quantize() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let method = args.get("method", "all".to_string())?;
    let model = args.get_opt::<String>("model")?;
    let observer = match args.get("observer", "percentile".to_string())?.as_str() {
        "minmax" => ObserverKind::MinMax,
        "percentile" => ObserverKind::Histogram(RangeMethod::Percentile(99.99)),
        "mse" => ObserverKind::Histogram(RangeMethod::Mse),
        "entropy" => ObserverKind::Histogram(RangeMethod::Entropy),
        other => return Err(Usage(format!("unknown observer {other}\n{USAGE}")).into()),
    };
    let calib = args.get("calib", 2000usize)?;
    let qat_epochs = args.get("qat-epochs", 1.0f32)?;
    let threads = args.get("threads", 1usize)?;
    args.finish()?;
    let runs = match (method.as_str(), model.as_deref()) {
        ("all", None) => vec![
            ("ptq", "lenet5"),
            ("ptq", "resnet"),
            ("qat", "lenet5"),
            ("qat", "resnet"),
            ("share", "lenet300"),
        ],
        ("all", Some(m)) => vec![("ptq", m), ("qat", m)],
        (method, Some(m)) => vec![(method, m)],
        ("share", None) => vec![("share", "lenet300")],
        (method, None) => vec![(method, "lenet5"), (method, "resnet")],
    };
    slimnet::kernels::threads::set_num_threads(threads);
    let (train, test) = (data::mnist(Split::Train)?, data::mnist(Split::Test)?);
    let (train, test) = (Arc::new(train), Arc::new(test));
    let mnist = Data::shared("mnist", train.clone(), test.clone())?;

    for (method, name) in runs {
        let float = Baseline::new(name, "mnist", 1).load_or_train(&mnist, true)?;
        let mut stages = Stages::new((*test).clone(), &INPUT).timed_on_test_images(100, 9);
        stages.measure("f32", &float)?;
        let compact = match method {
            "ptq" | "qat" => {
                // both fold BatchNorm into the convolutions first: the fair f32 comparison
                stages.measure("f32, BatchNorm folded", &float_for_int8(&float, &INPUT)?)?;
                if method == "ptq" {
                    let cfg = PtqConfig::default()
                        .with_observer(observer)
                        .with_progress(true);
                    quantize_static(&float, train.take(calib).batches(100), &cfg)?
                } else {
                    // a fraction of an epoch, at least one batch
                    let n = ((train.len() as f32 * qat_epochs) as usize).clamp(64, train.len());
                    qat_int8(&float, &train.take(n), &test)?
                }
            }
            "share" => deep_compression(&float, &train, &mut stages)?,
            other => return Err(Usage(format!("unknown method {other}\n{USAGE}")).into()),
        };
        println!(
            "{method} {name}: layers left in f32: {:?}",
            f32_layers(&compact)
        );
        let path = format!("target/slimnet/{name}_{method}.safetensors");
        slimnet::save(&compact, &path)?;
        stages.measure(
            &format!("{method}, saved and loaded"),
            &slimnet::load(&path)?,
        )?;
        println!("{stages}");
        let (f32, q) = stages.first_last().expect("steps measured");
        if method != "share" {
            let folded = stages.steps[1].latency_us;
            println!(
                "speedup over the BatchNorm-folded f32 model: {:.2}",
                folded / q.latency_us
            );
        }
        println!(
            "quant {method} {name} mnist acc_before={:.4} acc_after={:.4} file_bytes_before={} \
             file_bytes_after={} speedup={:.2}",
            f32.accuracy,
            q.accuracy,
            f32.bytes,
            q.bytes,
            f32.latency_us / q.latency_us
        );
    }
    Ok(())
}

/// QAT: fine-tunes the fake-quantized model for one pass over `train` at a small learning
/// rate, observers frozen for the last third, then converts it to int8.
fn qat_int8(float: &Graph, train: &Dataset, test: &Dataset) -> Res<Graph> {
    let mut g = qat::prepare(float, &[64, 1, 28, 28], &qat::QatConfig::default())?;
    let steps = train.len().div_ceil(64);
    FineTune::sgd(1, 1e-3)
        .with_seed(7)
        .trainer(1, true)
        .callback(qat::FreezeAfter(steps * 2 / 3))
        .fit(&mut g, train, None)?;
    let acc = train::accuracy(&g, test)?;
    println!(
        "qat: {} training images, fake-quantized accuracy {acc:.4}",
        train.len()
    );
    Ok(qat::convert(&g, &INPUT)?)
}

/// Fraction of the weights Deep Compression prunes (LeNet-300-100: 13.3x fewer non-zeros; Han
/// et al. 2015 report 12x).
const SHARE_SPARSITY: f32 = 0.925;

/// Deep Compression: global magnitude pruning on Zhu & Gupta's schedule (10 epochs) and 10
/// epochs of fine-tuning, then 5-bit weight sharing (k-means) with one epoch of centroid
/// fine-tuning, stored with Huffman-coded indices and gaps.
fn deep_compression(float: &Graph, train: &Dataset, stages: &mut Stages) -> Res<Graph> {
    let mut g = float.clone();
    let steps = 10 * train.len().div_ceil(64);
    let agp = Agp::new(0.0, SHARE_SPARSITY, 0, steps, steps / 20);
    let pruning = PruneCallback::new(Pruner::new(Magnitude).scope(Scope::Global), agp, Unit::Step);
    let recipe = FineTune::sgd(20, 0.05)
        .with_nesterov(true)
        .with_weight_decay(1e-4)
        .with_seed(10);
    recipe
        .trainer(recipe.epochs, true)
        .callback(pruning)
        .fit(&mut g, train, None)?;
    let sparsity = sparsity_report(&g, &Selector::All).sparsity();
    stages.measure(
        &format!("pruned ({:.1}%), fine-tuned", 100.0 * sparsity),
        &g,
    )?;
    let cfg = share::ShareConfig::new(5)?.with_huffman(true);
    println!(
        "{}",
        share::share_weights(&mut g, &INPUT, Selector::All, &cfg)?
    );
    stages.measure("+ 5-bit sharing (k-means)", &g)?;
    FineTune::sgd(1, 0.001)
        .with_seed(20)
        .trainer(1, true)
        .fit(&mut g, train, None)?;
    Ok(g)
}
