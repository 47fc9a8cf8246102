//! int8 residual additions. After static quantization, an `Add` whose two inputs both come
//! from int8 layers (directly or through layers that pass codes on, such as a ReLU) adds u8
//! codes ([`Op::QuantAdd`]), and the int8 layers that feed it write codes, so a quantized
//! ResNet keeps u8 values from block to block instead of returning to f32 at every sum.
//!
//! The sum is quantized for its readers: with the input quantization of the int8 layers it
//! reaches (through a ReLU, whose clamp the codes then already hold), or with its own
//! calibrated range when its readers disagree or need reals. Each layer feeding the sum
//! writes codes with its calibrated output range (or its other readers' quantization).
//!
//! Products of two activations (attention in imported models) stay f32, with a record each
//! that says so.

use slimnet_core::graph::{Graph, Op};
use slimnet_core::rewrite::Record;
use slimnet_core::value::ValueKind;
use slimnet_core::Layer;
use slimnet_kernels::int8::QuantParams;

use super::convert::passes_codes;
use super::Ranges;
use crate::error::Result;
use crate::layers::{Int8Layer, QConv2d, QLinear, QOut};
use crate::observer::to_params;

/// The calibration keys of the Add node at `path`: its first input, its second input and its
/// sum (`<path>:a`, `<path>:b`, `<path>:sum`).
pub(crate) fn add_keys(path: &str) -> [String; 3] {
    [
        format!("{path}:a"),
        format!("{path}:b"),
        format!("{path}:sum"),
    ]
}

fn is_int8(l: &dyn Layer) -> bool {
    l.downcast_ref::<QConv2d>().is_some() || l.downcast_ref::<QLinear>().is_some()
}

/// The input quantizations of the int8 layers the value of node `name` reaches through layers
/// that pass codes; sums that add codes take any codes and add nothing. `None` when a reader
/// needs reals (an f32 layer, another merge, the graph's output).
fn code_readers(g: &Graph, name: &str) -> Option<Vec<QuantParams>> {
    let mut out = Vec::new();
    let mut stack = vec![g.node_id(name)?];
    while let Some(id) = stack.pop() {
        if g.output() == id {
            return None;
        }
        for r in g.consumers(id) {
            match &g.nodes()[r.index()].op {
                Op::QuantAdd(_) => {}
                Op::Layer(l) if passes_codes(l.as_ref()) => stack.push(r),
                Op::Layer(l) => match l.input_kind() {
                    ValueKind::U8(p) => out.push(p),
                    ValueKind::F32 => return None,
                },
                _ => return None,
            }
        }
    }
    Some(out)
}

/// The one quantization all `readers` share, if any.
fn agreed(readers: &[QuantParams]) -> Option<QuantParams> {
    let first = *readers.first()?;
    readers.iter().all(|&p| p == first).then_some(first)
}

/// The node that writes the value node `name` reads, looking back through layers that pass
/// codes on: an int8 layer, a sum of codes, or anything else.
fn source(g: &Graph, name: &str) -> String {
    let mut id = g.node_id(name).expect("a node of the graph");
    loop {
        let node = &g.nodes()[id.index()];
        match &node.op {
            Op::Layer(l) if !is_int8(l.as_ref()) && passes_codes(l.as_ref()) => {
                id = node.inputs[0];
            }
            _ => return node.name.clone(),
        }
    }
}

fn writes_codes(g: &Graph, name: &str) -> bool {
    let n = &g.nodes()[g.node_id(name).expect("a node").index()];
    match &n.op {
        Op::QuantAdd(_) => true,
        Op::Layer(l) => is_int8(l.as_ref()),
        _ => false,
    }
}

/// The record of sum `name`: made a sum of codes, or kept in f32 and why.
fn record(name: &str, after: &str, note: String) -> Record {
    merge_record(name, "int8-sum", "Add", after, note)
}

/// A report record of the merge node `name` (no parameters or MACs of its own).
fn merge_record(name: &str, rule: &str, before: &str, after: &str, note: String) -> Record {
    Record {
        path: name.to_string(),
        rule: rule.into(),
        kind_before: before.into(),
        kind_after: after.into(),
        params: (0, 0),
        macs: (0, 0),
        bytes: (0, 0),
        changed: after != before,
        note,
    }
}

/// One record per product of two activations ([`Op::MatMul`], from attention blocks): no int8
/// kernel multiplies two activations, so each stays f32, and the report says so.
pub(crate) fn f32_products(g: &Graph) -> Vec<Record> {
    g.nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::MatMul))
        .map(|n| {
            let why = "stays f32: no int8 kernel multiplies two activations".to_string();
            merge_record(&n.name, "int8-matmul", "MatMul", "MatMul", why)
        })
        .collect()
}

/// Turns the calibrated Adds of `g` whose inputs both come from int8 layers into sums of
/// codes, and makes the int8 layers feeding them write codes. `ranges` holds each Add's
/// input and sum ranges under [`add_keys`]; an Add without them stays f32. Returns one record
/// per Add: the sums made, and the ones kept in f32 with the reason.
pub(crate) fn link_adds(g: &mut Graph, ranges: &Ranges) -> Result<Vec<Record>> {
    let mut made = Vec::new();
    let mut records = Vec::new();
    let adds: Vec<String> = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Add))
        .map(|n| n.name.clone())
        .collect();
    for name in adds {
        let [_, _, sum] = add_keys(&name);
        let Some(&(lo, hi)) = ranges.get(&sum) else {
            let why = "stays f32: no calibrated range (not calibrated, or its values were not finite or constant)";
            records.push(record(&name, "Add", why.into()));
            continue;
        };
        let id = g.node_id(&name).expect("listed above");
        let inputs: Vec<String> = g.nodes()[id.index()]
            .inputs
            .iter()
            .map(|i| g.nodes()[i.index()].name.clone())
            .collect();
        if let Some(f) = inputs.iter().find(|i| !writes_codes(g, &source(g, i))) {
            let why = format!("stays f32: input `{f}` does not come from an int8 layer");
            records.push(record(&name, "Add", why));
            continue;
        }
        let p = code_readers(g, &name)
            .and_then(|r| agreed(&r))
            .unwrap_or_else(|| to_params(lo, hi));
        g.quantize_add(&name, p)?;
        let note = format!(
            "adds u8 codes (scale {:.3e}, zero point {})",
            p.scale, p.zero_point
        );
        records.push(record(&name, "QuantAdd", note));
        made.push(name);
    }
    // the int8 layers feeding a sum write codes
    for name in &made {
        let id = g.node_id(name).expect("made above");
        let inputs: Vec<String> = g.nodes()[id.index()]
            .inputs
            .iter()
            .map(|i| g.nodes()[i.index()].name.clone())
            .collect();
        for (input, key) in inputs.iter().zip(&add_keys(name)[..2]) {
            let src = source(g, input);
            let Some(&(lo, hi)) = ranges.get(key) else {
                continue;
            };
            let p = code_readers(g, &src)
                .and_then(|r| agreed(&r))
                .unwrap_or_else(|| to_params(lo, hi));
            let Some(layer) = g.layer(&src) else {
                continue; // a sum of codes
            };
            let new: Option<Box<dyn Layer>> = if let Some(q) = layer.downcast_ref::<QConv2d>() {
                (q.output() == QOut::F32)
                    .then(|| Box::new(q.clone().with_output(QOut::Codes(p))) as _)
            } else if let Some(q) = layer.downcast_ref::<QLinear>() {
                (q.output() == QOut::F32)
                    .then(|| Box::new(q.clone().with_output(QOut::Codes(p))) as _)
            } else {
                None
            };
            if let Some(new) = new {
                g.replace_layer(&src, new)?;
            }
        }
    }
    Ok(records)
}
