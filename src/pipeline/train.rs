//! Training settings, the data a pipeline runs on, and trained zoo baselines cached on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::data::hanzi::{self, HanziConfig};
use crate::core::data::{self, Examples, First, ImageFolder, ImageOptions, Split};
use crate::core::{io, models, optim, tensor, train, Graph};
use crate::Result;

use super::PipelineError;

/// How a model is trained or fine-tuned: SGD with momentum (Nesterov or plain) and weight
/// decay, a cosine schedule from `lr` over the epochs, shuffled mini-batches.
///
/// In a recipe it is a table with any of these keys (the others keep their defaults):
/// `fine_tune = { epochs = 1, lr = 0.01, weight_decay = 5e-4 }`, and with knowledge
/// distillation from the model the pipeline started from
/// `fine_tune = { epochs = 1, distill = { temperature = 4.0, alpha = 0.5 } }`.
///
/// ```
/// use slimnet::pipeline::FineTune;
/// let t = FineTune::sgd(2, 0.01).with_weight_decay(5e-4);
/// assert_eq!((t.epochs, t.momentum, t.nesterov, t.batch_size), (2, 0.9, false, 64));
/// let zoo = FineTune::zoo("lenet5");
/// assert_eq!((zoo.epochs, zoo.lr, zoo.weight_decay, zoo.nesterov), (15, 0.01, 5e-4, true));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FineTune {
    /// Passes over the training set.
    pub epochs: usize,
    /// Peak learning rate (the cosine schedule starts here).
    pub lr: f32,
    /// Momentum.
    pub momentum: f32,
    /// Nesterov momentum instead of plain.
    pub nesterov: bool,
    /// Weight decay.
    pub weight_decay: f32,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Learn from the uncompressed model's outputs as well as from the labels (`None`: from
    /// the labels only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distill>,
}

/// Knowledge distillation (Hinton et al. 2015) in a pipeline's fine-tuning: the loss mixes
/// the cross-entropy on the labels with the distance between the model's class
/// probabilities and those of the model the pipeline was given (the teacher, run frozen on
/// each batch), both softened at `temperature`:
/// `alpha * T^2 * KL(teacher_T || model_T) + (1 - alpha) * CE(model, labels)`.
///
/// A compressed model that fits the training set already (training accuracy near 1) still
/// learns from the teacher's soft outputs, which carry how alike the classes look.
///
/// ```
/// use slimnet::pipeline::{Distill, FineTune};
/// let t = FineTune::sgd(1, 0.005).with_distill(Distill::new(4.0, 0.5));
/// assert_eq!(t.distill.map(|d| (d.temperature, d.alpha)), Some((4.0, 0.5)));
/// assert_eq!(Distill::default(), Distill::new(4.0, 0.9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Distill {
    /// Softmax temperature `T` (> 0) of both models.
    pub temperature: f32,
    /// Weight of the teacher's term, in `[0, 1]`; the labels' term gets `1 - alpha`.
    pub alpha: f32,
}

impl Default for Distill {
    /// `T = 4`, `alpha = 0.9`.
    fn default() -> Self {
        Self::new(4.0, 0.9)
    }
}

impl Distill {
    /// Distillation at `temperature` with the teacher's term weighted `alpha`.
    pub fn new(temperature: f32, alpha: f32) -> Self {
        Self { temperature, alpha }
    }
}

impl Default for FineTune {
    /// One epoch of plain momentum SGD (0.9) from 0.01, no weight decay, batch 64, seed 0.
    fn default() -> Self {
        Self::sgd(1, 0.01)
    }
}

impl FineTune {
    /// Plain momentum SGD (0.9) for `epochs` from `lr`, without weight decay, batch 64, seed 0.
    pub fn sgd(epochs: usize, lr: f32) -> Self {
        Self {
            epochs,
            lr,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            batch_size: 64,
            seed: 0,
            distill: None,
        }
    }

    /// How zoo model `name` (`lenet5`, `lenet300`, `vgg`, `resnet`, `hanzi-<classes>`) is
    /// trained from scratch:
    /// Nesterov momentum, epochs, rate and decay per model (the examples' baselines).
    pub fn zoo(name: &str) -> Self {
        let (epochs, lr, weight_decay) = match name {
            "lenet300" => (20, 0.05, 1e-4),
            "resnet" => (8, 0.05, 5e-4),
            n if n.starts_with("hanzi-") => (HANZI_EPOCHS, 0.01, 5e-4),
            _ => (15, 0.01, 5e-4),
        };
        Self {
            nesterov: true,
            weight_decay,
            ..Self::sgd(epochs, lr)
        }
    }

    /// Sets the epochs.
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Sets the peak learning rate.
    pub fn with_lr(mut self, lr: f32) -> Self {
        self.lr = lr;
        self
    }

    /// Sets the weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Turns Nesterov momentum on or off.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// Sets the shuffle seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Distils from the model the pipeline was given while fine-tuning.
    pub fn with_distill(mut self, distill: Distill) -> Self {
        self.distill = Some(distill);
        self
    }

    /// Why these settings cannot train, if they cannot (`what` prefixes the setting names).
    pub(crate) fn problem(&self, what: &str) -> Option<String> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Some(format!(
                "{what}lr must be a positive number, got {}",
                self.lr
            ));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Some(format!(
                "{what}momentum must be in [0, 1), got {}",
                self.momentum
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Some(format!(
                "{what}weight_decay must be a number >= 0, got {}",
                self.weight_decay
            ));
        }
        if self.batch_size == 0 {
            return Some(format!("{what}batch_size must be at least 1"));
        }
        if let Some(d) = self.distill {
            if !(d.temperature.is_finite() && d.temperature > 0.0) {
                return Some(format!(
                    "{what}distill.temperature must be a positive number, got {}",
                    d.temperature
                ));
            }
            if !(0.0..=1.0).contains(&d.alpha) {
                return Some(format!(
                    "{what}distill.alpha must be in [0, 1], got {}",
                    d.alpha
                ));
            }
        }
        None
    }

    /// A trainer with these settings over `epochs` (this recipe's or a caller's total), to
    /// which callers add callbacks and call `fit`. `progress` draws a bar on a terminal.
    pub fn trainer<'a>(&self, epochs: usize, progress: bool) -> train::Trainer<'a> {
        train::Trainer::new(
            train::TrainConfig::default()
                .with_epochs(epochs)
                .with_batch_size(self.batch_size)
                .with_seed(self.seed)
                .with_progress(progress),
        )
        .optimizer(
            optim::Sgd::new(self.lr)
                .with_momentum(self.momentum)
                .with_nesterov(self.nesterov)
                .with_weight_decay(self.weight_decay),
        )
        .schedule(optim::CosineLr::new(self.lr, epochs))
    }
}

/// The examples a pipeline trains, calibrates and measures on, and the model's input shape
/// at batch 1.
#[derive(Debug, Clone)]
pub struct Data {
    /// A short name (`mnist`, `fashion-mnist`, a folder name), used in reports and cache
    /// file names.
    pub name: String,
    /// Training examples (fine-tuning, calibration): in memory, or an [`ImageFolder`] read
    /// batch by batch.
    pub train: Arc<dyn Examples>,
    /// Validation examples (every accuracy in a report).
    pub validation: Arc<dyn Examples>,
    /// One example's shape with a batch of 1 in front (`[1, 1, 28, 28]`).
    pub input: Vec<usize>,
}

impl Data {
    /// Training and validation sets (a [`Dataset`](data::Dataset) each, or any other
    /// [`Examples`]); the input shape is one validation example's.
    ///
    /// # Errors
    /// Empty sets, or sets whose example shapes or class counts differ.
    pub fn new(
        name: &str,
        train: impl Examples + 'static,
        validation: impl Examples + 'static,
    ) -> Result<Self> {
        Self::shared(name, Arc::new(train), Arc::new(validation))
    }

    /// [`new`](Self::new) for sets already shared.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn shared(
        name: &str,
        train: Arc<dyn Examples>,
        validation: Arc<dyn Examples>,
    ) -> Result<Self> {
        if train.is_empty() || validation.is_empty() {
            return Err(PipelineError::Data(format!(
                "{name}: {} training and {} validation examples; both sets need some",
                train.len(),
                validation.len()
            ))
            .into());
        }
        if train.example_shape() != validation.example_shape()
            || train.classes() != validation.classes()
        {
            return Err(PipelineError::Data(format!(
                "{name}: training examples {:?} ({} classes) and validation examples {:?} ({} \
                 classes) differ",
                train.example_shape(),
                train.classes(),
                validation.example_shape(),
                validation.classes()
            ))
            .into());
        }
        let mut input = vec![1];
        input.extend_from_slice(validation.example_shape());
        Ok(Self {
            name: name.to_string(),
            train,
            validation,
            input,
        })
    }

    /// MNIST: the 60,000 training images and, for validation, the 10,000 test images
    /// (fetched into the cache on first use, see [`data::mnist`]).
    ///
    /// # Errors
    /// When the data cannot be fetched or read.
    pub fn mnist() -> Result<Self> {
        Self::new(
            "mnist",
            data::mnist(Split::Train)?,
            data::mnist(Split::Test)?,
        )
    }

    /// Fashion-MNIST, split as [`mnist`](Self::mnist).
    ///
    /// # Errors
    /// When the data cannot be fetched or read.
    pub fn fashion_mnist() -> Result<Self> {
        Self::new(
            "fashion-mnist",
            data::fashion_mnist(Split::Train)?,
            data::fashion_mnist(Split::Test)?,
        )
    }

    /// Printed Chinese characters rendered as `config` says ([`data::hanzi`], rendered into
    /// the cache on first use): the training part to train on and, for validation, the test
    /// part, drawn from fonts the training part never uses, so every accuracy in a report is
    /// on an unseen style. Named `hanzi<classes>-n<train per class>-s<seed>`.
    ///
    /// # Errors
    /// As [`data::hanzi::hanzi`].
    pub fn hanzi(config: &HanziConfig) -> Result<Self> {
        Self::new(
            &format!(
                "hanzi{}-n{}-s{}",
                config.classes, config.train_per_class, config.seed
            ),
            hanzi::hanzi(config, hanzi::Part::Train)?,
            hanzi::hanzi(config, hanzi::Part::Test)?,
        )
    }

    /// A data set by name: `mnist`, `fashion-mnist`, or `hanzi-<classes>` (the first
    /// `classes` characters, otherwise [`HanziConfig::quick`]).
    ///
    /// # Errors
    /// An unknown name, or data that cannot be fetched.
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "mnist" => Self::mnist(),
            "fashion-mnist" | "fashion_mnist" => Self::fashion_mnist(),
            other => match other.strip_prefix("hanzi-").map(str::parse::<usize>) {
                Some(Ok(classes)) => Self::hanzi(&HanziConfig {
                    classes,
                    ..HanziConfig::quick()
                }),
                _ => Err(PipelineError::Data(format!(
                    "unknown data set `{other}` (known: mnist, fashion-mnist, hanzi-<classes>)"
                ))
                .into()),
            },
        }
    }

    /// A folder of your own images ([`ImageFolder::open`]: one sub-folder per class, or
    /// `train/` and `val/` sub-folders of those), read from disk a batch at a time, so a data
    /// set larger than memory trains in the memory of a batch. Named after the folder.
    ///
    /// # Errors
    /// As [`ImageFolder::open`].
    pub fn from_image_dir(dir: impl AsRef<Path>, options: &ImageOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let (train, validation) = ImageFolder::open(dir, options)?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("images")
            .to_string();
        Self::new(&name, train, validation)
    }

    /// A data set by name or path: a folder holding `.npy` files is read by
    /// [`from_npy_dir`](Self::from_npy_dir), any other folder is an image folder
    /// ([`from_image_dir`](Self::from_image_dir) with `images`), and anything else a name
    /// for [`named`](Self::named).
    ///
    /// # Errors
    /// As the function it picks.
    pub fn open(name: &str, images: &ImageOptions) -> Result<Self> {
        let path = Path::new(name);
        if !path.is_dir() {
            return Self::named(name);
        }
        let holds_npy = std::fs::read_dir(path)
            .map_err(|e| PipelineError::Data(format!("{name}: {e}")))?
            .filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "npy"));
        if holds_npy {
            Self::from_npy_dir(path)
        } else {
            Self::from_image_dir(path, images)
        }
    }

    /// The first `train` training and `validation` validation examples (all when `None`).
    pub fn take(mut self, train: Option<usize>, validation: Option<usize>) -> Self {
        if let Some(n) = train {
            self.train = Arc::new(First::new(self.train, n));
        }
        if let Some(n) = validation {
            self.validation = Arc::new(First::new(self.validation, n));
        }
        self
    }
}

/// Epochs of the character CNN's baseline.
const HANZI_EPOCHS: usize = 5;

/// Kernel threads a baseline trains with, whatever the caller's setting: training is
/// deterministic for a seed and a thread count, so a cached baseline is the same model
/// whichever program trains it first (the examples' baselines use the same).
pub const BASELINE_THREADS: usize = 2;

/// A zoo model trained from a seed on a named data set, cached on disk so that it is trained
/// once: `cache_dir()/baselines/<model>-<data>-e<epochs>-lr<lr>-wd<wd>[-plain]-s<seed>.safetensors`
/// (the file the examples' baselines use). The cache knows a data set by its name only: after
/// changing the images of a folder, delete the cached file ([`path`](Self::path)) so that the
/// baseline is trained again on them.
///
/// ```
/// use slimnet::pipeline::{Baseline, FineTune};
/// let b = Baseline::new("lenet5", "mnist", 1);
/// assert_eq!(b.recipe, FineTune::zoo("lenet5"));
/// assert!(b.path().ends_with("baselines/lenet5-mnist-e15-lr0.01-wd0.0005-s1.safetensors"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Zoo model name (see [`models::by_name`]).
    pub model: String,
    /// Data set name (part of the cache file name).
    pub data: String,
    /// Seed of the initial weights and of the shuffle.
    pub seed: u64,
    /// How it is trained ([`FineTune::zoo`] unless set).
    pub recipe: FineTune,
}

impl Baseline {
    /// Zoo model `model` trained on `data` from `seed` with its zoo recipe.
    pub fn new(model: &str, data: &str, seed: u64) -> Self {
        Self {
            model: model.to_string(),
            data: data.to_string(),
            seed,
            recipe: FineTune::zoo(model),
        }
    }

    /// Sets the training recipe.
    pub fn with_recipe(mut self, recipe: FineTune) -> Self {
        self.recipe = recipe;
        self
    }

    /// The cache file. A data set named by a path (`data/photos`) is one file-name part
    /// (`data_photos`): every character other than a letter, digit, `.`, `_` or `-` becomes
    /// `_`.
    ///
    /// ```
    /// use slimnet::pipeline::Baseline;
    /// let b = Baseline::new("lenet5", "/home/me/data/photos/", 1);
    /// let name = b.path().file_name().unwrap().to_string_lossy().into_owned();
    /// assert!(name.starts_with("lenet5-home_me_data_photos-e15-"), "{name}");
    /// ```
    pub fn path(&self) -> PathBuf {
        let r = &self.recipe;
        let momentum = if r.nesterov { "" } else { "-plain" };
        let data: String = self
            .data
            .trim_matches(['/', '\\'])
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        data::cache_dir().join("baselines").join(format!(
            "{}-{data}-e{}-lr{}-wd{}{momentum}-s{}.safetensors",
            self.model, r.epochs, r.lr, r.weight_decay, self.seed
        ))
    }

    /// Whether the cache holds the trained model.
    pub fn is_cached(&self) -> bool {
        self.path().exists()
    }

    /// The trained model: loaded from the cache, or trained on `data` (evaluated on its
    /// validation set after each epoch, a progress bar when `progress` and on a terminal) on
    /// [`BASELINE_THREADS`] threads and cached (written atomically).
    ///
    /// # Errors
    /// An unknown model, a seed of the recipe other than the baseline's, training or file
    /// errors.
    pub fn load_or_train(&self, data: &Data, progress: bool) -> Result<Graph> {
        self.load_or_train_with(data, progress, &mut |_| {})
    }

    /// [`load_or_train`](Self::load_or_train), telling `on_epoch` about each training epoch.
    ///
    /// # Errors
    /// As [`load_or_train`](Self::load_or_train).
    pub fn load_or_train_with(
        &self,
        data: &Data,
        progress: bool,
        on_epoch: &mut dyn FnMut(&train::EpochStats),
    ) -> Result<Graph> {
        let p = self.path();
        if p.exists() {
            if let Ok(g) = io::load(&p) {
                return Ok(g);
            }
        }
        let g = self.train_with(data, progress, on_epoch)?;
        io::save(&g, &p)?;
        Ok(g)
    }

    /// Trains the model without the cache.
    ///
    /// # Errors
    /// An unknown model, bad settings, or a training error.
    pub fn train(&self, data: &Data, progress: bool) -> Result<Graph> {
        self.train_with(data, progress, &mut |_| {})
    }

    /// [`train`](Self::train), telling `on_epoch` about each epoch.
    ///
    /// # Errors
    /// As [`train`](Self::train).
    pub fn train_with(
        &self,
        data: &Data,
        progress: bool,
        on_epoch: &mut dyn FnMut(&train::EpochStats),
    ) -> Result<Graph> {
        if let Some(p) = self.recipe.problem("baseline ") {
            return Err(PipelineError::Data(p).into());
        }
        if self.recipe.distill.is_some() {
            return Err(PipelineError::Data(
                "a baseline is trained from scratch, with no model to distil from: remove \
                 `distill` from its training settings"
                    .into(),
            )
            .into());
        }
        let mut model = models::by_name(&self.model, &mut tensor::rng(self.seed))?;
        let recipe = self.recipe.clone().with_seed(self.seed);
        crate::kernels::threads::with(BASELINE_THREADS, || {
            recipe
                .trainer(recipe.epochs, progress)
                .callback(Epochs(on_epoch))
                .fit(&mut model, &*data.train, Some(&*data.validation))
        })?;
        Ok(model)
    }
}

/// Hands each epoch's statistics to a closure.
struct Epochs<'a, 'b>(&'a mut (dyn FnMut(&train::EpochStats) + 'b));

impl train::Callback for Epochs<'_, '_> {
    fn on_epoch_end(&mut self, _: &mut Graph, stats: &train::EpochStats) -> Result<()> {
        (self.0)(stats);
        Ok(())
    }
}
