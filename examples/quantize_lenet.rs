//! Quantizes MNIST models with slimnet-quant and measures what it buys.
//!
//! ```text
//! cargo run --release --example quantize_lenet -- [--method ptq|qat|share|all]
//!     [--model lenet5|resnet|lenet300] [--observer minmax|percentile|mse|entropy]
//!     [--calib N] [--qat-epochs F] [--threads N]
//! ```
//! Without options it runs int8 PTQ and QAT of LeNet-5 and of the small ResNet-style model, and
//! Deep Compression weight sharing (5 bits + Huffman) of a pruned LeNet-300-100. Float models come
//! from `target/slimnet/<model>.safetensors` (trained here when missing). Each run prints a short
//! table and ends with one line
//! `quant <method> <model> mnist acc_before=<f> acc_after=<f> file_bytes_before=<n>
//! file_bytes_after=<n> speedup=<f>`, where speedup is the f32 over the quantized model's latency
//! at batch 1 on one thread (both measured in the same run, interleaved).

use std::time::Instant;

use slimnet::core::data::{self, Dataset};
use slimnet::core::rewrite::Selector;
use slimnet::core::{io, models, optim, tensor, train, Graph, Layer, Tensor};
use slimnet::prune::criterion::Magnitude;
use slimnet::prune::schedule::{Agp, PruneCallback, Unit};
use slimnet::prune::{sparsity_report, Pruner, Scope};
use slimnet::quant::{self, observer, ptq, qat, share};

struct Args {
    method: String,
    model: Option<String>,
    observer: String,
    calib: usize,
    qat_epochs: f32,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        method: "all".into(),
        model: None,
        observer: "percentile".into(),
        calib: 2000,
        qat_epochs: 1.0,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--method" => a.method = val()?,
            "--model" => a.model = Some(val()?),
            "--observer" => a.observer = val()?,
            "--calib" => a.calib = val()?.parse().map_err(|e| format!("--calib: {e}"))?,
            "--qat-epochs" => {
                a.qat_epochs = val()?.parse().map_err(|e| format!("--qat-epochs: {e}"))?
            }
            "--threads" => a.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: quantize_lenet [--method ptq|qat|share|all] \
                            [--model lenet5|resnet|lenet300] [--observer minmax|percentile|mse|entropy] \
                            [--calib N] [--qat-epochs F] [--threads N]"
                    .into())
            }
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run(args: &Args) -> Res<()> {
    let tr = data::mnist(data::Split::Train)?;
    let te = data::mnist(data::Split::Test)?;
    let runs: Vec<(&str, &str)> = match (args.method.as_str(), args.model.as_deref()) {
        ("all", None) => vec![
            ("ptq", "lenet5"),
            ("ptq", "resnet"),
            ("qat", "lenet5"),
            ("qat", "resnet"),
            ("share", "lenet300"),
        ],
        ("all", Some(m)) => vec![("ptq", m), ("qat", m)],
        (meth, Some(m)) => vec![(meth, m)],
        ("share", None) => vec![("share", "lenet300")],
        (meth, None) => vec![(meth, "lenet5"), (meth, "resnet")],
    };
    for (method, model) in runs {
        match method {
            "ptq" | "qat" => int8_run(args, method, model, &tr, &te)?,
            "share" => share_run(args, model, &tr, &te)?,
            other => return Err(format!("unknown method {other}").into()),
        }
    }
    Ok(())
}

fn registry() -> io::Registry {
    let mut r = io::Registry::core();
    quant::register(&mut r);
    r
}

/// The trained float model, trained here when its file is missing.
fn float_model(name: &str, tr: &Dataset, te: &Dataset, threads: usize) -> Res<Graph> {
    let path = format!("target/slimnet/{name}.safetensors");
    let why = match io::load(&path) {
        Ok(g) => return Ok(g),
        Err(e) => e,
    };
    let (epochs, lr, wd) = match name {
        "resnet" => (3, 0.05, 5e-4),
        "lenet300" => (8, 0.05, 1e-4),
        _ => (4, 0.01, 5e-4),
    };
    println!("cannot load {path} ({why}): training {name} for {epochs} epochs");
    slimnet::kernels::threads::set_num_threads(threads);
    let mut g = models::by_name(name, &mut tensor::rng(1))?;
    train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(epochs)
            .with_seed(1),
    )
    .optimizer(
        optim::Sgd::new(lr)
            .with_momentum(0.9)
            .with_nesterov(true)
            .with_weight_decay(wd),
    )
    .schedule(optim::CosineLr::new(lr, epochs))
    .fit(&mut g, tr, Some(te))?;
    io::save(&g, &path)?;
    Ok(g)
}

fn observer_kind(name: &str) -> Res<observer::ObserverKind> {
    use observer::{ObserverKind, RangeMethod};
    Ok(match name {
        "minmax" => ObserverKind::MinMax,
        "percentile" => ObserverKind::Histogram(RangeMethod::Percentile(99.99)),
        "mse" => ObserverKind::Histogram(RangeMethod::Mse),
        "entropy" => ObserverKind::Histogram(RangeMethod::Entropy),
        other => return Err(format!("unknown observer {other}").into()),
    })
}

/// Calibration batches: the first `n` training images in batches of 100.
fn calib_batches(tr: &Dataset, n: usize) -> Vec<Tensor> {
    let idx: Vec<usize> = (0..n.min(tr.len())).collect();
    idx.chunks(100).map(|c| tr.batch(c).0).collect()
}

/// Median per-image latency at batch 1 of two models, measured in interleaved rounds.
fn latencies(a: &dyn Layer, b: &dyn Layer, te: &Dataset) -> Res<(f64, f64)> {
    let xs: Vec<Tensor> = (0..100).map(|i| te.batch(&[i]).0).collect();
    for x in &xs {
        a.forward(x)?;
        b.forward(x)?;
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        for (m, t) in [(a, &mut ta), (b, &mut tb)] {
            let s = Instant::now();
            for x in &xs {
                std::hint::black_box(m.forward(x)?);
            }
            t.push(s.elapsed().as_secs_f64() / xs.len() as f64);
        }
    }
    ta.sort_by(f64::total_cmp);
    tb.sort_by(f64::total_cmp);
    Ok((ta[4], tb[4]))
}

fn kinds(g: &Graph) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in g.nodes() {
        *counts.entry(n.op.name()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn int8_run(args: &Args, method: &str, name: &str, tr: &Dataset, te: &Dataset) -> Res<()> {
    let model = float_model(name, tr, te, args.threads)?;
    let acc_before = train::accuracy(&model, te)?;
    let bytes_before = io::to_bytes(&model)?.len();
    let start = Instant::now();
    let q = if method == "ptq" {
        let cfg = ptq::PtqConfig::default()
            .with_observer(observer_kind(&args.observer)?)
            .with_progress(true);
        ptq::quantize_static(&model, calib_batches(tr, args.calib), &cfg)?
    } else {
        qat_train(args, &model, tr, te)?
    };
    let secs = start.elapsed().as_secs_f64();
    let acc_after = train::accuracy(&q, te)?;
    let path = format!("target/slimnet/{name}_{method}_int8.safetensors");
    io::save(&q, &path)?;
    let bytes_after = std::fs::metadata(&path)?.len() as usize;
    // the file holds the real int8 model: it reloads to the same outputs
    let back = io::load_with(&path, &registry())?;
    let x = te.batch(&(0..10).collect::<Vec<_>>()).0;
    assert_eq!(back.forward(&x)?, q.forward(&x)?, "reloaded model differs");
    slimnet::kernels::threads::set_num_threads(1);
    let (t_f32, t_q) = latencies(&model, &q, te)?;
    let folded = ptq::float_for_int8(&model, &[1, 1, 28, 28])?;
    let (t_fold, t_q2) = latencies(&folded, &q, te)?;
    println!("{method} {name}: {} s; graph: {}", fmt(secs), kinds(&q));
    println!(
        "{:<28} {:>10} {:>12} {:>14}",
        "model", "accuracy", "file bytes", "latency (us)"
    );
    println!(
        "{:<28} {:>10.4} {:>12} {:>14.1}",
        "f32",
        acc_before,
        bytes_before,
        t_f32 * 1e6
    );
    println!(
        "{:<28} {:>10} {:>12} {:>14.1}",
        "f32, BatchNorm folded",
        "",
        "",
        t_fold * 1e6
    );
    println!(
        "{:<28} {:>10.4} {:>12} {:>14.1}",
        format!("int8 ({method})"),
        acc_after,
        bytes_after,
        t_q * 1e6
    );
    println!(
        "speedup over the BatchNorm-folded f32 model: {:.2}",
        t_fold / t_q2
    );
    println!(
        "quant {method} {name} mnist acc_before={acc_before:.4} acc_after={acc_after:.4} \
         file_bytes_before={bytes_before} file_bytes_after={bytes_after} speedup={:.2}",
        t_f32 / t_q
    );
    Ok(())
}

fn fmt(s: f64) -> String {
    format!("{s:.1}")
}

/// QAT: fine-tune with fake quantization for `qat_epochs` epochs at a small learning rate,
/// observers frozen for the last third, then convert.
fn qat_train(args: &Args, model: &Graph, tr: &Dataset, te: &Dataset) -> Res<Graph> {
    let mut g = qat::prepare(model, &[64, 1, 28, 28], &qat::QatConfig::default())?;
    let n = ((tr.len() as f32 * args.qat_epochs) as usize).clamp(64, tr.len());
    let sub = Dataset::new(
        tr.batch(&(0..n).collect::<Vec<_>>()).0,
        tr.labels[..n].to_vec(),
        tr.classes,
    )?;
    let bs = 64;
    let steps = n.div_ceil(bs);
    slimnet::kernels::threads::set_num_threads(args.threads);
    let lr = 1e-3;
    train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(1)
            .with_batch_size(bs)
            .with_seed(7),
    )
    .optimizer(optim::Sgd::new(lr).with_momentum(0.9))
    .schedule(optim::CosineLr::new(lr, 1))
    .callback(qat::FreezeAfter(steps * 2 / 3))
    .fit(&mut g, &sub, None)?;
    println!(
        "qat: {n} training images, fake-quantized accuracy {:.4}",
        train::accuracy(&g, te)?
    );
    Ok(qat::convert(&g, &[1, 1, 28, 28])?)
}

/// Fine-tunes `g` on the training set for `epochs` epochs with SGD + momentum at `lr`.
fn fine_tune(g: &mut Graph, tr: &Dataset, epochs: usize, lr: f32, seed: u64) -> Res<()> {
    train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(epochs)
            .with_seed(seed),
    )
    .optimizer(optim::Sgd::new(lr).with_momentum(0.9))
    .schedule(optim::CosineLr::new(lr, epochs))
    .fit(g, tr, None)?;
    Ok(())
}

/// Fraction of LeNet-300-100's weights Deep Compression prunes (13.3x fewer non-zeros; Han et
/// al. 2015 report 12x).
const SHARE_SPARSITY: f32 = 0.925;

/// Deep Compression of LeNet-300-100: global magnitude pruning on Zhu & Gupta's schedule
/// (slimnet-prune, 10 epochs) and 10 epochs of fine-tuning, then 5-bit weight sharing with
/// centroid fine-tuning, stored with Huffman-coded indices and gaps.
fn share_run(args: &Args, name: &str, tr: &Dataset, te: &Dataset) -> Res<()> {
    let model = float_model(name, tr, te, args.threads)?;
    let acc_before = train::accuracy(&model, te)?;
    let bytes_before = io::to_bytes(&model)?.len();
    slimnet::kernels::threads::set_num_threads(args.threads);
    let (prune_epochs, epochs, lr) = (10, 20, 0.05);
    let end = prune_epochs * tr.len().div_ceil(64);
    let mut cb = PruneCallback::new(
        Pruner::new(Magnitude).scope(Scope::Global),
        Agp::new(0.0, SHARE_SPARSITY, 0, end, end / 20),
        Unit::Step,
    );
    let mut g = model.clone();
    println!("pruning to {SHARE_SPARSITY} over {prune_epochs} epochs, {epochs} epochs in all");
    train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(epochs)
            .with_batch_size(64)
            .with_seed(10),
    )
    .optimizer(
        optim::Sgd::new(lr)
            .with_momentum(0.9)
            .with_nesterov(true)
            .with_weight_decay(1e-4),
    )
    .schedule(optim::CosineLr::new(lr, epochs))
    .callback(&mut cb)
    .fit(&mut g, tr, None)?;
    let sparsity = sparsity_report(&g, &Selector::All).sparsity();
    let acc_pruned = train::accuracy(&g, te)?;
    let cfg = share::ShareConfig::new(5)?.with_huffman(true);
    let report = share::share_weights(&mut g, &[1, 1, 28, 28], Selector::All, &cfg)?;
    let acc_shared = train::accuracy(&g, te)?;
    fine_tune(&mut g, tr, 1, 0.001, 20)?;
    let acc_after = train::accuracy(&g, te)?;
    let path = format!("target/slimnet/{name}_shared.safetensors");
    io::save(&g, &path)?;
    let bytes_after = std::fs::metadata(&path)?.len() as usize;
    let back = io::load_with(&path, &registry())?;
    let x = te.batch(&(0..10).collect::<Vec<_>>()).0;
    assert_eq!(back.forward(&x)?, g.forward(&x)?, "reloaded model differs");
    slimnet::kernels::threads::set_num_threads(1);
    let (t_f32, t_s) = latencies(&model, &back, te)?;
    println!("{report}");
    println!("{:<36} {:>10} {:>12}", "model", "accuracy", "file bytes");
    println!(
        "{:<36} {:>10.4} {:>12}",
        "dense f32", acc_before, bytes_before
    );
    println!(
        "{:<36} {:>10.4} {:>12}",
        format!("pruned ({:.1}%), fine-tuned", sparsity * 100.0),
        acc_pruned,
        ""
    );
    println!(
        "{:<36} {:>10.4} {:>12}",
        "+ 5-bit sharing (k-means)", acc_shared, ""
    );
    println!(
        "{:<36} {:>10.4} {:>12}",
        "+ centroid fine-tuning, Huffman", acc_after, bytes_after
    );
    println!(
        "compression {:.1}x",
        bytes_before as f64 / bytes_after as f64
    );
    println!(
        "quant share {name} mnist acc_before={acc_before:.4} acc_after={acc_after:.4} \
         file_bytes_before={bytes_before} file_bytes_after={bytes_after} speedup={:.2}",
        t_f32 / t_s
    );
    Ok(())
}
