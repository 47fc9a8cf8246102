//! Import of the element-wise, merge and shape ops: `Add`/`Sub`/`Mul`/`Div`, `Concat`, the
//! reshapes, `Transpose`, `Pad`, and the ops that vanish at inference (`Dropout`, `Identity`,
//! `Cast` to float).

use slimnet_core::layers::{Conv2d, Flatten, Linear};
use slimnet_core::Layer;

use crate::error::Result;
use crate::layers::elementwise::broadcast_shape;
use crate::layers::{
    axis as resolve, BinaryOp, ConstOp, Pad, PadMode, Reduce, ReduceOp, Reshape, Slice, Transpose,
    Unary, UnaryOp,
};
use crate::proto::NodeProto;

use super::attrs::Attrs;
use super::tensor::{dtype, Const};
use super::{Importer, Val};

/// Adds `sign * c` to the bias of the linear or convolution layer at `id`, when `c` holds one
/// value per output channel and nothing else reads that layer; returns whether it did.
fn fuse_bias(
    imp: &mut Importer,
    n: &NodeProto,
    act_input: usize,
    id: slimnet_core::graph::NodeId,
    shape: &[usize],
    c: &Const,
    sign: f32,
) -> Result<bool> {
    fuse(imp, n, act_input, id, shape, c, Some(sign))
}

/// Multiplies the weight rows and bias of the linear or convolution layer at `id` by `c`
/// (one value per output channel), when nothing else reads that layer.
fn fuse_scale(
    imp: &mut Importer,
    n: &NodeProto,
    act_input: usize,
    id: slimnet_core::graph::NodeId,
    shape: &[usize],
    c: &Const,
) -> Result<bool> {
    fuse(imp, n, act_input, id, shape, c, None)
}

/// Folds a per-channel shift (`Some(sign)`) or scale (`None`) into the layer at `id`.
fn fuse(
    imp: &mut Importer,
    n: &NodeProto,
    act_input: usize,
    id: slimnet_core::graph::NodeId,
    shape: &[usize],
    c: &Const,
    shift: Option<f32>,
) -> Result<bool> {
    if imp.uses.get(&n.input[act_input]).copied() != Some(1) || shape.len() < 2 {
        return Ok(false);
    }
    let ch = shape[1];
    // one value per channel: right-aligned against the output, 1 everywhere but axis 1
    let lead = shape.len().checked_sub(c.dims.len());
    let per_channel = c.len() == ch
        && lead.is_some_and(|lead| {
            (0..shape.len()).all(|i| {
                let d = if i < lead { 1 } else { c.dims[i - lead] };
                d == if i == 1 { ch } else { 1 }
            })
        });
    let Some(node) = imp.graph.node(id) else {
        return Ok(false);
    };
    let name = node.name.clone();
    let Some(layer) = imp.graph.layer(&name) else {
        return Ok(false);
    };
    if !per_channel || !c.is_float() {
        return Ok(false);
    }
    let cv = ndarray::Array1::from(c.floats()).into_dyn();
    let bias = |old: Option<&slimnet_core::Param>| -> Option<slimnet_core::Tensor> {
        match (shift, old) {
            (Some(sign), Some(b)) => Some(b.value() + &(&cv * sign)),
            (Some(sign), None) => Some(&cv * sign),
            (None, Some(b)) => Some(b.value() * &cv),
            (None, None) => None,
        }
    };
    let weight = |w: &slimnet_core::Tensor| -> slimnet_core::Tensor {
        let mut w = w.clone();
        if shift.is_none() {
            for (mut row, k) in w.axis_iter_mut(ndarray::Axis(0)).zip(cv.iter()) {
                row.mapv_inplace(|v| v * k);
            }
        }
        w
    };
    let new: Box<dyn Layer> = if let Some(l) = layer.downcast_ref::<Linear>() {
        if shape.len() != 2 {
            return Ok(false);
        }
        let b = bias(l.bias.as_ref());
        let cfg = l.config().clone().with_bias(b.is_some());
        Box::new(Linear::from_parts(cfg, weight(l.weight.value()), b)?)
    } else if let Some(l) = layer.downcast_ref::<Conv2d>() {
        let b = bias(l.bias.as_ref());
        let cfg = l.config().clone().with_bias(b.is_some());
        Box::new(Conv2d::from_parts(cfg, weight(l.weight.value()), b)?)
    } else {
        return Ok(false);
    };
    imp.graph.replace_layer(&name, new)?;
    Ok(true)
}

pub(crate) fn binary(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let op = BinaryOp::from_onnx(n.op_type()).expect("dispatched on the op type");
    let (a, mut b) = (imp.input(n, 0)?, imp.input(n, 1)?);
    // opsets before 7: the second operand lines up with the first from an axis
    let dims = |v: &Option<Val>| match v {
        Some(Val::Act(_, s)) => Some(s.clone()),
        Some(Val::Const(c)) => Some(c.dims.clone()),
        None => None,
    };
    if let (Some(da), Some(db)) = (dims(&a), dims(&b)) {
        if let Some(d) = imp.legacy_operand(n, &da, &db)? {
            b = match b {
                Some(Val::Const(c)) => Some(Val::Const(std::rc::Rc::new(Const {
                    dims: d,
                    ..(*c).clone()
                }))),
                Some(Val::Act(..)) if d != db => return Err(imp.unsupported(
                    n,
                    "an activation as the second operand of a pre-opset-7 broadcast from an axis",
                )),
                other => other,
            };
        }
    }
    match (a, b) {
        (Some(Val::Act(x, sx)), Some(Val::Act(y, sy))) => {
            let out = broadcast_shape(&sx, &sy).ok_or_else(|| {
                imp.invalid(n, format!("shapes {sx:?} and {sy:?} do not broadcast"))
            })?;
            let name = imp.name(n, "");
            let id = match op {
                BinaryOp::Add => imp.graph.add(&name, x, y)?,
                BinaryOp::Mul => imp.graph.mul(&name, x, y)?,
                BinaryOp::Sub => {
                    let neg = ConstOp::new(
                        BinaryOp::Mul,
                        slimnet_core::tensor::from_vec(&[], vec![-1.0])?,
                        false,
                    );
                    let Val::Act(m, _) = imp.push(n, "_neg", Box::new(neg), y, &sy)? else {
                        unreachable!()
                    };
                    imp.graph.add(&name, x, m)?
                }
                // x * (1 / y): within a rounding of ONNX Runtime's quotient
                BinaryOp::Div => {
                    let r = Unary::new(UnaryOp::Reciprocal);
                    let Val::Act(m, _) = imp.push(n, "_reciprocal", Box::new(r), y, &sy)? else {
                        unreachable!()
                    };
                    imp.graph.mul(&name, x, m)?
                }
                BinaryOp::Pow => {
                    return Err(imp.unsupported(n, "a power whose exponent is an activation"))
                }
            };
            Ok(Val::Act(id, out))
        }
        (Some(Val::Act(x, s)), Some(Val::Const(c)))
        | (Some(Val::Const(c)), Some(Val::Act(x, s))) => {
            let const_first = matches!(imp.input(n, 0)?, Some(Val::Const(_)));
            let act_input = usize::from(const_first);
            let sign = match (op, const_first) {
                (BinaryOp::Add, _) => Some(1.0),
                (BinaryOp::Sub, false) => Some(-1.0),
                _ => None,
            };
            if let Some(sign) = sign {
                if fuse_bias(imp, n, act_input, x, &s, &c, sign)? {
                    return Ok(Val::Act(x, s));
                }
            }
            if op == BinaryOp::Mul && fuse_scale(imp, n, act_input, x, &s, &c)? {
                return Ok(Val::Act(x, s));
            }
            imp.push(
                n,
                "",
                Box::new(ConstOp::new(op, c.tensor(), const_first)),
                x,
                &s,
            )
        }
        _ => Err(imp.invalid(n, "needs two inputs")),
    }
}

pub(crate) fn concat(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let mut ids = Vec::new();
    let mut shapes = Vec::new();
    for i in 0..n.input.len() {
        match imp.input(n, i)? {
            Some(Val::Act(id, s)) => {
                ids.push(id);
                shapes.push(s);
            }
            Some(Val::Const(_)) => {
                return Err(imp.unsupported(n, "concatenation of an activation with a constant"))
            }
            None => {}
        }
    }
    let first = shapes
        .first()
        .ok_or_else(|| imp.invalid(n, "no inputs"))?
        .clone();
    let ax = resolve(Attrs::of(n).int("axis", 1), first.len());
    if ax != Some(1) || first.len() < 2 {
        return Err(imp.unsupported(n, format!("concatenation along axis {ax:?} of rank {}: slimnet concatenates channels (axis 1)", first.len())));
    }
    let mut out = first.clone();
    out[1] = 0;
    for s in &shapes {
        if s.len() != first.len() || (0..s.len()).any(|i| i != 1 && s[i] != first[i]) {
            return Err(imp.invalid(n, format!("shapes {first:?} and {s:?} differ off axis 1")));
        }
        out[1] += s[1];
    }
    let name = imp.name(n, "");
    Ok(Val::Act(imp.graph.concat(&name, &ids)?, out))
}

/// The output shape of `Flatten`, `Squeeze` or `Unsqueeze` for input `dims` (`axes` from the
/// attribute or the second input).
pub(crate) fn reshaped(
    imp: &Importer,
    n: &NodeProto,
    dims: &[usize],
    axes: Option<Vec<i64>>,
) -> Result<Vec<usize>> {
    let r = dims.len();
    match n.op_type() {
        "Flatten" => {
            let a = Attrs::of(n).int("axis", 1);
            let k = if a < 0 { a + r as i64 } else { a };
            let a = usize::try_from(k)
                .ok()
                .filter(|&k| k <= r)
                .ok_or_else(|| imp.invalid(n, format!("axis {a} for rank {r}")))?;
            Ok(vec![dims[..a].iter().product(), dims[a..].iter().product()])
        }
        "Squeeze" => {
            let axes = match axes {
                None => (0..r).filter(|&i| dims[i] == 1).collect::<Vec<_>>(),
                Some(a) => a
                    .iter()
                    .map(|&a| resolve(a, r))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| imp.invalid(n, format!("axes {a:?} for rank {r}")))?,
            };
            if axes.iter().any(|&a| dims[a] != 1) {
                return Err(imp.invalid(
                    n,
                    format!("squeezing axes {axes:?} of {dims:?}, not all of size 1"),
                ));
            }
            Ok((0..r)
                .filter(|i| !axes.contains(i))
                .map(|i| dims[i])
                .collect())
        }
        _ => {
            let a = axes.ok_or_else(|| imp.invalid(n, "missing axes"))?;
            let out_rank = r + a.len();
            let mut pos = a
                .iter()
                .map(|&x| resolve(x, out_rank))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| imp.invalid(n, format!("axes {a:?} for rank {out_rank}")))?;
            pos.sort_unstable();
            if pos.windows(2).any(|w| w[0] == w[1]) {
                return Err(imp.invalid(n, format!("repeated axes {a:?}")));
            }
            let mut it = dims.iter();
            Ok((0..out_rank)
                .map(|i| {
                    if pos.contains(&i) {
                        1
                    } else {
                        *it.next().expect("counted")
                    }
                })
                .collect())
        }
    }
}

pub(crate) fn reshape(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let out = match n.op_type() {
        "Reshape" => {
            let spec = imp.konst(n, 1)?.ints();
            let allowzero = Attrs::of(n).int("allowzero", 0) != 0;
            Reshape::new(spec, allowzero)
                .and_then(|r| r.output_shape(&s))
                .map_err(|e| imp.invalid(n, e.to_string()))?
        }
        _ => {
            let axes = if imp.opset >= 13 && n.op_type() != "Flatten" {
                imp.konst_opt(n, 1)?.map(|c| c.ints())
            } else {
                Attrs::of(n).ints("axes")
            };
            reshaped(imp, n, &s, axes)?
        }
    };
    if out == s {
        return Ok(Val::Act(x, s));
    }
    let rest = |d: &[usize]| d.iter().skip(1).product::<usize>();
    if s.len() >= 2 && out.len() == 2 && out[0] == s[0] {
        return imp.push(n, "", Box::new(Flatten::new()), x, &s);
    }
    // written with the batch copied, so the layer works at any batch size
    let mut spec: Vec<i64> = out.iter().map(|&d| d as i64).collect();
    if !s.is_empty() && !out.is_empty() && out[0] == s[0] && rest(&out) == rest(&s) {
        spec[0] = 0;
    }
    imp.push(n, "", Box::new(Reshape::new(spec, false)?), x, &s)
}

pub(crate) fn transpose(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let r = s.len();
    let perm = match Attrs::of(n).ints("perm") {
        Some(p) => p
            .iter()
            .map(|&p| resolve(p, r))
            .collect::<Option<Vec<_>>>()
            .filter(|p| p.len() == r)
            .ok_or_else(|| imp.invalid(n, format!("perm {p:?} for rank {r}")))?,
        None => (0..r).rev().collect(),
    };
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(Val::Act(x, s));
    }
    let t = Transpose::new(perm).map_err(|e| imp.invalid(n, e.to_string()))?;
    imp.push(n, "", Box::new(t), x, &s)
}

pub(crate) fn pad(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let a = Attrs::of(n);
    let r = s.len();
    let (pads, value, axes) = if imp.opset < 11 {
        let p = a
            .ints("pads")
            .or_else(|| a.ints("paddings"))
            .ok_or_else(|| imp.invalid(n, "missing pads"))?;
        (p, a.float("value", 0.0), None)
    } else {
        let p = imp.konst(n, 1)?.ints();
        let v = match imp.konst_opt(n, 2)? {
            Some(c) => c
                .scalar()
                .ok_or_else(|| imp.invalid(n, "the constant value must be a scalar"))?,
            None => 0.0,
        };
        (p, v, imp.konst_opt(n, 3)?.map(|c| c.ints()))
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&x| resolve(x, r))
            .collect::<Option<_>>()
            .ok_or_else(|| imp.invalid(n, format!("axes {a:?} for rank {r}")))?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(imp.invalid(n, format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let mut per = vec![(0i64, 0i64); r];
    for (k, &ax) in axes.iter().enumerate() {
        per[ax] = (pads[k], pads[k + axes.len()]);
    }
    if per.iter().all(|&p| p == (0, 0)) {
        return Ok(Val::Act(x, s));
    }
    // a pad of u8 codes pads with a code
    let value = match imp.domain(n, 0) {
        Some(d) => (value - d.zero_point as f32) * d.scale,
        None => value,
    };
    let mode = match a.string("mode", "constant").as_str() {
        "constant" => PadMode::Constant(value),
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => return Err(imp.unsupported(n, format!("pad mode `{m}`"))),
    };
    let layer = Pad::new(per, mode).map_err(|e| imp.invalid(n, e.to_string()))?;
    imp.push(n, "", Box::new(layer), x, &s)
}

pub(crate) fn identity(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    match n.op_type() {
        "Dropout" => {
            if imp.output_used(n, 1) {
                return Err(imp.unsupported(n, "the mask output of Dropout"));
            }
            let training = imp.konst_opt(n, 2)?.and_then(|c| c.scalar()).unwrap_or(0.0);
            if training != 0.0 || (imp.opset < 7 && Attrs::of(n).int("is_test", 1) == 0) {
                return Err(imp.unsupported(n, "training-mode dropout (random at inference)"));
            }
        }
        "Cast" => {
            let to = Attrs::of(n).int("to", 0) as i32;
            if to != dtype::FLOAT {
                return Err(imp.unsupported(
                    n,
                    format!(
                        "a cast of an activation to element type {to}; slimnet computes in f32"
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(Val::Act(x, s))
}

pub(crate) fn unary(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let a = Attrs::of(n);
    let op = UnaryOp::from_onnx(n.op_type(), |name, default| a.float(name, default))
        .expect("dispatched on the op type");
    imp.push(n, "", Box::new(Unary::new(op)), x, &s)
}

pub(crate) fn reduce(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let op = ReduceOp::from_onnx(n.op_type()).expect("dispatched on the op type");
    let a = Attrs::of(n);
    // the axes moved from an attribute to an input in opset 13 (ReduceSum) and 18 (the rest)
    let axes_input = match op {
        ReduceOp::Sum => imp.opset >= 13,
        ReduceOp::Mean => imp.opset >= 18,
    };
    let axes = if axes_input {
        imp.konst_opt(n, 1)?.map(|c| c.ints())
    } else {
        a.ints("axes")
    }
    .unwrap_or_default();
    if axes.is_empty() && a.int("noop_with_empty_axes", 0) != 0 {
        return Ok(Val::Act(x, s));
    }
    let layer = Reduce::new(op, axes, a.int("keepdims", 1) != 0);
    imp.push(n, "", Box::new(layer), x, &s)
}

pub(crate) fn slice(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let a = Attrs::of(n);
    let get = |i: usize, attr: &str| -> Result<Option<Vec<i64>>> {
        Ok(if imp.opset >= 10 {
            imp.konst_opt(n, i)?.map(|c| c.ints())
        } else {
            a.ints(attr)
        })
    };
    let starts = get(1, "starts")?.ok_or_else(|| imp.invalid(n, "missing starts"))?;
    let ends = get(2, "ends")?.ok_or_else(|| imp.invalid(n, "missing ends"))?;
    let axes = get(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps =
        if imp.opset >= 10 { get(4, "")? } else { None }.unwrap_or_else(|| vec![1; starts.len()]);
    let layer = Slice::new(starts, ends, axes, steps).map_err(|e| imp.invalid(n, e.to_string()))?;
    imp.push(n, "", Box::new(layer), x, &s)
}

/// `Split` of an activation: each output that something reads becomes a [`Slice`] of its part
/// along the axis (sizes from the attribute before opset 13, the input from 13 on, else equal
/// parts, the last one smaller when they do not divide).
pub(crate) fn split(imp: &mut Importer, n: &NodeProto) -> Result<()> {
    let (x, s) = imp.act(n, 0)?;
    let a = Attrs::of(n);
    let r = s.len();
    let axis = a.int("axis", 0);
    let ax = resolve(axis, r).ok_or_else(|| imp.invalid(n, format!("axis {axis} for rank {r}")))?;
    let given = if imp.opset >= 13 {
        imp.konst_opt(n, 1)?.map(|c| c.ints())
    } else {
        a.ints("split")
    };
    let (d, parts) = (s[ax] as i64, n.output.len().max(1) as i64);
    let sizes: Vec<i64> = match given.filter(|v| !v.is_empty()) {
        Some(v) => v,
        None => {
            let each = (d + parts - 1) / parts;
            (0..parts).map(|k| each.min(d - k * each).max(0)).collect()
        }
    };
    if sizes.len() != n.output.len()
        || sizes.iter().any(|&v| v < 0)
        || sizes.iter().sum::<i64>() != d
    {
        return Err(imp.invalid(
            n,
            format!(
                "parts {sizes:?} do not split axis {ax} of {s:?} into {} outputs",
                n.output.len()
            ),
        ));
    }
    let mut start = 0;
    for (k, &len) in sizes.iter().enumerate() {
        if imp.output_used(n, k) {
            let part = Slice::new(vec![start], vec![start + len], vec![ax as i64], vec![1])
                .map_err(|e| imp.invalid(n, e.to_string()))?;
            let v = imp.push(n, &format!("_{k}"), Box::new(part), x, &s)?;
            imp.set(n, k, v);
        }
        start += len;
    }
    Ok(())
}
