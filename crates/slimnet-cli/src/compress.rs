//! `slimnet compress`: a recipe run on a model, the result saved, a report written.

use std::path::{Path, PathBuf};

use serde::Serialize;
use slimnet::pipeline::{Event, Recipe, Report};

use crate::common::{self, interactive};
use crate::error::{exit, CliError};

/// The options of `compress`.
pub struct Args {
    pub recipe: PathBuf,
    pub model: Option<PathBuf>,
    pub data: Option<String>,
    pub out: Option<PathBuf>,
    pub train_examples: Option<usize>,
    pub validation_examples: Option<usize>,
    pub images: common::ImageArgs,
    pub json: bool,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Output<'a> {
    recipe: &'a Recipe,
    report: &'a Report,
    model_file: String,
    report_file: String,
    summary: String,
}

pub fn run(a: Args) -> Result<(), CliError> {
    if !a.recipe.is_file() {
        return Err(CliError::new(
            exit::IO,
            format!("recipe {}: no such file", a.recipe.display()),
        ));
    }
    let recipe = Recipe::load(&a.recipe)?;
    let pipeline = recipe.pipeline().progress(interactive(a.json));
    // settings and step order first: nothing is trained or loaded for a recipe that cannot run
    pipeline.check_steps()?;
    let data_name = a
        .data
        .clone()
        .unwrap_or_else(|| recipe.data.dataset.clone());
    let data = common::load_data(
        &data_name,
        a.train_examples.or(recipe.data.train_examples),
        a.validation_examples.or(recipe.data.validation_examples),
        &a.images.over(recipe.data.image_options()),
    )?;
    let model = match (&a.model, &recipe.model.path) {
        (Some(path), _) => common::load_model(path)?,
        (None, Some(path)) => {
            let base = a.recipe.parent().unwrap_or(Path::new("."));
            common::load_model(&base.join(path))?
        }
        (None, None) => {
            let mut baseline = recipe.baseline().expect("no model path: a zoo baseline");
            baseline.data = data.name.clone();
            if !baseline.is_cached() {
                eprintln!(
                    "training the {} baseline on {} (cached to {})",
                    baseline.model,
                    data.name,
                    baseline.path().display()
                );
            }
            let json = a.json;
            baseline.load_or_train_with(&data, interactive(json), &mut |s| {
                if !json {
                    println!("  baseline {s}");
                }
            })?
        }
    };
    let show = !a.json;
    let mut bar: Option<indicatif::ProgressBar> = None;
    let outcome = pipeline.run_with(model, &data, &mut |e| match e {
        Event::Measured(m) if show => {
            println!(
                "input model: accuracy {:.4}, {} bytes, {:.1} us",
                m.accuracy, m.bytes, m.latency_us
            )
        }
        Event::StepStarted { .. } => {
            let line = e.line().unwrap_or_default();
            bar = Some(common::spinner(a.json, line.clone()));
            if show {
                println!("{line}");
            }
        }
        Event::Epoch { stats: s, .. } if show => {
            let msg = format!("  {s}");
            match &bar {
                Some(b) if !b.is_hidden() => b.println(msg),
                _ => println!("{msg}"),
            }
        }
        Event::StepFinished(r) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if show {
                println!(
                    "  done in {:.1} s: accuracy {:.4}, {} bytes, {:.1} us",
                    r.seconds, r.after.accuracy, r.after.bytes, r.after.latency_us
                );
            }
        }
        _ => {}
    });
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    let outcome = outcome?;
    let report = &outcome.report;

    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("slimnet-out").join(format!("{}.safetensors", report.name))
    });
    common::create_parent(&out)?;
    slimnet::save(&outcome.model, &out)
        .map_err(|e| CliError::new(exit::IO, format!("writing {}: {e}", out.display())))?;
    // the file must load back to the same outputs
    let back = common::load_model(&out)?;
    let x = data.validation.load(&[0])?.0;
    use slimnet::core::Layer;
    if back.forward(&x)? != outcome.model.forward(&x)? {
        return Err(CliError::new(
            exit::INTERNAL,
            format!("{} does not load back to the same model", out.display()),
        ));
    }
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string();
    let dir = out.parent().unwrap_or(Path::new(""));
    let (size_svg, latency_svg) = (
        format!("{stem}-accuracy-size.svg"),
        format!("{stem}-accuracy-latency.svg"),
    );
    common::write_file(&dir.join(&size_svg), &report.svg_size())?;
    common::write_file(&dir.join(&latency_svg), &report.svg_latency())?;
    let report_file = dir.join(format!("{stem}-report.md"));
    common::write_file(
        &report_file,
        &report.to_markdown(Some((&size_svg, &latency_svg))),
    )?;

    if a.json {
        return common::print_json(&Output {
            recipe: &recipe,
            report,
            model_file: out.display().to_string(),
            report_file: report_file.display().to_string(),
            summary: report.summary_line(),
        });
    }
    println!("wrote {} and {}", out.display(), report_file.display());
    println!("{report}");
    println!("{}", report.summary_line());
    Ok(())
}
