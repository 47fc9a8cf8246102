//! Finding layers and their weights by dotted path, recursing into nested graphs.

use slimnet_core::graph::{Graph, Op};
use slimnet_core::rewrite::Selector;
use slimnet_core::{Layer, Param};

/// Paths of the selected layers that own a `weight` parameter of rank >= 2 (convolutions,
/// linear layers and user layers that follow the naming), in graph order.
pub(crate) fn prunable_layers(graph: &Graph, selector: &Selector) -> Vec<String> {
    let mut out = Vec::new();
    collect(graph, "", selector, &mut out);
    out
}

fn collect(graph: &Graph, prefix: &str, selector: &Selector, out: &mut Vec<String>) {
    for n in graph.nodes() {
        let Op::Layer(l) = &n.op else { continue };
        let path = format!("{prefix}{}", n.name);
        if let Some(inner) = l.downcast_ref::<Graph>() {
            collect(inner, &format!("{path}."), selector, out);
            continue;
        }
        if selector.matches(&path, l.as_ref()) && weight_of(l.as_ref()).is_some() {
            out.push(path);
        }
    }
}

/// The layer at a dotted path (`block1.conv1` is node `conv1` of nested graph `block1`).
pub(crate) fn layer<'a>(graph: &'a Graph, path: &str) -> Option<&'a dyn Layer> {
    match path.split_once('.') {
        None => graph.layer(path),
        Some((head, rest)) => layer(graph.layer(head)?.downcast_ref::<Graph>()?, rest),
    }
}

/// The layer at a dotted path, mutably.
pub(crate) fn layer_mut<'a>(
    graph: &'a mut Graph,
    path: &str,
) -> Option<&'a mut (dyn Layer + 'static)> {
    match path.split_once('.') {
        None => graph.layer_mut(path).map(|b| b.as_mut()),
        Some((head, rest)) => layer_mut(graph.layer_mut(head)?.downcast_mut::<Graph>()?, rest),
    }
}

/// A clone of the layer's `weight` parameter, if it has one of rank >= 2.
pub(crate) fn weight_of(layer: &dyn Layer) -> Option<Param> {
    let mut w = None;
    layer.visit_params(&mut |name, p| {
        if name == "weight" && p.value.ndim() >= 2 {
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
        let all = prunable_layers(&g, &Selector::All);
        assert_eq!(all, ["net.fc1", "net.fc2", "net.fc3"]);
        let sel = prunable_layers(&g, &Selector::Paths(vec!["net.fc2".into()]));
        assert_eq!(sel, ["net.fc2"]);
        assert_eq!(layer(&g, "net.fc2").unwrap().kind(), "Linear");
        assert!(layer_mut(&mut g, "net.nope").is_none());
        assert!(layer(&g, "fc1").is_none());
    }
}
