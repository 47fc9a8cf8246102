//! [`Graph`]: a DAG of named layers and merge nodes, itself a [`Layer`]; [`Sequential`] builds chains.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::{broadcast_shape, Tensor};
use crate::value::QuantParams;

mod exec;
mod plan;

pub use exec::Tap;
pub use plan::Plan;

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
    /// Matrix product of two inputs with NumPy's `matmul` rules (see
    /// [`tensor::matmul`](crate::tensor::matmul)): the attention of a transformer block, where
    /// both operands are activations.
    MatMul,
    /// Element-wise sum of two inputs like [`Op::Add`], written as u8 codes with these
    /// parameters: the int8 residual addition of a quantized network. Its inputs may be f32 or
    /// codes of any quantization (each branch keeps its own); two code inputs of one shape are
    /// added without an f32 tensor in between. Made by static quantization
    /// ([`Graph::quantize_add`]); in f32 inference and training it adds and rounds to its codes'
    /// grid, and passes gradients straight through.
    QuantAdd(QuantParams),
}

impl Op {
    /// The multiply-adds of a merge node writing `output` from a first input of shape
    /// `first`: one per output value for the element-wise ops, the length of the shared axis
    /// per output value for [`Op::MatMul`], none for the input, a concatenation or a layer
    /// (whose cost its [`Layer::cost`] gives).
    pub fn merge_macs(&self, output: &[usize], first: &[usize]) -> usize {
        let values: usize = output.iter().product();
        match self {
            Op::Add | Op::Mul | Op::QuantAdd(_) => values,
            Op::MatMul => values * first.last().copied().unwrap_or(1),
            Op::Input | Op::Layer(_) | Op::Concat => 0,
        }
    }

    /// A short name: the layer kind, or `Input`, `Add`, `Mul`, `Concat`, `MatMul`, `QuantAdd`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Layer(l) => l.kind(),
            Op::Add => "Add",
            Op::Mul => "Mul",
            Op::Concat => "Concat",
            Op::MatMul => "MatMul",
            Op::QuantAdd(_) => "QuantAdd",
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
    /// Node names to positions.
    index: HashMap<String, NodeId>,
    output: NodeId,
    cache: Option<TrainCache>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

fn concat_shape(name: &str, ins: &[&[usize]]) -> Result<Vec<usize>> {
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

impl Graph {
    /// An empty graph: just its input node, which is also the output until nodes are added.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node {
                name: "input".into(),
                op: Op::Input,
                inputs: vec![],
            }],
            index: HashMap::from([("input".to_string(), NodeId(0))]),
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
        self.index.get(name).copied()
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
        self.index
            .insert(name.to_string(), NodeId(self.nodes.len()));
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

    /// Makes the sum node `name` write u8 codes quantized with `params` ([`Op::QuantAdd`]), or
    /// re-quantizes a node that already does.
    ///
    /// ```
    /// use slimnet_core::graph::{Graph, Op};
    /// use slimnet_core::value::QuantParams;
    /// use slimnet_core::{tensor, Layer};
    /// let mut g = Graph::new();
    /// let x = g.input();
    /// g.add("sum", x, x)?;
    /// g.quantize_add("sum", QuantParams { scale: 0.5, zero_point: 0 })?;
    /// let y = g.forward(&tensor::from_vec(&[1, 2], vec![0.3, -1.0])?)?;
    /// assert_eq!(y.as_slice().unwrap(), &[0.5, 0.0]); // 0.6 and -2 on the grid of [0, 127.5]
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// When `name` is not an `Add` or `QuantAdd` node, or `params` has a scale that is not
    /// positive and finite.
    pub fn quantize_add(&mut self, name: &str, params: QuantParams) -> Result<()> {
        if !(params.scale.is_finite() && params.scale > 0.0) {
            return Err(Error::Invalid(format!(
                "quantize_add `{name}`: scale {} must be positive and finite",
                params.scale
            )));
        }
        let id = self
            .node_id(name)
            .ok_or_else(|| Error::Graph(format!("no node `{name}`")))?;
        let op = &mut self.nodes[id.0].op;
        if !matches!(op, Op::Add | Op::QuantAdd(_)) {
            return Err(Error::Graph(format!(
                "quantize_add `{name}`: a {} node, not an Add",
                op.name()
            )));
        }
        *op = Op::QuantAdd(params);
        self.cache = None;
        Ok(())
    }

    /// Appends an element-wise product `a * b` (broadcasting).
    ///
    /// # Errors
    /// As [`add_layer`](Self::add_layer).
    pub fn mul(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(name, Op::Mul, vec![a, b])
    }

    /// Appends a matrix product `a @ b` of two activations ([`Op::MatMul`]).
    ///
    /// ```
    /// use slimnet_core::{graph::Graph, tensor, Layer};
    /// // the square of each 2x2 matrix in the batch
    /// let mut g = Graph::new();
    /// let x = g.input();
    /// g.matmul("square", x, x)?;
    /// let y = g.forward(&tensor::from_vec(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0])?)?;
    /// assert_eq!(y.as_slice().unwrap(), &[7.0, 10.0, 15.0, 22.0]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`add_layer`](Self::add_layer).
    pub fn matmul(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(name, Op::MatMul, vec![a, b])
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
        self.index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), NodeId(i)))
            .collect();
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
                Op::Add | Op::Mul | Op::QuantAdd(_) => {
                    broadcast_shape(ins[0], ins[1]).ok_or_else(|| Error::Shape {
                        layer: node.name.clone(),
                        expected: format!("a shape broadcastable with {:?}", ins[0]),
                        actual: ins[1].to_vec(),
                    })?
                }
                Op::Concat => concat_shape(&node.name, &ins)?,
                Op::MatMul => {
                    crate::tensor::matmul_shape(ins[0], ins[1]).ok_or_else(|| Error::Shape {
                        layer: node.name.clone(),
                        expected: format!("an operand that multiplies with {:?}", ins[1]),
                        actual: ins[0].to_vec(),
                    })?
                }
            };
            shapes.push(s);
        }
        Ok(shapes)
    }

    /// The nodes after `from` up to `to`, as a graph whose input is the value of `from` and
    /// whose output is the value of `to` (a stage of a model cut at two points). Nodes keep
    /// their names, so parameter paths stay the same.
    ///
    /// ```
    /// use slimnet_core::{models, tensor, Layer};
    /// let g = models::lenet300(&mut tensor::rng(0))?;
    /// let (a, b) = (g.node_id("relu1").unwrap(), g.output());
    /// let tail = g.slice(a, b)?;
    /// assert_eq!(tail.output_shape(&[2, 300])?, vec![2, 10]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// `to` not after `from`, or a node of the slice that reads a node before `from`.
    pub fn slice(&self, from: NodeId, to: NodeId) -> Result<Graph> {
        self.check_id(from)?;
        self.check_id(to)?;
        if to.0 <= from.0 {
            return Err(Error::Graph(format!(
                "slice from `{}` to `{}`: the end must come after the start",
                self.nodes[from.0].name, self.nodes[to.0].name
            )));
        }
        let mut g = Graph::new();
        let mut map: HashMap<usize, NodeId> = HashMap::from([(from.0, g.input())]);
        for (j, node) in self
            .nodes
            .iter()
            .enumerate()
            .take(to.0 + 1)
            .skip(from.0 + 1)
        {
            let ins: Vec<NodeId> = node
                .inputs
                .iter()
                .map(|i| {
                    map.get(&i.0).copied().ok_or_else(|| {
                        Error::Graph(format!(
                            "slice from `{}`: node `{}` reads `{}`, which comes before it",
                            self.nodes[from.0].name, node.name, self.nodes[i.0].name
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            map.insert(j, g.push(&node.name, node.op.clone(), ins)?);
        }
        g.set_output(map[&to.0])?;
        Ok(g)
    }

    /// The layer as a graph, if it is one (the one place where layers are downcast to
    /// graphs: passes recurse through [`Layer::children`] instead).
    pub fn of(layer: &dyn Layer) -> Option<&Graph> {
        layer.as_any().downcast_ref::<Graph>()
    }

    /// The layer as a mutable graph, if it is one.
    pub fn of_mut(layer: &mut dyn Layer) -> Option<&mut Graph> {
        layer.as_any_mut().downcast_mut::<Graph>()
    }

    /// The same computation with every nested graph replaced by its nodes, in place. A node
    /// `n` of a nested graph `g` becomes `g/n` (names hold no `.`, so parameter paths change
    /// from `g.n.weight` to `g/n.weight`).
    ///
    /// ```
    /// use slimnet_core::{models, tensor, Graph, Layer};
    /// let inner = models::lenet300(&mut tensor::rng(0))?;
    /// let mut g = Graph::new();
    /// let x = g.input();
    /// g.add_layer("net", inner.clone(), x)?;
    /// g.inline()?;
    /// assert!(g.node_id("net/fc2").is_some());
    /// let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    /// assert_eq!(g.forward(&x)?, inner.forward(&x)?);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// When an inlined name would collide with an existing node.
    pub fn inline(&mut self) -> Result<()> {
        if !self
            .nodes
            .iter()
            .any(|n| matches!(&n.op, Op::Layer(l) if Graph::of(l.as_ref()).is_some()))
        {
            return Ok(());
        }
        let old = std::mem::take(&mut self.nodes);
        let old_out = self.output;
        *self = Graph::new();
        let mut map: Vec<NodeId> = vec![NodeId(0); old.len()];
        for (i, node) in old.into_iter().enumerate().skip(1) {
            let ins: Vec<NodeId> = node.inputs.iter().map(|j| map[j.0]).collect();
            map[i] = match node.op {
                Op::Layer(mut l) => match Graph::of_mut(l.as_mut()) {
                    Some(inner) => {
                        inner.inline()?;
                        self.splice(&node.name, inner, ins[0])?
                    }
                    None => self.push(&node.name, Op::Layer(l), ins)?,
                },
                op => self.push(&node.name, op, ins)?,
            };
        }
        self.output = map[old_out.0];
        Ok(())
    }

    /// Appends the nodes of a flat graph `inner` reading `from`, named `prefix/node`; returns
    /// the node standing for its output.
    fn splice(&mut self, prefix: &str, inner: &mut Graph, from: NodeId) -> Result<NodeId> {
        let nodes = std::mem::take(&mut inner.nodes);
        let mut map = vec![from; nodes.len()];
        for (i, node) in nodes.into_iter().enumerate().skip(1) {
            let ins: Vec<NodeId> = node.inputs.iter().map(|j| map[j.0]).collect();
            map[i] = self.push(&format!("{prefix}/{}", node.name), node.op, ins)?;
        }
        Ok(map[inner.output.0])
    }

    /// Visits every layer with its dotted path, recursing through [`Layer::children`]
    /// (nested graphs, wrappers); a container is visited before the layers inside it.
    pub fn visit_layers(&self, f: &mut dyn FnMut(&str, &dyn Layer)) {
        visit_tree(self, "", f);
    }

    /// [`visit_layers`](Self::visit_layers) with mutable access to each layer.
    pub fn visit_layers_mut(&mut self, f: &mut dyn FnMut(&str, &mut dyn Layer)) {
        visit_tree_mut(self, "", f);
    }

    /// The layer at a dotted path (`block1.conv1` is layer `conv1` inside layer `block1`).
    pub fn find(&self, path: &str) -> Option<&dyn Layer> {
        find_in(self, path)
    }

    /// The layer at a dotted path, mutably (a slot that can be replaced).
    pub fn find_mut(&mut self, path: &str) -> Option<&mut Box<dyn Layer>> {
        let (head, rest) = match path.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (path, None),
        };
        let slot = self.layer_mut(head)?;
        match rest {
            None => Some(slot),
            Some(rest) => find_slot_mut(slot.as_mut(), rest),
        }
    }
}

fn find_in<'a>(layer: &'a dyn Layer, path: &str) -> Option<&'a dyn Layer> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let child = layer
        .children()
        .into_iter()
        .find(|(n, _)| *n == head)
        .map(|(_, c)| c)?;
    match rest {
        None => Some(child),
        Some(rest) => find_in(child, rest),
    }
}

fn find_slot_mut<'a>(layer: &'a mut dyn Layer, path: &str) -> Option<&'a mut Box<dyn Layer>> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let slot = layer
        .children_mut()
        .into_iter()
        .find(|(n, _)| *n == head)
        .map(|(_, c)| c)?;
    match rest {
        None => Some(slot),
        Some(rest) => find_slot_mut(slot.as_mut(), rest),
    }
}

fn visit_tree(layer: &dyn Layer, prefix: &str, f: &mut dyn FnMut(&str, &dyn Layer)) {
    for (name, child) in layer.children() {
        let path = format!("{prefix}{name}");
        f(&path, child);
        visit_tree(child, &format!("{path}."), f);
    }
}

fn visit_tree_mut(layer: &mut dyn Layer, prefix: &str, f: &mut dyn FnMut(&str, &mut dyn Layer)) {
    for (name, child) in layer.children_mut() {
        let path = format!("{prefix}{name}");
        f(&path, child.as_mut());
        visit_tree_mut(child.as_mut(), &format!("{path}."), f);
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
