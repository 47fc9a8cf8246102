//! Finding layers and their weights by dotted path, through nested graphs and wrappers.

use slimnet_core::graph::Graph;
use slimnet_core::rewrite::Selector;
use slimnet_core::{Layer, Param};

use crate::error::{PruneError, Result};

/// Paths of the selected layers that own a `weight` parameter of rank >= 2 (convolutions,
/// linear layers and user layers that follow the naming), in graph order; deploy layers are
/// left out (for reports; passes use [`prunable_layers_checked`]).
pub(crate) fn prunable_layers(graph: &Graph, selector: &Selector) -> Vec<String> {
    let mut out = Vec::new();
    graph.visit_layers(&mut |path, l| {
        if l.children().is_empty() && selector.matches(path, l) && weight_of(l).is_some() {
            out.push(path.to_string());
        }
    });
    out
}

/// [`prunable_layers`] for a pass that changes them.
///
/// # Errors
/// A selected layer that stores a weight but has no float weight parameter to mask (an int8,
/// sparse or weight-shared deploy layer): pruning it would silently do nothing.
pub(crate) fn prunable_layers_checked(graph: &Graph, selector: &Selector) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut refused = None;
    graph.visit_layers(&mut |path, l| {
        if !l.children().is_empty() || !selector.matches(path, l) {
            return;
        }
        if weight_of(l).is_some() {
            out.push(path.to_string());
        } else if refused.is_none() && l.is_compact() {
            refused = Some(PruneError::unsupported(
                path,
                format!(
                    "a {} layer has no float weight to mask; prune before converting it \
                     (to sparse, int8 or shared weights)",
                    l.kind()
                ),
            ));
        }
    });
    match refused {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The layer at a dotted path (`block1.conv1` is node `conv1` of nested graph `block1`).
pub(crate) fn layer<'a>(graph: &'a Graph, path: &str) -> Option<&'a dyn Layer> {
    graph.find(path)
}

/// The layer at a dotted path, mutably.
pub(crate) fn layer_mut<'a>(
    graph: &'a mut Graph,
    path: &str,
) -> Option<&'a mut (dyn Layer + 'static)> {
    graph.find_mut(path).map(|b| b.as_mut())
}

/// A clone of the layer's `weight` parameter, if it has one of rank >= 2.
pub(crate) fn weight_of(layer: &dyn Layer) -> Option<Param> {
    let mut w = None;
    layer.visit_params(&mut |name, p| {
        if name == "weight" && p.value().ndim() >= 2 {
            w = Some(p.clone());
        }
    });
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::{models, tensor};

    #[test]
    fn finds_layers_in_nested_graphs() {
        let inner = models::lenet300(&mut tensor::rng(0)).unwrap();
        let mut g = Graph::new();
        let x = g.input();
        g.add_layer("net", inner, x).unwrap();
        let all = prunable_layers_checked(&g, &Selector::All).unwrap();
        assert_eq!(all, ["net.fc1", "net.fc2", "net.fc3"]);
        let sel = prunable_layers(&g, &Selector::Paths(vec!["net.fc2".into()]));
        assert_eq!(sel, ["net.fc2"]);
        assert_eq!(layer(&g, "net.fc2").unwrap().kind(), "Linear");
        assert!(layer_mut(&mut g, "net.nope").is_none());
        assert!(layer(&g, "fc1").is_none());
    }
}
