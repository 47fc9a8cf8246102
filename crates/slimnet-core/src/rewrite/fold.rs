//! Folding a BatchNorm into the convolution before it, and an activation into the
//! normalisation before it.

use super::{Action, Ctx, Report, Rewriter};
use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::layer::Layer;
use crate::layers::{Activation, BatchNorm2d, Conv2d, InstanceNorm2d};
use crate::tensor;

/// The rule folding a [`BatchNorm2d`] into the [`Conv2d`] that feeds it (when the BatchNorm is
/// that convolution's only reader): the convolution's weight and bias absorb the normalisation,
/// and the BatchNorm node goes. A nested graph whose output comes from a convolution (a
/// low-rank chain, say) counts as that convolution: the normalisation goes into its last
/// layer. Evaluation outputs are unchanged up to rounding; a pruning mask on the convolution's
/// weight is kept.
///
/// # Errors
/// When the folded convolution cannot be built (it always can for a valid convolution).
pub fn fold_into_conv(bn: &BatchNorm2d, ctx: &mut Ctx<'_>) -> Result<Action> {
    let Some(producer) = ctx.producer().filter(|p| p.sole_reader) else {
        ctx.note("not folded: its input is not a layer's output read by it alone");
        return Ok(Action::Keep);
    };
    Ok(match folded(producer.layer, bn)? {
        Some(layer) => Action::FuseIntoProducer(layer),
        None => {
            ctx.note(format!(
                "not folded: `{}` is not a convolution or a graph ending in one",
                producer.name
            ));
            Action::Keep
        }
    })
}

/// `layer` with `bn` applied to its output folded in: a [`Conv2d`] with new weights and bias,
/// or a nested graph whose output layer (read by nothing else inside) folds it; `None` for
/// other layers.
fn folded(layer: &dyn Layer, bn: &BatchNorm2d) -> Result<Option<Box<dyn Layer>>> {
    if let Some(conv) = layer.downcast_ref::<Conv2d>() {
        return Ok(Some(Box::new(fold_conv(conv, bn)?)));
    }
    let Some(graph) = Graph::of(layer) else {
        return Ok(None);
    };
    let out = graph.output();
    let node = &graph.nodes()[out.index()];
    let Op::Layer(last) = &node.op else {
        return Ok(None);
    };
    if !graph.consumers(out).is_empty() {
        return Ok(None);
    }
    let Some(last) = folded(last.as_ref(), bn)? else {
        return Ok(None);
    };
    let mut graph = graph.clone();
    graph.replace_layer(&node.name, last)?;
    Ok(Some(Box::new(graph)))
}

/// `conv` followed by `bn`, as one convolution.
fn fold_conv(conv: &Conv2d, bn: &BatchNorm2d) -> Result<Conv2d> {
    let (scale, shift) = bn.folded();
    let mut w = conv.weight.value().clone();
    for (o, mut f) in w.outer_iter_mut().enumerate() {
        f.mapv_inplace(|v| v * scale[o]);
    }
    let b: Vec<f32> = (0..scale.len())
        .map(|o| conv.bias.as_ref().map_or(0.0, |b| b.value()[o]) * scale[o] + shift[o])
        .collect();
    let cfg = conv.config().clone().with_bias(true);
    let mut new = Conv2d::from_parts(cfg, w, Some(tensor::from_vec(&[b.len()], b)?))?;
    if let Some(m) = conv.weight.mask() {
        new.weight.set_mask(m.clone())?;
    }
    Ok(new)
}

/// Folds every BatchNorm2d that directly follows a Conv2d (and is that convolution's only
/// reader) into the convolution, in nested graphs too (see [`fold_into_conv`]). `input` is the
/// graph's input shape.
///
/// ```
/// use slimnet_core::{models, rewrite::fold_batchnorm, tensor, Layer};
/// let mut g = models::resnet_small(&mut tensor::rng(0))?;
/// let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// let before = g.forward(&x)?;
/// let report = fold_batchnorm(&mut g, &[1, 1, 28, 28])?;
/// assert_eq!(report.changes().count(), 9);
/// assert!(tensor::max_abs_diff(&before, &g.forward(&x)?) < 1e-4);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// An input shape the graph rejects.
pub fn fold_batchnorm(graph: &mut Graph, input: &[usize]) -> Result<Report> {
    Rewriter::new()
        .rule::<BatchNorm2d>("fold-bn", fold_into_conv)
        .run(graph, input)
}

/// The rule fusing an [`Activation`] into the [`InstanceNorm2d`] that feeds it (when the
/// activation is that normalisation's only reader and the normalisation has none yet): the
/// normalisation applies it in the same pass over each plane (see
/// [`InstanceNormConfig::activation`](crate::layers::InstanceNormConfig::activation)), and the
/// activation node goes. Outputs are unchanged.
///
/// # Errors
/// When the fused normalisation cannot be built (it always can for a valid one).
pub fn fuse_into_norm(act: &Activation, ctx: &mut Ctx<'_>) -> Result<Action> {
    let Some(norm) = ctx
        .producer()
        .filter(|p| p.sole_reader)
        .and_then(|p| p.downcast::<InstanceNorm2d>())
        .filter(|n| n.config().activation.is_none())
    else {
        return Ok(Action::Keep);
    };
    let cfg = norm.config().clone().with_activation(act.activation_kind());
    let new =
        InstanceNorm2d::from_parts(cfg, norm.weight.value().clone(), norm.bias.value().clone())?;
    Ok(Action::FuseIntoProducer(Box::new(new)))
}

/// Fuses every activation that directly follows an InstanceNorm2d (and is its only reader) into
/// it, in nested graphs too (see [`fuse_into_norm`]); [`Graph::freeze`] does this. `input` is
/// the graph's input shape.
///
/// ```
/// use slimnet_core::{models, rewrite::fuse_norm_activations, tensor, Layer};
/// let mut g = models::style_net(4, &mut tensor::rng(0))?;
/// let x = tensor::uniform(&[1, 3, 16, 16], 0.0, 1.0, &mut tensor::rng(1));
/// let before = g.forward(&x)?;
/// let report = fuse_norm_activations(&mut g, &[1, 3, 16, 16])?;
/// // the three down-sampling stages, the first half of each of the five residual blocks and
/// // the two up-sampling stages
/// assert_eq!(report.changes().count(), 10);
/// assert_eq!(before, g.forward(&x)?);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// An input shape the graph rejects.
pub fn fuse_norm_activations(graph: &mut Graph, input: &[usize]) -> Result<Report> {
    Rewriter::new()
        .rule::<Activation>("fuse-into-norm", fuse_into_norm)
        .run(graph, input)
}
