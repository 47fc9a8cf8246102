//! Post-training quantization of a whole [`Graph`]: static int8 with calibration, dynamic
//! quantization of linear layers, and weight-only quantization.
//!
//! Static quantization ([`quantize_static`]) is three steps, each usable on its own:
//! 1. [`float_for_int8`]: layers of other crates that have a core form (sparse layers, say)
//!    are lowered to it, nested graphs (low-rank chains) are inlined, and BatchNorm is folded
//!    into the convolutions before it;
//! 2. [`calibrate`]: observers see the input of every layer that will run in int8 (Conv2d with
//!    groups 1 or depthwise, Linear) over a batch iterator, with a progress bar;
//! 3. [`convert`]: rewrite rules make each of those layers an int8 layer for its observed input
//!    range (a pruned layer gets a sparse int8 weight), fuse each ReLU into the int8 layer
//!    before it, and let an int8 layer write u8 codes when every layer its output reaches
//!    (through max-pools, flattens and ReLUs, which work on codes) reads them with the same
//!    quantization; otherwise it writes f32. The graph moves the codes without converting.
//!
//! ```
//! use slimnet_core::{io, models, tensor, Layer};
//! use slimnet_quant::ptq::{quantize_static, PtqConfig};
//! let model = models::lenet5(&mut tensor::rng(0))?;
//! let batches = (0..4).map(|i| tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(i)));
//! let q = quantize_static(&model, batches, &PtqConfig::default())?;
//! let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(9));
//! let (a, b) = (model.forward(&x)?, q.forward(&x)?);
//! assert!(tensor::max_abs_diff(&a, &b) < 0.05 * a.iter().fold(0.0f32, |m, v| m.max(v.abs())));
//! assert!(io::to_bytes(&q)?.len() * 3 < io::to_bytes(&model)?.len());
//! // conv1 hands its codes to conv2 through ReLU and max-pool: no conversion between them
//! assert_eq!(q.freeze(&[1, 1, 28, 28])?.conversions(), 1);
//! # Ok::<(), slimnet_quant::QuantError>(())
//! ```

mod adds;
mod calibrate;
mod convert;

pub use calibrate::{calibrate, Ranges};
pub use convert::{convert, fuse_relu, int8_capable, link_int8, write_codes_for_readers};

use slimnet_core::layers::BatchNorm2d;
use slimnet_core::layers::{Conv2d, Linear};
use slimnet_core::rewrite::{fold_into_conv, lower_to_core, Action, Report, Rewriter, Selector};
use slimnet_core::{Graph, Layer, Tensor};

use crate::error::{QuantError, Result};
use crate::layers::{DynamicQLinear, WeightOnly};
use crate::observer::{ObserverKind, RangeMethod};
use crate::scheme::QScheme;

/// Settings of static post-training quantization.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PtqConfig {
    /// How activation ranges are chosen.
    pub observer: ObserverKind,
    /// Whether calibration draws a progress bar (only on a terminal).
    pub progress: bool,
    /// Paths of layers that stay f32 (a layer `b` of a nested graph `a` is `a.b`).
    pub skip: Vec<String>,
    /// Bits of the weights, `2..=8`: symmetric per output channel, stored as i8 either way.
    /// 8 by default. 7 ("reduce range", as ONNX Runtime calls it) keeps every product of a
    /// u8 input and two weights inside i16, which CPUs with AVX2 and no VNNI multiply with
    /// `vpmaddubsw` exactly: their int8 convolutions and sparse layers run faster, for a
    /// coarser weight grid on every CPU.
    pub weight_bits: u32,
}

impl Default for PtqConfig {
    /// A 99.99th-percentile histogram observer, no progress bar, nothing skipped, 8-bit
    /// weights.
    fn default() -> Self {
        Self {
            observer: ObserverKind::Histogram(RangeMethod::Percentile(99.99)),
            progress: false,
            skip: Vec::new(),
            weight_bits: 8,
        }
    }
}

impl PtqConfig {
    /// Sets the observer.
    pub fn with_observer(mut self, o: ObserverKind) -> Self {
        self.observer = o;
        self
    }

    /// Turns the calibration progress bar on or off.
    pub fn with_progress(mut self, p: bool) -> Self {
        self.progress = p;
        self
    }

    /// Keeps these layers in f32.
    pub fn with_skip(mut self, paths: Vec<String>) -> Self {
        self.skip = paths;
        self
    }

    /// Sets the bits of the weights (checked when quantizing).
    pub fn with_weight_bits(mut self, bits: u32) -> Self {
        self.weight_bits = bits;
        self
    }

    /// Whether the layer at `path` (of the inlined graph) stays f32.
    pub(crate) fn skips(&self, path: &str) -> bool {
        self.skip
            .iter()
            .any(|s| s == path || s.replace('.', "/") == path)
    }
}

/// The float graph that static quantization and QAT start from: a copy of `model` with layers
/// lowered to their core form ([`Layer::to_core`]), nested graphs inlined (a node `b` of a
/// nested graph `a` becomes `a/b`), and each BatchNorm folded into the convolution before it.
/// `input` is the model's input shape.
///
/// # Errors
/// An input shape the model rejects.
pub fn float_for_int8(model: &Graph, input: &[usize]) -> Result<Graph> {
    let mut g = model.clone();
    lower_to_core(&mut g, input, Selector::All)?;
    g.inline()?;
    Rewriter::new()
        .rule::<BatchNorm2d>("fold-bn", fold_into_conv)
        .run(&mut g, input)?;
    Ok(g)
}

/// Static int8 quantization of a whole graph, calibrated on `batches` (see the module docs).
///
/// # Errors
/// Weight bits outside `2..=8`, an empty calibration set, NaN or infinity met during
/// calibration (named by layer), a batch the model rejects, or a layer the int8 kernels reject
/// (named by path).
pub fn quantize_static<I>(model: &Graph, batches: I, cfg: &PtqConfig) -> Result<Graph>
where
    I: IntoIterator<Item = Tensor>,
{
    QScheme::symmetric(cfg.weight_bits)?;
    let mut it = batches.into_iter().peekable();
    let shape = it
        .peek()
        .ok_or(QuantError::EmptyCalibration)?
        .shape()
        .to_vec();
    let g = float_for_int8(model, &shape)?;
    let ranges = calibrate(&g, it, cfg)?;
    Ok(convert(&g, &ranges, cfg, &shape)?.0)
}

/// The paths of the Conv2d and Linear layers of `g` (nested graphs included) that still
/// compute in f32: what a whole-network quantization left out (skipped, grouped, or placed
/// where no rule reached), so it is never silent.
///
/// ```
/// use slimnet_core::{models, tensor};
/// use slimnet_quant::ptq::{f32_layers, quantize_static, PtqConfig};
/// let model = models::lenet5(&mut tensor::rng(0))?;
/// assert_eq!(f32_layers(&model).len(), 4);
/// let calib = (0..2).map(|i| tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(i)));
/// let q = quantize_static(&model, calib, &PtqConfig::default())?;
/// assert!(f32_layers(&q).is_empty());
/// # Ok::<(), slimnet_quant::QuantError>(())
/// ```
pub fn f32_layers(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    g.visit_layers(&mut |path, l| {
        if l.downcast_ref::<Conv2d>().is_some() || l.downcast_ref::<Linear>().is_some() {
            out.push(path.to_string());
        }
    });
    out
}

/// Dynamic quantization: every selected Linear becomes a [`DynamicQLinear`] (i8 weights,
/// activations quantized per batch at run time).
///
/// # Errors
/// Non-finite weights (named by path) or an input shape the graph rejects.
pub fn quantize_dynamic(model: &mut Graph, input: &[usize], selector: Selector) -> Result<Report> {
    Ok(Rewriter::new()
        .select(selector)
        .rule::<Linear>("dynamic-int8", |l, _| {
            Ok(Action::Replace(Box::new(DynamicQLinear::from_linear(l)?)))
        })
        .run(model, input)?)
}

/// Weight-only quantization: every selected Conv2d and Linear stores its weight as packed
/// `scheme.bits`-bit codes and computes in f32 on the dequantized weight.
///
/// # Errors
/// A bit width out of range, non-finite weights (named by path), or an input shape the graph
/// rejects.
pub fn quantize_weights(
    model: &mut Graph,
    input: &[usize],
    selector: Selector,
    scheme: QScheme,
) -> Result<Report> {
    scheme.validate()?;
    let wrap = |l: &dyn Layer| -> slimnet_core::Result<Action> {
        Ok(Action::Replace(Box::new(WeightOnly::new(
            l.clone_box(),
            scheme,
        )?)))
    };
    let report = Rewriter::new()
        .select(selector)
        .rule::<Conv2d>("weight-only", |c, _| wrap(c))
        .rule::<Linear>("weight-only", |l, _| wrap(l))
        .run(model, input)?;
    Ok(report)
}
