//! Trained zoo models, cached on disk so that examples and tests train each one once.

use std::path::PathBuf;

use slimnet_core::data::{self, Dataset};
use slimnet_core::{io, models, optim, tensor, train, Graph, Result};

/// How a zoo model is trained: epochs, peak learning rate and weight decay of SGD with
/// Nesterov momentum 0.9 and a cosine schedule, batch 64.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
}

impl Recipe {
    /// The recipe of a zoo model (`lenet5`, `lenet300`, `resnet`).
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
        }
    }
}

/// Trains zoo model `name` on `train` with `recipe` from seed `seed`, showing a progress bar
/// and evaluating on `test` after each epoch.
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
    train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(recipe.epochs)
            .with_batch_size(64)
            .with_seed(seed),
    )
    .optimizer(
        optim::Sgd::new(recipe.lr)
            .with_momentum(0.9)
            .with_nesterov(true)
            .with_weight_decay(recipe.weight_decay),
    )
    .schedule(optim::CosineLr::new(recipe.lr, recipe.epochs))
    .fit(&mut model, train_set, test)?;
    Ok(model)
}

/// Where a trained model is cached: `cache_dir()/baselines/<name>-mnist-e<epochs>-s<seed>.safetensors`.
pub fn path(name: &str, recipe: &Recipe, seed: u64) -> PathBuf {
    data::cache_dir().join("baselines").join(format!(
        "{name}-mnist-e{}-lr{}-wd{}-s{seed}.safetensors",
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
    let train_set = data::mnist(data::Split::Train)?;
    let test = data::mnist(data::Split::Test)?;
    let g = train_model(name, recipe, seed, &train_set, Some(&test))?;
    io::save(&g, &p)?;
    Ok(g)
}
