//! Compression pipelines: a [`Pipeline`] of typed [`Step`]s run on a model and its [`Data`],
//! each step measured before and after (validation accuracy, parameters, MACs, file bytes
//! and batch-1 latency), and a TOML [`Recipe`] that maps one to one onto it.
//!
//! The steps: [`Decompose`] (low-rank, with a rank policy and a method), [`Prune`] (criterion,
//! scope, pattern, one-shot or AGP schedule, fine-tuning on the masks), [`ToSparse`] (masked
//! layers to sparse deploy layers), [`Quantize`] (static int8), [`Qat`] (quantization-aware
//! training), [`FoldBn`] and [`FineTune`]. Before anything runs, the pipeline checks every
//! step's settings and that each step can follow the ones before it on this model (pruning
//! an int8 model, say, is refused with an error naming the step and what to do instead).
//! Layers of kinds no step has a rule for, your own included, pass through untouched.
//!
//! Deep compression of LeNet-5 (what `examples/compose_lenet.rs` and
//! `recipes/lenet5_deep_compression.toml` run):
//!
//! ```no_run
//! use slimnet::pipeline::*;
//! let data = Data::mnist()?;
//! let dense = Baseline::new("lenet5", "mnist", 1).load_or_train(&data, true)?;
//! let tune = |epochs| FineTune::sgd(epochs, 0.01).with_weight_decay(5e-4);
//! let lowrank = Decompose::new(Method::Tucker2, Rank::MacRatio(0.3)).with_layers(&["conv2"]);
//! let prune = Prune::new(0.96).with_scope(Scope::Global);
//! let out = Pipeline::new("lenet5_deep_compression")
//!     .threads(2)
//!     .step(lowrank.with_fine_tune(tune(1)))
//!     .step(prune.with_schedule(Schedule::Agp { epochs: 4, updates: 20 }).with_fine_tune(tune(4)))
//!     .step(ToSparse::default())
//!     .step(Quantize::new(2048))
//!     .run(dense, &data)?;
//! println!("{}\n{}", out.report, out.report.summary_line());
//! slimnet::save(&out.model, "lenet5-deep-compression.safetensors")?;
//! # Ok::<(), slimnet::Error>(())
//! ```
//!
//! A run on a few random examples, and a step order that is refused:
//!
//! ```
//! use slimnet::core::{data::Dataset, models, tensor, timing::TimingConfig};
//! use slimnet::pipeline::{Data, Pipeline, Prune, Quantize, ToSparse};
//! let x = tensor::uniform(&[64, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(0));
//! let set = Dataset::new(x, (0..64).map(|i| i % 10).collect(), 10)?;
//! let data = Data::new("random", set.clone(), set)?;
//! let model = models::lenet300(&mut tensor::rng(0))?;
//! let out = Pipeline::new("tiny")
//!     .timing(TimingConfig::quick())
//!     .step(Prune::new(0.9))
//!     .step(ToSparse::default())
//!     .step(Quantize::new(32))
//!     .run(model.clone(), &data)?;
//! assert!(out.report.size_ratio() > 5.0, "{}", out.report);
//! let e = Pipeline::new("wrong").step(Quantize::new(32)).step(Prune::new(0.5)).run(model, &data);
//! assert!(e.unwrap_err().to_string().starts_with("step 2 `prune`: the model is int8"));
//! # Ok::<(), slimnet::Error>(())
//! ```

mod error;
mod npy;
mod recipe;
mod report;
mod steps;
mod train;

pub use error::PipelineError;
pub use recipe::{DataSpec, MeasureSpec, ModelSpec, Recipe};
pub use report::{measure, Metrics, Report, StepRecord};
pub use steps::{
    Criterion, Decompose, FoldBn, Method, Observer, Pattern, Prune, Qat, Quantize, Rank, Schedule,
    Scope, Step, ToSparse,
};
pub use train::{Baseline, Data, Distill, FineTune, BASELINE_THREADS};

use std::time::Instant;

use crate::core::data::Dataset;
use crate::core::layers::{Activation, BatchNorm2d, Conv2d, Linear};
use crate::core::rewrite::{fold_batchnorm, Selector};
use crate::core::timing::TimingConfig;
use crate::core::train::{Callback, EpochStats};
use crate::core::{Graph, Layer};
use crate::decompose::rewrite::{decompose, LowRank, SpeedCheck};
use crate::distill::{loss::KdConfig, loss::KdLoss, FrozenTeacher};
use crate::prune::schedule::{Agp, PruneCallback, Unit};
use crate::prune::{convert::to_sparse, sparsity_report, Pruner};
use crate::quant::ptq::{f32_layers, quantize_static, PtqConfig};
use crate::quant::{layers as qlayers, qat};
use crate::Result;

/// What a running pipeline tells its caller ([`Pipeline::run_with`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The model as given was measured.
    Measured(&'a Metrics),
    /// A step starts.
    StepStarted {
        /// Step number, from 1.
        index: usize,
        /// Number of steps.
        total: usize,
        /// The step.
        step: &'a Step,
    },
    /// A training epoch of a step ended.
    Epoch {
        /// Step number, from 1.
        index: usize,
        /// The epoch's statistics.
        stats: &'a EpochStats,
    },
    /// A step ended and was measured.
    StepFinished(&'a StepRecord),
}

impl Event<'_> {
    /// The event as the examples print it: one line per step start, training epoch and
    /// finished step (its details: the rewrite or pruning table); `None` for the others.
    pub fn line(&self) -> Option<String> {
        match self {
            Event::StepStarted { index, total, step } => Some(format!(
                "step {index}/{total} {}: {}",
                step.kind(),
                step.describe()
            )),
            Event::Epoch { stats, .. } => Some(stats.to_string()),
            Event::StepFinished(r) => Some(r.details.clone()),
            Event::Measured(_) => None,
        }
    }
}

/// The compressed model and what each step did to it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The model after the last step.
    pub model: Graph,
    /// The measurements.
    pub report: Report,
}

/// A sequence of compression steps (see the module docs).
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// A name for reports (a recipe's name).
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Whether training and calibration draw progress bars (only ever on a terminal).
    pub progress: bool,
    /// How latency is timed.
    pub timing: TimingConfig,
    /// Kernel threads for the steps (training, calibration); `None` keeps the caller's
    /// setting. Latency is always timed on one thread.
    pub threads: Option<usize>,
}

impl Pipeline {
    /// An empty pipeline: progress bars on, the default timing, the caller's threads.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            steps: Vec::new(),
            progress: true,
            timing: TimingConfig::default(),
            threads: None,
        }
    }

    /// Appends a step.
    pub fn step(mut self, step: impl Into<Step>) -> Self {
        self.steps.push(step.into());
        self
    }

    /// Turns progress bars on or off.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Sets how latency is timed.
    pub fn timing(mut self, timing: TimingConfig) -> Self {
        self.timing = timing;
        self
    }

    /// Runs the steps on `n` kernel threads.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Checks, without running anything, that every step's settings are in range, that
    /// each step can follow the ones before it on `model`, and that `model` takes `data`.
    ///
    /// # Errors
    /// [`PipelineError::Settings`], [`PipelineError::Order`] or [`PipelineError::Data`].
    pub fn check(&self, model: &Graph, data: &Data) -> Result<()> {
        check_data(model, data)?;
        self.check_from(State::of(model))
    }

    /// Checks, without a model or data, that every step's settings are in range and that
    /// each step can follow the ones before it on a plain float model (what a recipe can be
    /// checked for before its model is trained or loaded).
    ///
    /// # Errors
    /// [`PipelineError::Settings`] or [`PipelineError::Order`].
    pub fn check_steps(&self) -> Result<()> {
        self.check_from(State::default())
    }

    fn check_from(&self, mut state: State) -> Result<()> {
        for (i, step) in self.steps.iter().enumerate() {
            let index = i + 1;
            if let Some(reason) = settings_problem(step) {
                return Err(PipelineError::Settings {
                    index,
                    step: step.kind(),
                    reason,
                }
                .into());
            }
            state.admit(index, step)?;
        }
        Ok(())
    }

    /// Runs the pipeline on `model` (see [`run_with`](Self::run_with)).
    ///
    /// # Errors
    /// As [`run_with`](Self::run_with).
    pub fn run(&self, model: Graph, data: &Data) -> Result<Outcome> {
        self.run_with(model, data, &mut |_| {})
    }

    /// Checks the pipeline ([`check`](Self::check)), measures `model`, then runs and measures
    /// every step, telling `on_event` as it goes.
    ///
    /// # Errors
    /// A failed [`check`](Self::check), or the first step that fails
    /// ([`PipelineError::Step`], naming it), or a model that cannot be measured.
    pub fn run_with(
        &self,
        model: Graph,
        data: &Data,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Outcome> {
        self.check(&model, data)?;
        let body = || self.run_checked(model, data, on_event);
        match self.threads {
            Some(n) => crate::kernels::threads::with(n, body),
            None => body(),
        }
    }

    fn run_checked(
        &self,
        mut model: Graph,
        data: &Data,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Outcome> {
        let base = measure(&model, data, &self.timing)?;
        on_event(Event::Measured(&base));
        // the model as given, for the fine-tunings that distil from it
        let teacher = if self
            .steps
            .iter()
            .any(|s| s.tuning().is_some_and(|t| t.distill.is_some()))
        {
            let mut t = model.clone();
            t.zero_grad();
            Some(FrozenTeacher::new(t)?)
        } else {
            None
        };
        let teacher = teacher.as_ref();
        let mut records: Vec<StepRecord> = Vec::new();
        let total = self.steps.len();
        for (i, step) in self.steps.iter().enumerate() {
            let index = i + 1;
            on_event(Event::StepStarted { index, total, step });
            // the model as it is now, in case a file or an earlier step brought something
            // the plan did not foresee
            State::of(&model).admit(index, step)?;
            let started = Instant::now();
            let details = self
                .apply(index, step, &mut model, data, teacher, on_event)
                .map_err(|source| PipelineError::Step {
                    index,
                    step: step.kind(),
                    source,
                })?;
            let seconds = started.elapsed().as_secs_f64();
            let before = records.last().map_or(&base, |r| &r.after).clone();
            let after =
                measure(&model, data, &self.timing).map_err(|source| PipelineError::Step {
                    index,
                    step: step.kind(),
                    source,
                })?;
            records.push(StepRecord {
                index,
                kind: step.kind().to_string(),
                settings: step.describe(),
                details,
                before,
                after,
                seconds,
            });
            on_event(Event::StepFinished(records.last().expect("just pushed")));
        }
        Ok(Outcome {
            model,
            report: Report {
                name: self.name.clone(),
                data: data.name.clone(),
                base,
                steps: records,
            },
        })
    }

    /// Runs one step on `model`; returns what its method reported.
    fn apply(
        &self,
        index: usize,
        step: &Step,
        model: &mut Graph,
        data: &Data,
        teacher: Option<&FrozenTeacher>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<String> {
        let input = &data.input;
        match step {
            Step::Decompose(d) => {
                let selector = if d.layers.is_empty() {
                    Selector::Kinds(vec!["Conv2d".into(), "Linear".into()])
                } else {
                    Selector::Paths(d.layers.clone())
                };
                let mut rule = LowRank::new(d.method.into(), d.rank.into())
                    .with_rank_multiple(d.rank_multiple);
                if let Some(margin) = d.speed_margin {
                    rule = rule.with_speed_check(SpeedCheck::default().with_margin(margin));
                }
                let report = decompose(model, input, &selector, &rule)?;
                if let Some(t) = &d.fine_tune {
                    self.fit(index, model, (data, teacher), t, t.epochs, None, on_event)?;
                }
                Ok(report.to_string())
            }
            Step::Prune(p) => {
                let mut pruner = match p.criterion {
                    Criterion::Magnitude => Pruner::new(crate::prune::criterion::Magnitude),
                    Criterion::Random(seed) => {
                        Pruner::new(crate::prune::criterion::Random::new(seed))
                    }
                }
                .scope(match p.scope {
                    Scope::Layer => crate::prune::Scope::Layer,
                    Scope::Global => crate::prune::Scope::Global,
                })
                .pattern(p.pattern.into());
                if !p.layers.is_empty() {
                    pruner = pruner.select(Selector::Paths(p.layers.clone()));
                }
                match (p.schedule, &p.fine_tune) {
                    (Schedule::OneShot, tune) => {
                        let report = pruner.prune(model, p.sparsity)?;
                        if let Some(t) = tune {
                            self.fit(index, model, (data, teacher), t, t.epochs, None, on_event)?;
                        }
                        Ok(report.to_string())
                    }
                    (Schedule::Agp { epochs, updates }, Some(t)) => {
                        let steps = epochs * data.train.len().div_ceil(t.batch_size);
                        let schedule = Agp::new(0.0, p.sparsity, 0, steps, steps / updates);
                        let pruning = PruneCallback::new(pruner, schedule, Unit::Step);
                        let total = epochs + t.epochs;
                        self.fit(
                            index,
                            model,
                            (data, teacher),
                            t,
                            total,
                            Some(pruning),
                            on_event,
                        )?;
                        let selector = if p.layers.is_empty() {
                            Selector::Kinds(vec!["Conv2d".into(), "Linear".into()])
                        } else {
                            Selector::Paths(p.layers.clone())
                        };
                        Ok(sparsity_report(model, &selector).to_string())
                    }
                    (Schedule::Agp { .. }, None) => unreachable!("checked by settings_problem"),
                }
            }
            Step::ToSparse(t) => {
                let layers = t.layers.clone();
                let selector = Selector::Predicate(Box::new(move |path, l| {
                    let weighted = l.downcast_ref::<Conv2d>().is_some()
                        || l.downcast_ref::<Linear>().is_some();
                    (weighted && (layers.is_empty() || layers.iter().any(|p| p == path)))
                        || l.downcast_ref::<Activation>().is_some()
                }));
                Ok(to_sparse(model, input, selector)?.to_string())
            }
            Step::Quantize(q) => {
                let cfg = PtqConfig::default()
                    .with_observer(q.observer.into())
                    .with_progress(self.progress)
                    .with_skip(q.skip.clone())
                    .with_weight_bits(q.weight_bits);
                let calibration = Dataset::first(&*data.train, q.calibration)?;
                *model = quantize_static(model, calibration.batches(q.batch_size), &cfg)?;
                Ok(int8_details(model))
            }
            Step::Qat(q) => {
                let t = &q.fine_tune;
                let mut shape = input.clone();
                shape[0] = t.batch_size;
                let cfg = qat::QatConfig::default()
                    .with_averaging(q.averaging)
                    .with_skip(q.skip.clone())
                    .with_weight_bits(q.weight_bits);
                let mut training = qat::prepare(model, &shape, &cfg)?;
                let freeze = q
                    .freeze_after
                    .map(|e| qat::FreezeAfter(e * data.train.len().div_ceil(t.batch_size)));
                self.fit_with(
                    index,
                    &mut training,
                    (data, teacher),
                    t,
                    t.epochs,
                    freeze,
                    on_event,
                )?;
                *model = qat::convert(&training, input)?;
                Ok(int8_details(model))
            }
            Step::FoldBn(_) => Ok(fold_batchnorm(model, input)?.to_string()),
            Step::FineTune(t) => {
                self.fit(index, model, (data, teacher), t, t.epochs, None, on_event)?;
                Ok(String::new())
            }
        }
    }

    /// Trains `model` on the data with `tune` for `epochs` (distilling from the teacher when
    /// `tune` says so), with an optional pruning callback.
    #[allow(clippy::too_many_arguments)]
    fn fit(
        &self,
        index: usize,
        model: &mut Graph,
        data: (&Data, Option<&FrozenTeacher>),
        tune: &FineTune,
        epochs: usize,
        pruning: Option<PruneCallback>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<()> {
        self.fit_with(index, model, data, tune, epochs, pruning, on_event)
    }

    /// [`fit`](Self::fit) with any extra callback (first).
    #[allow(clippy::too_many_arguments)]
    fn fit_with<C: Callback>(
        &self,
        index: usize,
        model: &mut Graph,
        (data, teacher): (&Data, Option<&FrozenTeacher>),
        tune: &FineTune,
        epochs: usize,
        extra: Option<C>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<()> {
        let mut trainer = tune.trainer(epochs, self.progress);
        if let Some(d) = tune.distill {
            let teacher = teacher.ok_or_else(|| {
                PipelineError::Data("a distilling fine-tuning needs the model as given".into())
            })?;
            let kd = KdConfig::new(d.temperature, d.alpha);
            trainer = trainer.loss(KdLoss::new(teacher.clone(), kd)?);
        }
        if let Some(c) = extra {
            trainer = trainer.callback(c);
        }
        trainer.callback(EpochEvents { index, on_event }).fit(
            model,
            &*data.train,
            Some(&*data.validation),
        )?;
        Ok(())
    }
}

/// Tells the pipeline's caller about each epoch.
struct EpochEvents<'a, 'b> {
    index: usize,
    on_event: &'a mut (dyn FnMut(Event<'_>) + 'b),
}

impl Callback for EpochEvents<'_, '_> {
    fn on_epoch_end(&mut self, _: &mut Graph, stats: &EpochStats) -> Result<()> {
        (self.on_event)(Event::Epoch {
            index: self.index,
            stats,
        });
        Ok(())
    }
}

/// What a quantization left: the int8 layers by kind, and the layers still in f32.
fn int8_details(model: &Graph) -> String {
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    model.visit_layers(&mut |_, l| {
        if is_int8(l) {
            *kinds.entry(l.kind()).or_default() += 1;
        }
    });
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let f32_left = f32_layers(model);
    format!(
        "int8 layers: {}; Conv2d/Linear left in f32: {}",
        kinds.join(", "),
        if f32_left.is_empty() {
            "none".to_string()
        } else {
            f32_left.join(", ")
        }
    )
}

fn is_int8(l: &dyn Layer) -> bool {
    l.downcast_ref::<qlayers::QConv2d>().is_some()
        || l.downcast_ref::<qlayers::QLinear>().is_some()
        || l.downcast_ref::<qlayers::DynamicQLinear>().is_some()
        || l.downcast_ref::<qlayers::Quantize>().is_some()
}

fn is_sparse(l: &dyn Layer) -> bool {
    l.downcast_ref::<crate::prune::sparse::SparseLinear>()
        .is_some()
        || l.downcast_ref::<crate::prune::sparse::SparseConv2d>()
            .is_some()
}

/// Checks that `model` takes the data's examples and gives one score per class.
fn check_data(model: &Graph, data: &Data) -> Result<()> {
    let shapes = model.shapes(&data.input).map_err(|e| {
        PipelineError::Data(format!(
            "the model does not take the {} examples of shape {:?}: {e}",
            data.name, data.input
        ))
    })?;
    let out = shapes.last().cloned().unwrap_or_default();
    let classes = data.validation.classes();
    if out.len() != 2 || out[1] < classes {
        return Err(PipelineError::Data(format!(
            "the model gives outputs of shape {out:?} for input {:?}, but {} has {classes} \
             classes (expected [1, {classes}])",
            data.input, data.name
        ))
        .into());
    }
    Ok(())
}

/// Why a step's settings cannot work, if they cannot.
fn settings_problem(step: &Step) -> Option<String> {
    let tune = |t: &Option<FineTune>| {
        t.as_ref().and_then(|t| {
            t.problem("fine_tune.").or_else(|| {
                (t.epochs == 0).then(|| "fine_tune.epochs must be at least 1".to_string())
            })
        })
    };
    match step {
        Step::Decompose(d) => d
            .rank
            .problem()
            .or_else(|| (d.rank_multiple == 0).then(|| "rank_multiple must be at least 1".into()))
            .or_else(|| {
                d.speed_margin
                    .filter(|m| !(m.is_finite() && *m > 0.0))
                    .map(|m| format!("speed_margin must be a positive number, got {m}"))
            })
            .or_else(|| tune(&d.fine_tune)),
        Step::Prune(p) => {
            if !(p.sparsity.is_finite() && (0.0..1.0).contains(&p.sparsity)) {
                return Some(format!("sparsity must be in [0, 1), got {}", p.sparsity));
            }
            if let Pattern::NM { n, m } = p.pattern {
                let want = 1.0 - n as f32 / m as f32;
                if m == 0 || n == 0 || n >= m || (p.sparsity - want).abs() > 1e-6 {
                    return Some(format!(
                        "an n:m pattern needs 0 < n < m and sparsity 1 - n/m; got {n}:{m} and \
                         sparsity {}",
                        p.sparsity
                    ));
                }
            }
            if let Pattern::Block { rows, cols } = p.pattern {
                if rows == 0 || cols == 0 {
                    return Some(format!(
                        "block {rows}x{cols}: rows and cols must be at least 1"
                    ));
                }
            }
            match (p.schedule, &p.fine_tune) {
                (Schedule::Agp { epochs, updates }, Some(t)) => {
                    if epochs == 0 || updates == 0 {
                        return Some(format!(
                            "schedule.agp needs epochs and updates of at least 1, got {epochs} \
                             and {updates}"
                        ));
                    }
                    t.problem("fine_tune.")
                }
                (Schedule::Agp { .. }, None) => Some(
                    "an agp schedule trains while it prunes: give fine_tune settings (epochs = \
                     0 for no epochs after the schedule)"
                        .into(),
                ),
                (Schedule::OneShot, t) => tune(t),
            }
        }
        Step::ToSparse(_) | Step::FoldBn(_) => None,
        Step::Quantize(q) => {
            if let Some(p) = bits_problem(q.weight_bits) {
                return Some(p);
            }
            if q.calibration == 0 || q.batch_size == 0 {
                return Some(format!(
                    "calibration and batch_size must be at least 1, got {} and {}",
                    q.calibration, q.batch_size
                ));
            }
            match q.observer {
                Observer::Percentile(p) if !(p > 50.0 && p <= 100.0) => {
                    Some(format!("observer.percentile must be in (50, 100], got {p}"))
                }
                _ => None,
            }
        }
        Step::Qat(q) => {
            if let Some(p) = bits_problem(q.weight_bits) {
                return Some(p);
            }
            if !(q.averaging > 0.0 && q.averaging <= 1.0) {
                return Some(format!("averaging must be in (0, 1], got {}", q.averaging));
            }
            tune(&Some(q.fine_tune.clone()))
        }
        Step::FineTune(t) => t
            .problem("")
            .or_else(|| (t.epochs == 0).then(|| "epochs must be at least 1".to_string())),
    }
}

/// What is wrong with a step's weight bits, if anything.
fn bits_problem(bits: u32) -> Option<String> {
    (!(2..=8).contains(&bits)).then(|| format!("weight_bits must be in 2..=8, got {bits}"))
}

/// What the model holds, as far as the order of steps is concerned, and which step (or the
/// input) made it so.
#[derive(Debug, Clone, Default)]
struct State {
    int8: Option<String>,
    sparse: Option<String>,
    shared: Option<String>,
    masked: Option<String>,
    batchnorm: bool,
}

impl State {
    fn of(model: &Graph) -> Self {
        let given = || Some("as given".to_string());
        let mut s = State::default();
        model.visit_layers(&mut |_, l| {
            if is_int8(l) {
                s.int8 = given();
            } else if is_sparse(l) {
                s.sparse = given();
            } else if l
                .downcast_ref::<crate::quant::share::SharedWeights>()
                .is_some()
                || l.downcast_ref::<qlayers::WeightOnly>().is_some()
                || l.downcast_ref::<qat::QatWeights>().is_some()
            {
                s.shared = given();
            } else if l.downcast_ref::<BatchNorm2d>().is_some() {
                s.batchnorm = true;
            }
        });
        let mut masked = false;
        (model as &dyn Layer).visit_params(&mut |_, p| masked |= p.mask().is_some());
        if masked {
            s.masked = given();
        }
        s
    }

    /// Refuses `step` (number `index`) when the model cannot take it; else moves to the
    /// state after it.
    fn admit(&mut self, index: usize, step: &Step) -> Result<()> {
        let kind = step.kind();
        let refuse = |reason: String| -> Result<()> {
            Err(PipelineError::Order {
                index,
                step: kind,
                reason,
            }
            .into())
        };
        if let Some(by) = &self.int8 {
            let what = match step {
                Step::Quantize(_) | Step::Qat(_) => "it is already quantized".to_string(),
                Step::FineTune(_) => {
                    "int8 layers cannot train; fine-tune before quantizing, or use a `qat` step"
                        .to_string()
                }
                _ => format!("`{kind}` needs float weights; put it before the quantization"),
            };
            return refuse(format!("the model is int8 ({by}): {what}"));
        }
        let trains_or_rewrites = matches!(
            step,
            Step::Decompose(_) | Step::Prune(_) | Step::FineTune(_) | Step::Qat(_)
        );
        if trains_or_rewrites {
            if let Some(by) = &self.sparse {
                return refuse(format!(
                    "the model holds sparse deploy layers ({by}), which cannot train or \
                     be rewritten; put `{kind}` before `to_sparse` (the pruning masks keep \
                     pruned weights at zero while training)"
                ));
            }
            if let Some(by) = &self.shared {
                return refuse(format!(
                    "the model holds compact weight layers (shared, weight-only or QAT \
                     wrappers, {by}); `{kind}` needs plain float layers"
                ));
            }
        }
        let here = Some(format!("made by step {index} `{kind}`"));
        match step {
            Step::Decompose(_) => {
                if let Some(by) = &self.masked {
                    return refuse(format!(
                        "the model is pruned ({by}): low-rank factors would be dense and \
                         lose the masks; decompose before pruning"
                    ));
                }
            }
            Step::Prune(_) => self.masked = here,
            Step::ToSparse(_) => {
                if self.masked.is_none() {
                    return refuse(
                        "no layer has a pruning mask, so nothing would become sparse; run a \
                         `prune` step first"
                            .into(),
                    );
                }
                self.sparse = here;
            }
            Step::Quantize(_) | Step::Qat(_) => {
                *self = State {
                    int8: here,
                    ..State::default()
                }
            }
            Step::FoldBn(_) => self.batchnorm = false,
            Step::FineTune(_) => {}
        }
        Ok(())
    }
}
