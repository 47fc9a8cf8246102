//! `slimnet eval`, `export`, `sensitivity` and `train`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use slimnet::core::rewrite::Selector;
use slimnet::core::timing::TimingConfig;
use slimnet::core::train;
use slimnet::pipeline::{measure, Baseline, FineTune, Metrics};
use slimnet::prune::criterion::Magnitude;
use slimnet::prune::sensitivity::sensitivity as sweep;

use crate::common::{self, interactive};
use crate::error::{exit, CliError};

/// Model file formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// ONNX (opset 19; int8 layers as QLinearConv / QLinearMatMul).
    Onnx,
    /// slimnet's safetensors file (every layer kind, compact tensors).
    Safetensors,
}

/// What `eval --json` prints.
#[derive(Serialize)]
struct Eval<'a> {
    model: String,
    data: &'a str,
    examples: usize,
    #[serde(flatten)]
    metrics: Metrics,
}

pub fn eval(
    path: &Path,
    data: &str,
    validation: Option<usize>,
    images: &common::ImageArgs,
    json: bool,
) -> Result<(), CliError> {
    let model = common::load_model(path)?;
    let data = common::load_data(data, Some(1), validation, &images.options())?;
    common::check_input(&model, &data.input, path)?;
    let bar = common::spinner(json, format!("evaluating {}", path.display()));
    let metrics = measure(&model, &data, &TimingConfig::default())?;
    bar.finish_and_clear();
    let out = Eval {
        model: path.display().to_string(),
        data: &data.name,
        examples: data.validation.len(),
        metrics,
    };
    if json {
        return common::print_json(&out);
    }
    let m = &out.metrics;
    println!(
        "eval {} {} examples={} accuracy={:.4} params={} macs={} file_bytes={} latency_us={:.1}",
        out.model, out.data, out.examples, m.accuracy, m.params, m.macs, m.bytes, m.latency_us
    );
    Ok(())
}

pub fn export(
    path: &Path,
    out: &Path,
    format: Option<Format>,
    input: &[usize],
    json: bool,
) -> Result<(), CliError> {
    let format = match format {
        Some(f) => f,
        None => match out.extension().and_then(|e| e.to_str()) {
            Some("onnx") => Format::Onnx,
            Some("safetensors") => Format::Safetensors,
            _ => {
                return Err(CliError::usage(format!(
                    "cannot tell the format of {} from its extension; name it .onnx or \
                     .safetensors, or pass --format",
                    out.display()
                )))
            }
        },
    };
    let model = common::load_model(path)?;
    common::check_input(&model, input, path)?;
    common::create_parent(out)?;
    match format {
        Format::Onnx => slimnet::export_onnx(&model, input, out)?,
        Format::Safetensors => slimnet::save(&model, out)?,
    }
    let bytes = std::fs::metadata(out)?.len();
    if json {
        #[derive(Serialize)]
        struct Out {
            model: String,
            out: String,
            format: Format,
            bytes: u64,
        }
        return common::print_json(&Out {
            model: path.display().to_string(),
            out: out.display().to_string(),
            format,
            bytes,
        });
    }
    println!(
        "export {} -> {} format={format:?} bytes={bytes}",
        path.display(),
        out.display()
    );
    Ok(())
}

pub fn sensitivity(
    path: &Path,
    data: &str,
    sparsities: &[f32],
    validation: usize,
    svg: Option<&Path>,
    images: &common::ImageArgs,
    json: bool,
) -> Result<(), CliError> {
    if let Some(s) = sparsities
        .iter()
        .find(|s| !(s.is_finite() && (0.0..1.0).contains(*s)))
    {
        return Err(CliError::usage(format!(
            "--sparsities: {s} is outside [0, 1)"
        )));
    }
    let model = common::load_model(path)?;
    let images = images.options();
    let data = common::load_data(data, Some(1), Some(validation), &images)?;
    common::check_input(&model, &data.input, path)?;
    let bar = common::spinner(json, "pruning each layer alone".into());
    let selector = Selector::Kinds(vec!["Conv2d".into(), "Linear".into()]);
    let s = sweep(&model, &selector, &Magnitude, sparsities, &mut |g| {
        train::accuracy(g, &data.validation)
    })
    .map_err(|e| CliError::from(slimnet::Error::from(e)))?;
    bar.finish_and_clear();
    if let Some(p) = svg {
        common::write_file(p, &s.to_svg())?;
    }
    if json {
        #[derive(Serialize)]
        struct Curve<'a> {
            layer: &'a str,
            points: &'a [(f32, f32)],
        }
        #[derive(Serialize)]
        struct Out<'a> {
            model: String,
            baseline: f32,
            curves: Vec<Curve<'a>>,
        }
        return common::print_json(&Out {
            model: path.display().to_string(),
            baseline: s.baseline,
            curves: s
                .curves
                .iter()
                .map(|c| Curve {
                    layer: &c.layer,
                    points: &c.points,
                })
                .collect(),
        });
    }
    println!("{s}");
    Ok(())
}

/// The options of `train`.
pub struct TrainArgs {
    pub model: String,
    pub data: String,
    pub epochs: Option<usize>,
    pub lr: Option<f32>,
    pub seed: u64,
    pub out: Option<PathBuf>,
    pub train_examples: Option<usize>,
    pub images: common::ImageArgs,
    pub json: bool,
}

pub fn train(a: TrainArgs) -> Result<(), CliError> {
    if slimnet::core::models::by_name(&a.model, &mut slimnet::core::tensor::rng(0)).is_err() {
        return Err(CliError::usage(format!(
            "unknown zoo model `{}` (known: lenet5, lenet300, vgg, resnet)",
            a.model
        )));
    }
    if a.epochs == Some(0) {
        return Err(CliError::usage("--epochs must be at least 1"));
    }
    let images = a.images.options();
    let data = common::load_data(&a.data, a.train_examples, None, &images)?;
    let mut recipe = FineTune::zoo(&a.model);
    if let Some(e) = a.epochs {
        recipe = recipe.with_epochs(e);
    }
    if let Some(lr) = a.lr {
        recipe = recipe.with_lr(lr);
    }
    let baseline = Baseline::new(&a.model, &data.name, a.seed).with_recipe(recipe);
    let json = a.json;
    let model = baseline.train_with(&data, interactive(json), &mut |s| {
        if !json {
            println!("{s}");
        }
    })?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("slimnet-out").join(format!("{}-{}.safetensors", a.model, data.name))
    });
    common::create_parent(&out)?;
    slimnet::save(&model, &out)
        .map_err(|e| CliError::new(exit::IO, format!("writing {}: {e}", out.display())))?;
    let acc = train::accuracy(&model, &data.validation)?;
    if a.json {
        #[derive(Serialize)]
        struct Out {
            model: String,
            data: String,
            accuracy: f32,
            epochs: usize,
            out: String,
        }
        return common::print_json(&Out {
            model: a.model,
            data: data.name,
            accuracy: acc,
            epochs: baseline.recipe.epochs,
            out: out.display().to_string(),
        });
    }
    println!(
        "train {} {} accuracy={acc:.4} epochs={} out={}",
        a.model,
        data.name,
        baseline.recipe.epochs,
        out.display()
    );
    Ok(())
}
