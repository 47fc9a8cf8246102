//! The training loop: shuffled mini-batches, learning-rate schedule, evaluation, a progress
//! bar, and callbacks at the end of every step and epoch.
//!
//! Runs are deterministic for a given seed and thread count: the shuffle uses the seeded
//! generator, and every kernel is deterministic for a fixed thread count.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::layer::Layer;
use crate::loss::{softmax_cross_entropy, CrossEntropy, Loss};
use crate::optim::{ConstantLr, LrSchedule, Optimizer, Sgd};
use crate::tensor::{rng, Tensor};

/// Settings of a training run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Whether to draw a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Batch size for evaluation.
    pub eval_batch_size: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            seed: 0,
            progress: true,
            eval_batch_size: 500,
        }
    }
}

impl TrainConfig {
    /// Sets the number of epochs.
    pub fn with_epochs(mut self, e: usize) -> Self {
        self.epochs = e;
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, b: usize) -> Self {
        self.batch_size = b;
        self
    }

    /// Sets the shuffle seed.
    pub fn with_seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }

    /// Turns the progress bar on or off.
    pub fn with_progress(mut self, p: bool) -> Self {
        self.progress = p;
        self
    }
}

/// What a step-end callback sees.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch (0-based).
    pub batch: usize,
    /// Steps taken so far, this one included.
    pub global_step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// This step's loss.
    pub loss: f32,
    /// Learning rate used in this step.
    pub lr: f32,
}

/// Statistics of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f32,
    /// Training accuracy (on the fly, in training mode).
    pub train_accuracy: f32,
    /// Test loss, when a test set was given.
    pub test_loss: Option<f32>,
    /// Test accuracy, when a test set was given.
    pub test_accuracy: Option<f32>,
    /// Wall-clock seconds since training started, at the end of this epoch (evaluation included).
    pub seconds: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
}

/// Hooks into the training loop (pruning and quantization schedules live here).
pub trait Callback {
    /// After every optimizer step.
    ///
    /// # Errors
    /// An error stops training and is returned by [`Trainer::fit`].
    fn on_step_end(&mut self, model: &mut Graph, info: &StepInfo) -> Result<()> {
        let _ = (model, info);
        Ok(())
    }

    /// After every epoch's evaluation.
    ///
    /// # Errors
    /// An error stops training and is returned by [`Trainer::fit`].
    fn on_epoch_end(&mut self, model: &mut Graph, stats: &EpochStats) -> Result<()> {
        let _ = (model, stats);
        Ok(())
    }
}

/// A callback borrowed mutably is a callback, so callers can read its state after training.
impl<C: Callback + ?Sized> Callback for &mut C {
    fn on_step_end(&mut self, model: &mut Graph, info: &StepInfo) -> Result<()> {
        (**self).on_step_end(model, info)
    }

    fn on_epoch_end(&mut self, model: &mut Graph, stats: &EpochStats) -> Result<()> {
        (**self).on_epoch_end(model, stats)
    }
}

/// Loss and accuracy of a model on a dataset, in evaluation mode.
///
/// # Errors
/// When the model rejects the inputs or the dataset is empty.
pub fn evaluate(model: &dyn Layer, data: &Dataset, batch_size: usize) -> Result<(f32, f32)> {
    if data.is_empty() {
        return Err(Error::Invalid("evaluation on an empty dataset".into()));
    }
    let idx: Vec<usize> = (0..data.len()).collect();
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for chunk in idx.chunks(batch_size.max(1)) {
        let (x, y) = data.batch(chunk);
        let out = model.forward(&x)?;
        let (l, _) = softmax_cross_entropy(&out, &y)?;
        loss += l as f64 * chunk.len() as f64;
        correct += count_correct(&out, &y);
    }
    Ok((
        (loss / data.len() as f64) as f32,
        correct as f32 / data.len() as f32,
    ))
}

/// Accuracy of a model on a dataset.
///
/// # Errors
/// As [`evaluate`].
pub fn accuracy(model: &dyn Layer, data: &Dataset) -> Result<f32> {
    Ok(evaluate(model, data, 500)?.1)
}

/// Number of rows of `[N, C]` logits whose arg-max equals the label.
pub fn count_correct(logits: &Tensor, labels: &[usize]) -> usize {
    logits
        .outer_iter()
        .zip(labels)
        .filter(|(row, &y)| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = i;
                }
            }
            best == y
        })
        .count()
}

/// Trains a [`Graph`] with an optimizer, a schedule, a loss and callbacks.
///
/// ```no_run
/// use slimnet_core::{data, models, optim, tensor, train};
/// let mut model = models::lenet5(&mut tensor::rng(0))?;
/// let (tr, te) = (data::mnist(data::Split::Train)?, data::mnist(data::Split::Test)?);
/// let history = train::Trainer::new(train::TrainConfig::default().with_epochs(2))
///     .optimizer(optim::Sgd::new(0.05).with_momentum(0.9))
///     .schedule(optim::CosineLr::new(0.05, 2))
///     .fit(&mut model, &tr, Some(&te))?;
/// println!("{:?}", history.last());
/// # Ok::<(), slimnet_core::Error>(())
/// ```
pub struct Trainer<'a> {
    cfg: TrainConfig,
    optimizer: Box<dyn Optimizer + 'a>,
    schedule: Box<dyn LrSchedule + 'a>,
    loss: Box<dyn Loss + 'a>,
    callbacks: Vec<Box<dyn Callback + 'a>>,
}

impl<'a> Trainer<'a> {
    /// A trainer with SGD (lr 0.01), a constant rate and cross-entropy.
    pub fn new(cfg: TrainConfig) -> Self {
        Self {
            cfg,
            optimizer: Box::new(Sgd::new(0.01)),
            schedule: Box::new(ConstantLr(0.01)),
            loss: Box::new(CrossEntropy),
            callbacks: Vec::new(),
        }
    }

    /// Sets the optimizer (its learning rate is overridden by the schedule; without a schedule
    /// its own rate is kept).
    pub fn optimizer(mut self, opt: impl Optimizer + 'a) -> Self {
        let lr = opt.lr();
        self.optimizer = Box::new(opt);
        self.schedule = Box::new(ConstantLr(lr));
        self
    }

    /// Sets the learning-rate schedule.
    pub fn schedule(mut self, s: impl LrSchedule + 'a) -> Self {
        self.schedule = Box::new(s);
        self
    }

    /// Sets the loss.
    pub fn loss(mut self, l: impl Loss + 'a) -> Self {
        self.loss = Box::new(l);
        self
    }

    /// Adds a callback.
    pub fn callback(mut self, c: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(c));
        self
    }

    /// Trains `model` on `train`, evaluating on `test` after every epoch.
    ///
    /// # Errors
    /// A batch size of 0, an empty training set, a model that rejects the inputs, a loss that
    /// becomes NaN or infinite (with epoch and batch), or an error from a callback.
    pub fn fit(
        &mut self,
        model: &mut Graph,
        train: &Dataset,
        test: Option<&Dataset>,
    ) -> Result<Vec<EpochStats>> {
        let bs = self.cfg.batch_size;
        if bs == 0 || train.is_empty() {
            return Err(Error::Invalid(format!(
                "training needs a positive batch size (got {bs}) and examples (got {})",
                train.len()
            )));
        }
        let spe = train.len().div_ceil(bs);
        let mut rng = rng(self.cfg.seed);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut history = Vec::new();
        let start = Instant::now();
        let mut step = 0;
        for epoch in 0..self.cfg.epochs {
            order.shuffle(&mut rng);
            let bar = if self.cfg.progress {
                ProgressBar::new(spe as u64)
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} {bar:30} {pos}/{len} {elapsed_precise} {msg}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(format!("{}/{}", epoch + 1, self.cfg.epochs));
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            for (b, chunk) in order.chunks(bs).enumerate() {
                let lr = self.schedule.lr_at(step, spe);
                self.optimizer.set_lr(lr);
                let (x, y) = train.batch(chunk);
                let out = model.forward_train(&x)?;
                let (loss, grad) = self.loss.loss(&x, &out, &y)?;
                if !loss.is_finite() {
                    bar.abandon();
                    return Err(Error::NonFinite {
                        what: "loss".into(),
                        value: loss,
                        epoch,
                        batch: b,
                    });
                }
                model.backward(&grad)?;
                self.optimizer.step(model)?;
                (model as &mut dyn Layer).zero_grad();
                step += 1;
                loss_sum += loss as f64 * chunk.len() as f64;
                seen += chunk.len();
                if out.ndim() == 2 {
                    correct += count_correct(&out, &y);
                }
                let info = StepInfo {
                    epoch,
                    batch: b,
                    global_step: step,
                    steps_per_epoch: spe,
                    loss,
                    lr,
                };
                for c in &mut self.callbacks {
                    c.on_step_end(model, &info)?;
                }
                bar.inc(1);
                if b % 20 == 0 {
                    bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
                }
            }
            bar.finish_and_clear();
            let (test_loss, test_accuracy) = match test {
                Some(t) => {
                    let (l, a) = evaluate(model, t, self.cfg.eval_batch_size)?;
                    (Some(l), Some(a))
                }
                None => (None, None),
            };
            let stats = EpochStats {
                epoch,
                train_loss: (loss_sum / seen as f64) as f32,
                train_accuracy: correct as f32 / seen as f32,
                test_loss,
                test_accuracy,
                seconds: start.elapsed().as_secs_f64(),
                lr: self.optimizer.lr(),
            };
            for c in &mut self.callbacks {
                c.on_epoch_end(model, &stats)?;
            }
            history.push(stats);
        }
        Ok(history)
    }
}
