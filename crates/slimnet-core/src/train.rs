//! The training loop: shuffled mini-batches, learning-rate schedule, evaluations (once or
//! several times an epoch, timed by a [`Clock`] that leaves them out), an optional time budget,
//! a progress bar, and callbacks at the end of every step, evaluation and epoch. Every trainer
//! of slimnet (fine-tuning, pruning and QAT schedules, distillation) runs on it.
//!
//! Runs are deterministic for a given seed and thread count: the shuffle uses the seeded
//! generator, and every kernel is deterministic for a fixed thread count.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;

use crate::data::Examples;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::io::{self, Registry};
use crate::layer::Layer;
use crate::layer::StoredTensor;
use crate::loss::{softmax_cross_entropy, Batch, CrossEntropy, Loss};
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
    /// Test evaluations per epoch, evenly spaced, the last at the end of the epoch (at least
    /// one).
    pub evals_per_epoch: usize,
    /// When set, training stops as soon as the clock reaches this many seconds (the trainer's
    /// [`Clock`], so earlier phases of a run sharing it count), and the learning-rate schedule
    /// follows whichever is further along: the steps of `epochs` or the time of the budget.
    /// `epochs` is then an upper bound, and runs depend on the machine's speed.
    pub time_budget: Option<f64>,
    /// The progress bar's label (`epoch` unless a phase names itself).
    pub label: String,
    /// When set, a checkpoint (model, optimizer state, layers' random generators, epoch and
    /// history) is written to this file after every epoch, and a run that finds the file
    /// resumes from it, to bit-identical results for the same thread count.
    pub checkpoint: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            seed: 0,
            progress: true,
            eval_batch_size: 500,
            evals_per_epoch: 1,
            time_budget: None,
            label: "epoch".into(),
            checkpoint: None,
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

    /// Sets the test evaluations per epoch.
    pub fn with_evals_per_epoch(mut self, n: usize) -> Self {
        self.evals_per_epoch = n;
        self
    }

    /// Stops training when the clock reaches `seconds` (see
    /// [`time_budget`](Self::time_budget)).
    pub fn with_time_budget(mut self, seconds: f64) -> Self {
        self.time_budget = Some(seconds);
        self
    }

    /// Checkpoints every epoch to `path` and resumes from it (see
    /// [`checkpoint`](Self::checkpoint)).
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Sets the progress bar's label.
    pub fn with_label(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
    }
}

/// A run's wall clock that leaves out the time spent evaluating on the test set, so that runs
/// evaluated at different rates compare fairly. Phases of one run share a clock.
///
/// ```
/// use slimnet_core::train::Clock;
/// let clock = Clock::start();
/// clock.paused(|| std::thread::sleep(std::time::Duration::from_millis(20)));
/// assert!(clock.seconds() < 0.015);
/// ```
#[derive(Debug, Clone)]
pub struct Clock {
    start: Instant,
    excluded: Cell<f64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::start()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
            excluded: Cell::new(0.0),
        }
    }

    /// Seconds since the start, paused time excluded.
    pub fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64() - self.excluded.get()
    }

    /// Runs `f` without counting its time.
    pub fn paused<R>(&self, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.excluded
            .set(self.excluded.get() + t.elapsed().as_secs_f64());
        r
    }
}

/// A test evaluation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Steps taken so far.
    pub step: usize,
    /// The clock's seconds (evaluations excluded).
    pub seconds: f64,
    /// Test loss.
    pub test_loss: f32,
    /// Test accuracy.
    pub test_accuracy: f32,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The test evaluations of this epoch (the last one gives `test_loss` and
    /// `test_accuracy`).
    pub evals: Vec<EvalPoint>,
}

/// The line the examples and the command line print per epoch: `epoch  3  train_loss 0.1234
/// train_acc 0.9612  test_acc 0.9701  lr 0.00500  12.3s` (no `test_acc` without a test set).
///
/// ```
/// use slimnet_core::train::EpochStats;
/// let s = EpochStats {
///     epoch: 2,
///     train_loss: 0.1234,
///     train_accuracy: 0.9612,
///     test_loss: Some(0.1),
///     test_accuracy: Some(0.9701),
///     seconds: 12.34,
///     lr: 0.005,
///     evals: vec![],
/// };
/// assert_eq!(
///     s.to_string(),
///     "epoch  3  train_loss 0.1234  train_acc 0.9612  test_acc 0.9701  lr 0.00500  12.3s"
/// );
/// ```
impl std::fmt::Display for EpochStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {:>2}  train_loss {:.4}  train_acc {:.4}",
            self.epoch + 1,
            self.train_loss,
            self.train_accuracy
        )?;
        if let Some(a) = self.test_accuracy {
            write!(f, "  test_acc {a:.4}")?;
        }
        write!(f, "  lr {:.5}  {:.1}s", self.lr, self.seconds)
    }
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

    /// After every test evaluation.
    ///
    /// # Errors
    /// An error stops training and is returned by [`Trainer::fit`].
    fn on_eval(&mut self, model: &mut Graph, point: &EvalPoint) -> Result<()> {
        let _ = (model, point);
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

    fn on_eval(&mut self, model: &mut Graph, point: &EvalPoint) -> Result<()> {
        (**self).on_eval(model, point)
    }

    fn on_epoch_end(&mut self, model: &mut Graph, stats: &EpochStats) -> Result<()> {
        (**self).on_epoch_end(model, stats)
    }
}

/// Loss and accuracy of a model on a dataset, in evaluation mode.
///
/// # Errors
/// When the model rejects the inputs or the dataset is empty.
pub fn evaluate(model: &dyn Layer, data: &dyn Examples, batch_size: usize) -> Result<(f32, f32)> {
    if data.is_empty() {
        return Err(Error::Invalid("evaluation on an empty dataset".into()));
    }
    data.check()?;
    let idx: Vec<usize> = (0..data.len()).collect();
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for chunk in idx.chunks(batch_size.max(1)) {
        let (x, y) = data.load(chunk)?;
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
pub fn accuracy(model: &dyn Layer, data: &dyn Examples) -> Result<f32> {
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

/// The first parameter holding NaN or an infinity, with the value.
fn first_non_finite(model: &Graph) -> Option<(String, f32)> {
    let mut found = None;
    model.visit_params(&mut |path, p| {
        if found.is_none() {
            // a check the compiler vectorizes (no early exit within a run of values), then the
            // value itself when there is one
            let all_finite = match p.value().as_slice() {
                Some(s) => s
                    .chunks(4096)
                    .all(|run| run.iter().fold(true, |ok, v| ok & v.is_finite())),
                None => p.value().iter().all(|v| v.is_finite()),
            };
            if !all_finite {
                let v = p.value().iter().copied().find(|v| !v.is_finite());
                found = v.map(|v| (path.to_string(), v));
            }
        }
    });
    found
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
    clock: Option<&'a Clock>,
    registry: Registry,
}

/// Metadata key of a checkpoint's training state.
const CHECKPOINT_KEY: &str = "slimnet.checkpoint";
/// Prefix of a checkpoint's optimizer tensors (a model tensor of the same name would be
/// reported when the checkpoint is written).
const OPTIMIZER_PREFIX: &str = "#optimizer.";

/// What a checkpoint records beside the model and the optimizer.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    /// The last finished epoch.
    epoch: usize,
    step: usize,
    seed: u64,
    batch_size: usize,
    examples: usize,
    history: Vec<EpochStats>,
    /// Layers' training states (random generators) by path.
    layers: BTreeMap<String, Vec<u64>>,
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
            clock: None,
            registry: Registry::core(),
        }
    }

    /// The registry a checkpoint's model is loaded with (core kinds by default; a model with
    /// layers of other crates needs theirs, e.g. `slimnet::registry()`).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Times the run with `clock` (shared by the phases of a run; evaluations are left out);
    /// without one, the trainer starts its own.
    pub fn clock(mut self, clock: &'a Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the optimizer (its learning rate is overridden by the schedule; without a schedule
    /// its own rate is kept).
    pub fn optimizer(mut self, opt: impl Optimizer + 'a) -> Self {
        let lr = opt.lr();
        self.optimizer = Box::new(opt);
        self.schedule = Box::new(ConstantLr(lr));
        self
    }

    /// Sets a boxed optimizer (see [`optimizer`](Self::optimizer)).
    pub fn optimizer_boxed(mut self, opt: Box<dyn Optimizer + 'a>) -> Self {
        let lr = opt.lr();
        self.optimizer = opt;
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

    /// Trains `model` on `train`, evaluating on `test` `evals_per_epoch` times an epoch (the
    /// last at its end); returns each epoch's statistics.
    ///
    /// # Errors
    /// A batch size or epoch count of 0, an empty training set, a time budget the clock has
    /// already passed, a model that rejects the inputs, a loss that becomes NaN or infinite
    /// (with epoch and batch), or an error from a callback.
    pub fn fit(
        &mut self,
        model: &mut Graph,
        train: &dyn Examples,
        test: Option<&dyn Examples>,
    ) -> Result<Vec<EpochStats>> {
        let (bs, epochs) = (self.cfg.batch_size, self.cfg.epochs);
        if bs == 0 || train.is_empty() || epochs == 0 {
            return Err(Error::Invalid(format!(
                "{}: training needs epochs (got {epochs}), a positive batch size (got {bs}) \
                 and examples (got {})",
                self.cfg.label,
                train.len()
            )));
        }
        train.check()?;
        if let Some(t) = test {
            t.check()?;
        }
        let own = Clock::start();
        let clock = self.clock.unwrap_or(&own);
        let start = clock.seconds();
        if let Some(budget) = self.cfg.time_budget {
            if budget.is_nan() || budget <= start {
                return Err(Error::Invalid(format!(
                    "{}: the time budget ({budget:.1} s) is already used up ({start:.1} s)",
                    self.cfg.label
                )));
            }
        }
        let spe = train.len().div_ceil(bs);
        let evals = self.cfg.evals_per_epoch.clamp(1, spe);
        let mut rng = rng(self.cfg.seed);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut history = Vec::new();
        let mut step = 0;
        let mut first = 0;
        if let Some(state) = self.resume(model, train.len())? {
            // the shuffles of the finished epochs, replayed, leave the generator where it was
            for _ in 0..=state.epoch {
                order.shuffle(&mut rng);
            }
            (first, step, history) = (state.epoch + 1, state.step, state.history);
        }
        'epochs: for epoch in first..epochs {
            order.shuffle(&mut rng);
            let bar = if self.cfg.progress {
                ProgressBar::new(spe as u64)
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} {bar:30} {pos}/{len} {elapsed_precise} {msg}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(format!("{} {}/{}", self.cfg.label, epoch + 1, epochs));
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            let mut points = Vec::new();
            let mut next_eval = 1;
            for (b, chunk) in order.chunks(bs).enumerate() {
                // with a budget, the schedule follows steps or time, whichever is further
                let at = match self.cfg.time_budget {
                    None => step,
                    Some(budget) => {
                        let by_time = (clock.seconds() - start) / (budget - start);
                        step.max((by_time * (epochs * spe) as f64) as usize)
                    }
                };
                let lr = self.schedule.lr_at(at, spe);
                if !lr.is_finite() {
                    bar.abandon();
                    return Err(Error::NonFinite {
                        what: format!("{} learning rate", self.cfg.label),
                        value: lr,
                        epoch,
                        batch: b,
                    });
                }
                self.optimizer.set_lr(lr);
                let (x, y) = train.load(chunk)?;
                let out = model.forward_train(&x)?;
                let batch = Batch {
                    indices: chunk,
                    input: &x,
                    labels: &y,
                };
                let (loss, grad) = self.loss.loss_batch(&batch, &out)?;
                if !loss.is_finite() {
                    bar.abandon();
                    return Err(Error::NonFinite {
                        what: format!("{} loss", self.cfg.label),
                        value: loss,
                        epoch,
                        batch: b,
                    });
                }
                model.backward(&grad)?;
                self.optimizer.step(model)?;
                model.zero_grad();
                if let Some((path, value)) = first_non_finite(model) {
                    bar.abandon();
                    return Err(Error::NonFinite {
                        what: format!("weight `{path}`"),
                        value,
                        epoch,
                        batch: b,
                    });
                }
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
                let out_of_time = self
                    .cfg
                    .time_budget
                    .is_some_and(|budget| clock.seconds() >= budget);
                let due = b + 1 >= (spe * next_eval).div_ceil(evals) || b + 1 == spe;
                if let (Some(t), true) = (test, due || out_of_time) {
                    let eval_batch = self.cfg.eval_batch_size;
                    let (l, a) = clock.paused(|| evaluate(model, t, eval_batch))?;
                    let point = EvalPoint {
                        epoch,
                        step,
                        seconds: clock.seconds(),
                        test_loss: l,
                        test_accuracy: a,
                    };
                    for c in &mut self.callbacks {
                        c.on_eval(model, &point)?;
                    }
                    points.push(point);
                    next_eval += 1;
                }
                if out_of_time {
                    bar.finish_and_clear();
                    history.push(self.epoch_end(
                        model,
                        epoch,
                        clock,
                        (loss_sum, correct, seen),
                        points,
                    )?);
                    break 'epochs;
                }
            }
            bar.finish_and_clear();
            history.push(self.epoch_end(model, epoch, clock, (loss_sum, correct, seen), points)?);
            self.save_checkpoint(model, epoch, step, train.len(), &history)?;
        }
        Ok(history)
    }

    /// Writes the checkpoint after `epoch`, when one is configured.
    fn save_checkpoint(
        &self,
        model: &Graph,
        epoch: usize,
        step: usize,
        examples: usize,
        history: &[EpochStats],
    ) -> Result<()> {
        let Some(path) = &self.cfg.checkpoint else {
            return Ok(());
        };
        let mut layers = BTreeMap::new();
        model.visit_layers(&mut |p, l| {
            let s = l.train_state();
            if !s.is_empty() {
                layers.insert(p.to_string(), s);
            }
        });
        let state = CheckpointState {
            epoch,
            step,
            seed: self.cfg.seed,
            batch_size: self.cfg.batch_size,
            examples,
            history: history.to_vec(),
            layers,
        };
        let extra = self
            .optimizer
            .state()
            .into_iter()
            .map(|(n, t)| (format!("{OPTIMIZER_PREFIX}{n}"), StoredTensor::from_f32(&t)))
            .collect();
        let meta = vec![(
            CHECKPOINT_KEY.to_string(),
            serde_json::to_string(&state).expect("the state serializes"),
        )];
        let bytes = io::to_bytes_with(model, extra, meta)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        io::write_atomically(path, &bytes)
    }

    /// Restores `model` and the optimizer from the configured checkpoint, if the file exists.
    fn resume(&mut self, model: &mut Graph, examples: usize) -> Result<Option<CheckpointState>> {
        let Some(path) = self.cfg.checkpoint.clone() else {
            return Ok(None);
        };
        if !path.exists() {
            return Ok(None);
        }
        let bad = |m: String| Error::ModelFile(format!("checkpoint {}: {m}", path.display()));
        let bytes = std::fs::read(&path)?;
        let (g, (tensors, meta)) =
            io::from_bytes_with(&bytes, &self.registry, Some(OPTIMIZER_PREFIX))
                .map_err(|e| bad(e.to_string()))?;
        let state: CheckpointState = meta
            .get(CHECKPOINT_KEY)
            .ok_or_else(|| bad(format!("no `{CHECKPOINT_KEY}` metadata")))
            .and_then(|s| serde_json::from_str(s).map_err(|e| bad(e.to_string())))?;
        let run = (self.cfg.seed, self.cfg.batch_size, examples);
        if (state.seed, state.batch_size, state.examples) != run {
            return Err(bad(format!(
                "made for seed {}, batch size {} and {} examples, not this run's {run:?}; \
                 delete it to start over",
                state.seed, state.batch_size, state.examples
            )));
        }
        *model = g;
        let mut err = None;
        model.visit_layers_mut(&mut |p, l| {
            if let Some(s) = state.layers.get(p) {
                if let Err(e) = l.set_train_state(s) {
                    err.get_or_insert(e.in_layer(p));
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        self.optimizer.load_state(tensors)?;
        Ok(Some(state))
    }

    /// The statistics of an epoch, shown to the callbacks.
    fn epoch_end(
        &mut self,
        model: &mut Graph,
        epoch: usize,
        clock: &Clock,
        (loss_sum, correct, seen): (f64, usize, usize),
        evals: Vec<EvalPoint>,
    ) -> Result<EpochStats> {
        let last = evals.last();
        let stats = EpochStats {
            epoch,
            train_loss: (loss_sum / seen.max(1) as f64) as f32,
            train_accuracy: correct as f32 / seen.max(1) as f32,
            test_loss: last.map(|p| p.test_loss),
            test_accuracy: last.map(|p| p.test_accuracy),
            seconds: clock.seconds(),
            lr: self.optimizer.lr(),
            evals,
        };
        for c in &mut self.callbacks {
            c.on_epoch_end(model, &stats)?;
        }
        Ok(stats)
    }
}
