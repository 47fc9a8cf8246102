//! Rebuilds a float graph as an int8 graph from its plan and calibrated ranges.

use slimnet_core::graph::{Graph, NodeId, Op};
use slimnet_core::layers::{Conv2d, Linear};
use slimnet_core::Layer;
use slimnet_kernels::int8::QuantParams;

use super::plan::{Plan, Role};
use super::Ranges;
use crate::error::{QuantError, Result};
use crate::layers::{Dequantize, QConv2d, QLinear, QOut, Quantize};
use crate::observer::to_params;

struct Builder<'a> {
    src: &'a Graph,
    ranges: &'a Ranges,
    g: Graph,
    f32_id: Vec<Option<NodeId>>,
    code_id: Vec<Option<(NodeId, QuantParams)>>,
}

impl Builder<'_> {
    fn name(&self, i: usize) -> &str {
        &self.src.nodes()[i].name
    }

    fn params(&self, i: usize) -> Result<QuantParams> {
        let name = self.name(i);
        let &(lo, hi) = self
            .ranges
            .get(name)
            .ok_or_else(|| QuantError::invalid(name, "no calibrated range for this value"))?;
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(QuantError::NonFinite {
                layer: name.to_string(),
                value: if lo.is_finite() { hi } else { lo },
            });
        }
        Ok(to_params(lo, hi))
    }

    fn fresh(&self, base: &str) -> String {
        let mut n = base.to_string();
        while self.g.node_id(&n).is_some() || self.src.node_id(&n).is_some() {
            n.push('_');
        }
        n
    }

    /// The f32 value of node `i`, dequantizing its codes on first use.
    fn f32_of(&mut self, i: usize) -> Result<NodeId> {
        if let Some(id) = self.f32_id[i] {
            return Ok(id);
        }
        let (cid, p) = self.code_id[i].expect("a node has f32 or codes");
        let name = self.fresh(&format!("{}_dequant", self.name(i)));
        let id = self.g.add_layer(&name, Dequantize::new(p), cid)?;
        self.f32_id[i] = Some(id);
        Ok(id)
    }

    /// The codes of node `i`, quantizing its f32 value on first use.
    fn codes_of(&mut self, i: usize) -> Result<(NodeId, QuantParams)> {
        if let Some(c) = self.code_id[i] {
            return Ok(c);
        }
        let src = self.f32_id[i].expect("a node has f32 or codes");
        let p = self.params(i)?;
        let name = self.fresh(&format!("{}_quant", self.name(i)));
        let id = self.g.add_layer(&name, Quantize::new(p), src)?;
        self.code_id[i] = Some((id, p));
        Ok((id, p))
    }
}

/// Builds the int8 graph of `g` (BatchNorm already folded) from calibrated `ranges` (from
/// [`calibrate`](super::calibrate), or from QAT observers); nodes named in `skip` stay f32.
///
/// # Errors
/// A missing or non-finite range, or a layer the int8 kernels reject (named by path).
pub fn convert(g: &Graph, ranges: &Ranges, skip: &[String]) -> Result<Graph> {
    let plan = Plan::new(g, skip);
    let n = g.nodes().len();
    let mut b = Builder {
        src: g,
        ranges,
        g: Graph::new(),
        f32_id: vec![None; n],
        code_id: vec![None; n],
    };
    b.f32_id[0] = Some(b.g.input());
    for (i, node) in g.nodes().iter().enumerate().skip(1) {
        let name = node.name.clone();
        let src = node.inputs.first().map(|s| s.index());
        match (plan.roles[i], &node.op) {
            (Role::Int8 { relu, codes_out }, Op::Layer(l)) => {
                let src = src.expect("layers have an input");
                let (x, xp) = b.codes_of(src)?;
                let out = if codes_out {
                    QOut::Codes {
                        params: b.params(i)?,
                        relu,
                    }
                } else {
                    QOut::F32
                };
                let q = int8_layer(l.as_ref(), xp, out)
                    .map_err(|e| QuantError::from(e).in_layer(&name))?;
                let id = b.g.add_boxed(&name, q, x)?;
                match out {
                    QOut::Codes { params, .. } => b.code_id[i] = Some((id, params)),
                    QOut::F32 => b.f32_id[i] = Some(id),
                }
            }
            (Role::Transparent, Op::Layer(l)) => {
                let (x, p) = b.code_id[src.expect("layers have an input")].expect("codes planned");
                let id = b.g.add_boxed(&name, l.clone(), x)?;
                b.code_id[i] = Some((id, p));
            }
            (Role::FusedRelu, _) => {
                b.code_id[i] = b.code_id[src.expect("layers have an input")];
            }
            (_, op) => {
                let ins: Vec<NodeId> = node
                    .inputs
                    .iter()
                    .map(|s| b.f32_of(s.index()))
                    .collect::<Result<_>>()?;
                let id = match op {
                    Op::Layer(l) => b.g.add_boxed(&name, l.clone(), ins[0])?,
                    Op::Add => b.g.add(&name, ins[0], ins[1])?,
                    Op::Mul => b.g.mul(&name, ins[0], ins[1])?,
                    Op::Concat => b.g.concat(&name, &ins)?,
                    other => {
                        return Err(QuantError::invalid(
                            &name,
                            format!("unsupported op {other:?}"),
                        ))
                    }
                };
                b.f32_id[i] = Some(id);
            }
        }
    }
    let out = b.f32_of(g.output().index())?;
    b.g.set_output(out)?;
    Ok(b.g)
}

/// The int8 layer for a Conv2d or Linear.
fn int8_layer(l: &dyn Layer, xp: QuantParams, out: QOut) -> slimnet_core::Result<Box<dyn Layer>> {
    if let Some(c) = l.downcast_ref::<Conv2d>() {
        return Ok(Box::new(QConv2d::from_conv(c, xp, out)?));
    }
    match l.downcast_ref::<Linear>() {
        Some(f) => Ok(Box::new(QLinear::from_linear(f, xp, out)?)),
        None => Err(slimnet_core::Error::config(format!(
            "{} has no int8 form",
            l.kind()
        ))),
    }
}
