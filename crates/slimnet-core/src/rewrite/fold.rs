//! Folding a BatchNorm into the convolution before it.

use super::{Action, Ctx, Report, Rewriter};
use crate::error::Result;
use crate::graph::Graph;
use crate::layers::{BatchNorm2d, Conv2d};
use crate::tensor;

/// The rule folding a [`BatchNorm2d`] into the [`Conv2d`] that feeds it (when the BatchNorm is
/// that convolution's only reader): the convolution's weight and bias absorb the normalisation,
/// and the BatchNorm node goes. Evaluation outputs are unchanged up to rounding; a pruning mask
/// on the convolution's weight is kept.
///
/// # Errors
/// When the folded convolution cannot be built (it always can for a valid convolution).
pub fn fold_into_conv(bn: &BatchNorm2d, ctx: &mut Ctx<'_>) -> Result<Action> {
    let Some(conv) = ctx
        .producer()
        .filter(|p| p.sole_reader)
        .and_then(|p| p.downcast::<Conv2d>())
    else {
        return Ok(Action::Keep);
    };
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
    Ok(Action::FuseIntoProducer(Box::new(new)))
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
