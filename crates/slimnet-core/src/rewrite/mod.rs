//! The rewrite engine: every compression step (low-rank, shrink, sparse conversion, BatchNorm
//! folding, quantization) is a set of rules keyed by layer type, applied by a [`Rewriter`]
//! over the whole graph, nested graphs included.
//!
//! A rule sees one layer of its type with a [`Ctx`] (its path, shapes, the layer before it and
//! the layers after it) and returns an [`Action`]: keep it, replace it, remove it, or fuse it
//! into the layer before it. The rewriter applies the actions, asks again where a fusion
//! changed a layer's surroundings, until nothing changes, and reports every change in one
//! [`Report`] type (parameters, MACs and bytes before and after, per layer). Users compose
//! methods in code: decompose, then prune, then quantize, fine-tuning between.
//!
//! ```
//! use slimnet_core::layers::{Activation, ActivationKind};
//! use slimnet_core::rewrite::{Action, Rewriter};
//! use slimnet_core::{models, tensor};
//!
//! let mut g = models::lenet300(&mut tensor::rng(0))?;
//! // every ReLU becomes a ReLU6
//! let report = Rewriter::new()
//!     .rule::<Activation>("relu6", |a, _ctx| {
//!         Ok(match a.activation_kind() {
//!             ActivationKind::Relu => Action::Replace(Box::new(Activation::relu6())),
//!             _ => Action::Keep,
//!         })
//!     })
//!     .run(&mut g, &[1, 1, 28, 28])?;
//! assert_eq!(report.records.len(), 2);
//! // layers with weights that no rule handled are listed, never silently skipped
//! assert_eq!(report.unhandled.len(), 3);
//! # Ok::<(), slimnet_core::Error>(())
//! ```

mod fold;
mod lower;

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fmt;

pub use fold::{fold_batchnorm, fold_into_conv, fuse_into_norm, fuse_norm_activations};
pub use lower::lower_to_core;

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op};
use crate::layer::Layer;

/// A predicate over a layer's dotted path and the layer.
pub type LayerPredicate = Box<dyn Fn(&str, &dyn Layer) -> bool + Send + Sync>;

/// Which layers a pass may touch.
#[derive(Default)]
pub enum Selector {
    /// Every layer.
    #[default]
    All,
    /// Layers whose dotted path is in the list (e.g. `"conv2"`, `"block1.conv1"`).
    Paths(Vec<String>),
    /// Layers whose kind name is in the list (e.g. `"Conv2d"`), as recipe files name them.
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
    /// Layers of type `T` (compared by type, not by name).
    pub fn of_type<T: Layer + 'static>() -> Self {
        Selector::Predicate(Box::new(|_, l| l.as_any().type_id() == TypeId::of::<T>()))
    }

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

/// What a rule does with the layer it was shown.
#[non_exhaustive]
pub enum Action {
    /// Keep the layer as it is.
    Keep,
    /// Replace the layer by one with the same input and output shapes.
    Replace(Box<dyn Layer>),
    /// Remove the layer: its readers read its input instead (an identity at inference).
    Remove,
    /// Replace the layer before this one (see [`Ctx::producer`]) by the given layer, which
    /// computes both, and remove this one: an activation or a BatchNorm fused into the layer
    /// that feeds it. Only allowed when this layer is the producer's only reader.
    FuseIntoProducer(Box<dyn Layer>),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Keep => write!(f, "Keep"),
            Action::Replace(l) => write!(f, "Replace({})", l.kind()),
            Action::Remove => write!(f, "Remove"),
            Action::FuseIntoProducer(l) => write!(f, "FuseIntoProducer({})", l.kind()),
        }
    }
}

/// The layer that feeds a node (see [`Ctx::producer`]).
#[derive(Clone, Copy)]
pub struct Producer<'a> {
    /// Its node name (in the same graph as the asking layer).
    pub name: &'a str,
    /// The layer.
    pub layer: &'a dyn Layer,
    /// Whether the node asking is its only reader (and it is not the graph's output), so it
    /// may be fused.
    pub sole_reader: bool,
}

impl<'a> Producer<'a> {
    /// The producer as a `T`, if it is one.
    pub fn downcast<T: Layer + 'static>(&self) -> Option<&'a T> {
        self.layer.as_any().downcast_ref::<T>()
    }
}

/// What a rule knows about the layer it was shown.
pub struct Ctx<'a> {
    path: &'a str,
    graph: &'a Graph,
    node: NodeId,
    shapes: &'a [Vec<usize>],
    readers: &'a [Vec<NodeId>],
    note: Option<String>,
}

impl<'a> Ctx<'a> {
    /// The layer's dotted path.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The shape of the layer's input for the input shape the rewriter was given.
    pub fn input_shape(&self) -> &'a [usize] {
        let src = self.graph.nodes()[self.node.index()].inputs[0];
        &self.shapes[src.index()]
    }

    /// The shape of the layer's output.
    pub fn output_shape(&self) -> &'a [usize] {
        &self.shapes[self.node.index()]
    }

    /// The layer that produces this layer's input; `None` when the input is the graph's input
    /// or a merge node (add, mul, concat).
    pub fn producer(&self) -> Option<Producer<'a>> {
        let src = self.graph.nodes()[self.node.index()].inputs[0];
        let node = &self.graph.nodes()[src.index()];
        let Op::Layer(l) = &node.op else { return None };
        let sole = self.readers[src.index()].len() == 1 && self.graph.output() != src;
        Some(Producer {
            name: &node.name,
            layer: l.as_ref(),
            sole_reader: sole,
        })
    }

    /// How many nodes read this layer's output (0 for the graph's output).
    pub fn readers(&self) -> usize {
        self.readers[self.node.index()].len()
    }

    /// The layers this layer's output reaches, passing through the layers for which `through`
    /// holds (e.g. max-pools and flattens that work on u8 codes). `None` when the value also
    /// reaches a merge node, the graph's output, or a layer `through` passes whose value
    /// is read by more than one node before ending at a layer.
    pub fn downstream(&self, through: impl Fn(&dyn Layer) -> bool) -> Option<Vec<&'a dyn Layer>> {
        let mut out = Vec::new();
        let mut stack = vec![self.node];
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            if self.graph.output() == id {
                return None;
            }
            for &r in &self.readers[id.index()] {
                if !seen.insert(r) {
                    continue;
                }
                let Op::Layer(l) = &self.graph.nodes()[r.index()].op else {
                    return None;
                };
                if through(l.as_ref()) {
                    stack.push(r);
                } else {
                    out.push(l.as_ref());
                }
            }
        }
        Some(out)
    }

    /// Adds a note to this layer's record (why a rule kept a layer, what it chose).
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        self.note = Some(match self.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note,
        });
    }
}

/// One layer a rewrite looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Dotted path of the layer.
    pub path: String,
    /// Rule name.
    pub rule: String,
    /// Kind before.
    pub kind_before: String,
    /// Kind after (`-` when the layer was removed).
    pub kind_after: String,
    /// Parameters before and after.
    pub params: (usize, usize),
    /// MACs before and after, for the input shape given to the rewriter.
    pub macs: (usize, usize),
    /// Stored bytes before and after.
    pub bytes: (usize, usize),
    /// Whether the layer was changed (a rule may keep a layer and say why in the note).
    pub changed: bool,
    /// What the rule chose, or why it kept the layer.
    pub note: String,
}

/// What a rewrite did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// One record per layer a rule changed or commented on, in the order the rules ran.
    pub records: Vec<Record>,
    /// Selected layers with parameters that no rule was registered for: `(path, kind)`.
    pub unhandled: Vec<(String, String)>,
}

impl Report {
    /// The records of changed layers.
    pub fn changes(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|r| r.changed)
    }

    /// Total (before, after) parameters over the changed layers.
    pub fn params(&self) -> (usize, usize) {
        self.changes()
            .fold((0, 0), |a, c| (a.0 + c.params.0, a.1 + c.params.1))
    }

    /// Total (before, after) MACs over the changed layers.
    pub fn macs(&self) -> (usize, usize) {
        self.changes()
            .fold((0, 0), |a, c| (a.0 + c.macs.0, a.1 + c.macs.1))
    }

    /// Total (before, after) stored bytes over the changed layers.
    pub fn bytes(&self) -> (usize, usize) {
        self.changes()
            .fold((0, 0), |a, c| (a.0 + c.bytes.0, a.1 + c.bytes.1))
    }

    /// An error naming the selected layers with weights that no rule handled (a pass that
    /// would otherwise silently do nothing to them, such as pruning an int8 layer); `Ok` when
    /// there are none.
    ///
    /// # Errors
    /// [`Error::Unhandled`] listing `(path, kind)` of those layers.
    pub fn refuse_unhandled(&self, pass: &str) -> Result<()> {
        match self.unhandled.first() {
            None => Ok(()),
            Some((path, kind)) => Err(Error::Unhandled {
                layer: path.clone(),
                kind: kind.clone(),
                pass: pass.to_string(),
                others: self.unhandled.len() - 1,
            }),
        }
    }

    /// Appends another report (of a later pass).
    pub fn extend(&mut self, other: Report) {
        self.records.extend(other.records);
        self.unhandled.extend(other.unhandled);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:<14} {:<14} {:<16} {:>20} {:>24} {:>22}",
            "layer", "rule", "before", "after", "params", "MACs", "bytes"
        )?;
        for c in &self.records {
            let arrow = |a: (usize, usize)| format!("{} -> {}", a.0, a.1);
            writeln!(
                f,
                "{:<24} {:<14} {:<14} {:<16} {:>20} {:>24} {:>22}{}",
                c.path,
                c.rule,
                c.kind_before,
                if c.changed { &c.kind_after } else { "(kept)" },
                arrow(c.params),
                arrow(c.macs),
                arrow(c.bytes),
                if c.note.is_empty() {
                    String::new()
                } else {
                    format!("  {}", c.note)
                }
            )?;
        }
        for (path, kind) in &self.unhandled {
            writeln!(f, "{path:<24} (no rule for {kind})")?;
        }
        let (p, m, b) = (self.params(), self.macs(), self.bytes());
        write!(
            f,
            "{:<24} {:<14} {:<14} {:<16} {:>20} {:>24} {:>22}",
            "total",
            "",
            "",
            "",
            format!("{} -> {}", p.0, p.1),
            format!("{} -> {}", m.0, m.1),
            format!("{} -> {}", b.0, b.1)
        )
    }
}

type RuleFn<'r> = Box<dyn FnMut(&dyn Layer, &mut Ctx<'_>) -> Result<Action> + 'r>;

struct Entry<'r> {
    name: String,
    /// `None`: the rule is shown every layer.
    ty: Option<TypeId>,
    f: RuleFn<'r>,
}

/// Most rounds of asking again after fusions before the rewriter gives up.
const MAX_ROUNDS: usize = 10_000;

/// Applies rules keyed by layer type over a graph and its nested graphs (see the module docs).
///
/// Rules are tried in the order they were added; the first whose type matches and that returns
/// something other than [`Action::Keep`] wins. A layer a rule produced is not shown to the rules
/// again in the same run (a low-rank rule does not decompose its own factors); a layer a rule
/// kept is asked again only when the layer before it changed.
pub struct Rewriter<'r> {
    rules: Vec<Entry<'r>>,
    selector: Selector,
}

impl Default for Rewriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'r> Rewriter<'r> {
    /// A rewriter without rules, selecting every layer.
    pub fn new() -> Self {
        Self {
            rules: Vec::new(),
            selector: Selector::All,
        }
    }

    /// Adds a rule for layers of type `T`.
    pub fn rule<T: Layer + 'static>(
        mut self,
        name: &str,
        mut f: impl FnMut(&T, &mut Ctx<'_>) -> Result<Action> + 'r,
    ) -> Self {
        self.rules.push(Entry {
            name: name.to_string(),
            ty: Some(TypeId::of::<T>()),
            f: Box::new(move |l, ctx| {
                let t = l
                    .as_any()
                    .downcast_ref::<T>()
                    .expect("the rewriter checked the type");
                f(t, ctx)
            }),
        });
        self
    }

    /// Adds a rule shown every layer (for generic rules such as lowering unknown kinds with
    /// [`Layer::to_core`]).
    pub fn any_rule(
        mut self,
        name: &str,
        f: impl FnMut(&dyn Layer, &mut Ctx<'_>) -> Result<Action> + 'r,
    ) -> Self {
        self.rules.push(Entry {
            name: name.to_string(),
            ty: None,
            f: Box::new(f),
        });
        self
    }

    /// Restricts the rules to the selected layers.
    pub fn select(mut self, selector: Selector) -> Self {
        self.selector = selector;
        self
    }

    fn has_rule_for(&self, l: &dyn Layer) -> bool {
        let t = l.as_any().type_id();
        self.rules.iter().any(|e| e.ty.is_none_or(|ty| ty == t))
    }

    /// Applies the rules to `graph`, whose input has shape `input`.
    ///
    /// # Errors
    /// An input shape the graph rejects; a rule's error (named by path); a replacement whose
    /// output shape differs from the layer's; a fusion into a layer that has other readers;
    /// rules that keep changing the graph.
    pub fn run(&mut self, graph: &mut Graph, input: &[usize]) -> Result<Report> {
        let mut report = Report::default();
        self.run_graph(graph, "", input, &mut report)?;
        Ok(report)
    }

    fn run_graph(
        &mut self,
        g: &mut Graph,
        prefix: &str,
        input: &[usize],
        report: &mut Report,
    ) -> Result<()> {
        // nodes made by a rule, and nodes a rule kept with the producer they had then
        let mut fresh: HashSet<String> = HashSet::new();
        let mut kept: HashMap<String, Option<String>> = HashMap::new();
        let mut nested_done: HashSet<String> = HashSet::new();
        for round in 0.. {
            if round == MAX_ROUNDS {
                return Err(Error::Graph(format!(
                    "{prefix}: rewrite rules still changing the graph after {MAX_ROUNDS} rounds"
                )));
            }
            let shapes = g.shapes(input)?;
            let readers = readers(g);
            let mut edit = None;
            for i in 1..g.nodes().len() {
                let node = &g.nodes()[i];
                let Op::Layer(layer) = &node.op else {
                    continue;
                };
                let name = node.name.clone();
                if fresh.contains(&name) {
                    continue;
                }
                let path = format!("{prefix}{name}");
                let in_shape = shapes[node.inputs[0].index()].clone();
                if Graph::of(layer.as_ref()).is_some() {
                    if nested_done.insert(name.clone()) {
                        edit = Some(Edit::Nested(name, in_shape));
                        break;
                    }
                    continue;
                }
                if !self.selector.matches(&path, layer.as_ref()) {
                    continue;
                }
                let producer = producer_name(g, NodeId(i));
                if kept.get(&name).is_some_and(|p| *p == producer) {
                    continue;
                }
                let t = layer.as_any().type_id();
                let mut chosen = None;
                let mut notes = Vec::new();
                for e in self
                    .rules
                    .iter_mut()
                    .filter(|e| e.ty.is_none_or(|ty| ty == t))
                {
                    let mut ctx = Ctx {
                        path: &path,
                        graph: g,
                        node: NodeId(i),
                        shapes: &shapes,
                        readers: &readers,
                        note: None,
                    };
                    let action =
                        (e.f)(layer.as_ref(), &mut ctx).map_err(|err| err.in_layer(&path))?;
                    let note = ctx.note.take();
                    if matches!(action, Action::Keep) {
                        notes.extend(note.map(|n| (e.name.clone(), n)));
                        continue;
                    }
                    chosen = Some((e.name.clone(), action, note.unwrap_or_default()));
                    break;
                }
                match chosen {
                    Some((rule, action, note)) => {
                        edit = Some(Edit::Apply {
                            index: i,
                            path,
                            rule,
                            action,
                            note,
                        });
                        break;
                    }
                    None => {
                        let cost = layer.cost(&in_shape).map_err(|e| e.in_layer(&path))?;
                        for (rule, note) in notes {
                            report.records.push(Record {
                                path: path.clone(),
                                rule,
                                kind_before: layer.kind().into(),
                                kind_after: layer.kind().into(),
                                params: (cost.params, cost.params),
                                macs: (cost.macs, cost.macs),
                                bytes: (cost.bytes, cost.bytes),
                                changed: false,
                                note,
                            });
                        }
                        kept.insert(name, producer);
                    }
                }
            }
            match edit {
                None => break,
                Some(Edit::Nested(name, in_shape)) => {
                    let slot = g.layer_mut(&name).expect("a layer node");
                    let inner = Graph::of_mut(slot.as_mut()).expect("checked: a graph");
                    self.run_graph(inner, &format!("{prefix}{name}."), &in_shape, report)?;
                }
                Some(Edit::Apply {
                    index,
                    path,
                    rule,
                    action,
                    note,
                }) => {
                    let made = apply(g, index, &shapes, &path, &rule, action, note, report)?;
                    fresh.extend(made);
                }
            }
        }
        // selected layers with weights that no rule knows (leaving out those a rule made)
        for n in g.nodes() {
            let Op::Layer(l) = &n.op else { continue };
            if fresh.contains(&n.name) {
                continue;
            }
            let path = format!("{prefix}{}", n.name);
            if Graph::of(l.as_ref()).is_none()
                && self.selector.matches(&path, l.as_ref())
                && !self.has_rule_for(l.as_ref())
                && l.num_params() + stored_count(l.as_ref()) > 0
            {
                report.unhandled.push((path, l.kind().to_string()));
            }
        }
        Ok(())
    }
}

/// Number of tensors a layer stores (compact layers have no trainable parameters).
fn stored_count(l: &dyn Layer) -> usize {
    let mut n = 0;
    l.stored_tensors(&mut |_, _| n += 1);
    n
}

enum Edit {
    Nested(String, Vec<usize>),
    Apply {
        index: usize,
        path: String,
        rule: String,
        action: Action,
        note: String,
    },
}

fn readers(g: &Graph) -> Vec<Vec<NodeId>> {
    let mut r = vec![Vec::new(); g.nodes().len()];
    for (i, n) in g.nodes().iter().enumerate() {
        for j in &n.inputs {
            r[j.index()].push(NodeId(i));
        }
    }
    r
}

fn producer_name(g: &Graph, id: NodeId) -> Option<String> {
    let src = g.nodes()[id.index()].inputs[0];
    let n = &g.nodes()[src.index()];
    matches!(n.op, Op::Layer(_)).then(|| n.name.clone())
}

/// Applies one action; returns the names of nodes a rule made.
#[allow(clippy::too_many_arguments)]
fn apply(
    g: &mut Graph,
    index: usize,
    shapes: &[Vec<usize>],
    path: &str,
    rule: &str,
    action: Action,
    note: String,
    report: &mut Report,
) -> Result<Vec<String>> {
    let node = &g.nodes()[index];
    let name = node.name.clone();
    let src = node.inputs[0];
    let in_shape = &shapes[src.index()];
    let out_shape = &shapes[index];
    let Op::Layer(layer) = &node.op else {
        unreachable!("rules see layer nodes")
    };
    let before = layer.cost(in_shape).map_err(|e| e.in_layer(path))?;
    let kind_before = layer.kind().to_string();
    let shape_err = |got: &[usize]| {
        Error::Graph(format!(
            "{path}: rule `{rule}` changed the output shape from {out_shape:?} to {got:?}"
        ))
    };
    match action {
        Action::Keep => Ok(Vec::new()),
        Action::Replace(new) => {
            let after = new.cost(in_shape).map_err(|e| e.in_layer(path))?;
            if after.output != *out_shape {
                return Err(shape_err(&after.output));
            }
            report.records.push(Record {
                path: path.to_string(),
                rule: rule.to_string(),
                kind_before,
                kind_after: new.kind().to_string(),
                params: (before.params, after.params),
                macs: (before.macs, after.macs),
                bytes: (before.bytes, after.bytes),
                changed: true,
                note,
            });
            g.replace_layer(&name, new)?;
            Ok(vec![name])
        }
        Action::Remove => {
            if in_shape != out_shape {
                return Err(shape_err(in_shape));
            }
            report.records.push(Record {
                path: path.to_string(),
                rule: rule.to_string(),
                kind_before,
                kind_after: "-".into(),
                params: (before.params, 0),
                macs: (before.macs, 0),
                bytes: (before.bytes, 0),
                changed: true,
                note,
            });
            g.bypass(&name)?;
            Ok(Vec::new())
        }
        Action::FuseIntoProducer(new) => {
            let p = &g.nodes()[src.index()];
            let Op::Layer(pl) = &p.op else {
                return Err(Error::Graph(format!(
                    "{path}: rule `{rule}` fuses into a producer, but the input is not a layer"
                )));
            };
            let sole = readers(g)[src.index()].len() == 1 && g.output() != src;
            if !sole {
                return Err(Error::Graph(format!(
                    "{path}: rule `{rule}` fuses into `{}`, which has other readers",
                    p.name
                )));
            }
            let p_in = &shapes[p.inputs[0].index()];
            let pc = pl.cost(p_in).map_err(|e| e.in_layer(path))?;
            let after = new.cost(p_in).map_err(|e| e.in_layer(path))?;
            if after.output != *out_shape {
                return Err(shape_err(&after.output));
            }
            let pname = p.name.clone();
            let pkind = pl.kind().to_string();
            report.records.push(Record {
                path: path.to_string(),
                rule: rule.to_string(),
                kind_before: format!("{pkind}+{kind_before}"),
                kind_after: new.kind().to_string(),
                params: (before.params + pc.params, after.params),
                macs: (before.macs + pc.macs, after.macs),
                bytes: (before.bytes + pc.bytes, after.bytes),
                changed: true,
                note: if note.is_empty() {
                    format!("into `{pname}`")
                } else {
                    format!("into `{pname}`; {note}")
                },
            });
            g.replace_layer(&pname, new)?;
            g.bypass(&name)?;
            Ok(vec![pname])
        }
    }
}

#[cfg(test)]
mod tests;
