//! Training recipes, and trained zoo models cached on disk so that examples and tests train
//! each one once.

use std::path::PathBuf;

use slimnet_core::data::{self, Dataset};
use slimnet_core::{io, models, optim, tensor, train, Graph, Result};

/// Kernel threads a baseline trains with, whatever the caller's setting: training is
/// deterministic for a seed and a thread count, so a cached baseline is the same model
/// whichever example or test trains it first. 2 is `train_lenet`'s default on the two-core
/// development machine, where the recorded results were trained.
pub const THREADS: usize = 2;

/// How a model is trained or fine-tuned: SGD with momentum 0.9 (Nesterov unless turned off)
/// and weight decay, a cosine schedule from the peak learning rate over the epochs, batch 64.
///
/// ```
/// use slimnet_testkit::baseline::Recipe;
/// let r = Recipe::of("lenet5");
/// assert_eq!((r.epochs, r.lr, r.weight_decay, r.nesterov), (15, 0.01, 5e-4, true));
/// let fine_tune = Recipe::sgd(1, 1e-3);
/// assert_eq!((fine_tune.weight_decay, fine_tune.nesterov), (0.0, false));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Recipe {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Nesterov momentum (else plain momentum).
    pub nesterov: bool,
}

impl Recipe {
    /// The recipe of a zoo model (`lenet5`, `lenet300`, `resnet`), with Nesterov momentum.
    pub fn of(model: &str) -> Self {
        let (epochs, lr, weight_decay) = match model {
            "lenet300" => (20, 0.05, 1e-4),
            "resnet" => (8, 0.05, 5e-4),
            _ => (15, 0.01, 5e-4),
        };
        Self {
            epochs,
            lr,
            weight_decay,
            nesterov: true,
        }
    }

    /// Plain momentum SGD without weight decay, for `epochs` from `lr`.
    pub fn sgd(epochs: usize, lr: f32) -> Self {
        Self {
            epochs,
            lr,
            weight_decay: 0.0,
            nesterov: false,
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

    /// A trainer of this recipe with shuffle seed `seed`, to which callers add callbacks and
    /// call `fit`.
    pub fn trainer<'a>(&self, seed: u64) -> train::Trainer<'a> {
        train::Trainer::new(
            train::TrainConfig::default()
                .with_epochs(self.epochs)
                .with_batch_size(64)
                .with_seed(seed),
        )
        .optimizer(
            optim::Sgd::new(self.lr)
                .with_momentum(0.9)
                .with_nesterov(self.nesterov)
                .with_weight_decay(self.weight_decay),
        )
        .schedule(optim::CosineLr::new(self.lr, self.epochs))
    }
}

/// Trains zoo model `name` on `train` with `recipe` from seed `seed`, showing a progress bar
/// and evaluating on `test` after each epoch, on [`THREADS`] kernel threads.
///
/// # Errors
/// An unknown model name, or a training error.
pub fn train_model(
    name: &str,
    recipe: &Recipe,
    seed: u64,
    train_set: &Dataset,
    test: Option<&Dataset>,
) -> Result<Graph> {
    let mut model = models::by_name(name, &mut tensor::rng(seed))?;
    slimnet_kernels::threads::with(THREADS, || {
        recipe.trainer(seed).fit(
            &mut model,
            train_set,
            test.map(|t| t as &dyn data::Examples),
        )
    })?;
    Ok(model)
}

/// Where a trained model is cached:
/// `cache_dir()/baselines/<name>-mnist-e<epochs>-lr<lr>-wd<wd>-s<seed>.safetensors`.
pub fn path(name: &str, recipe: &Recipe, seed: u64) -> PathBuf {
    let momentum = if recipe.nesterov { "" } else { "-plain" };
    data::cache_dir().join("baselines").join(format!(
        "{name}-mnist-e{}-lr{}-wd{}{momentum}-s{seed}.safetensors",
        recipe.epochs, recipe.lr, recipe.weight_decay
    ))
}

/// Zoo model `name` trained on MNIST with `recipe` from `seed`: loaded from the cache, or
/// trained and cached (the file is written atomically, so an interrupted run leaves none).
///
/// # Errors
/// Data, training or file errors.
pub fn mnist(name: &str, recipe: &Recipe, seed: u64) -> Result<Graph> {
    let p = path(name, recipe, seed);
    if p.exists() {
        if let Ok(g) = io::load(&p) {
            return Ok(g);
        }
    }
    println!("training the {name} baseline (cached to {})", p.display());
    let train_set = data::mnist(data::Split::Train)?;
    let test = data::mnist(data::Split::Test)?;
    let g = train_model(name, recipe, seed, &train_set, Some(&test))?;
    io::save(&g, &p)?;
    Ok(g)
}
