//! [`Graph`]: a DAG of named layers and merge nodes, itself a [`Layer`]; [`Sequential`] builds chains.

use std::borrow::Cow;
use std::collections::HashSet;

use ndarray::{Axis, IxDyn};

use crate::error::{Error, Result};
use crate::layer::{Cost, Layer, StoredTensor};
use crate::param::Param;
use crate::tensor::Tensor;

/// Index of a node in a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) usize);

impl NodeId {
    /// The position of the node in the graph's (topological) node order.
    pub fn index(self) -> usize {
        self.0
    }
}

/// What a node computes.
#[derive(Clone)]
#[non_exhaustive]
pub enum Op {
    /// The graph input (always node 0).
    Input,
    /// A single-input layer.
    Layer(Box<dyn Layer>),
    /// Element-wise sum of two inputs, with broadcasting.
    Add,
    /// Element-wise product of two inputs, with broadcasting (e.g. `[N,C,H,W] * [N,C,1,1]`).
    Mul,
    /// Concatenation of its inputs along axis 1 (channels).
    Concat,
}

impl Op {
    /// A short name: the layer kind, or `Input`, `Add`, `Mul`, `Concat`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Layer(l) => l.kind(),
            Op::Add => "Add",
            Op::Mul => "Mul",
            Op::Concat => "Concat",
        }
    }
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A named node and the nodes it reads.
#[derive(Debug, Clone)]
pub struct Node {
    /// Unique name; parameter paths start with it (`conv1.weight`).
    pub name: String,
    /// What the node computes.
    pub op: Op,
    /// The nodes it reads, in order.
    pub inputs: Vec<NodeId>,
}

#[derive(Debug, Clone, Default)]
struct TrainCache {
    shapes: Vec<Vec<usize>>,
    values: Vec<Option<Tensor>>,
}

/// A directed acyclic graph of named nodes: one input, single-input layers, and add / mul /
/// concat merges, with one output. Nodes are kept in topological order (a node may only read
/// nodes added before it). A `Graph` is itself a [`Layer`], so a whole model stands where a layer
/// stands, and graphs nest.
///
/// ```
/// use slimnet_core::graph::Graph;
/// use slimnet_core::layers::{Activation, Conv2dConfig};
/// use slimnet_core::{tensor, Layer};
/// let mut rng = tensor::rng(0);
/// let mut g = Graph::new();
/// let x = g.input();
/// let c = g.add_layer("conv", Conv2dConfig::new(4, 4, 3).with_padding(1).init(&mut rng)?, x)?;
/// let s = g.add("skip", c, x)?; // residual connection
/// g.add_layer("relu", Activation::relu(), s)?;
/// assert_eq!(g.forward(&tensor::zeros(&[1, 4, 8, 8]))?.shape(), &[1, 4, 8, 8]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Graph {
    nodes: Vec<Node>,
    output: NodeId,
    cache: Option<TrainCache>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

/// Sums `g` over the axes where `shape` was broadcast, returning a tensor of `shape`.
fn reduce_to(g: Tensor, shape: &[usize]) -> Tensor {
    if g.shape() == shape {
        return g;
    }
    let mut r = g;
    let extra = r.ndim() - shape.len();
    for _ in 0..extra {
        r = r.sum_axis(Axis(0));
    }
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && r.shape()[i] != 1 {
            r = r.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    r
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

impl Graph {
    /// An empty graph: just its input node, which is also the output until nodes are added.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node {
                name: "input".into(),
                op: Op::Input,
                inputs: vec![],
            }],
            output: NodeId(0),
            cache: None,
        }
    }

    /// The input node.
    pub fn input(&self) -> NodeId {
        NodeId(0)
    }

    /// The output node.
    pub fn output(&self) -> NodeId {
        self.output
    }

    /// Makes `id` the output node.
    ///
    /// # Errors
    /// When `id` is not a node of this graph.
    pub fn set_output(&mut self, id: NodeId) -> Result<()> {
        self.check_id(id)?;
        self.output = id;
        Ok(())
    }

    /// All nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name).map(NodeId)
    }

    /// The node at `id`.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0)
    }

    /// The layer of node `name`, if it is a layer node.
    pub fn layer(&self, name: &str) -> Option<&dyn Layer> {
        match &self.nodes.get(self.node_id(name)?.0)?.op {
            Op::Layer(l) => Some(l.as_ref()),
            _ => None,
        }
    }

    /// The layer of node `name`, mutably.
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer>> {
        let id = self.node_id(name)?;
        match &mut self.nodes[id.0].op {
            Op::Layer(l) => Some(l),
            _ => None,
        }
    }

    /// The nodes that read `id`.
    pub fn consumers(&self, id: NodeId) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].inputs.contains(&id))
            .map(NodeId)
            .collect()
    }

    fn check_id(&self, id: NodeId) -> Result<()> {
        if id.0 < self.nodes.len() {
            Ok(())
        } else {
            Err(Error::Graph(format!("node #{} does not exist", id.0)))
        }
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<NodeId>) -> Result<NodeId> {
        if name.is_empty() || name.contains('.') {
            return Err(Error::Graph(format!(
                "node name `{name}` must be non-empty and contain no `.`"
            )));
        }
        if self.node_id(name).is_some() {
            return Err(Error::Graph(format!("duplicate node name `{name}`")));
        }
        for &i in &inputs {
            self.check_id(i)?;
        }
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
        });
        self.output = NodeId(self.nodes.len() - 1);
        self.cache = None;
        Ok(self.output)
    }

    /// Appends a layer reading `from`; the new node becomes the output.
    ///
    /// # Errors
    /// A duplicate or invalid name (names contain no `.`), or an unknown input.
    pub fn add_layer(
        &mut self,
        name: &str,
        layer: impl Layer + 'static,
        from: NodeId,
    ) -> Result<NodeId> {
        self.push(name, Op::Layer(Box::new(layer)), vec![from])
    }

    /// Appends a boxed layer reading `from`.
    ///
    /// # Errors
    /// As [`add_layer`](Self::add_layer).
    pub fn add_boxed(&mut self, name: &str, layer: Box<dyn Layer>, from: NodeId) -> Result<NodeId> {
        self.push(name, Op::Layer(layer), vec![from])
    }

    /// Appends an element-wise sum `a + b` (broadcasting).
    ///
    /// # Errors
    /// As [`add_layer`](Self::add_layer).
    pub fn add(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(name, Op::Add, vec![a, b])
    }

    /// Appends an element-wise product `a * b` (broadcasting).
    ///
    /// # Errors
    /// As [`add_layer`](Self::add_layer).
    pub fn mul(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(name, Op::Mul, vec![a, b])
    }

    /// Appends a concatenation along channels.
    ///
    /// # Errors
    /// Fewer than one input, or as [`add_layer`](Self::add_layer).
    pub fn concat(&mut self, name: &str, inputs: &[NodeId]) -> Result<NodeId> {
        if inputs.is_empty() {
            return Err(Error::Graph(format!(
                "concat `{name}` needs at least one input"
            )));
        }
        self.push(name, Op::Concat, inputs.to_vec())
    }

    /// Replaces the layer of node `name`, returning the old one. Shapes are the caller's
    /// responsibility; check with [`shapes`](Self::shapes).
    ///
    /// # Errors
    /// When `name` is not a layer node.
    pub fn replace_layer(&mut self, name: &str, layer: Box<dyn Layer>) -> Result<Box<dyn Layer>> {
        self.cache = None;
        let slot = self
            .layer_mut(name)
            .ok_or_else(|| Error::Graph(format!("no layer node `{name}`")))?;
        Ok(std::mem::replace(slot, layer))
    }

    /// Removes the single-input layer node `name`, making its readers read its input instead
    /// (used to fold a BatchNorm into a convolution, or drop an identity).
    ///
    /// # Errors
    /// When `name` is not a layer node.
    pub fn bypass(&mut self, name: &str) -> Result<Box<dyn Layer>> {
        let id = self
            .node_id(name)
            .filter(|id| matches!(self.nodes[id.0].op, Op::Layer(_)))
            .ok_or_else(|| Error::Graph(format!("no layer node `{name}`")))?;
        let src = self.nodes[id.0].inputs[0];
        let node = self.nodes.remove(id.0);
        let remap = |n: NodeId| -> NodeId {
            if n == id {
                src
            } else if n.0 > id.0 {
                NodeId(n.0 - 1)
            } else {
                n
            }
        };
        for n in &mut self.nodes {
            for i in &mut n.inputs {
                *i = remap(*i);
            }
        }
        self.output = remap(self.output);
        self.cache = None;
        match node.op {
            Op::Layer(l) => Ok(l),
            _ => unreachable!("checked above"),
        }
    }

    /// Output shape of every node for an input shape.
    ///
    /// # Errors
    /// The first node whose input shape does not fit, named by path.
    pub fn shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let ins: Vec<&[usize]> = node.inputs.iter().map(|i| shapes[i.0].as_slice()).collect();
            let s = match &node.op {
                Op::Input => input.to_vec(),
                Op::Layer(l) => l.output_shape(ins[0]).map_err(|e| e.in_layer(&node.name))?,
                Op::Add | Op::Mul => {
                    broadcast_shape(ins[0], ins[1]).ok_or_else(|| Error::Shape {
                        layer: node.name.clone(),
                        expected: format!("a shape broadcastable with {:?}", ins[0]),
                        actual: ins[1].to_vec(),
                    })?
                }
                Op::Concat => self.concat_shape(&node.name, &ins)?,
            };
            shapes.push(s);
        }
        Ok(shapes)
    }

    fn concat_shape(&self, name: &str, ins: &[&[usize]]) -> Result<Vec<usize>> {
        let first = ins[0];
        if first.len() < 2 {
            return Err(Error::Shape {
                layer: name.into(),
                expected: "rank >= 2".into(),
                actual: first.to_vec(),
            });
        }
        let mut out = first.to_vec();
        for s in &ins[1..] {
            let same = s.len() == first.len()
                && s.iter()
                    .zip(first)
                    .enumerate()
                    .all(|(i, (a, b))| i == 1 || a == b);
            if !same {
                return Err(Error::Shape {
                    layer: name.into(),
                    expected: format!("{first:?} except along axis 1"),
                    actual: s.to_vec(),
                });
            }
            out[1] += s[1];
        }
        Ok(out)
    }

    fn merge(&self, node: &Node, ins: &[&Tensor]) -> Result<Tensor> {
        let shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape()).collect();
        match node.op {
            Op::Add | Op::Mul => {
                broadcast_shape(shapes[0], shapes[1]).ok_or_else(|| Error::Shape {
                    layer: node.name.clone(),
                    expected: format!("a shape broadcastable with {:?}", shapes[0]),
                    actual: shapes[1].to_vec(),
                })?;
                Ok(if matches!(node.op, Op::Add) {
                    ins[0] + ins[1]
                } else {
                    ins[0] * ins[1]
                })
            }
            Op::Concat => {
                self.concat_shape(&node.name, &shapes)?;
                let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
                ndarray::concatenate(Axis(1), &views)
                    .map_err(|e| Error::Graph(format!("{}: {e}", node.name)))
            }
            _ => unreachable!("merge called on a merge node"),
        }
    }

    /// Nodes whose value is needed after node `i` (last reader index per node).
    fn last_use(&self) -> Vec<usize> {
        let mut last = vec![0; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for inp in &n.inputs {
                last[inp.0] = i;
            }
        }
        last[self.output.0] = usize::MAX;
        last
    }

    fn run(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let last = self.last_use();
        let needed: HashSet<usize> = self
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Mul))
            .flat_map(|n| n.inputs.iter().map(|i| i.0))
            .collect();
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        let mut cache = TrainCache::default();
        for i in 0..self.nodes.len() {
            if i > self.output.0 {
                break;
            }
            let ins: Vec<&Tensor> = self.nodes[i]
                .inputs
                .iter()
                .map(|j| values[j.0].as_ref().expect("inputs computed before use"))
                .collect();
            let y = if matches!(self.nodes[i].op, Op::Add | Op::Mul | Op::Concat) {
                self.merge(&self.nodes[i], &ins)?
            } else {
                let node = &mut self.nodes[i];
                match &mut node.op {
                    Op::Layer(l) => {
                        let r = if train {
                            l.forward_train(ins[0])
                        } else {
                            l.forward(ins[0])
                        };
                        r.map_err(|e| e.in_layer(&node.name))?
                    }
                    _ => x.clone(),
                }
            };
            if train {
                cache.shapes.push(y.shape().to_vec());
                cache.values.push(needed.contains(&i).then(|| y.clone()));
            }
            values[i] = Some(y);
            for j in 0..i {
                if last[j] == i {
                    values[j] = None;
                }
            }
        }
        if train {
            self.cache = Some(cache);
        }
        Ok(values[self.output.0].take().expect("output computed"))
    }

    /// Inference without `&mut` (layers run in evaluation mode).
    fn run_eval(&self, x: &Tensor) -> Result<Tensor> {
        let last = self.last_use();
        // the input is borrowed, not copied
        let mut values: Vec<Option<Cow<'_, Tensor>>> = vec![None; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().take(self.output.0 + 1) {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|j| values[j.0].as_deref().expect("inputs computed before use"))
                .collect();
            let y = match &node.op {
                Op::Input => Cow::Borrowed(x),
                Op::Layer(l) => Cow::Owned(l.forward(ins[0]).map_err(|e| e.in_layer(&node.name))?),
                _ => Cow::Owned(self.merge(node, &ins)?),
            };
            values[i] = Some(y);
            for j in 0..i {
                if last[j] == i {
                    values[j] = None;
                }
            }
        }
        Ok(values[self.output.0]
            .take()
            .expect("output computed")
            .into_owned())
    }

    /// Visits every layer node with its dotted path, recursing into nested graphs (the nested
    /// graph itself is visited too, before its layers).
    pub fn visit_layers(&self, f: &mut dyn FnMut(&str, &dyn Layer)) {
        self.visit_layers_in("", f);
    }

    fn visit_layers_in(&self, prefix: &str, f: &mut dyn FnMut(&str, &dyn Layer)) {
        for n in &self.nodes {
            if let Op::Layer(l) = &n.op {
                let path = format!("{prefix}{}", n.name);
                f(&path, l.as_ref());
                if let Some(inner) = l.downcast_ref::<Graph>() {
                    inner.visit_layers_in(&format!("{path}."), f);
                }
            }
        }
    }
}

fn accumulate(slot: &mut Option<Tensor>, g: Tensor) {
    match slot {
        Some(acc) => *acc += &g,
        None => *slot = Some(g),
    }
}

impl Layer for Graph {
    fn kind(&self) -> &'static str {
        "Graph"
    }

    /// Input shape -> output shape of the output node.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run_eval(x)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let cache = self.cache.take().ok_or_else(|| Error::Backward {
            layer: String::new(),
            reason: "Graph: backward called without a preceding forward_train".into(),
        })?;
        let out = self.output.0;
        if grad_out.shape() != cache.shapes[out].as_slice() {
            return Err(Error::shape(
                format!("gradient {:?}", cache.shapes[out]),
                grad_out.shape(),
            ));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        grads[out] = Some(grad_out.clone());
        for i in (1..=out).rev() {
            let Some(g) = grads[i].take() else { continue };
            let node = &mut self.nodes[i];
            let inputs = node.inputs.clone();
            match &mut node.op {
                Op::Input => unreachable!("only node 0 is the input"),
                Op::Layer(l) => {
                    let gi = l.backward(&g).map_err(|e| e.in_layer(&node.name))?;
                    accumulate(&mut grads[inputs[0].0], gi);
                }
                Op::Add => {
                    for &j in &inputs {
                        accumulate(&mut grads[j.0], reduce_to(g.clone(), &cache.shapes[j.0]));
                    }
                }
                Op::Mul => {
                    let va = cache.values[inputs[0].0]
                        .as_ref()
                        .expect("mul inputs cached");
                    let vb = cache.values[inputs[1].0]
                        .as_ref()
                        .expect("mul inputs cached");
                    let ga = reduce_to(&g * vb, &cache.shapes[inputs[0].0]);
                    let gb = reduce_to(&g * va, &cache.shapes[inputs[1].0]);
                    accumulate(&mut grads[inputs[0].0], ga);
                    accumulate(&mut grads[inputs[1].0], gb);
                }
                Op::Concat => {
                    let mut start = 0;
                    for &j in &inputs {
                        let c = cache.shapes[j.0][1];
                        let part = g.slice_axis(Axis(1), (start..start + c).into()).to_owned();
                        accumulate(&mut grads[j.0], part);
                        start += c;
                    }
                }
            }
        }
        Ok(grads[0]
            .take()
            .unwrap_or_else(|| Tensor::zeros(IxDyn(&cache.shapes[0]))))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shapes(input)?.swap_remove(self.output.0))
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let shapes = self.shapes(input)?;
        let mut total = Cost {
            output: shapes[self.output.0].clone(),
            ..Cost::default()
        };
        for n in &self.nodes {
            if let Op::Layer(l) = &n.op {
                let c = l
                    .cost(&shapes[n.inputs[0].0])
                    .map_err(|e| e.in_layer(&n.name))?;
                total.params += c.params;
                total.macs += c.macs;
                total.bytes += c.bytes;
            }
        }
        Ok(total)
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        for n in &self.nodes {
            if let Op::Layer(l) = &n.op {
                l.visit_params(&mut |p, v| f(&format!("{}.{p}", n.name), v));
            }
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        for n in &mut self.nodes {
            let name = &n.name;
            if let Op::Layer(l) = &mut n.op {
                l.visit_params_mut(&mut |p, v| f(&format!("{name}.{p}"), v));
            }
        }
    }

    fn visit_buffers(&self, f: &mut dyn FnMut(&str, &Tensor)) {
        for n in &self.nodes {
            if let Op::Layer(l) = &n.op {
                l.visit_buffers(&mut |p, v| f(&format!("{}.{p}", n.name), v));
            }
        }
    }

    fn config_json(&self) -> serde_json::Value {
        crate::io::graph_to_json(self)
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        for n in &self.nodes {
            if let Op::Layer(l) = &n.op {
                l.stored_tensors(&mut |p, t| f(&format!("{}.{p}", n.name), t));
            }
        }
    }
}

/// A builder for a chain of layers, producing a [`Graph`].
///
/// ```
/// use slimnet_core::graph::Sequential;
/// use slimnet_core::layers::{Activation, Flatten, LinearConfig};
/// use slimnet_core::{tensor, Layer};
/// let mut rng = tensor::rng(0);
/// let model = Sequential::new()
///     .push("flatten", Flatten::new())
///     .push("fc1", LinearConfig::new(784, 300).init(&mut rng)?)
///     .push("relu1", Activation::relu())
///     .push("fc2", LinearConfig::new(300, 10).init(&mut rng)?)
///     .build()?;
/// assert_eq!(model.forward(&tensor::zeros(&[2, 1, 28, 28]))?.shape(), &[2, 10]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Layer>)>,
}

impl Sequential {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a named layer.
    pub fn push(mut self, name: &str, layer: impl Layer + 'static) -> Self {
        self.layers.push((name.to_string(), Box::new(layer)));
        self
    }

    /// Appends a boxed named layer.
    pub fn push_boxed(mut self, name: &str, layer: Box<dyn Layer>) -> Self {
        self.layers.push((name.to_string(), layer));
        self
    }

    /// The graph.
    ///
    /// # Errors
    /// Duplicate or invalid names.
    pub fn build(self) -> Result<Graph> {
        let mut g = Graph::new();
        let mut last = g.input();
        for (name, l) in self.layers {
            last = g.add_boxed(&name, l, last)?;
        }
        Ok(g)
    }
}

impl std::fmt::Debug for dyn Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.kind(), self.config_json())
    }
}
