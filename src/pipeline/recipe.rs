//! Recipes: a pipeline, its model and its data in a TOML file.
//!
//! ```toml
//! name = "lenet5_deep_compression"   # optional: the file name without extension
//! seed = 1                           # the zoo baseline's seed
//! threads = 2                        # kernel threads of the steps
//!
//! [model]
//! zoo = "lenet5"                     # trained once and cached; or path = "model.safetensors"
//!
//! [data]
//! dataset = "mnist"                  # or "fashion-mnist", "hanzi-<classes>", or a folder:
//!                                    # .npy arrays, or images in one sub-folder per class
//! # image_size = [28, 28]            # image folders: resize to this, or 28 (default: first image's)
//! # channels = 1                     # image folders: 1 gray or 3 RGB (default: first image's)
//! # augment = true                   # image folders: shift, flip, rotate, scale training images
//!
//! [[step]]
//! step = "decompose"                 # the kind comes first, then its settings
//! method = "tucker2"
//! rank = { mac_ratio = 0.3 }
//! layers = ["conv2"]
//! fine_tune = { epochs = 1, lr = 0.01, weight_decay = 5e-4 }
//! # fine_tune = { epochs = 1, distill = { temperature = 4.0, alpha = 0.5 } }
//! #                                  # also learn the outputs of the model as given
//! ```
//!
//! Every table refuses keys it does not know, with the file, line and column of the key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::data::{Augment, ImageOptions};
use crate::core::timing::TimingConfig;
use crate::Result;

use super::{Baseline, Data, FineTune, Pipeline, PipelineError, Step};

/// A recipe: a [`Pipeline`] with the model and data it runs on (see the module docs for the
/// file format).
///
/// ```
/// use slimnet::pipeline::{Recipe, Step};
/// let r = Recipe::from_toml(
///     "[model]\nzoo = \"lenet300\"\n[[step]]\nstep = \"prune\"\nsparsity = 0.9\n",
///     "inline.toml",
/// )?;
/// assert_eq!(r.model.zoo.as_deref(), Some("lenet300"));
/// assert!(matches!(&r.steps[0], Step::Prune(p) if p.sparsity == 0.9));
///
/// let e = Recipe::from_toml("[[step]]\nstep = \"prune\"\nsparsity = 0.9\nsparsty = 1\n", "r.toml")
///     .unwrap_err();
/// assert!(e.to_string().starts_with("r.toml:4:1: unknown field `sparsty`"), "{e}");
/// # Ok::<(), slimnet::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Recipe {
    /// The pipeline's name (the file name without extension when not given).
    #[serde(default)]
    pub name: Option<String>,
    /// Seed of the zoo baseline (its initial weights and shuffle).
    #[serde(default = "seed")]
    pub seed: u64,
    /// Kernel threads of the steps (training is deterministic for a seed and a thread
    /// count).
    #[serde(default = "threads")]
    pub threads: usize,
    /// The model to compress.
    #[serde(default)]
    pub model: ModelSpec,
    /// The data to fine-tune, calibrate and measure on.
    #[serde(default)]
    pub data: DataSpec,
    /// How latency is timed.
    #[serde(default)]
    pub measure: MeasureSpec,
    /// The steps, `[[step]]` tables in order.
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

fn seed() -> u64 {
    1
}

fn threads() -> usize {
    2
}

/// The `[model]` table: a zoo model trained once and cached, or a model file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ModelSpec {
    /// A zoo model (`lenet5`, `lenet300`, `vgg`, `resnet`) trained on the recipe's data
    /// (see [`Baseline`]); `lenet5` when neither this nor `path` is given.
    #[serde(default)]
    pub zoo: Option<String>,
    /// A model file (safetensors or ONNX), relative to the recipe's folder.
    #[serde(default)]
    pub path: Option<String>,
    /// How the zoo model is trained ([`FineTune::zoo`] unless given).
    #[serde(default)]
    pub train: Option<FineTune>,
}

/// The `[data]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DataSpec {
    /// `mnist`, `fashion-mnist`, `hanzi-<classes>`, or a folder (see [`Data::open`]).
    #[serde(default = "dataset")]
    pub dataset: String,
    /// Use only the first this many training examples.
    #[serde(default)]
    pub train_examples: Option<usize>,
    /// Use only the first this many validation examples.
    #[serde(default)]
    pub validation_examples: Option<usize>,
    /// Image folders: height and width every image is resized to (default: the first
    /// image's); `image_size = 28` in a recipe is a square.
    #[serde(default, deserialize_with = "image_size")]
    pub image_size: Option<[usize; 2]>,
    /// Image folders: 1 (gray) or 3 (RGB) channels (default: the first image's).
    #[serde(default)]
    pub channels: Option<usize>,
    /// Image folders: augment the training images ([`Augment::default`]).
    #[serde(default)]
    pub augment: bool,
}

impl DataSpec {
    /// The image options of an image folder named by [`dataset`](Self::dataset).
    pub fn image_options(&self) -> ImageOptions {
        ImageOptions {
            size: self.image_size.map(|[h, w]| (h, w)),
            channels: self.channels,
            augment: self.augment.then(Augment::default),
            ..ImageOptions::default()
        }
    }

    /// The data set, cut to the first examples as asked ([`Data::open`], then
    /// [`Data::take`]).
    ///
    /// # Errors
    /// As [`Data::open`].
    pub fn load(&self) -> Result<Data> {
        Ok(Data::open(&self.dataset, &self.image_options())?
            .take(self.train_examples, self.validation_examples))
    }
}

/// `[h, w]` or one number for a square.
fn image_size<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<[usize; 2]>, D::Error> {
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "a size: [height, width] or one number for a square"
    )]
    enum Size {
        Square(usize),
        Sides([usize; 2]),
    }
    Ok(Some(match Size::deserialize(d)? {
        Size::Square(n) => [n, n],
        Size::Sides(hw) => hw,
    }))
}

fn dataset() -> String {
    "mnist".into()
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            dataset: dataset(),
            train_examples: None,
            validation_examples: None,
            image_size: None,
            channels: None,
            augment: false,
        }
    }
}

/// The `[measure]` table: how batch-1 latency is timed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MeasureSpec {
    /// Untimed runs first.
    #[serde(default = "warmup")]
    pub warmup: usize,
    /// Least number of timed runs.
    #[serde(default = "runs")]
    pub runs: usize,
    /// Least total time of the timed runs, milliseconds.
    #[serde(default = "min_time_ms")]
    pub min_time_ms: u64,
}

fn warmup() -> usize {
    3
}

fn runs() -> usize {
    20
}

fn min_time_ms() -> u64 {
    200
}

impl Default for MeasureSpec {
    /// As [`TimingConfig::default`]: 3 warm-up runs, then at least 20 runs and 200 ms.
    fn default() -> Self {
        Self {
            warmup: warmup(),
            runs: runs(),
            min_time_ms: min_time_ms(),
        }
    }
}

impl MeasureSpec {
    /// The timing settings.
    pub fn timing(&self) -> TimingConfig {
        let mut t = TimingConfig::default()
            .with_runs(self.runs)
            .with_min_time(std::time::Duration::from_millis(self.min_time_ms));
        t.warmup = self.warmup;
        t
    }
}

impl Recipe {
    /// Parses a recipe from TOML text; `file` names it in errors.
    ///
    /// # Errors
    /// [`PipelineError::Recipe`] with the line and column of the offending key or value:
    /// TOML syntax, an unknown key, a value of the wrong type, both `model.zoo` and
    /// `model.path`, no steps.
    pub fn from_toml(text: &str, file: &str) -> Result<Self> {
        let mut recipe: Recipe = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
            PipelineError::Recipe {
                file: file.to_string(),
                line,
                column,
                message: one_line(e.message()),
            }
        })?;
        let at_key = |key: &str, message: String| {
            let (line, column) = find_key(text, key);
            PipelineError::Recipe {
                file: file.to_string(),
                line,
                column,
                message,
            }
        };
        if recipe.model.zoo.is_some() && recipe.model.path.is_some() {
            return Err(at_key(
                "path",
                "give either model.zoo or model.path, not both".into(),
            )
            .into());
        }
        if recipe.steps.is_empty() {
            return Err(at_key(
                "",
                "a recipe needs at least one [[step]] table (step = \"decompose\", \"prune\", \
                 \"to_sparse\", \"quantize\", \"qat\", \"fold_bn\" or \"fine_tune\")"
                    .into(),
            )
            .into());
        }
        if recipe.threads == 0 {
            return Err(at_key("threads", "threads must be at least 1".into()).into());
        }
        if recipe.name.is_none() {
            let stem = Path::new(file).file_stem().and_then(|s| s.to_str());
            recipe.name = Some(stem.unwrap_or("recipe").to_string());
        }
        Ok(recipe)
    }

    /// Reads and parses a recipe file.
    ///
    /// # Errors
    /// A file that cannot be read, or as [`from_toml`](Self::from_toml).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::Error::Io(std::io::Error::new(
                e.kind(),
                format!("reading recipe {}: {e}", path.display()),
            ))
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The recipe's name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("recipe")
    }

    /// The pipeline of the steps, with the recipe's name, threads and timing.
    pub fn pipeline(&self) -> Pipeline {
        let mut p = Pipeline::new(self.name())
            .threads(self.threads)
            .timing(self.measure.timing());
        p.steps = self.steps.clone();
        p
    }

    /// The zoo baseline the recipe names (`lenet5` when it names no model), or `None` when
    /// it names a model file.
    pub fn baseline(&self) -> Option<Baseline> {
        if self.model.path.is_some() {
            return None;
        }
        let zoo = self.model.zoo.as_deref().unwrap_or("lenet5");
        let mut b = Baseline::new(zoo, &self.data.dataset, self.seed);
        if let Some(t) = &self.model.train {
            b = b.with_recipe(t.clone());
        }
        Some(b)
    }
}

/// Line and column (from 1) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Where `key` is first set in `text` (its line and column), or the end of the text for an
/// empty key or one not found.
fn find_key(text: &str, key: &str) -> (usize, usize) {
    if !key.is_empty() {
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
            {
                return (i + 1, line.len() - t.len() + 1);
            }
        }
    }
    (text.lines().count().max(1), 1)
}

/// The message on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Method, Rank, Schedule};

    fn err(text: &str) -> String {
        Recipe::from_toml(text, "r.toml").unwrap_err().to_string()
    }

    #[test]
    fn steps_map_onto_the_api() {
        let r = Recipe::from_toml(
            "seed = 3\n[[step]]\nstep = \"decompose\"\nmethod = \"cp\"\nrank = \"vbmf\"\n\
             [[step]]\nstep = \"prune\"\nsparsity = 0.5\nschedule = { agp = { epochs = 2, \
             updates = 4 } }\n[step.fine_tune]\nepochs = 3\n[[step]]\nstep = \"to_sparse\"\n\
             [[step]]\nstep = \"quantize\"\nobserver = \"mse\"\n",
            "dir/my_recipe.toml",
        )
        .unwrap();
        assert_eq!(r.name(), "my_recipe");
        assert_eq!(r.seed, 3);
        let p = r.pipeline();
        assert_eq!(p.threads, Some(2));
        let kinds: Vec<_> = p.steps.iter().map(Step::kind).collect();
        assert_eq!(kinds, ["decompose", "prune", "to_sparse", "quantize"]);
        match &p.steps[0] {
            Step::Decompose(d) => assert_eq!((d.method, d.rank), (Method::Cp, Rank::Vbmf)),
            s => panic!("{s:?}"),
        }
        match &p.steps[1] {
            Step::Prune(pr) => {
                assert_eq!(
                    pr.schedule,
                    Schedule::Agp {
                        epochs: 2,
                        updates: 4
                    }
                );
                assert_eq!(pr.fine_tune.as_ref().unwrap().epochs, 3);
                assert_eq!(pr.fine_tune.as_ref().unwrap().lr, 0.01);
            }
            s => panic!("{s:?}"),
        }
        let b = r.baseline().unwrap();
        assert_eq!(
            (b.model.as_str(), b.data.as_str(), b.seed),
            ("lenet5", "mnist", 3)
        );
    }

    #[test]
    fn image_folder_settings() {
        let r = Recipe::from_toml(
            "[data]\ndataset = \"photos\"\nimage_size = [24, 32]\nchannels = 3\naugment = true\n[[step]]\nstep = \"quantize\"\n",
            "r.toml",
        )
        .unwrap();
        let o = r.data.image_options();
        assert_eq!((o.size, o.channels), (Some((24, 32)), Some(3)));
        assert_eq!(o.augment, Some(Augment::default()));
        let plain = Recipe::from_toml(
            "[data]\ndataset = \"photos\"\n[[step]]\nstep = \"quantize\"\n",
            "r.toml",
        )
        .unwrap();
        let o = plain.data.image_options();
        assert_eq!((o.size, o.channels, o.augment), (None, None, None));
        let square = Recipe::from_toml(
            "[data]\nimage_size = 28\n[[step]]\nstep = \"quantize\"\n",
            "r.toml",
        )
        .unwrap();
        assert_eq!(square.data.image_options().size, Some((28, 28)));
        let e = err("[data]\nimage_size = \"big\"\n[[step]]\nstep = \"quantize\"\n");
        assert!(e.contains("[height, width] or one number"), "{e}");
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = err("[[step]]\nstep = \"prune\"\nsparsity = 0.5\n\n  bogus = 1\n");
        assert!(e.starts_with("r.toml:5:3: unknown field `bogus`"), "{e}");
        let e = err("[[step]]\nstep = \"prune\"\nsparsity = \"half\"\n");
        assert!(e.starts_with("r.toml:3:12: invalid type: string"), "{e}");
        let e = err("[[step]]\nstep = \"shrink\"\n");
        assert!(e.starts_with("r.toml:2:8: unknown variant `shrink`"), "{e}");
        let e = err("[[step]]\nsparsity = 0.5\nstep = \"prune\"\n");
        assert!(e.contains("found `sparsity` first"), "{e}");
        let e = err(
            "[model]\nzoo = \"lenet5\"\npath = \"m.safetensors\"\n[[step]]\nstep = \"fold_bn\"\n",
        );
        assert!(e.starts_with("r.toml:3:1: give either"), "{e}");
        let e = err("name = \"x\"\n");
        assert!(e.contains("at least one [[step]]"), "{e}");
        let e = err("[[step]]\nstep = \"fine_tune\"\n[step.extra]\n");
        assert!(e.starts_with("r.toml:3:"), "{e}");
        let e = err("[[step]\n");
        assert!(e.starts_with("r.toml:1:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    /// A decomposition's speed check: a margin reaches the step; a margin that is not a
    /// positive number is refused before anything runs.
    #[test]
    fn decompose_speed_margin() {
        let step = |m: &str| {
            format!(
                "[[step]]\nstep = \"decompose\"\nmethod = \"tucker2\"\n\
                 rank = {{ mac_ratio = 0.3 }}\nspeed_margin = {m}\n"
            )
        };
        let r = Recipe::from_toml(&step("1.05"), "r.toml").unwrap();
        let want = crate::pipeline::Decompose::new(Method::Tucker2, Rank::MacRatio(0.3))
            .with_speed_check(1.05);
        assert_eq!(r.pipeline().steps[0], want.into());
        for bad in ["0.0", "-1.0", "nan"] {
            let r = Recipe::from_toml(&step(bad), "r.toml").unwrap();
            let e = r.pipeline().check_steps().unwrap_err().to_string();
            assert!(
                e.contains("speed_margin must be a positive number"),
                "{bad}: {e}"
            );
        }
    }

    /// Weight bits of `quantize` and `qat`: a width reaches the step, 8 when not given; a
    /// width outside 2..=8 is refused before anything runs.
    #[test]
    fn quantize_weight_bits() {
        let step = |kind: &str, bits: &str| format!("[[step]]\nstep = \"{kind}\"\n{bits}");
        let r = Recipe::from_toml(&step("quantize", "weight_bits = 7\n"), "r.toml").unwrap();
        let want = crate::pipeline::Quantize::default().with_weight_bits(7);
        assert_eq!(r.pipeline().steps[0], want.into());
        assert!(r.pipeline().steps[0].describe().contains("7-bit weights"));
        let r = Recipe::from_toml(&step("qat", ""), "r.toml").unwrap();
        assert_eq!(
            r.pipeline().steps[0],
            crate::pipeline::Qat::default().into()
        );
        for kind in ["quantize", "qat"] {
            for bad in ["1", "9"] {
                let r = Recipe::from_toml(&step(kind, &format!("weight_bits = {bad}\n")), "r.toml");
                let e = r.unwrap().pipeline().check_steps().unwrap_err().to_string();
                assert!(
                    e.contains("weight_bits must be in 2..=8"),
                    "{kind} {bad}: {e}"
                );
            }
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncé = 1", 6), (2, 3));
        assert_eq!(line_column("x", 0), (1, 1));
    }
}
