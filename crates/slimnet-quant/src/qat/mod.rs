//! Quantization-aware training: wrap, fine-tune, convert.
//!
//! [`prepare`] folds BatchNorm, wraps every layer that will run in int8 in [`QatWeights`]
//! (fake-quantized weights, straight-through gradients) and inserts a [`FakeQuantize`] node at
//! every value the int8 graph will quantize (the same plan as static quantization: after fused
//! ReLUs, before int8 layers that read f32). Train the result with the ordinary trainer; freeze
//! the observers for the last steps ([`freeze`], or the [`FreezeAfter`] callback); [`convert`]
//! then builds the int8 graph with the learned ranges.
//!
//! ```
//! use slimnet_core::{models, tensor, Layer};
//! use slimnet_quant::qat;
//! let model = models::lenet300(&mut tensor::rng(0))?;
//! let mut q = qat::prepare(&model, &qat::QatConfig::default())?;
//! let x = tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! q.forward_train(&x)?; // observers see a batch
//! qat::freeze(&mut q);
//! let int8 = qat::convert(&q)?;
//! assert!(int8.nodes().iter().any(|n| n.op.name() == "QLinear"));
//! # Ok::<(), slimnet_quant::QuantError>(())
//! ```

mod fake_quant;
mod wrap;

pub use fake_quant::FakeQuantize;
pub use wrap::QatWeights;

pub(crate) use fake_quant::load_fake_quantize;
pub(crate) use wrap::load_qat_weights;

use slimnet_core::graph::{Graph, NodeId, Op};
use slimnet_core::train::{Callback, StepInfo};

use crate::error::{QuantError, Result};
use crate::ptq::plan::{Plan, Role};
use crate::ptq::{self, Ranges};

/// Settings of quantization-aware training.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QatConfig {
    /// Averaging constant of the activation observers (moving-average min-max).
    pub averaging: f32,
    /// Node names that stay f32.
    pub skip: Vec<String>,
}

impl Default for QatConfig {
    fn default() -> Self {
        Self {
            averaging: 0.01,
            skip: Vec::new(),
        }
    }
}

impl QatConfig {
    /// Sets the observers' averaging constant.
    pub fn with_averaging(mut self, c: f32) -> Self {
        self.averaging = c;
        self
    }

    /// Keeps these nodes in f32.
    pub fn with_skip(mut self, names: Vec<String>) -> Self {
        self.skip = names;
        self
    }
}

fn fresh(g: &Graph, src: &Graph, base: &str) -> String {
    let mut n = base.to_string();
    while g.node_id(&n).is_some() || src.node_id(&n).is_some() {
        n.push('_');
    }
    n
}

/// The training graph for QAT of `model` (see the module docs).
///
/// # Errors
/// A graph the plan cannot rebuild (an unknown op).
pub fn prepare(model: &Graph, cfg: &QatConfig) -> Result<Graph> {
    let f = ptq::fold(model)?;
    let plan = Plan::new(&f, &cfg.skip);
    // node after which a FakeQuantize goes -> (key, whether every reader takes it)
    let mut fq_after = std::collections::BTreeMap::new();
    for &i in &plan.quantize_points {
        fq_after.insert(i, (f.nodes()[i].name.clone(), false));
    }
    for (&j, &c) in &plan.code_node {
        fq_after.insert(c, (f.nodes()[j].name.clone(), true));
    }
    let mut g = Graph::new();
    let n = f.nodes().len();
    let mut plain: Vec<NodeId> = vec![g.input(); n];
    let mut quant: Vec<NodeId> = vec![g.input(); n];
    for (i, node) in f.nodes().iter().enumerate() {
        let int8 = matches!(plan.roles[i], Role::Int8 { .. });
        let read = |s: &NodeId| {
            if int8 {
                quant[s.index()]
            } else {
                plain[s.index()]
            }
        };
        let ins: Vec<NodeId> = node.inputs.iter().map(read).collect();
        let id = match &node.op {
            Op::Input => g.input(),
            Op::Layer(l) if int8 => g.add_layer(&node.name, QatWeights::new(l.clone())?, ins[0])?,
            Op::Layer(l) => g.add_boxed(&node.name, l.clone(), ins[0])?,
            Op::Add => g.add(&node.name, ins[0], ins[1])?,
            Op::Mul => g.mul(&node.name, ins[0], ins[1])?,
            Op::Concat => g.concat(&node.name, &ins)?,
            other => {
                return Err(QuantError::invalid(
                    &node.name,
                    format!("unsupported op {other:?}"),
                ))
            }
        };
        plain[i] = id;
        quant[i] = id;
        if let Some((key, all)) = fq_after.get(&i) {
            let name = fresh(&g, &f, &format!("{}_fq", node.name));
            let q = g.add_layer(&name, FakeQuantize::new(key, cfg.averaging), id)?;
            quant[i] = q;
            if *all {
                plain[i] = q;
            }
        }
    }
    g.set_output(plain[f.output().index()])?;
    Ok(g)
}

/// Freezes every [`FakeQuantize`] observer of a QAT graph.
pub fn freeze(g: &mut Graph) {
    let names: Vec<String> = g.nodes().iter().map(|n| n.name.clone()).collect();
    for name in names {
        if let Some(fq) = g
            .layer_mut(&name)
            .and_then(|l| l.downcast_mut::<FakeQuantize>())
        {
            fq.freeze();
        }
    }
}

/// A training callback that freezes the observers after `steps` optimizer steps.
#[derive(Debug, Clone)]
pub struct FreezeAfter(pub usize);

impl Callback for FreezeAfter {
    fn on_step_end(&mut self, model: &mut Graph, info: &StepInfo) -> slimnet_core::Result<()> {
        if info.global_step == self.0 {
            freeze(model);
        }
        Ok(())
    }
}

/// The int8 graph of a trained QAT graph: wrappers unwrapped, fake quantizers removed, their
/// ranges used for the int8 layers.
///
/// # Errors
/// A fake quantizer that never saw data ([`QuantError::NoData`] naming it), or as
/// [`ptq::convert`].
pub fn convert(qat: &Graph) -> Result<Graph> {
    let mut f = qat.clone();
    let mut ranges = Ranges::new();
    let names: Vec<String> = f.nodes().iter().map(|n| n.name.clone()).collect();
    for name in names {
        let Some(l) = f.layer(&name) else { continue };
        if let Some(fq) = l.downcast_ref::<FakeQuantize>() {
            let r = fq.range().ok_or(QuantError::NoData {
                layer: name.clone(),
            })?;
            ranges.insert(fq.key().to_string(), r);
            f.bypass(&name)?;
        } else if let Some(w) = l.downcast_ref::<QatWeights>() {
            let inner = w.clone().into_inner();
            f.replace_layer(&name, inner)?;
        }
    }
    // int8-capable layers that prepare left unwrapped were skipped: keep them f32
    let skip = skipped_layers(qat);
    ptq::convert(&f, &ranges, &skip)
}

/// Int8-capable float layers a QAT graph left unwrapped (they were skipped in [`prepare`]).
fn skipped_layers(qat: &Graph) -> Vec<String> {
    qat.nodes()
        .iter()
        .filter(|n| matches!(&n.op, Op::Layer(l) if ptq::plan::int8_capable(l.as_ref())))
        .map(|n| n.name.clone())
        .collect()
}
