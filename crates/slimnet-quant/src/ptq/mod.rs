//! Post-training quantization of a whole [`Graph`]: static int8 with calibration, dynamic
//! quantization of linear layers, and weight-only quantization.
//!
//! Static quantization ([`quantize_static`]):
//! 1. BatchNorm is folded into the convolutions before it;
//! 2. a plan marks int8 layers (Conv2d with groups 1 or depthwise, Linear), ops that run
//!    unchanged on u8 codes (max-pool, flatten, dropout), ReLUs that fuse into the int8 layer
//!    before them, and f32 ops (residual adds, average pools, softmax, anything else);
//! 3. observers calibrate every quantized value over a batch iterator (with a progress bar);
//! 4. the graph is rebuilt: int8 layers on the kernels, u8 codes between consecutive int8
//!    layers (requantized in the kernel, ReLU fused), [`Quantize`] before int8 layers that read
//!    f32 values and [`Dequantize`] before f32 ops that read codes; an int8 layer whose readers
//!    are all f32 writes f32 directly.
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
//! # Ok::<(), slimnet_quant::QuantError>(())
//! ```
//!
//! [`Quantize`]: crate::layers::Quantize
//! [`Dequantize`]: crate::layers::Dequantize

mod build;
mod calibrate;
pub(crate) mod plan;

pub use build::convert;
pub use calibrate::{calibrate, Ranges};

use slimnet_core::rewrite::{fold_batchnorm, rewrite, Report, Rule, Selector};
use slimnet_core::{layers::Linear, Graph, Layer, Tensor};

use crate::error::Result;
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
    /// Node names that stay f32.
    pub skip: Vec<String>,
}

impl Default for PtqConfig {
    /// A 99.99th-percentile histogram observer, no progress bar, nothing skipped.
    fn default() -> Self {
        Self {
            observer: ObserverKind::Histogram(RangeMethod::Percentile(99.99)),
            progress: false,
            skip: Vec::new(),
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

    /// Keeps these nodes in f32.
    pub fn with_skip(mut self, names: Vec<String>) -> Self {
        self.skip = names;
        self
    }
}

/// A copy of `model` with BatchNorm folded into the convolutions before it (the float model that
/// static quantization and QAT start from).
///
/// # Errors
/// As [`fold_batchnorm`].
pub fn fold(model: &Graph) -> Result<Graph> {
    let mut g = model.clone();
    fold_batchnorm(&mut g)?;
    Ok(g)
}

/// Static int8 quantization of a whole graph, calibrated on `batches` (see the module docs).
///
/// # Errors
/// An empty calibration set, NaN or infinity met during calibration (named by node), a batch the
/// model rejects, or a layer that cannot be quantized (named by path).
pub fn quantize_static<I>(model: &Graph, batches: I, cfg: &PtqConfig) -> Result<Graph>
where
    I: IntoIterator<Item = Tensor>,
{
    let g = fold(model)?;
    let ranges = calibrate(&g, batches, cfg)?;
    convert(&g, &ranges, &cfg.skip)
}

struct Dynamic;

impl Rule for Dynamic {
    fn name(&self) -> &str {
        "dynamic-int8"
    }

    fn apply(
        &self,
        _: &str,
        layer: &dyn Layer,
        _: &[usize],
    ) -> slimnet_core::Result<Option<Box<dyn Layer>>> {
        Ok(match layer.downcast_ref::<Linear>() {
            Some(l) => Some(Box::new(DynamicQLinear::from_linear(l)?)),
            None => None,
        })
    }
}

/// Dynamic quantization: every selected Linear becomes a [`DynamicQLinear`] (i8 weights,
/// activations quantized per batch at run time).
///
/// # Errors
/// Non-finite weights (named by path) or an input shape the graph rejects.
pub fn quantize_dynamic(model: &mut Graph, input: &[usize], selector: &Selector) -> Result<Report> {
    Ok(rewrite(model, input, selector, &Dynamic)?)
}

struct WeightsOnly(QScheme);

impl Rule for WeightsOnly {
    fn name(&self) -> &str {
        "weight-only"
    }

    fn apply(
        &self,
        _: &str,
        layer: &dyn Layer,
        _: &[usize],
    ) -> slimnet_core::Result<Option<Box<dyn Layer>>> {
        if !matches!(layer.kind(), "Conv2d" | "Linear") {
            return Ok(None);
        }
        Ok(Some(Box::new(WeightOnly::new(layer.clone_box(), self.0)?)))
    }
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
    selector: &Selector,
    scheme: QScheme,
) -> Result<Report> {
    scheme.validate()?;
    Ok(rewrite(model, input, selector, &WeightsOnly(scheme))?)
}
