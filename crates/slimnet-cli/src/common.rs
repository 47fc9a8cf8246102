//! What the commands share: loading models and data, progress bars, JSON output.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use slimnet::core::data::{Augment, ImageOptions};
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

/// How the images of an image folder given as `--data` become examples.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ImageArgs {
    /// Image folders: resize every image to this height and width, `HxW` or one number
    /// (default: the first image's size).
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    pub image_size: Option<(usize, usize)>,
    /// Image folders: 1 (gray) or 3 (RGB) channels (default: the first image's).
    #[arg(long, value_parser = parse_channels)]
    pub channels: Option<usize>,
    /// Image folders: random shifts, flips, small rotations and scales of the training
    /// images.
    #[arg(long)]
    pub augment: bool,
}

impl ImageArgs {
    /// The flags as image options (defaults where a flag is not given).
    pub fn options(&self) -> ImageOptions {
        self.over(ImageOptions::default())
    }

    /// The flags over a recipe's settings: each flag given replaces the recipe's.
    pub fn over(&self, recipe: ImageOptions) -> ImageOptions {
        ImageOptions {
            size: self.image_size.or(recipe.size),
            channels: self.channels.or(recipe.channels),
            augment: if self.augment {
                Some(Augment::default())
            } else {
                recipe.augment
            },
            ..recipe
        }
    }
}

/// 1 or 3.
fn parse_channels(s: &str) -> Result<usize, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("`{s}` channels: images have 1 (gray) or 3 (RGB)")),
    }
}

/// `HxW` or `N` (square) as a height and a width of at least 1.
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let side = |v: &str| match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a size: expected HxW or N, each at least 1"
        )),
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((side(h)?, side(w)?)),
        None => side(s).map(|n| (n, n)),
    }
}

/// The data set `name` (mnist, fashion-mnist, hanzi-<classes>, a folder of `.npy` arrays or a
/// folder of images, see [`Data::open`]), cut to the first examples when asked.
pub fn load_data(
    name: &str,
    train: Option<usize>,
    validation: Option<usize>,
    images: &ImageOptions,
) -> Result<Data, CliError> {
    if train == Some(0) || validation == Some(0) {
        return Err(CliError::usage(
            "--train-examples and --validation-examples must be at least 1",
        ));
    }
    Ok(Data::open(name, images)?.take(train, validation))
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
