//! Quantization-aware training: wrap, fine-tune, convert.
//!
//! [`prepare`] starts from the same float graph as static quantization
//! ([`float_for_int8`](crate::ptq::float_for_int8): foreign layers lowered, nested graphs
//! inlined, BatchNorm folded) and wraps every layer that will run in int8 in a [`QatWeights`]
//! (fake-quantized input and weights, straight-through gradients). Train the result with the
//! ordinary trainer; freeze the observers for the last steps ([`freeze`], or the
//! [`FreezeAfter`] callback); [`convert`] then builds the int8 graph with the learnt input
//! ranges, by the same rules as static quantization. A pruned layer keeps its mask through
//! training and becomes a sparse int8 layer.
//!
//! ```
//! use slimnet_core::{models, tensor, Layer};
//! use slimnet_quant::qat;
//! let model = models::lenet300(&mut tensor::rng(0))?;
//! let mut q = qat::prepare(&model, &[4, 1, 28, 28], &qat::QatConfig::default())?;
//! let x = tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! q.forward_train(&x)?; // observers see a batch
//! qat::freeze(&mut q);
//! let int8 = qat::convert(&q, &[1, 1, 28, 28])?;
//! assert!(int8.nodes().iter().any(|n| n.op.name() == "QLinear"));
//! # Ok::<(), slimnet_quant::QuantError>(())
//! ```

mod fake_quant;
mod wrap;

pub use fake_quant::FakeQuantize;
pub use wrap::QatWeights;

pub(crate) use fake_quant::load_fake_quantize;
pub(crate) use wrap::load_qat_weights;

use slimnet_core::graph::Graph;
use slimnet_core::layers::{Conv2d, Linear};
use slimnet_core::rewrite::{Action, Rewriter, Selector};
use slimnet_core::train::{Callback, StepInfo};
use slimnet_core::Layer;

use crate::error::{to_core, QuantError, Result};
use crate::layers::{QConv2d, QLinear};
use crate::ptq::{float_for_int8, int8_capable, link_int8};
use crate::scheme::QScheme;

/// Settings of quantization-aware training.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QatConfig {
    /// Averaging constant of the input observers (moving-average min-max).
    pub averaging: f32,
    /// Paths of layers that stay f32 (a layer `b` of a nested graph `a` is `a.b`).
    pub skip: Vec<String>,
    /// Bits of the weights, `2..=8` (8 by default; see
    /// [`PtqConfig::weight_bits`](crate::ptq::PtqConfig::weight_bits)).
    pub weight_bits: u32,
}

impl Default for QatConfig {
    fn default() -> Self {
        Self {
            averaging: 0.01,
            skip: Vec::new(),
            weight_bits: 8,
        }
    }
}

impl QatConfig {
    /// Sets the observers' averaging constant.
    pub fn with_averaging(mut self, c: f32) -> Self {
        self.averaging = c;
        self
    }

    /// Keeps these layers in f32.
    pub fn with_skip(mut self, paths: Vec<String>) -> Self {
        self.skip = paths;
        self
    }

    /// Sets the bits of the weights (checked by [`prepare`]).
    pub fn with_weight_bits(mut self, bits: u32) -> Self {
        self.weight_bits = bits;
        self
    }
}

/// The training graph for QAT of `model`, whose input has shape `input` (see the module docs).
///
/// # Errors
/// An averaging constant outside `(0, 1]`, weight bits outside `2..=8`, or an input shape the
/// model rejects.
pub fn prepare(model: &Graph, input: &[usize], cfg: &QatConfig) -> Result<Graph> {
    if !(cfg.averaging > 0.0 && cfg.averaging <= 1.0) {
        return Err(QuantError::invalid(
            "",
            format!("observer averaging {} is not in (0, 1]", cfg.averaging),
        ));
    }
    QScheme::symmetric(cfg.weight_bits)?;
    let mut g = float_for_int8(model, input)?;
    let skip = cfg.skip.clone();
    let wrap = |l: &dyn Layer| -> slimnet_core::Result<Action> {
        if !int8_capable(l) {
            return Ok(Action::Keep);
        }
        let q = QatWeights::new(l.clone_box())?.with_averaging(cfg.averaging);
        let q = q.with_weight_bits(cfg.weight_bits).map_err(to_core)?;
        Ok(Action::Replace(Box::new(q)))
    };
    Rewriter::new()
        .select(Selector::Predicate(Box::new(move |p, _| {
            !skip.iter().any(|s| s == p || s.replace('.', "/") == p)
        })))
        .rule::<Conv2d>("qat", |c, _| wrap(c))
        .rule::<Linear>("qat", |l, _| wrap(l))
        .run(&mut g, input)?;
    Ok(g)
}

/// Freezes the input observer of every [`QatWeights`] of a QAT graph.
pub fn freeze(g: &mut Graph) {
    g.visit_layers_mut(&mut |_, l| {
        if let Some(q) = l.downcast_mut::<QatWeights>() {
            q.freeze();
        }
    });
}

/// A training callback that freezes the observers after `steps` optimizer steps.
#[derive(Debug, Clone)]
pub struct FreezeAfter(pub usize);

impl Callback for FreezeAfter {
    fn on_step_end(&mut self, model: &mut Graph, info: &StepInfo) -> slimnet_core::Result<()> {
        if info.global_step == self.0 {
            freeze(model);
        }
        Ok(())
    }
}

/// The int8 graph of a trained QAT graph: each [`QatWeights`] becomes the int8 layer of its
/// float layer with the learnt input range, then the same rules as static quantization join
/// the int8 layers ([`link_int8`]). `input` is the deploy input shape.
///
/// # Errors
/// A wrapper whose observer never saw data ([`QuantError::NoData`] naming it), or a layer the
/// int8 kernels reject.
pub fn convert(qat: &Graph, input: &[usize]) -> Result<Graph> {
    let mut g = qat.clone();
    Rewriter::new()
        .rule::<QatWeights>("int8", |q, ctx| {
            let p = q.input_params().ok_or_else(|| QuantError::NoData {
                layer: ctx.path().to_string(),
            })?;
            let (inner, bits) = (q.inner(), q.weight_bits());
            let layer: Box<dyn Layer> = if let Some(c) = inner.downcast_ref::<Conv2d>() {
                Box::new(QConv2d::from_conv_with_bits(c, p, bits)?)
            } else if let Some(l) = inner.downcast_ref::<Linear>() {
                Box::new(QLinear::from_linear_with_bits(l, p, bits)?)
            } else {
                unreachable!("QatWeights wraps Conv2d or Linear")
            };
            Ok(Action::Replace(layer))
        })
        .run(&mut g, input)?;
    link_int8(&mut g, input)?;
    Ok(g)
}
