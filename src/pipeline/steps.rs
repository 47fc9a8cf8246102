//! The steps of a pipeline and their settings. Each type is also the recipe table of its
//! step (`[[step]]` with `step = "<kind>"` first, then the keys of the type), so a recipe maps
//! one to one onto the API.

use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::decompose::rank::RankPolicy;
use crate::decompose::rewrite::ConvMethod;
use crate::quant::observer::{ObserverKind, RangeMethod};

use super::FineTune;

/// One step of a [`Pipeline`](super::Pipeline).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Low-rank factorisation of Conv2d and Linear layers.
    Decompose(Decompose),
    /// Pruning masks on weights, one-shot or gradual while fine-tuning.
    Prune(Prune),
    /// Masked layers become sparse deploy layers (run on the sparse kernels, stored compact).
    ToSparse(ToSparse),
    /// Static post-training int8 quantization of the whole network.
    Quantize(Quantize),
    /// Quantization-aware training, then conversion to int8.
    Qat(Qat),
    /// BatchNorm folded into the convolution before it.
    FoldBn(FoldBn),
    /// Training on the pipeline's data.
    FineTune(FineTune),
}

impl Step {
    /// The step's kind as a recipe names it (`decompose`, `prune`, `to_sparse`, `quantize`,
    /// `qat`, `fold_bn`, `fine_tune`).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Decompose(_) => "decompose",
            Step::Prune(_) => "prune",
            Step::ToSparse(_) => "to_sparse",
            Step::Quantize(_) => "quantize",
            Step::Qat(_) => "qat",
            Step::FoldBn(_) => "fold_bn",
            Step::FineTune(_) => "fine_tune",
        }
    }

    /// A one-line description of the settings, for tables.
    pub fn describe(&self) -> String {
        let layers = |l: &[String]| {
            if l.is_empty() {
                String::new()
            } else {
                format!(" {}", l.join(","))
            }
        };
        let distill = self
            .tuning()
            .and_then(|t| t.distill)
            .map(|d| format!(", distilled at T={} alpha={}", d.temperature, d.alpha))
            .unwrap_or_default();
        let what = match self {
            Step::Decompose(d) => format!(
                "{} {}{}{}",
                ConvMethod::from(d.method).name(),
                d.rank,
                layers(&d.layers),
                d.speed_margin
                    .map(|m| format!(", kept where {m}x faster"))
                    .unwrap_or_default()
            ),
            Step::Prune(p) => format!(
                "{} {} {} sparsity {}{}",
                p.criterion.name(),
                match p.scope {
                    Scope::Layer => "per-layer",
                    Scope::Global => "global",
                },
                p.schedule.name(),
                p.sparsity,
                layers(&p.layers)
            ),
            Step::ToSparse(t) => format!("sparse kernels{}", layers(&t.layers)),
            Step::Quantize(q) => format!(
                "int8, {} calibration images{}",
                q.calibration,
                bits_note(q.weight_bits)
            ),
            Step::Qat(q) => format!(
                "int8 QAT, {} epochs{}",
                q.fine_tune.epochs,
                bits_note(q.weight_bits)
            ),
            Step::FoldBn(_) => "fold BatchNorm".into(),
            Step::FineTune(f) => format!("{} epochs from lr {}", f.epochs, f.lr),
        };
        what + &distill
    }

    /// The training settings the step fine-tunes with, if any.
    pub(crate) fn tuning(&self) -> Option<&FineTune> {
        match self {
            Step::Decompose(d) => d.fine_tune.as_ref(),
            Step::Prune(p) => p.fine_tune.as_ref(),
            Step::Qat(q) => Some(&q.fine_tune),
            Step::FineTune(t) => Some(t),
            Step::ToSparse(_) | Step::Quantize(_) | Step::FoldBn(_) => None,
        }
    }
}

macro_rules! into_step {
    ($($t:ident),*) => {$(
        impl From<$t> for Step {
            fn from(s: $t) -> Self {
                Step::$t(s)
            }
        }
    )*};
}
into_step!(Decompose, Prune, ToSparse, Quantize, Qat, FoldBn, FineTune);

/// The step kinds, as the `step` key names them.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum StepKind {
    Decompose,
    Prune,
    ToSparse,
    Quantize,
    Qat,
    FoldBn,
    FineTune,
}

/// A step is a table whose first key is `step` (its kind); the rest of the table is read
/// straight into the kind's settings, so an unknown or misspelt key is reported with its own
/// line.
impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = Step;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a step table starting with `step = \"<kind>\"`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
        let first: Option<String> = map.next_key()?;
        match first.as_deref() {
            Some("step") => {}
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "a step table starts with `step = \"<kind>\"` (decompose, prune, \
                     to_sparse, quantize, qat, fold_bn, fine_tune); found `{other}` first"
                )))
            }
            None => return Err(de::Error::missing_field("step")),
        }
        let kind: StepKind = map.next_value()?;
        let rest = MapAccessDeserializer::new(map);
        Ok(match kind {
            StepKind::Decompose => Step::Decompose(Decompose::deserialize(rest)?),
            StepKind::Prune => Step::Prune(Prune::deserialize(rest)?),
            StepKind::ToSparse => Step::ToSparse(ToSparse::deserialize(rest)?),
            StepKind::Quantize => Step::Quantize(Quantize::deserialize(rest)?),
            StepKind::Qat => Step::Qat(Qat::deserialize(rest)?),
            StepKind::FoldBn => Step::FoldBn(FoldBn::deserialize(rest)?),
            StepKind::FineTune => Step::FineTune(FineTune::deserialize(rest)?),
        })
    }
}

/// How a convolution is factorised (see [`ConvMethod`]); Linear layers always by SVD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Method {
    /// `kh x 1` then `1 x kw` (spatial SVD).
    Spatial,
    /// `kh x kw` then `1 x 1` (channel SVD).
    Channel,
    /// `1 x 1`, `kh x kw` core, `1 x 1` (Tucker-2).
    Tucker2,
    /// `1 x 1`, depthwise `kh x 1`, depthwise `1 x kw`, `1 x 1` (CP).
    Cp,
}

impl From<Method> for ConvMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Spatial => ConvMethod::Spatial,
            Method::Channel => ConvMethod::Channel,
            Method::Tucker2 => ConvMethod::Tucker2,
            Method::Cp => ConvMethod::Cp,
        }
    }
}

/// How ranks are chosen (see [`RankPolicy`]). In a recipe: `rank = { mac_ratio = 0.3 }`,
/// `rank = { fixed = 8 }`, `rank = "vbmf"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rank {
    /// This rank.
    Fixed(usize),
    /// The smallest rank keeping this fraction of the energy, in `(0, 1]`.
    Energy(f64),
    /// The smallest rank with at most this relative error, in `[0, 1)`.
    ErrorBudget(f64),
    /// The largest rank keeping at most this fraction of the parameters, in `(0, 1]`.
    ParamRatio(f64),
    /// The largest rank keeping at most this fraction of the MACs, in `(0, 1]`.
    MacRatio(f64),
    /// The rank EVBMF estimates.
    Vbmf,
}

impl From<Rank> for RankPolicy {
    fn from(r: Rank) -> Self {
        match r {
            Rank::Fixed(n) => RankPolicy::Fixed(n),
            Rank::Energy(x) => RankPolicy::Energy(x),
            Rank::ErrorBudget(x) => RankPolicy::ErrorBudget(x),
            Rank::ParamRatio(x) => RankPolicy::ParamRatio(x),
            Rank::MacRatio(x) => RankPolicy::MacRatio(x),
            Rank::Vbmf => RankPolicy::Vbmf,
        }
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rank::Fixed(n) => write!(f, "rank {n}"),
            Rank::Energy(x) => write!(f, "energy {x}"),
            Rank::ErrorBudget(x) => write!(f, "error {x}"),
            Rank::ParamRatio(x) => write!(f, "params x{x}"),
            Rank::MacRatio(x) => write!(f, "MACs x{x}"),
            Rank::Vbmf => write!(f, "VBMF ranks"),
        }
    }
}

impl Rank {
    /// Why this policy cannot work, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        let (name, x, lo_open, hi_open) = match *self {
            Rank::Fixed(0) => return Some("rank.fixed must be at least 1".into()),
            Rank::Fixed(_) | Rank::Vbmf => return None,
            Rank::Energy(x) => ("energy", x, true, false),
            Rank::ErrorBudget(x) => ("error_budget", x, false, true),
            Rank::ParamRatio(x) => ("param_ratio", x, true, false),
            Rank::MacRatio(x) => ("mac_ratio", x, true, false),
        };
        let ok = x.is_finite() && (if lo_open { x > 0.0 } else { x >= 0.0 }) && {
            if hi_open {
                x < 1.0
            } else {
                x <= 1.0
            }
        };
        (!ok).then(|| {
            format!(
                "rank.{name} must be in {}0, 1{}, got {x}",
                if lo_open { "(" } else { "[" },
                if hi_open { ")" } else { "]" }
            )
        })
    }
}

/// Settings of a `decompose` step.
///
/// ```
/// use slimnet::pipeline::{Decompose, Method, Rank};
/// let d = Decompose::new(Method::Tucker2, Rank::MacRatio(0.3)).with_layers(&["conv2"]);
/// assert_eq!(d.layers, ["conv2"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Decompose {
    /// How convolutions are factorised.
    pub method: Method,
    /// How ranks are chosen.
    pub rank: Rank,
    /// Paths of the layers to decompose (empty: every Conv2d and Linear; layers of other
    /// kinds, your own included, are left as they are).
    #[serde(default)]
    pub layers: Vec<String>,
    /// Policy-chosen convolution ranks are rounded to a multiple of this (1: no rounding).
    #[serde(default = "one")]
    pub rank_multiple: usize,
    /// When set, a layer's factorisation is kept only where it runs at least this many times
    /// faster than the layer (batch 1, one thread, timed on the spot; 1.05: 5% faster), and
    /// the report says which layers kept theirs.
    #[serde(default)]
    pub speed_margin: Option<f64>,
    /// Fine-tuning after the decomposition.
    #[serde(default)]
    pub fine_tune: Option<FineTune>,
}

fn one() -> usize {
    1
}

impl Decompose {
    /// Every Conv2d and Linear by `method` at ranks chosen by `rank`, no fine-tuning.
    pub fn new(method: Method, rank: Rank) -> Self {
        Self {
            method,
            rank,
            layers: Vec::new(),
            rank_multiple: 1,
            speed_margin: None,
            fine_tune: None,
        }
    }

    /// Only these layers (dotted paths).
    pub fn with_layers(mut self, layers: &[&str]) -> Self {
        self.layers = layers.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Rounds policy-chosen ranks to a multiple of `m`.
    pub fn with_rank_multiple(mut self, m: usize) -> Self {
        self.rank_multiple = m;
        self
    }

    /// Keeps a factorisation only where it is measured at least `margin` times faster.
    pub fn with_speed_check(mut self, margin: f64) -> Self {
        self.speed_margin = Some(margin);
        self
    }

    /// Fine-tunes after the decomposition.
    pub fn with_fine_tune(mut self, t: FineTune) -> Self {
        self.fine_tune = Some(t);
        self
    }
}

/// What scores weights for pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Criterion {
    /// Weight magnitude.
    #[default]
    Magnitude,
    /// Random scores from this seed (a baseline for comparisons).
    Random(u64),
}

impl Criterion {
    fn name(&self) -> &'static str {
        match self {
            Criterion::Magnitude => "magnitude",
            Criterion::Random(_) => "random",
        }
    }
}

/// Whether each layer reaches the sparsity or one threshold spans the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// Every layer to the sparsity.
    #[default]
    Layer,
    /// One magnitude threshold across the layers.
    Global,
}

/// What is pruned together. In a recipe: `pattern = "unstructured"`,
/// `pattern = { block = { rows = 4, cols = 1 } }`, `pattern = { n_m = { n = 2, m = 4 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Pattern {
    /// Single weights.
    #[default]
    Unstructured,
    /// `rows x cols` blocks.
    Block {
        /// Block height.
        rows: usize,
        /// Block width.
        cols: usize,
    },
    /// `n` of every `m` consecutive weights kept (sparsity `1 - n/m`).
    NM {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

impl From<Pattern> for crate::prune::Pattern {
    fn from(p: Pattern) -> Self {
        match p {
            Pattern::Unstructured => crate::prune::Pattern::Unstructured,
            Pattern::Block { rows, cols } => crate::prune::Pattern::Block { rows, cols },
            Pattern::NM { n, m } => crate::prune::Pattern::NM { n, m },
        }
    }
}

/// When the sparsity is reached. In a recipe: `schedule = "one_shot"` or
/// `schedule = { agp = { epochs = 4, updates = 20 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Schedule {
    /// All at once, before any fine-tuning.
    #[default]
    OneShot,
    /// Automated gradual pruning (cubic) over the first `epochs` of training, in `updates`
    /// evenly spaced pruning events; the step's `fine_tune` epochs follow at the final
    /// sparsity, in the same training run.
    Agp {
        /// Epochs over which the sparsity rises.
        epochs: usize,
        /// Pruning events over them.
        updates: usize,
    },
}

impl Schedule {
    fn name(&self) -> String {
        match self {
            Schedule::OneShot => "one-shot".into(),
            Schedule::Agp { epochs, .. } => format!("agp over {epochs} epochs"),
        }
    }
}

/// Settings of a `prune` step.
///
/// ```
/// use slimnet::pipeline::{FineTune, Prune, Schedule, Scope};
/// let p = Prune::new(0.9).with_scope(Scope::Global).with_schedule(Schedule::Agp { epochs: 2, updates: 10 })
///     .with_fine_tune(FineTune::sgd(1, 0.01));
/// assert_eq!(p.sparsity, 0.9);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Prune {
    /// Fraction of the selected weights removed, in `[0, 1)`.
    pub sparsity: f32,
    /// What scores the weights.
    #[serde(default)]
    pub criterion: Criterion,
    /// Per layer or one threshold.
    #[serde(default)]
    pub scope: Scope,
    /// What is removed together.
    #[serde(default)]
    pub pattern: Pattern,
    /// Paths of the layers to prune (empty: every Conv2d and Linear).
    #[serde(default)]
    pub layers: Vec<String>,
    /// When the sparsity is reached.
    #[serde(default)]
    pub schedule: Schedule,
    /// Fine-tuning on the masks (after the schedule's epochs, in the same run); required
    /// with an AGP schedule, whose training it sets.
    #[serde(default)]
    pub fine_tune: Option<FineTune>,
}

impl Prune {
    /// One-shot magnitude pruning of every Conv2d and Linear to `sparsity`, per layer.
    pub fn new(sparsity: f32) -> Self {
        Self {
            sparsity,
            criterion: Criterion::Magnitude,
            scope: Scope::Layer,
            pattern: Pattern::Unstructured,
            layers: Vec::new(),
            schedule: Schedule::OneShot,
            fine_tune: None,
        }
    }

    /// Sets the criterion.
    pub fn with_criterion(mut self, c: Criterion) -> Self {
        self.criterion = c;
        self
    }

    /// Sets the scope.
    pub fn with_scope(mut self, s: Scope) -> Self {
        self.scope = s;
        self
    }

    /// Sets the pattern.
    pub fn with_pattern(mut self, p: Pattern) -> Self {
        self.pattern = p;
        self
    }

    /// Only these layers (dotted paths).
    pub fn with_layers(mut self, layers: &[&str]) -> Self {
        self.layers = layers.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets the schedule.
    pub fn with_schedule(mut self, s: Schedule) -> Self {
        self.schedule = s;
        self
    }

    /// Fine-tunes on the masks.
    pub fn with_fine_tune(mut self, t: FineTune) -> Self {
        self.fine_tune = Some(t);
        self
    }
}

/// Settings of a `to_sparse` step: masked layers become sparse deploy layers, ReLUs fused
/// into them; a layer too dense for a sparse kernel to be faster stays dense.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ToSparse {
    /// Paths of the layers to convert (empty: every masked Conv2d and Linear).
    #[serde(default)]
    pub layers: Vec<String>,
}

/// How calibration chooses activation ranges. In a recipe: `observer = "min_max"`,
/// `observer = { percentile = 99.99 }`, `"mse"`, `"entropy"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Observer {
    /// Minimum and maximum.
    MinMax,
    /// Both tails clipped at this percentile, in `(50, 100]`.
    Percentile(f32),
    /// The range minimising the expected squared error.
    Mse,
    /// The KL-divergence (entropy) threshold.
    Entropy,
}

impl Default for Observer {
    /// The 99.99th percentile.
    fn default() -> Self {
        Observer::Percentile(99.99)
    }
}

impl From<Observer> for ObserverKind {
    fn from(o: Observer) -> Self {
        match o {
            Observer::MinMax => ObserverKind::MinMax,
            Observer::Percentile(p) => ObserverKind::Histogram(RangeMethod::Percentile(p)),
            Observer::Mse => ObserverKind::Histogram(RangeMethod::Mse),
            Observer::Entropy => ObserverKind::Histogram(RangeMethod::Entropy),
        }
    }
}

/// `, 7-bit weights` when the weights are not 8-bit.
fn bits_note(bits: u32) -> String {
    if bits == 8 {
        String::new()
    } else {
        format!(", {bits}-bit weights")
    }
}

/// Settings of a `quantize` step: static int8 of the whole network (pruned layers in sparse
/// int8), calibrated on the first training examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Quantize {
    /// Calibration examples (the first of the training set).
    #[serde(default = "calibration")]
    pub calibration: usize,
    /// Examples per calibration batch.
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// How activation ranges are chosen.
    #[serde(default)]
    pub observer: Observer,
    /// Paths of layers that stay f32.
    #[serde(default)]
    pub skip: Vec<String>,
    /// Bits of the weights, `2..=8` (8 by default). 7 is what CPUs with AVX2 and no VNNI run
    /// fastest (see [`PtqConfig::weight_bits`](crate::quant::ptq::PtqConfig::weight_bits)).
    #[serde(default = "weight_bits")]
    pub weight_bits: u32,
}

fn weight_bits() -> u32 {
    8
}

fn calibration() -> usize {
    2048
}

fn batch() -> usize {
    64
}

impl Default for Quantize {
    /// 2048 calibration images in batches of 64, the 99.99th percentile, nothing skipped.
    fn default() -> Self {
        Self::new(calibration())
    }
}

impl Quantize {
    /// Calibrated on `calibration` training examples.
    pub fn new(calibration: usize) -> Self {
        Self {
            calibration,
            batch_size: batch(),
            observer: Observer::default(),
            skip: Vec::new(),
            weight_bits: weight_bits(),
        }
    }

    /// Sets the observer.
    pub fn with_observer(mut self, o: Observer) -> Self {
        self.observer = o;
        self
    }

    /// Sets the bits of the weights.
    pub fn with_weight_bits(mut self, bits: u32) -> Self {
        self.weight_bits = bits;
        self
    }
}

/// Settings of a `qat` step: fake-quantized training, then int8.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Qat {
    /// The training.
    #[serde(default = "qat_tune")]
    pub fine_tune: FineTune,
    /// Averaging constant of the input observers, in `(0, 1]`.
    #[serde(default = "averaging")]
    pub averaging: f32,
    /// Epochs after which the observers freeze (`None`: never).
    #[serde(default)]
    pub freeze_after: Option<usize>,
    /// Paths of layers that stay f32.
    #[serde(default)]
    pub skip: Vec<String>,
    /// Bits of the weights, `2..=8` (as [`Quantize::weight_bits`]).
    #[serde(default = "weight_bits")]
    pub weight_bits: u32,
}

fn qat_tune() -> FineTune {
    FineTune::sgd(1, 1e-3)
}

fn averaging() -> f32 {
    0.01
}

impl Default for Qat {
    /// One epoch from 0.001, averaging 0.01, observers never frozen.
    fn default() -> Self {
        Self {
            fine_tune: qat_tune(),
            averaging: averaging(),
            freeze_after: None,
            skip: Vec::new(),
            weight_bits: weight_bits(),
        }
    }
}

/// Settings of a `fold_bn` step (none): each BatchNorm2d that follows a convolution goes into
/// that convolution's weights and bias.
///
/// Fold after the last step that trains, just before `to_sparse` and `quantize`: a network
/// fine-tunes better with its batch norms in (the character CNN's Tucker-2 factors ended a
/// point higher on its test fonts at 3,755 classes than the same factors of the folded
/// network). A low-rank chain ends in a convolution, so its batch norm folds there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FoldBn {}
