//! [`Plan`]: a graph frozen for inference.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use super::exec::{merge_value, release, Schedule};
use super::{Graph, Op};
use crate::error::{Error, Result};
use crate::layer::{Cost, Layer};
use crate::tensor::Tensor;
use crate::value::{Value, ValueKind};

/// A graph frozen for inference by [`Graph::freeze`]: nested graphs inlined, batch norms
/// folded into the convolutions they follow (as [`fold_batchnorm`] does; outputs equal the
/// graph's up to f32 rounding), activations fused into the instance norms they follow (as
/// [`fuse_norm_activations`] does), every layer's prepared weights made once (Winograd
/// transforms, packed panels), the kind of every edge fixed (f32, or u8 codes with their
/// quantization, so consecutive int8 layers hand codes straight on and a conversion runs
/// only where a reader needs the other kind), and the order of the nodes with the point
/// where each value is released fixed, so a value's buffer goes back to the pool for later
/// layers' outputs as soon as its last reader ran.
///
/// A plan owns its layers (a copy of the graph's): editing the graph afterwards does not
/// change it. It is `Send + Sync`; run it from many threads at once.
///
/// [`fold_batchnorm`]: crate::rewrite::fold_batchnorm
/// [`fuse_norm_activations`]: crate::rewrite::fuse_norm_activations
///
/// ```
/// use slimnet_core::{models, tensor, Layer};
/// let model = models::lenet5(&mut tensor::rng(0))?;
/// let plan = model.freeze(&[1, 1, 28, 28])?;
/// let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// assert_eq!(plan.run(&x)?, model.forward(&x)?);
/// assert_eq!(plan.conversions(), 0);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Plan {
    graph: Graph,
    /// For each node, the kind each of its inputs is converted to before it runs (`None`:
    /// handed over as it is).
    convert: Vec<Vec<Option<ValueKind>>>,
    kinds: Vec<ValueKind>,
    schedule: Schedule,
    output: usize,
    input_shape: Vec<usize>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("nodes", &self.graph.nodes.len())
            .field("conversions", &self.conversions())
            .finish()
    }
}

impl Graph {
    /// Freezes a copy of this graph for inference on inputs of shape `input` (other batch
    /// sizes run too); see [`Plan`].
    ///
    /// # Errors
    /// An input shape the graph rejects (named by node), or an inlined name that collides.
    pub fn freeze(&self, input: &[usize]) -> Result<Plan> {
        let mut g = self.clone();
        g.cache = None;
        g.inline()?;
        crate::rewrite::fold_batchnorm(&mut g, input)?;
        crate::rewrite::fuse_norm_activations(&mut g, input)?;
        let shapes = g.shapes(input)?;
        let mut kinds: Vec<ValueKind> = Vec::with_capacity(g.nodes.len());
        let mut convert = Vec::with_capacity(g.nodes.len());
        for n in &g.nodes {
            let ins: Vec<ValueKind> = n.inputs.iter().map(|i| kinds[i.0]).collect();
            let (conv, out) = match &n.op {
                Op::Input => (vec![], ValueKind::F32),
                Op::Layer(l) => {
                    l.prepare(&shapes[n.inputs[0].0])
                        .map_err(|e| e.in_layer(&n.name))?;
                    let (c, k) = if l.accepts(ins[0]) {
                        (None, ins[0])
                    } else {
                        (Some(l.input_kind()), l.input_kind())
                    };
                    (vec![c], l.output_kind(k))
                }
                // takes its inputs as they come (codes of any quantization, or f32)
                Op::QuantAdd(p) => (vec![None; ins.len()], ValueKind::U8(*p)),
                _ => (
                    ins.iter()
                        .map(|k| (*k != ValueKind::F32).then_some(ValueKind::F32))
                        .collect(),
                    ValueKind::F32,
                ),
            };
            convert.push(conv);
            kinds.push(out);
        }
        let schedule = g.schedule();
        Ok(Plan {
            output: g.output.0,
            graph: g,
            convert,
            kinds,
            schedule,
            input_shape: input.to_vec(),
        })
    }
}

impl Plan {
    /// Runs the plan: f32 input, f32 output (dequantized if the last layer writes codes).
    ///
    /// # Errors
    /// An input the layers reject (named by node).
    pub fn run(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.run_value(&Value::F32(x.clone()))?.into_f32())
    }

    /// Runs the plan on a typed value and returns the output as the last layer wrote it.
    ///
    /// # Errors
    /// An input the layers reject (named by node).
    pub fn run_value(&self, x: &Value) -> Result<Value> {
        self.run_observed(x, None)
    }

    /// [`run`](Self::run), also returning the time of each step in run order: the node's name
    /// and how long its layer or merge took, the conversion of its inputs included, as the
    /// plan runs it (typed values, folded and fused layers gone). The timer reads add well
    /// under a microsecond per step.
    ///
    /// ```
    /// use slimnet_core::{models, tensor};
    /// let plan = models::lenet5(&mut tensor::rng(0))?.freeze(&[1, 1, 28, 28])?;
    /// let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    /// let (y, steps) = plan.run_timed(&x)?;
    /// assert_eq!(y, plan.run(&x)?);
    /// assert_eq!(steps.len(), plan.layers().count());
    /// assert_eq!(steps[0].0, plan.layers().next().unwrap().0);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// An input the layers reject (named by node).
    pub fn run_timed(&self, x: &Tensor) -> Result<(Tensor, Vec<(&str, Duration)>)> {
        let mut steps = Vec::with_capacity(self.graph.nodes.len());
        let mut observe = |i: usize, d| steps.push((self.graph.nodes[i].name.as_str(), d));
        let y = self.run_observed(&Value::F32(x.clone()), Some(&mut observe))?;
        Ok((y.into_f32(), steps))
    }

    /// [`run_value`](Self::run_value), calling `observe(node, time)` after each step when
    /// given (the clock is read only then).
    fn run_observed(
        &self,
        x: &Value,
        mut observe: Option<&mut dyn FnMut(usize, Duration)>,
    ) -> Result<Value> {
        if x.kind() != ValueKind::F32 {
            return Err(Error::Invalid(format!(
                "a plan reads f32 input, got {:?}",
                x.kind()
            )));
        }
        let out = self.schedule.run(
            Cow::Borrowed(x),
            |i, ins: &[&Cow<'_, Value>]| {
                let start = observe.is_some().then(Instant::now);
                let node = &self.graph.nodes[i];
                let vals: Vec<Cow<'_, Value>> = ins
                    .iter()
                    .zip(&self.convert[i])
                    .map(|(v, c)| match c {
                        Some(k) => Cow::Owned(v.as_ref().clone().into_kind(*k)),
                        None => Cow::Borrowed(v.as_ref()),
                    })
                    .collect();
                let y = match &node.op {
                    Op::Layer(l) => l
                        .forward_value(&vals[0])
                        .map_err(|e| e.in_layer(&node.name))?,
                    _ => {
                        let v: Vec<&Value> = vals.iter().map(|v| v.as_ref()).collect();
                        merge_value(node, &v)?
                    }
                };
                if let (Some(f), Some(t)) = (observe.as_mut(), start) {
                    f(i, t.elapsed());
                }
                Ok(Cow::Owned(y))
            },
            |v| {
                if let Cow::Owned(v) = v {
                    release(v)
                }
            },
        )?;
        Ok(out.into_owned())
    }

    /// Number of edges where a value is converted between f32 and u8 codes at run time.
    pub fn conversions(&self) -> usize {
        self.convert
            .iter()
            .flatten()
            .filter(|c| c.is_some())
            .count()
    }

    /// The kind of the plan's output value.
    pub fn output_kind(&self) -> ValueKind {
        self.kinds[self.output]
    }

    /// The input shape the plan was frozen for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The layers of the plan with their (inlined) node names, in run order.
    pub fn layers(&self) -> impl Iterator<Item = (&str, &dyn Layer)> {
        self.graph.nodes.iter().filter_map(|n| match &n.op {
            Op::Layer(l) => Some((n.name.as_str(), l.as_ref())),
            _ => None,
        })
    }
}

/// A plan stands where a layer stands for inference (timing, evaluation); it cannot train or
/// be saved (save the graph it was frozen from).
impl Layer for Plan {
    fn kind(&self) -> &'static str {
        "Plan"
    }

    /// As the graph it was frozen from.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.graph.output_shape(input)
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        self.graph.cost(input)
    }
}
