//! Convert: masked `Conv2d` / `Linear` layers become sparse deploy layers, as a rewrite rule.

use slimnet_core::graph::{Graph, Op};
use slimnet_core::layers::{Conv2d, Linear};
use slimnet_core::rewrite::{self, Report, Rule, Selector};
use slimnet_core::Layer;
use slimnet_kernels::sparse::SparseFormat;

use crate::error::Result;
use crate::sparse::{FusedActivation, SparseConv2d, SparseLinear};

/// The rewrite rule turning a (masked) `Linear` into a [`SparseLinear`] and a one-group
/// `Conv2d` into a [`SparseConv2d`], with the storage format chosen by density and shape for
/// the input shape the rewriter passes. Layers for which the dense kernel is expected to be
/// faster are left as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct ToSparse;

impl Rule for ToSparse {
    fn name(&self) -> &str {
        "to_sparse"
    }

    fn apply(
        &self,
        path: &str,
        layer: &dyn Layer,
        input: &[usize],
    ) -> slimnet_core::Result<Option<Box<dyn Layer>>> {
        if let Some(l) = layer.downcast_ref::<Linear>() {
            let s = SparseLinear::from_linear(l, input.first().copied().unwrap_or(1))
                .map_err(|e| slimnet_core::Error::from(e).in_layer(path))?;
            return Ok(
                (s.weight().format() != SparseFormat::Dense).then(|| Box::new(s) as Box<dyn Layer>)
            );
        }
        if let Some(c) = layer.downcast_ref::<Conv2d>() {
            if c.config().groups != 1 {
                return Ok(None);
            }
            let out = c.output_shape(input)?;
            let s = SparseConv2d::from_conv(c, out[2] * out[3])
                .map_err(|e| slimnet_core::Error::from(e).in_layer(path))?;
            return Ok(
                (s.weight().format() != SparseFormat::Dense).then(|| Box::new(s) as Box<dyn Layer>)
            );
        }
        Ok(None)
    }
}

/// Converts the selected layers of `graph` to sparse deploy layers where that is expected to be
/// faster (see [`ToSparse`]), then fuses a ReLU or ReLU6 that is a sparse layer's only reader
/// into it. `input` is the deploy input shape (batch 1 for latency). Returns the rewrite report.
///
/// ```
/// use slimnet_core::{models, rewrite::Selector, tensor, Layer};
/// use slimnet_prune::{convert, criterion::Magnitude, Pruner};
/// let mut model = models::lenet300(&mut tensor::rng(0))?;
/// Pruner::new(Magnitude).prune(&mut model, 0.9)?;
/// let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// let before = model.forward(&x)?;
/// let report = convert::to_sparse(&mut model, &[1, 1, 28, 28], &Selector::All)?;
/// assert_eq!(report.changes.len(), 3);
/// assert!(tensor::max_abs_diff(&before, &model.forward(&x)?) < 1e-4);
/// # Ok::<(), slimnet_prune::PruneError>(())
/// ```
///
/// # Errors
/// A shape the model rejects, or weights the kernels reject (naming the layer).
pub fn to_sparse(graph: &mut Graph, input: &[usize], selector: &Selector) -> Result<Report> {
    let report = rewrite::rewrite(graph, input, selector, &ToSparse)?;
    fuse_activations(graph)?;
    Ok(report)
}

/// Fuses every ReLU / ReLU6 node that is the only reader of a sparse layer (at the top level of
/// `graph`) into that layer, removing the node. Returns the names of the removed nodes.
///
/// # Errors
/// Never for graphs this crate built; graph edits are checked.
pub fn fuse_activations(graph: &mut Graph) -> Result<Vec<String>> {
    let mut fused = Vec::new();
    loop {
        let mut target = None;
        for n in graph.nodes() {
            let Op::Layer(act) = &n.op else { continue };
            let kind = match act.kind() {
                "ReLU" => FusedActivation::Relu,
                "ReLU6" => FusedActivation::Relu6,
                _ => continue,
            };
            let src = n.inputs[0];
            let Some(prev) = graph.node(src) else {
                continue;
            };
            let Op::Layer(p) = &prev.op else { continue };
            let current = p
                .downcast_ref::<SparseLinear>()
                .map(SparseLinear::activation)
                .or_else(|| {
                    p.downcast_ref::<SparseConv2d>()
                        .map(SparseConv2d::activation)
                });
            if current == Some(FusedActivation::Identity)
                && graph.consumers(src).len() == 1
                && src != graph.output()
            {
                target = Some((prev.name.clone(), n.name.clone(), kind));
                break;
            }
        }
        let Some((layer, act, kind)) = target else {
            break;
        };
        let l = graph.layer(&layer).expect("found above");
        let new: Box<dyn Layer> = if let Some(s) = l.downcast_ref::<SparseLinear>() {
            Box::new(s.clone().with_activation(kind))
        } else {
            let s = l.downcast_ref::<SparseConv2d>().expect("found above");
            Box::new(s.clone().with_activation(kind))
        };
        graph.replace_layer(&layer, new)?;
        graph.bypass(&act)?;
        fused.push(act);
    }
    Ok(fused)
}
