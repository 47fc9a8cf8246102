//! Pruning schedules driven by the trainer's callbacks: one-shot, iterative prune-and-fine-tune,
//! and AGP (Zhu & Gupta's gradual cubic schedule), by step or by epoch.
//!
//! A [`Schedule`] says which sparsity to prune to after `t` completed steps (or epochs);
//! [`PruneCallback`] runs a [`Pruner`] at those points while the trainer keeps fine-tuning, and
//! the masks keep pruned weights at zero in between.
//!
//! ```
//! use slimnet_prune::schedule::{Agp, Schedule};
//! let agp = Agp::new(0.0, 0.9, 0, 10, 1);
//! assert_eq!(agp.target(0), Some(0.0));
//! assert!((agp.target(5).unwrap() - 0.7875).abs() < 1e-6); // 0.9 * (1 - 0.5^3)
//! assert_eq!(agp.target(10), Some(0.9));
//! assert_eq!(agp.target(11), None);
//! ```

use slimnet_core::train::{Callback, EpochStats, StepInfo};
use slimnet_core::Graph;

use crate::pruner::Pruner;

/// When to prune and to which sparsity.
pub trait Schedule: Send {
    /// The sparsity to prune to after `t` completed steps or epochs, or `None` to leave the
    /// masks alone.
    fn target(&self, t: usize) -> Option<f32>;
}

/// Whether a schedule counts optimizer steps or epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unit {
    /// Optimizer steps (checked after every step).
    Step,
    /// Epochs (checked after every epoch's evaluation).
    #[default]
    Epoch,
}

/// Prune once, to `sparsity`, after `at` steps or epochs; training continues as fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneShot {
    /// When.
    pub at: usize,
    /// To which sparsity.
    pub sparsity: f32,
}

impl Schedule for OneShot {
    fn target(&self, t: usize) -> Option<f32> {
        (t == self.at).then_some(self.sparsity)
    }
}

/// Iterative prune-and-fine-tune (Han et al.): prune to each stage's sparsity at its time,
/// fine-tuning in between.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Iterative {
    /// `(time, sparsity)` stages.
    pub stages: Vec<(usize, f32)>,
}

impl Iterative {
    /// `steps` stages `every` apart, starting at `start`, with sparsity rising linearly to
    /// `final_sparsity`.
    pub fn linear(final_sparsity: f32, start: usize, every: usize, steps: usize) -> Self {
        let stages = (1..=steps)
            .map(|i| {
                (
                    start + (i - 1) * every,
                    final_sparsity * i as f32 / steps as f32,
                )
            })
            .collect();
        Self { stages }
    }
}

impl Schedule for Iterative {
    fn target(&self, t: usize) -> Option<f32> {
        self.stages.iter().find(|(at, _)| *at == t).map(|s| s.1)
    }
}

/// Automated gradual pruning (Zhu & Gupta 2017): from `start` to `end`, every `every` steps or
/// epochs, prune to `s_f + (s_i - s_f) * (1 - (t - start) / (end - start))^3`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agp {
    /// Initial sparsity `s_i`.
    pub initial: f32,
    /// Final sparsity `s_f`.
    pub final_sparsity: f32,
    /// First pruning time.
    pub start: usize,
    /// Last pruning time (the final sparsity is reached here).
    pub end: usize,
    /// Pruning frequency.
    pub every: usize,
}

impl Agp {
    /// The cubic schedule.
    pub fn new(initial: f32, final_sparsity: f32, start: usize, end: usize, every: usize) -> Self {
        Self {
            initial,
            final_sparsity,
            start,
            end,
            every: every.max(1),
        }
    }

    /// The sparsity of the curve at `t` (clamped to the ends), whether or not `t` prunes.
    pub fn curve(&self, t: usize) -> f32 {
        if t <= self.start {
            return self.initial;
        }
        if t >= self.end {
            return self.final_sparsity;
        }
        let frac = (t - self.start) as f32 / (self.end - self.start) as f32;
        self.final_sparsity + (self.initial - self.final_sparsity) * (1.0 - frac).powi(3)
    }
}

impl Schedule for Agp {
    fn target(&self, t: usize) -> Option<f32> {
        let on_grid = t >= self.start && (t - self.start).is_multiple_of(self.every);
        (on_grid && t <= self.end || t == self.end).then(|| self.curve(t))
    }
}

/// One pruning event of a [`PruneCallback`].
#[derive(Debug, Clone, PartialEq)]
pub struct PruneEvent {
    /// Step or epoch count when it ran.
    pub t: usize,
    /// The schedule's target.
    pub target: f32,
    /// Sparsity of the pruned layers after it.
    pub achieved: f64,
}

/// Runs a [`Pruner`] from a [`Trainer`](slimnet_core::train::Trainer) callback on a
/// [`Schedule`]. Pass it as `&mut callback` to read its [`events`](Self::events) afterwards.
pub struct PruneCallback {
    pruner: Pruner,
    schedule: Box<dyn Schedule>,
    unit: Unit,
    events: Vec<PruneEvent>,
}

impl std::fmt::Debug for PruneCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PruneCallback")
            .field("pruner", &self.pruner)
            .field("unit", &self.unit)
            .field("events", &self.events)
            .finish()
    }
}

impl PruneCallback {
    /// Prunes with `pruner` whenever `schedule` says so, counting in `unit`s.
    pub fn new(pruner: Pruner, schedule: impl Schedule + 'static, unit: Unit) -> Self {
        Self {
            pruner,
            schedule: Box::new(schedule),
            unit,
            events: Vec::new(),
        }
    }

    /// The pruning events so far.
    pub fn events(&self) -> &[PruneEvent] {
        &self.events
    }

    /// The pruner.
    pub fn pruner(&self) -> &Pruner {
        &self.pruner
    }

    fn at(&mut self, model: &mut Graph, t: usize) -> slimnet_core::Result<()> {
        if let Some(target) = self.schedule.target(t) {
            let r = self.pruner.prune(model, target)?;
            self.events.push(PruneEvent {
                t,
                target,
                achieved: r.sparsity(),
            });
        }
        Ok(())
    }
}

impl Callback for PruneCallback {
    fn on_step_end(&mut self, model: &mut Graph, info: &StepInfo) -> slimnet_core::Result<()> {
        if self.unit == Unit::Step {
            self.at(model, info.global_step)?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, model: &mut Graph, stats: &EpochStats) -> slimnet_core::Result<()> {
        if self.unit == Unit::Epoch {
            self.at(model, stats.epoch + 1)?;
        }
        Ok(())
    }
}
