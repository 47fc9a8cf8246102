//! Convert: masked `Conv2d` / `Linear` layers become sparse deploy layers, by the rules of a
//! [`Rewriter`].

use slimnet_core::graph::Graph;
use slimnet_core::layers::{Activation, ActivationKind, Conv2d, Linear};
use slimnet_core::rewrite::{Action, Ctx, Report, Rewriter, Selector};
use slimnet_core::Layer;
use slimnet_kernels::sparse::SparseFormat;

use crate::error::Result;
use crate::sparse::{FusedActivation, SparseConv2d, SparseLinear};

/// The rule turning a (masked) [`Linear`] into a [`SparseLinear`], with the storage format
/// chosen by density and shape for the input shape the rewriter passes. A layer for which the
/// dense kernel is expected to be faster is kept (the report says so).
///
/// # Errors
/// When the kernels reject the weight.
pub fn linear_to_sparse(l: &Linear, ctx: &mut Ctx<'_>) -> slimnet_core::Result<Action> {
    let batch = ctx.input_shape().first().copied().unwrap_or(1);
    let s = SparseLinear::from_linear(l, batch).map_err(slimnet_core::Error::from)?;
    Ok(keep_if_dense(s.weight().format(), Box::new(s), ctx))
}

/// The rule turning a (masked) one-group [`Conv2d`] into a [`SparseConv2d`] (see
/// [`linear_to_sparse`]); grouped convolutions are kept.
///
/// # Errors
/// When the kernels reject the weight.
pub fn conv_to_sparse(c: &Conv2d, ctx: &mut Ctx<'_>) -> slimnet_core::Result<Action> {
    if c.config().groups != 1 {
        ctx.note("grouped convolutions stay dense");
        return Ok(Action::Keep);
    }
    let out = ctx.output_shape();
    let s = SparseConv2d::from_conv(c, out[2] * out[3]).map_err(slimnet_core::Error::from)?;
    Ok(keep_if_dense(s.weight().format(), Box::new(s), ctx))
}

fn keep_if_dense(format: SparseFormat, layer: Box<dyn Layer>, ctx: &mut Ctx<'_>) -> Action {
    if format == SparseFormat::Dense {
        ctx.note("too dense for a sparse kernel to be faster");
        Action::Keep
    } else {
        Action::Replace(layer)
    }
}

/// The rule fusing a ReLU or ReLU6 into the sparse layer before it (when it is that layer's
/// only reader), so the kernel applies it.
///
/// # Errors
/// Never; the signature is the rewriter's.
pub fn fuse_activation(a: &Activation, ctx: &mut Ctx<'_>) -> slimnet_core::Result<Action> {
    let act = match a.activation_kind() {
        ActivationKind::Relu => FusedActivation::Relu,
        ActivationKind::Relu6 => FusedActivation::Relu6,
        _ => return Ok(Action::Keep),
    };
    let Some(p) = ctx.producer().filter(|p| p.sole_reader) else {
        return Ok(Action::Keep);
    };
    if let Some(s) = p.downcast::<SparseLinear>() {
        if s.activation() == FusedActivation::Identity {
            return Ok(Action::FuseIntoProducer(Box::new(
                s.clone().with_activation(act),
            )));
        }
    }
    if let Some(s) = p.downcast::<SparseConv2d>() {
        if s.activation() == FusedActivation::Identity {
            return Ok(Action::FuseIntoProducer(Box::new(
                s.clone().with_activation(act),
            )));
        }
    }
    Ok(Action::Keep)
}

/// Converts the selected layers of `graph` (nested graphs included) to sparse deploy layers
/// where that is expected to be faster, and fuses a ReLU or ReLU6 that is a sparse layer's
/// only reader into it. `input` is the deploy input shape (batch 1 for latency). Returns the
/// rewrite report.
///
/// ```
/// use slimnet_core::{models, rewrite::Selector, tensor, Layer};
/// use slimnet_prune::{convert, criterion::Magnitude, Pruner};
/// let mut model = models::lenet300(&mut tensor::rng(0))?;
/// Pruner::new(Magnitude).prune(&mut model, 0.9)?;
/// let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// let before = model.forward(&x)?;
/// let report = convert::to_sparse(&mut model, &[1, 1, 28, 28], Selector::All)?;
/// assert_eq!(report.changes().count(), 5); // three layers, two ReLUs fused
/// assert!(tensor::max_abs_diff(&before, &model.forward(&x)?) < 1e-4);
/// # Ok::<(), slimnet_prune::PruneError>(())
/// ```
///
/// # Errors
/// A shape the model rejects, or weights the kernels reject (naming the layer); a selected
/// layer with weights of a kind no rule converts (already int8, say).
pub fn to_sparse(graph: &mut Graph, input: &[usize], selector: Selector) -> Result<Report> {
    let report = Rewriter::new()
        .select(selector)
        .rule::<Linear>("to_sparse", linear_to_sparse)
        .rule::<Conv2d>("to_sparse", conv_to_sparse)
        .rule::<Activation>("fuse", fuse_activation)
        .run(graph, input)?;
    report.refuse_unhandled("to_sparse")?;
    Ok(report)
}
