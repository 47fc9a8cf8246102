//! The training run the image-to-image examples share: Adam with a cosine learning rate on
//! core's [`Trainer`], a task loss, and a validation callback evaluated a few times per epoch.

use slimnet_core::data::Dataset;
use slimnet_core::loss::Loss;
use slimnet_core::optim::{Adam, CosineLr};
use slimnet_core::train::{Callback, Clock, TrainConfig, Trainer};
use slimnet_core::{Graph, Result};

/// Settings of a training run ([`crate::flow::fit_flow`], [`crate::style::fit_style`]).
#[derive(Debug, Clone)]
pub struct Fit {
    /// Passes over the training examples.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam's learning rate at the start (cosine decay over the epochs).
    pub lr: f32,
    /// Validation evaluations per epoch (evenly spaced, the last at its end).
    pub evals_per_epoch: usize,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Fit {
    /// Steps between validation evaluations for `examples` training examples.
    pub(crate) fn eval_every(&self, examples: usize) -> usize {
        let steps = examples.div_ceil(self.batch_size.max(1));
        (steps / self.evals_per_epoch.max(1)).max(1)
    }

    /// Trains `model` on `examples` with `loss` (Adam, cosine learning rate), timed by `clock`,
    /// calling `eval` after every step.
    pub(crate) fn run(
        &self,
        model: &mut Graph,
        examples: &Dataset,
        loss: impl Loss,
        eval: impl Callback,
        clock: &Clock,
        phase: &str,
    ) -> Result<()> {
        let cfg = TrainConfig::default()
            .with_epochs(self.epochs)
            .with_batch_size(self.batch_size)
            .with_seed(self.seed)
            .with_label(phase);
        Trainer::new(cfg)
            .clock(clock)
            .optimizer(Adam::new(self.lr))
            .schedule(CosineLr::new(self.lr, self.epochs))
            .loss(loss)
            .callback(eval)
            .fit(model, examples, None)?;
        Ok(())
    }
}
