//! Running a [`Graph`]: inference, training forward with its cache, and backward.

use std::borrow::Cow;
use std::collections::HashSet;

use ndarray::{Axis, IxDyn};

use super::{broadcast_shape, Graph, Node, Op, TrainCache};
use crate::error::{Error, Result};
use crate::layer::{Cost, Layer, StoredTensor};
use crate::param::Param;
use crate::tensor::Tensor;

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

impl Graph {
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
                    // large intermediates go back to the pool for later layers' outputs
                    if let Some(Cow::Owned(t)) = values[j].take() {
                        crate::buffers::recycle(t);
                    }
                }
            }
        }
        Ok(values[self.output.0]
            .take()
            .expect("output computed")
            .into_owned())
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
