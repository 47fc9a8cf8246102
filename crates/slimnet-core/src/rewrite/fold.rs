//! Rewrite passes: a [`Rule`] looks at one layer and may return a replacement; [`rewrite`] applies
//! it to the selected layers of a [`Graph`] and reports what changed, with parameters and MACs
//! before and after. Compression methods (decomposition, pruning, quantization) are rules, so
//! users compose them in code: decompose, then prune, then quantize, fine-tuning between.
//!
//! ```
//! use slimnet_core::layers::{Activation, Linear};
//! use slimnet_core::rewrite::{rewrite, Rule, Selector};
//! use slimnet_core::{models, tensor, Layer, Result};
//!
//! /// Replaces every ReLU with ReLU6.
//! struct ToRelu6;
//! impl Rule for ToRelu6 {
//!     fn name(&self) -> &str { "relu6" }
//!     fn apply(&self, _path: &str, layer: &dyn Layer, _input: &[usize]) -> Result<Option<Box<dyn Layer>>> {
//!         Ok((layer.kind() == "ReLU").then(|| Box::new(Activation::relu6()) as Box<dyn Layer>))
//!     }
//! }
//! let mut g = models::lenet300(&mut tensor::rng(0))?;
//! let report = rewrite(&mut g, &[1, 1, 28, 28], &Selector::All, &ToRelu6)?;
//! assert_eq!(report.changes.len(), 2);
//! # Ok::<(), slimnet_core::Error>(())
//! ```

use std::fmt;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::layer::Layer;
use crate::layers::{BatchNorm2d, Conv2d, Conv2dConfig};

/// A predicate over a layer's dotted path and the layer.
pub type LayerPredicate = Box<dyn Fn(&str, &dyn Layer) -> bool>;

/// Which layers a pass may touch.
pub enum Selector {
    /// Every layer.
    All,
    /// Layers whose dotted path is in the list (e.g. `"conv2"`, `"block1.conv1"`).
    Paths(Vec<String>),
    /// Layers whose kind is in the list (e.g. `"Conv2d"`).
    Kinds(Vec<String>),
    /// Layers for which the predicate, given the path and the layer, is true.
    Predicate(LayerPredicate),
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => write!(f, "All"),
            Selector::Paths(p) => write!(f, "Paths({p:?})"),
            Selector::Kinds(k) => write!(f, "Kinds({k:?})"),
            Selector::Predicate(_) => write!(f, "Predicate(..)"),
        }
    }
}

impl Selector {
    /// Whether the layer at `path` is selected.
    pub fn matches(&self, path: &str, layer: &dyn Layer) -> bool {
        match self {
            Selector::All => true,
            Selector::Paths(p) => p.iter().any(|q| q == path),
            Selector::Kinds(k) => k.iter().any(|q| q == layer.kind()),
            Selector::Predicate(f) => f(path, layer),
        }
    }
}

/// A rewrite rule keyed by the layer it is shown.
pub trait Rule {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// A replacement for `layer` (at `path`, fed inputs of shape `input`), or `None` to keep it.
    /// The replacement must accept the same input shape and produce the same output shape.
    ///
    /// # Errors
    /// When the layer is selected but the rule cannot apply (the error names the path).
    fn apply(
        &self,
        path: &str,
        layer: &dyn Layer,
        input: &[usize],
    ) -> Result<Option<Box<dyn Layer>>>;
}

/// One replaced layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Dotted path of the replaced node.
    pub path: String,
    /// Rule name.
    pub rule: String,
    /// Kind before.
    pub kind_before: String,
    /// Kind after.
    pub kind_after: String,
    /// Parameters before and after.
    pub params: (usize, usize),
    /// MACs before and after, for the input shape given to [`rewrite`].
    pub macs: (usize, usize),
}

/// What a pass changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// One entry per replaced layer, in graph order.
    pub changes: Vec<Change>,
}

impl Report {
    /// Total (before, after) parameters over the changed layers.
    pub fn params(&self) -> (usize, usize) {
        self.changes
            .iter()
            .fold((0, 0), |a, c| (a.0 + c.params.0, a.1 + c.params.1))
    }

    /// Total (before, after) MACs over the changed layers.
    pub fn macs(&self) -> (usize, usize) {
        self.changes
            .iter()
            .fold((0, 0), |a, c| (a.0 + c.macs.0, a.1 + c.macs.1))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<20} {:<12} {:<12} {:<14} {:>20} {:>24}",
            "layer", "rule", "before", "after", "params", "MACs"
        )?;
        for c in &self.changes {
            writeln!(
                f,
                "{:<20} {:<12} {:<12} {:<14} {:>20} {:>24}",
                c.path,
                c.rule,
                c.kind_before,
                c.kind_after,
                format!("{} -> {}", c.params.0, c.params.1),
                format!("{} -> {}", c.macs.0, c.macs.1)
            )?;
        }
        let (p, m) = (self.params(), self.macs());
        write!(
            f,
            "{:<20} {:<12} {:<12} {:<14} {:>20} {:>24}",
            "total",
            "",
            "",
            "",
            format!("{} -> {}", p.0, p.1),
            format!("{} -> {}", m.0, m.1)
        )
    }
}

/// Applies `rule` to every selected layer of `graph` (recursing into nested graphs), replacing
/// the layers for which it returns a replacement. `input` is the graph's input shape, used for
/// costs and shape checks.
///
/// # Errors
/// The rule's errors; a replacement whose output shape differs from the original's (named by
/// path); an input shape the graph rejects.
pub fn rewrite(
    graph: &mut Graph,
    input: &[usize],
    selector: &Selector,
    rule: &dyn Rule,
) -> Result<Report> {
    let mut report = Report::default();
    rewrite_in(graph, "", input, selector, rule, &mut report)?;
    Ok(report)
}

fn rewrite_in(
    graph: &mut Graph,
    prefix: &str,
    input: &[usize],
    selector: &Selector,
    rule: &dyn Rule,
    report: &mut Report,
) -> Result<()> {
    let shapes = graph.shapes(input)?;
    let names: Vec<(String, usize)> = graph
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Layer(_)))
        .map(|n| (n.name.clone(), n.inputs[0].index()))
        .collect();
    for (name, src) in names {
        let path = format!("{prefix}{name}");
        let in_shape = &shapes[src];
        let layer = graph.layer_mut(&name).expect("listed above");
        if let Some(inner) = layer.downcast_mut::<Graph>() {
            rewrite_in(inner, &format!("{path}."), in_shape, selector, rule, report)?;
            continue;
        }
        if !selector.matches(&path, layer.as_ref()) {
            continue;
        }
        let Some(new) = rule
            .apply(&path, layer.as_ref(), in_shape)
            .map_err(|e| e.in_layer(&path))?
        else {
            continue;
        };
        let before = layer.cost(in_shape).map_err(|e| e.in_layer(&path))?;
        let after = new.cost(in_shape).map_err(|e| e.in_layer(&path))?;
        if after.output != before.output {
            return Err(Error::Graph(format!(
                "{path}: rule `{}` changed the output shape from {:?} to {:?}",
                rule.name(),
                before.output,
                after.output
            )));
        }
        report.changes.push(Change {
            path: path.clone(),
            rule: rule.name().to_string(),
            kind_before: layer.kind().to_string(),
            kind_after: new.kind().to_string(),
            params: (before.params, after.params),
            macs: (before.macs, after.macs),
        });
        *layer = new;
    }
    Ok(())
}

/// Folds every BatchNorm2d that directly follows a Conv2d (and is that convolution's only reader)
/// into the convolution's weight and bias, removing the BatchNorm node. Evaluation outputs are
/// unchanged up to rounding. Returns the names of the folded BatchNorm nodes.
///
/// # Errors
/// Never for graphs built from core layers; kept for rules that may fail in future.
pub fn fold_batchnorm(graph: &mut Graph) -> Result<Vec<String>> {
    let mut folded = Vec::new();
    loop {
        let mut target = None;
        for (i, n) in graph.nodes().iter().enumerate() {
            let Op::Layer(l) = &n.op else { continue };
            if l.downcast_ref::<BatchNorm2d>().is_none() {
                continue;
            }
            let src = n.inputs[0];
            let Some(conv_node) = graph.node(src) else {
                continue;
            };
            let Op::Layer(c) = &conv_node.op else {
                continue;
            };
            if c.downcast_ref::<Conv2d>().is_none()
                || graph.consumers(src).len() != 1
                || src.index() == 0
            {
                continue;
            }
            target = Some((conv_node.name.clone(), graph.nodes()[i].name.clone()));
            break;
        }
        let Some((conv_name, bn_name)) = target else {
            break;
        };
        let bn = graph.bypass(&bn_name)?;
        let bn = bn.downcast_ref::<BatchNorm2d>().expect("checked above");
        let (scale, shift) = bn.folded();
        let conv = graph
            .layer_mut(&conv_name)
            .and_then(|l| l.downcast_mut::<Conv2d>())
            .expect("checked above");
        let mut w = conv.weight.value.clone();
        for (o, mut f) in w.outer_iter_mut().enumerate() {
            f.mapv_inplace(|v| v * scale[o]);
        }
        let b: Vec<f32> = (0..scale.len())
            .map(|o| conv.bias.as_ref().map_or(0.0, |b| b.value[o]) * scale[o] + shift[o])
            .collect();
        let cfg: Conv2dConfig = conv.config().clone().with_bias(true);
        let mask = conv.weight.mask().cloned();
        let mut new = Conv2d::from_parts(cfg, w, Some(crate::tensor::from_vec(&[b.len()], b)?))?;
        if let Some(m) = mask {
            new.weight.set_mask(m)?;
        }
        *conv = new;
        folded.push(bn_name);
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{models, tensor};

    #[test]
    fn folding_batchnorm_keeps_outputs() {
        let mut g = models::resnet_small(&mut tensor::rng(0)).unwrap();
        let x = tensor::uniform(&[2, 1, 28, 28], -1.0, 1.0, &mut tensor::rng(1));
        for _ in 0..3 {
            g.forward_train(&x).unwrap(); // move running statistics off their defaults
        }
        let before = g.forward(&x).unwrap();
        let folded = fold_batchnorm(&mut g).unwrap();
        assert_eq!(folded.len(), 9, "{folded:?}");
        assert!(g.nodes().iter().all(|n| n.op.name() != "BatchNorm2d"));
        let after = g.forward(&x).unwrap();
        assert!(
            tensor::max_abs_diff(&before, &after) < 1e-4,
            "{}",
            tensor::max_abs_diff(&before, &after)
        );
    }

    #[test]
    fn selectors_and_shape_checks() {
        struct Widen;
        impl Rule for Widen {
            fn name(&self) -> &str {
                "widen"
            }
            fn apply(&self, _: &str, _: &dyn Layer, _: &[usize]) -> Result<Option<Box<dyn Layer>>> {
                let l = crate::layers::LinearConfig::new(784, 301).init(&mut tensor::rng(0))?;
                Ok(Some(Box::new(l)))
            }
        }
        let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
        let e = rewrite(
            &mut g,
            &[1, 1, 28, 28],
            &Selector::Paths(vec!["fc1".into()]),
            &Widen,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("fc1: rule `widen` changed the output shape"),
            "{e}"
        );
        let r = rewrite(
            &mut g,
            &[1, 1, 28, 28],
            &Selector::Kinds(vec!["Conv2d".into()]),
            &Widen,
        )
        .unwrap();
        assert!(r.changes.is_empty());
    }
}
