//! What the commands share: loading models and data, progress bars, JSON output.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use slimnet::core::Graph;
use slimnet::pipeline::Data;

use crate::error::{exit, CliError};

/// Whether progress bars may be drawn: stdout is a terminal and no JSON was asked for.
pub fn interactive(json: bool) -> bool {
    !json && std::io::stdout().is_terminal()
}

/// A spinner with `message` on stderr, hidden unless [`interactive`].
pub fn spinner(json: bool, message: String) -> ProgressBar {
    let bar = if interactive(json) {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Loads a model file (safetensors or ONNX), with errors naming the file.
pub fn load_model(path: &Path) -> Result<Graph, CliError> {
    if path.is_dir() {
        return Err(CliError::new(
            exit::IO,
            format!("{} is a folder, not a model file", path.display()),
        ));
    }
    slimnet::load(path).map_err(|e| {
        let mut c = CliError::from(e);
        if !c.message.contains(&path.display().to_string()) {
            c.message = format!("{}: {}", path.display(), c.message);
        }
        c
    })
}

/// The data set `name` (mnist, fashion-mnist, or a folder of `.npy` arrays, see
/// [`Data::from_npy_dir`]), cut to the first examples when asked.
pub fn load_data(
    name: &str,
    train: Option<usize>,
    validation: Option<usize>,
) -> Result<Data, CliError> {
    if train == Some(0) || validation == Some(0) {
        return Err(CliError::usage(
            "--train-examples and --validation-examples must be at least 1",
        ));
    }
    if Path::new(name).is_dir() {
        return Ok(Data::from_npy_dir(name)?.take(train, validation));
    }
    Ok(Data::named(name)?.take(train, validation))
}

/// Checks that `model` takes inputs of shape `input`, as a data error naming both.
pub fn check_input(model: &Graph, input: &[usize], what: &Path) -> Result<(), CliError> {
    if input.is_empty() || input.contains(&0) {
        return Err(CliError::usage(format!(
            "input shape {input:?} must have no zero dimension"
        )));
    }
    model.shapes(input).map(|_| ()).map_err(|e| {
        CliError::new(
            exit::DATA,
            format!(
                "{} does not take inputs of shape {input:?}: {e}",
                what.display()
            ),
        )
    })
}

/// Prints `value` as JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new(exit::INTERNAL, format!("JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Creates the folder a file goes into.
pub fn create_parent(path: &Path) -> Result<(), CliError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::new(exit::IO, format!("creating {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Writes `text` to `path`, creating its folder.
pub fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    create_parent(path)?;
    std::fs::write(path, text)
        .map_err(|e| CliError::new(exit::IO, format!("writing {}: {e}", path.display())))
}
