//! Node-by-node evaluation of a graph, showing every intermediate value to a callback (used by
//! calibration; slimnet-core's `Graph::forward` only returns the output).

use ndarray::Axis;
use slimnet_core::graph::{Graph, Op};
use slimnet_core::{Error, Tensor};

use crate::error::Result;

/// Runs `g` in evaluation mode on `x`, calling `tap(node_index, value)` for every node up to the
/// output, and returns the output.
///
/// # Errors
/// A node that rejects its input (named by node), or an error from `tap`.
pub(crate) fn eval_tapped(
    g: &Graph,
    x: &Tensor,
    tap: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
) -> Result<Tensor> {
    g.shapes(x.shape())?;
    let nodes = g.nodes();
    let out = g.output().index();
    let mut last = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for j in &n.inputs {
            last[j.index()] = i;
        }
    }
    last[out] = usize::MAX;
    let mut values: Vec<Option<Tensor>> = vec![None; nodes.len()];
    for (i, node) in nodes.iter().enumerate().take(out + 1) {
        let ins: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|j| {
                values[j.index()]
                    .as_ref()
                    .expect("inputs computed before use")
            })
            .collect();
        let y = match &node.op {
            Op::Input => x.clone(),
            Op::Layer(l) => l.forward(ins[0]).map_err(|e| e.in_layer(&node.name))?,
            // shapes were checked by `Graph::shapes` above, so broadcasting cannot fail
            Op::Add => ins[0] + ins[1],
            Op::Mul => ins[0] * ins[1],
            Op::Concat => {
                let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
                ndarray::concatenate(Axis(1), &views)
                    .map_err(|e| Error::Graph(format!("{}: {e}", node.name)))?
            }
            other => {
                return Err(Error::Graph(format!(
                    "{}: op {other:?} is not supported by calibration",
                    node.name
                ))
                .into())
            }
        };
        tap(i, &y).map_err(|e| e.in_layer(&node.name))?;
        values[i] = Some(y);
        for j in 0..i {
            if last[j] == i {
                values[j] = None;
            }
        }
    }
    Ok(values[out].take().expect("output computed"))
}
