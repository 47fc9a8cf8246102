//! Lowering layers of other crates to core layers.

use super::{Action, Report, Rewriter, Selector};
use crate::error::Result;
use crate::graph::Graph;

/// Replaces every selected layer that has a core form ([`Layer::to_core`](crate::Layer::to_core):
/// a sparse layer becomes its masked dense layer, say) by that form, so passes that only know
/// core layers (quantization, export) see through it. Layers without a core form stay.
///
/// ```
/// use slimnet_core::rewrite::{lower_to_core, Selector};
/// use slimnet_core::{models, tensor};
/// let mut g = models::lenet5(&mut tensor::rng(0))?;
/// let report = lower_to_core(&mut g, &[1, 1, 28, 28], Selector::All)?;
/// assert_eq!(report.changes().count(), 0); // core layers are core already
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// An input shape the graph rejects, or a core form that cannot be built.
pub fn lower_to_core(graph: &mut Graph, input: &[usize], selector: Selector) -> Result<Report> {
    Rewriter::new()
        .select(selector)
        .any_rule("to-core", |l, _| match l.to_core() {
            Some(core) => Ok(Action::Replace(core?)),
            None => Ok(Action::Keep),
        })
        .run(graph, input)
}
