//! Training runs recorded as test accuracy against wall-clock time: [`fit`] is slimnet-core's
//! [`Trainer`] with a cosine schedule, several evaluations an epoch and an optional time budget,
//! its evaluations returned as [`TimePoint`]s of a run's [`Clock`].

use indicatif::{ProgressBar, ProgressStyle};
use slimnet_core::data::{Dataset, Examples};
use slimnet_core::loss::Loss;
use slimnet_core::optim::{Adam, CosineLr, Optimizer, Sgd};
use slimnet_core::train::{evaluate, TrainConfig, Trainer};
use slimnet_core::{Graph, Layer};

pub use slimnet_core::train::Clock;

use crate::error::Result;

/// The optimizer of a [`FitConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum.
    Sgd {
        /// Momentum.
        momentum: f32,
    },
    /// Adam with coupled L2 weight decay.
    Adam,
}

/// Settings of [`fit`]: cosine learning-rate decay over the epochs, evaluation points.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FitConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to zero).
    pub lr: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Test evaluations per epoch, evenly spaced (at least one, at the end of the epoch).
    pub evals_per_epoch: usize,
    /// Batch size for evaluation.
    pub eval_batch: usize,
    /// When set, training stops as soon as the run's clock reaches this many seconds (the
    /// clock passed to [`fit`], so earlier phases of the run count), and the cosine decay
    /// follows whichever is further along: the steps of `epochs` or the time of the budget.
    /// `epochs` is then an upper bound. Runs with a budget depend on the machine's speed.
    pub time_budget: Option<f64>,
}

impl Default for FitConfig {
    /// 1 epoch, batch 64, SGD (lr 0.05, Nesterov momentum 0.9, weight decay 5e-4), 1
    /// evaluation per epoch.
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            lr: 0.05,
            weight_decay: 5e-4,
            optimizer: OptimizerKind::Sgd { momentum: 0.9 },
            seed: 0,
            evals_per_epoch: 1,
            eval_batch: 500,
            time_budget: None,
        }
    }
}

impl FitConfig {
    /// Sets the epochs.
    pub fn with_epochs(mut self, e: usize) -> Self {
        self.epochs = e;
        self
    }
    /// Sets the batch size.
    pub fn with_batch_size(mut self, b: usize) -> Self {
        self.batch_size = b;
        self
    }
    /// Sets the peak learning rate.
    pub fn with_lr(mut self, lr: f32) -> Self {
        self.lr = lr;
        self
    }
    /// Sets the weight decay.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
    /// Sets the optimizer.
    pub fn with_optimizer(mut self, o: OptimizerKind) -> Self {
        self.optimizer = o;
        self
    }
    /// Sets the shuffle seed.
    pub fn with_seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }
    /// Sets the evaluations per epoch.
    pub fn with_evals_per_epoch(mut self, n: usize) -> Self {
        self.evals_per_epoch = n;
        self
    }

    /// Stops training when the run's clock reaches `seconds` (see
    /// [`time_budget`](Self::time_budget)).
    pub fn with_time_budget(mut self, seconds: f64) -> Self {
        self.time_budget = Some(seconds);
        self
    }

    pub(crate) fn optimizer(&self) -> Box<dyn Optimizer> {
        match self.optimizer {
            OptimizerKind::Sgd { momentum } => Box::new(
                Sgd::new(self.lr)
                    .with_momentum(momentum)
                    .with_nesterov(momentum > 0.0)
                    .with_weight_decay(self.weight_decay),
            ),
            OptimizerKind::Adam => {
                Box::new(Adam::new(self.lr).with_weight_decay(self.weight_decay))
            }
        }
    }
}

/// Test accuracy at a moment of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TimePoint {
    /// Wall-clock seconds since the run started (evaluations included).
    pub seconds: f64,
    /// Optimizer steps taken in this phase.
    pub step: usize,
    /// The phase that produced it (e.g. `"scratch"`, `"phase1"`, `"phase2"`).
    pub phase: String,
    /// Test accuracy in `[0, 1]`.
    pub test_accuracy: f32,
}

/// The first time a run reached `target` accuracy.
pub fn seconds_to(points: &[TimePoint], target: f32) -> Option<f64> {
    points
        .iter()
        .find(|p| p.test_accuracy >= target)
        .map(|p| p.seconds)
}

/// Evaluates `model` on `test` (on a paused `clock`) and stamps the result with the clock's
/// time.
///
/// # Errors
/// When the model rejects the inputs.
pub fn eval_point(
    model: &dyn Layer,
    test: &Dataset,
    clock: &Clock,
    step: usize,
    phase: &str,
) -> Result<TimePoint> {
    let (_, acc) = clock.paused(|| evaluate(model, test, 500))?;
    Ok(TimePoint {
        seconds: clock.seconds(),
        step,
        phase: phase.to_string(),
        test_accuracy: acc,
    })
}

/// Trains `model` on `train` with `loss` (any core [`Loss`]; a cached distillation loss finds
/// the teacher's outputs by the batch's example indices), evaluating on `test`
/// `evals_per_epoch` times an epoch; returns the evaluation points, timed by `clock` (pass the
/// clock of the whole run, so that earlier phases count; evaluations are not counted). With a
/// [`time_budget`](FitConfig::time_budget), training stops when the clock reaches it, and the
/// last point is taken there.
///
/// # Errors
/// Zero epochs or batch size, an empty training set, a budget the clock has already passed, a
/// model that rejects the inputs, or a non-finite loss (with epoch and batch).
pub fn fit(
    model: &mut Graph,
    loss: &mut dyn Loss,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &FitConfig,
    clock: &Clock,
    phase: &str,
) -> Result<Vec<TimePoint>> {
    let mut tc = TrainConfig::default()
        .with_epochs(cfg.epochs)
        .with_batch_size(cfg.batch_size)
        .with_seed(cfg.seed)
        .with_evals_per_epoch(cfg.evals_per_epoch)
        .with_label(phase);
    tc.eval_batch_size = cfg.eval_batch;
    if let Some(budget) = cfg.time_budget {
        tc = tc.with_time_budget(budget);
    }
    let history = Trainer::new(tc)
        .optimizer_boxed(cfg.optimizer())
        .schedule(CosineLr::new(cfg.lr, cfg.epochs))
        .loss(LossRef(loss))
        .clock(clock)
        .fit(model, train, test.map(|t| t as &dyn Examples))?;
    Ok(history
        .iter()
        .flat_map(|e| &e.evals)
        .map(|p| TimePoint {
            seconds: p.seconds,
            step: p.step,
            phase: phase.to_string(),
            test_accuracy: p.test_accuracy,
        })
        .collect())
}

/// A borrowed loss, so a caller keeps its loss (and its state) after training.
struct LossRef<'a>(&'a mut dyn Loss);

impl Loss for LossRef<'_> {
    fn loss(
        &mut self,
        input: &slimnet_core::Tensor,
        output: &slimnet_core::Tensor,
        labels: &[usize],
    ) -> slimnet_core::Result<(f32, slimnet_core::Tensor)> {
        self.0.loss(input, output, labels)
    }

    fn loss_batch(
        &mut self,
        batch: &slimnet_core::loss::Batch<'_>,
        output: &slimnet_core::Tensor,
    ) -> slimnet_core::Result<(f32, slimnet_core::Tensor)> {
        self.0.loss_batch(batch, output)
    }
}

/// A progress bar over one epoch's `steps` batches, labelled with the phase and epoch; drawn on
/// standard error when it is a terminal, hidden otherwise (so logs stay clean).
pub(crate) fn epoch_bar(phase: &str, epoch: usize, epochs: usize, steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(format!("{phase} epoch {}/{epochs}", epoch + 1));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::loss::CrossEntropy;
    use slimnet_core::{models, tensor};

    /// A separable toy problem: the class is which of two halves of the image is brighter.
    fn toy(n: usize, seed: u64) -> Dataset {
        let mut x = tensor::uniform(&[n, 1, 28, 28], 0.0, 0.5, &mut tensor::rng(seed));
        let mut labels = Vec::new();
        for (i, mut img) in x.outer_iter_mut().enumerate() {
            let c = i % 2;
            for r in 0..28 {
                for col in (c * 14)..(c * 14 + 14) {
                    img[[0, r, col]] += 0.5;
                }
            }
            labels.push(c);
        }
        Dataset::new(x, labels, 10).unwrap()
    }

    #[test]
    fn fit_learns_and_records_points() {
        let mut m = models::lenet300(&mut tensor::rng(0)).unwrap();
        let (tr, te) = (toy(256, 1), toy(64, 2));
        let cfg = FitConfig::default()
            .with_epochs(2)
            .with_batch_size(32)
            .with_evals_per_epoch(2)
            .with_lr(0.02);
        let pts = fit(
            &mut m,
            &mut CrossEntropy,
            &tr,
            Some(&te),
            &cfg,
            &Clock::start(),
            "t",
        )
        .unwrap();
        assert_eq!(pts.len(), 4);
        assert!(pts.windows(2).all(|w| w[0].seconds <= w[1].seconds));
        assert!(pts.last().unwrap().test_accuracy > 0.95, "{pts:?}");
        assert_eq!(seconds_to(&pts, 2.0), None);
        assert!(fit(
            &mut m,
            &mut CrossEntropy,
            &tr,
            None,
            &cfg.clone().with_epochs(0),
            &Clock::start(),
            "t"
        )
        .is_err());
    }

    #[test]
    fn a_time_budget_stops_training_and_takes_a_last_point() {
        let mut m = models::lenet300(&mut tensor::rng(0)).unwrap();
        let (tr, te) = (toy(256, 1), toy(64, 2));
        let clock = Clock::start();
        // A budget that ends during the first epoch of many: one point, at the stop.
        let budget = 1e-3;
        let cfg = FitConfig::default()
            .with_epochs(1000)
            .with_batch_size(8)
            .with_time_budget(budget);
        let pts = fit(&mut m, &mut CrossEntropy, &tr, Some(&te), &cfg, &clock, "t").unwrap();
        assert_eq!(pts.len(), 1, "{pts:?}");
        assert!(pts[0].step < 1000 * 32, "{pts:?}");
        assert!(pts[0].seconds >= budget);
        // The budget has been used up: a second call is refused.
        let e = fit(&mut m, &mut CrossEntropy, &tr, None, &cfg, &clock, "t").unwrap_err();
        assert!(e.to_string().contains("time budget"), "{e}");
    }
}
