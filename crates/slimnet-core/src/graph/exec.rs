//! Running a [`Graph`]: one walk over the nodes in order, shared by training, inference,
//! tapped inference (calibration) and frozen plans.

use std::borrow::Cow;

use ndarray::{Axis, IxDyn};

use super::{Graph, Node, NodeId, Op, TrainCache};
use crate::error::{Error, Result};
use crate::layer::{Cost, Layer, StoredTensor};
use crate::param::Param;
use crate::tensor::broadcast_shape;
use crate::tensor::Tensor;
use crate::value::{Codes, Value, ValueKind};

/// Called at inference for every node with its dotted path, its inputs and its output.
pub type Tap<'t> = dyn FnMut(&str, &[&Value], &Value) -> Result<()> + 't;

/// The order in which a graph's nodes run and when each value can be let go: nodes the
/// output does not depend on are skipped, and each value is released right after its last
/// reader ran (so its buffer serves a later layer's output).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    inputs: Vec<Vec<usize>>,
    needed: Vec<bool>,
    last: Vec<usize>,
    outputs: Vec<usize>,
}

impl Schedule {
    /// The schedule of nodes reading `inputs[i]`, with node 0 the input and `output` the result.
    pub(crate) fn new(inputs: Vec<Vec<usize>>, output: usize) -> Self {
        Self::for_outputs(inputs, &[output])
    }

    /// The schedule that computes the nodes `outputs` (and what they read), keeping their
    /// values to the end.
    pub(crate) fn for_outputs(inputs: Vec<Vec<usize>>, outputs: &[usize]) -> Self {
        let n = inputs.len();
        let end = outputs.iter().copied().max().unwrap_or(0);
        let mut needed = vec![false; n];
        for &o in outputs {
            needed[o] = true;
        }
        for i in (1..=end).rev() {
            if needed[i] {
                for &j in &inputs[i] {
                    needed[j] = true;
                }
            }
        }
        let mut last = vec![0usize; n];
        for i in 1..=end {
            if needed[i] {
                for &j in &inputs[i] {
                    last[j] = i;
                }
            }
        }
        for &o in outputs {
            last[o] = usize::MAX;
        }
        Self {
            inputs,
            needed,
            last,
            outputs: outputs.to_vec(),
        }
    }

    /// Runs the nodes in order from input `x`: `step(i, ins)` computes node `i` from its input
    /// values; `release` gets each value after its last reader.
    pub(crate) fn run<V: Clone>(
        &self,
        x: V,
        step: impl FnMut(usize, &[&V]) -> Result<V>,
        release: impl FnMut(V),
    ) -> Result<V> {
        Ok(self
            .run_all(x, step, release)?
            .pop()
            .expect("a schedule has an output"))
    }

    /// [`run`](Self::run) returning the value of every output, in the order they were given.
    pub(crate) fn run_all<V: Clone>(
        &self,
        x: V,
        mut step: impl FnMut(usize, &[&V]) -> Result<V>,
        mut release: impl FnMut(V),
    ) -> Result<Vec<V>> {
        let mut values: Vec<Option<V>> = (0..self.inputs.len()).map(|_| None).collect();
        values[0] = Some(x);
        let end = self.outputs.iter().copied().max().unwrap_or(0);
        for i in 1..=end {
            if !self.needed[i] {
                continue;
            }
            let y = {
                let ins: Vec<&V> = self.inputs[i]
                    .iter()
                    .map(|&j| values[j].as_ref().expect("inputs run before their readers"))
                    .collect();
                step(i, &ins)?
            };
            values[i] = Some(y);
            for &j in &self.inputs[i] {
                if self.last[j] == i {
                    if let Some(v) = values[j].take() {
                        release(v);
                    }
                }
            }
        }
        let mut out: Vec<V> = Vec::with_capacity(self.outputs.len());
        for (k, &o) in self.outputs.iter().enumerate() {
            let v = match values[o].take() {
                Some(v) => v,
                // the same node asked for twice
                None => {
                    let first = self.outputs[..k].iter().position(|&p| p == o);
                    out[first.expect("the outputs ran")].clone()
                }
            };
            out.push(v);
        }
        Ok(out)
    }
}

/// A merge node (add, mul, concat, matrix product) on f32 inputs. A [`Op::QuantAdd`] returns its sum rounded
/// to its codes' grid (the real values of the codes it writes in typed inference).
pub(super) fn merge(node: &Node, ins: &[&Tensor]) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape()).collect();
    match node.op {
        Op::Add | Op::Mul | Op::QuantAdd(_) => {
            broadcast_shape(shapes[0], shapes[1]).ok_or_else(|| Error::Shape {
                layer: node.name.clone(),
                expected: format!("a shape broadcastable with {:?}", shapes[0]),
                actual: shapes[1].to_vec(),
            })?;
            Ok(match node.op {
                Op::Add if shapes[0] == shapes[1] => {
                    crate::buffers::map2(ins[0], ins[1], |a, b| a + b)
                }
                Op::Add => ins[0] + ins[1],
                Op::QuantAdd(p) => Codes::quantize(&(ins[0] + ins[1]), p).dequantize(),
                _ => ins[0] * ins[1],
            })
        }
        Op::Concat => {
            super::concat_shape(&node.name, &shapes)?;
            let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
            ndarray::concatenate(Axis(1), &views)
                .map_err(|e| Error::Graph(format!("{}: {e}", node.name)))
        }
        Op::MatMul => crate::tensor::matmul(ins[0], ins[1]).map_err(|e| e.in_layer(&node.name)),
        _ => unreachable!("merge called on a merge node"),
    }
}

/// A merge node on typed values: a [`Op::QuantAdd`] writes codes (two code inputs of one
/// shape added without an f32 tensor in between); the other merges work in f32.
pub(super) fn merge_value(node: &Node, ins: &[&Value]) -> Result<Value> {
    if let (Op::QuantAdd(p), [Value::U8(a), Value::U8(b)]) = (&node.op, ins) {
        if a.data.shape() == b.data.shape() {
            let mut out = vec![0u8; a.data.len()];
            let (xa, xb) = (a.as_contiguous(), b.as_contiguous());
            slimnet_kernels::int8::add_u8(&xa, a.params, &xb, b.params, *p, &mut out)?;
            return Ok(Value::U8(Codes::from_vec(a.data.shape(), out, *p)));
        }
    }
    let f: Vec<Cow<'_, Tensor>> = ins.iter().map(|v| v.to_f32()).collect();
    let f: Vec<&Tensor> = f.iter().map(|t| t.as_ref()).collect();
    let y = merge(node, &f)?;
    Ok(match node.op {
        Op::QuantAdd(p) => Value::U8(Codes::quantize(&y, p)),
        _ => Value::F32(y),
    })
}

/// Runs one layer on a typed value: handed over as it is when the layer accepts its kind,
/// converted to the layer's input kind otherwise.
pub(crate) fn run_layer(layer: &dyn Layer, x: &Value) -> Result<Value> {
    if layer.accepts(x.kind()) {
        layer.forward_value(x)
    } else {
        layer.forward_value(&x.to_kind(layer.input_kind()))
    }
}

/// Gives a value's f32 allocation back to the buffer pool.
pub(crate) fn release(v: Value) {
    if let Value::F32(t) = v {
        crate::buffers::recycle(t);
    }
}

impl Graph {
    pub(super) fn schedule(&self) -> Schedule {
        let inputs = self
            .nodes
            .iter()
            .map(|n| n.inputs.iter().map(|i| i.0).collect())
            .collect();
        Schedule::new(inputs, self.output.0)
    }

    /// Inference on a typed value, showing every node to `tap` (paths prefixed by `prefix`).
    pub(crate) fn run_value(
        &self,
        x: &Value,
        prefix: &str,
        tap: &mut Option<&mut Tap<'_>>,
    ) -> Result<Value> {
        if x.shape().first() == Some(&0) {
            // every layer would return an empty result: a caller's mistake, not a model's
            return Err(Error::shape(
                "a batch of at least one example (the first axis is the batch)",
                x.shape(),
            )
            .in_layer(&self.nodes[0].name));
        }
        let step = |i: usize, ins: &[&Cow<'_, Value>]| -> Result<Cow<'_, Value>> {
            let node = &self.nodes[i];
            let vals: Vec<&Value> = ins.iter().map(|v| v.as_ref()).collect();
            let y = match &node.op {
                Op::Layer(l) => {
                    let inner = l.as_any().downcast_ref::<Graph>().filter(|_| tap.is_some());
                    match inner {
                        Some(inner) => {
                            let path = format!("{prefix}{}.", node.name);
                            inner.run_value(vals[0], &path, tap)
                        }
                        None => run_layer(l.as_ref(), vals[0]),
                    }
                    .map_err(|e| e.in_layer(&node.name))?
                }
                _ => merge_value(node, &vals)?,
            };
            if let Some(t) = tap.as_mut() {
                t(&format!("{prefix}{}", node.name), &vals, &y)?;
            }
            Ok(Cow::Owned(y))
        };
        let out = self.schedule().run(Cow::Borrowed(x), step, |v| {
            if let Cow::Owned(v) = v {
                release(v)
            }
        })?;
        Ok(out.into_owned())
    }

    /// Inference that shows every node, nested graphs included, to `tap` with its dotted path,
    /// its input values and its output value (used by calibration and debugging).
    ///
    /// ```
    /// use slimnet_core::{models, tensor};
    /// let model = models::lenet300(&mut tensor::rng(0))?;
    /// let mut seen = Vec::new();
    /// model.forward_tapped(&tensor::zeros(&[1, 1, 28, 28]), &mut |path, _ins, out| {
    ///     seen.push((path.to_string(), out.shape().to_vec()));
    ///     Ok(())
    /// })?;
    /// assert_eq!(seen[1], ("fc1".to_string(), vec![1, 300]));
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// A node that rejects its input (named by path), or an error from `tap`.
    pub fn forward_tapped(&self, x: &Tensor, tap: &mut Tap<'_>) -> Result<Tensor> {
        let x = Value::F32(x.clone());
        Ok(self.run_value(&x, "", &mut Some(tap))?.into_f32())
    }

    /// Inference with a check for NaN and infinities (opt-in, as it reads every value once
    /// more): a non-finite input is reported as such, otherwise the first node (in execution
    /// order, nested graphs included, by dotted path) whose output holds a non-finite value.
    /// Without the check, a NaN can travel to plausible-looking logits.
    ///
    /// ```
    /// use slimnet_core::{models, tensor, Error};
    /// let mut model = models::lenet300(&mut tensor::rng(0))?;
    /// let x = tensor::zeros(&[1, 1, 28, 28]);
    /// assert_eq!(model.forward_checked(&x)?.shape(), &[1, 10]);
    /// // a weight turned infinite after loading: the first layer using it is named
    /// let fc2 = model.layer_mut("fc2").unwrap();
    /// fc2.visit_params_mut(&mut |n, p| if n == "weight" { p.value_mut()[[0, 0]] = f32::INFINITY });
    /// let e = model.forward_checked(&x).unwrap_err();
    /// assert!(matches!(&e, Error::NotFinite { layer, .. } if layer == "fc2"), "{e}");
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFinite`] naming the input or the node, or as [`Layer::forward`].
    pub fn forward_checked(&self, x: &Tensor) -> Result<Tensor> {
        if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NotFinite {
                layer: String::new(),
                what: "input".into(),
                value,
                index,
            });
        }
        self.forward_tapped(x, &mut |path, _, y| match y {
            Value::F32(t) => match t.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                Some((index, &value)) => Err(Error::NotFinite {
                    layer: path.to_string(),
                    what: "output".into(),
                    value,
                    index,
                }),
                None => Ok(()),
            },
            // codes are finite by construction
            _ => Ok(()),
        })
    }

    /// The value kind every node produces when the graph reads `input` (layers convert what
    /// they do not accept; merges work in f32, and a [`Op::QuantAdd`] writes its codes).
    pub fn kinds(&self, input: ValueKind) -> Vec<ValueKind> {
        let mut kinds = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let k = match &n.op {
                Op::Input => input,
                Op::Layer(l) => {
                    let k: ValueKind = kinds[n.inputs[0].0];
                    let k = if l.accepts(k) { k } else { l.input_kind() };
                    l.output_kind(k)
                }
                Op::QuantAdd(p) => ValueKind::U8(*p),
                _ => ValueKind::F32,
            };
            kinds.push(k);
        }
        kinds
    }

    fn run_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let out = self.output.0;
        Ok(self
            .run_train_at(x, &[out])?
            .pop()
            .expect("one output asked for"))
    }

    /// Training forward computing the nodes `outputs` (and what they read); caches for a
    /// backward pass from any of them.
    fn run_train_at(&mut self, x: &Tensor, outputs: &[usize]) -> Result<Vec<Tensor>> {
        let schedule = Schedule::for_outputs(
            self.nodes
                .iter()
                .map(|n| n.inputs.iter().map(|i| i.0).collect())
                .collect(),
            outputs,
        );
        let inputs: Vec<Vec<usize>> = self
            .nodes
            .iter()
            .map(|n| n.inputs.iter().map(|i| i.0).collect())
            .collect();
        let muls: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| matches!(n.op, Op::Mul | Op::MatMul))
            .collect();
        let mut cache = TrainCache {
            shapes: vec![Vec::new(); self.nodes.len()],
            values: vec![None; self.nodes.len()],
        };
        cache.shapes[0] = x.shape().to_vec();
        let nodes = &mut self.nodes;
        let outs = schedule.run_all(
            Cow::Borrowed(x),
            |i, ins| {
                let ins: Vec<&Tensor> = ins.iter().map(|t| t.as_ref()).collect();
                if muls[i] {
                    // a product's backward needs both factors
                    for (&j, t) in inputs[i].iter().zip(&ins) {
                        cache.values[j] = Some((*t).clone());
                    }
                }
                let node = &mut nodes[i];
                let y = match &mut node.op {
                    Op::Layer(l) => l
                        .forward_train(ins[0])
                        .map_err(|e| e.in_layer(&node.name))?,
                    _ => merge(node, &ins)?,
                };
                cache.shapes[i] = y.shape().to_vec();
                Ok(Cow::Owned(y))
            },
            drop,
        )?;
        self.cache = Some(cache);
        Ok(outs.into_iter().map(Cow::into_owned).collect())
    }

    /// The backward pass from gradients `seeds` at nodes (index, gradient), checked against
    /// the shapes of the training forward pass `cache`.
    fn backward_seeded(
        &mut self,
        cache: TrainCache,
        seeds: Vec<(usize, Tensor)>,
    ) -> Result<Tensor> {
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        let mut last = 0;
        for (i, g) in seeds {
            if g.shape() != cache.shapes[i].as_slice() {
                return Err(
                    Error::shape(format!("gradient {:?}", cache.shapes[i]), g.shape())
                        .in_layer(&self.nodes[i].name),
                );
            }
            last = last.max(i);
            accumulate(&mut grads[i], g);
        }
        for i in (1..=last).rev() {
            let Some(g) = grads[i].take() else { continue };
            let node = &mut self.nodes[i];
            let inputs = node.inputs.clone();
            match &mut node.op {
                Op::Input => unreachable!("only node 0 is the input"),
                Op::Layer(l) => {
                    let gi = l.backward(&g).map_err(|e| e.in_layer(&node.name))?;
                    accumulate(&mut grads[inputs[0].0], gi);
                }
                Op::Add | Op::QuantAdd(_) => {
                    for &j in &inputs {
                        accumulate(
                            &mut grads[j.0],
                            crate::tensor::sum_to_shape(g.clone(), &cache.shapes[j.0]),
                        );
                    }
                }
                Op::Mul => {
                    let va = cache.values[inputs[0].0]
                        .as_ref()
                        .expect("mul inputs cached");
                    let vb = cache.values[inputs[1].0]
                        .as_ref()
                        .expect("mul inputs cached");
                    let ga = crate::tensor::sum_to_shape(&g * vb, &cache.shapes[inputs[0].0]);
                    let gb = crate::tensor::sum_to_shape(&g * va, &cache.shapes[inputs[1].0]);
                    accumulate(&mut grads[inputs[0].0], ga);
                    accumulate(&mut grads[inputs[1].0], gb);
                }
                Op::MatMul => {
                    let factor = |k: usize| -> &Tensor {
                        cache.values[inputs[k].0]
                            .as_ref()
                            .expect("matmul inputs cached")
                    };
                    let (ga, gb) = crate::tensor::matmul_grads(factor(0), factor(1), &g)
                        .map_err(|e| e.in_layer(&node.name))?;
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

    /// Training forward pass that returns the values of several nodes, in the order given:
    /// a network trained with a loss on each of several outputs (FlowNet's flow predicted at
    /// every scale of its decoder, each with its own loss weight, or an auxiliary classifier)
    /// computes them in one pass, and [`backward_from`](Self::backward_from) takes a gradient
    /// at each. Side outputs need not lead to the graph's output; nodes that none of `nodes`
    /// reads are not run.
    ///
    /// ```
    /// use slimnet_core::layers::{Activation, LinearConfig};
    /// use slimnet_core::{tensor, Graph, Layer};
    /// let mut g = Graph::new();
    /// let x = g.input();
    /// let h = g.add_layer("fc1", LinearConfig::new(4, 8).init(&mut tensor::rng(0))?, x)?;
    /// let h = g.add_layer("relu", Activation::relu(), h)?;
    /// let side = g.add_layer("aux", LinearConfig::new(8, 2).init(&mut tensor::rng(1))?, h)?;
    /// let main = g.add_layer("fc2", LinearConfig::new(8, 3).init(&mut tensor::rng(2))?, h)?;
    /// g.set_output(main)?;
    /// let x = tensor::uniform(&[5, 4], -1.0, 1.0, &mut tensor::rng(3));
    /// let ys = g.forward_train_at(&x, &[main, side])?;
    /// assert_eq!((ys[0].shape(), ys[1].shape()), (&[5, 3][..], &[5, 2][..]));
    /// // loss = sum(main) + 0.5 * sum(side): one gradient per output, weighted
    /// let (d_main, d_side) = (tensor::zeros(&[5, 3]) + 1.0, tensor::zeros(&[5, 2]) + 0.5);
    /// let dx = g.backward_from(&[(main, d_main), (side, d_side)])?;
    /// assert_eq!(dx.shape(), &[5, 4]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// A node id not in the graph, or an input a layer rejects (named by node).
    pub fn forward_train_at(&mut self, x: &Tensor, nodes: &[NodeId]) -> Result<Vec<Tensor>> {
        for &n in nodes {
            self.check_id(n)?;
        }
        if nodes.is_empty() {
            return Err(Error::Graph("forward_train_at: no nodes asked for".into()));
        }
        let ids: Vec<usize> = nodes.iter().map(|n| n.0).collect();
        self.run_train_at(x, &ids)
    }

    /// Backward pass from gradients at several nodes (after
    /// [`forward_train_at`](Self::forward_train_at) computed them): each gradient enters at its
    /// node, they add up where paths meet, parameter gradients accumulate as in
    /// [`Layer::backward`], and the input gradient is returned. Weight each loss term by
    /// scaling its gradient.
    ///
    /// # Errors
    /// Without a preceding training forward pass, a node that pass did not compute, or a
    /// gradient whose shape differs from its node's value.
    pub fn backward_from(&mut self, grads: &[(NodeId, Tensor)]) -> Result<Tensor> {
        let cache = self.cache.take().ok_or_else(|| Error::no_cache("Graph"))?;
        let mut seeds = Vec::with_capacity(grads.len());
        for (n, g) in grads {
            if n.0 == 0 || n.0 >= self.nodes.len() || cache.shapes[n.0].is_empty() {
                return Err(Error::Backward {
                    layer: self
                        .nodes
                        .get(n.0)
                        .map_or_else(String::new, |node| node.name.clone()),
                    reason: "a gradient at a node the training forward pass did not compute".into(),
                });
            }
            seeds.push((n.0, g.clone()));
        }
        self.backward_seeded(cache, seeds)
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
        let x = Value::F32(x.clone());
        Ok(self.run_value(&x, "", &mut None)?.into_f32())
    }

    fn accepts(&self, _: ValueKind) -> bool {
        true
    }

    fn output_kind(&self, input: ValueKind) -> ValueKind {
        self.kinds(input)[self.output.0]
    }

    fn forward_value(&self, x: &Value) -> Result<Value> {
        self.run_value(x, "", &mut None)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.run_train(x)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let cache = self.cache.take().ok_or_else(|| Error::no_cache("Graph"))?;
        let out = self.output.0;
        if cache.shapes[out].is_empty() {
            return Err(Error::Backward {
                layer: self.nodes[out].name.clone(),
                reason: "the last training forward pass did not compute the output".into(),
            });
        }
        self.backward_seeded(cache, vec![(out, grad_out.clone())])
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

    fn prepare(&self, input: &[usize]) -> Result<()> {
        let shapes = self.shapes(input)?;
        for n in &self.nodes {
            if let Op::Layer(l) = &n.op {
                l.prepare(&shapes[n.inputs[0].0])
                    .map_err(|e| e.in_layer(&n.name))?;
            }
        }
        Ok(())
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

    fn children(&self) -> Vec<(&str, &dyn Layer)> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Layer(l) => Some((n.name.as_str(), l.as_ref())),
                _ => None,
            })
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(&str, &mut Box<dyn Layer>)> {
        self.cache = None;
        self.nodes
            .iter_mut()
            .filter_map(|n| match &mut n.op {
                Op::Layer(l) => Some((n.name.as_str(), l)),
                _ => None,
            })
            .collect()
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
