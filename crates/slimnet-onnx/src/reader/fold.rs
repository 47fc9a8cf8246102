//! Constant folding: ops whose inputs are all constants (shape arithmetic, weight transposes,
//! `Constant`, and `Shape` of an activation, whose shape is known) become constants at import.

use std::rc::Rc;

use crate::error::Result;
use crate::layers::axis as resolve;
use crate::layers::elementwise::broadcast_shape;
use crate::layers::reshape::slice_indices;
use crate::layers::Reshape;
use crate::proto::NodeProto;
use slimnet_core::Layer;

use super::attrs::Attrs;
use super::tensor::{self, dtype, element_count, Const, Data, MAX_ELEMENTS};
use super::{Importer, Val};

/// Ops evaluated at import when all their inputs are constants.
const FOLDABLE: &[&str] = &[
    "Identity",
    "Dropout",
    "Cast",
    "Gather",
    "Concat",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Flatten",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Slice",
    "ConstantOfShape",
    "Transpose",
    "DequantizeLinear",
];

/// Folds `n` when it can; returns whether it did.
pub(crate) fn try_fold(imp: &mut Importer, n: &NodeProto) -> Result<bool> {
    let out = match n.op_type() {
        "Constant" => constant(imp, n)?,
        "Shape" => {
            let dims = match imp.input(n, 0)? {
                Some(Val::Act(_, s)) => s,
                Some(Val::Const(c)) => c.dims.clone(),
                None => return Err(imp.invalid(n, "missing input 0")),
            };
            let a = Attrs::of(n);
            let r = dims.len() as i64;
            let clip = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clip(a.int("start", 0)), clip(a.int("end", r)));
            let v: Vec<i64> = dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
            Const::i64(vec![v.len()], v)
        }
        op if FOLDABLE.contains(&op) => {
            let mut ins = Vec::new();
            for i in 0..n.input.len() {
                match imp.input(n, i)? {
                    Some(Val::Const(c)) => ins.push(Some(c)),
                    Some(Val::Act(..)) => return Ok(false),
                    None => ins.push(None),
                }
            }
            if ins.first().is_none_or(Option::is_none) {
                return Ok(false);
            }
            eval(imp, n, &ins)?
        }
        _ => return Ok(false),
    };
    imp.folded += out.len();
    if imp.folded > MAX_ELEMENTS {
        return Err(imp.invalid(n, "constant folding would create more than 2^28 elements"));
    }
    imp.set(n, 0, Val::Const(Rc::new(out)));
    Ok(true)
}

fn constant(imp: &Importer, n: &NodeProto) -> Result<Const> {
    let a = Attrs::of(n);
    if let Some(t) = a.tensor("value") {
        return tensor::from_proto(t, imp.base.as_deref());
    }
    if let Some(attr) = a.get("value_float") {
        return Ok(Const::f32(vec![], vec![attr.f()]));
    }
    if let Some(v) = a.get("value_floats") {
        return Ok(Const::f32(vec![v.floats.len()], v.floats.clone()));
    }
    if let Some(attr) = a.get("value_int") {
        return Ok(Const::i64(vec![], vec![attr.i()]));
    }
    if let Some(v) = a.ints("value_ints") {
        return Ok(Const::i64(vec![v.len()], v));
    }
    Err(imp.unsupported(n, "a Constant without a tensor, float or int value"))
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The flat offsets `sum_i tables[i][idx_i]` over every index of `dims`, in order.
fn offsets(dims: &[usize], tables: &[Vec<usize>]) -> Vec<usize> {
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        out.push(idx.iter().zip(tables).map(|(&i, t)| t[i]).sum());
        for a in (0..dims.len()).rev() {
            idx[a] += 1;
            if idx[a] < dims[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

fn pick(d: &Data, offs: &[usize]) -> Data {
    match d {
        Data::F32(v) => Data::F32(offs.iter().map(|&o| v[o]).collect()),
        Data::I64(v) => Data::I64(offs.iter().map(|&o| v[o]).collect()),
    }
}

/// Offsets reading `dims` broadcast to `out`.
fn broadcast_offsets(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(dims);
    let lead = out.len() - dims.len();
    let tables: Vec<Vec<usize>> = (0..out.len())
        .map(|i| {
            if i < lead || dims[i - lead] == 1 {
                vec![0; out[i]]
            } else {
                (0..out[i]).map(|j| j * st[i - lead]).collect()
            }
        })
        .collect();
    offsets(out, &tables)
}

fn axes_of(imp: &Importer, n: &NodeProto, ins: &[Option<Rc<Const>>], i: usize) -> Option<Vec<i64>> {
    if imp.opset >= 13 {
        ins.get(i).cloned().flatten().map(|c| c.ints())
    } else {
        Attrs::of(n).ints("axes")
    }
}

fn eval(imp: &Importer, n: &NodeProto, ins: &[Option<Rc<Const>>]) -> Result<Const> {
    let x = ins[0].as_ref().expect("checked by the caller");
    let a = Attrs::of(n);
    let bad = |why: String| imp.invalid(n, why);
    Ok(match n.op_type() {
        "Identity" | "Dropout" => (**x).clone(),
        "Neg" => match &x.data {
            Data::F32(v) => Const::f32(x.dims.clone(), v.iter().map(|v| -v).collect()),
            Data::I64(v) => {
                Const::i64(x.dims.clone(), v.iter().map(|v| v.wrapping_neg()).collect())
            }
        },
        "Cast" => match a.int("to", dtype::FLOAT as i64) as i32 {
            dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16 => {
                Const::f32(x.dims.clone(), x.floats())
            }
            dtype::BOOL => Const::i64(
                x.dims.clone(),
                x.floats().iter().map(|&v| (v != 0.0) as i64).collect(),
            ),
            _ => Const::i64(x.dims.clone(), x.ints()),
        },
        "Add" | "Sub" | "Mul" | "Div" => {
            let mut y = ins
                .get(1)
                .cloned()
                .flatten()
                .ok_or_else(|| bad("missing input 1".into()))?;
            if let Some(d) = imp.legacy_operand(n, &x.dims, &y.dims)? {
                y = Rc::new(Const {
                    dims: d,
                    ..(*y).clone()
                });
            }
            let out = broadcast_shape(&x.dims, &y.dims).ok_or_else(|| {
                bad(format!(
                    "shapes {:?} and {:?} do not broadcast",
                    x.dims, y.dims
                ))
            })?;
            element_count(n.name(), &out.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
            let (ox, oy) = (
                broadcast_offsets(&x.dims, &out),
                broadcast_offsets(&y.dims, &out),
            );
            let op = n.op_type();
            if x.is_float() || y.is_float() {
                let (vx, vy) = (x.floats(), y.floats());
                let f = |p: f32, q: f32| match op {
                    "Add" => p + q,
                    "Sub" => p - q,
                    "Mul" => p * q,
                    _ => p / q,
                };
                Const::f32(
                    out,
                    ox.iter().zip(&oy).map(|(&i, &j)| f(vx[i], vy[j])).collect(),
                )
            } else {
                let (vx, vy) = (x.ints(), y.ints());
                let f = |p: i64, q: i64| match op {
                    "Add" => p.wrapping_add(q),
                    "Sub" => p.wrapping_sub(q),
                    "Mul" => p.wrapping_mul(q),
                    _ => p.checked_div(q).unwrap_or(0),
                };
                Const::i64(
                    out,
                    ox.iter().zip(&oy).map(|(&i, &j)| f(vx[i], vy[j])).collect(),
                )
            }
        }
        "Gather" => {
            let idx = ins
                .get(1)
                .cloned()
                .flatten()
                .ok_or_else(|| bad("missing indices".into()))?;
            let ax = resolve(a.int("axis", 0), x.dims.len())
                .ok_or_else(|| bad("axis out of range".into()))?;
            let size = x.dims[ax] as i64;
            let outer: usize = x.dims[..ax].iter().product();
            let inner: usize = x.dims[ax + 1..].iter().product();
            let ids = idx
                .ints()
                .into_iter()
                .map(|i| {
                    let j = if i < 0 { i + size } else { i };
                    (0..size)
                        .contains(&j)
                        .then_some(j as usize)
                        .ok_or_else(|| bad(format!("index {i} out of range")))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut offs = Vec::with_capacity(outer * ids.len() * inner);
            for o in 0..outer {
                for &j in &ids {
                    offs.extend((0..inner).map(|k| (o * x.dims[ax] + j) * inner + k));
                }
            }
            let mut dims = x.dims[..ax].to_vec();
            dims.extend(&idx.dims);
            dims.extend(&x.dims[ax + 1..]);
            Const {
                dims,
                data: pick(&x.data, &offs),
                elem: x.elem,
            }
        }
        "Concat" => {
            let parts: Vec<&Rc<Const>> = ins.iter().flatten().collect();
            let rank = x.dims.len();
            let ax =
                resolve(a.int("axis", 0), rank).ok_or_else(|| bad("axis out of range".into()))?;
            let fits = |c: &Const| {
                c.dims.len() == rank && (0..rank).all(|i| i == ax || c.dims[i] == x.dims[i])
            };
            if !parts.iter().all(|c| fits(c)) {
                return Err(bad("constant inputs of different shapes".into()));
            }
            let outer: usize = x.dims[..ax].iter().product();
            let inner: usize = x.dims[ax + 1..].iter().product();
            let float = parts.iter().any(|c| c.is_float());
            let mut dims = x.dims.clone();
            dims[ax] = parts.iter().map(|c| c.dims[ax]).sum();
            let (mut fv, mut iv) = (Vec::new(), Vec::new());
            for o in 0..outer {
                for c in &parts {
                    let w = c.dims[ax] * inner;
                    if float {
                        fv.extend_from_slice(&c.floats()[o * w..(o + 1) * w]);
                    } else {
                        iv.extend_from_slice(&c.ints()[o * w..(o + 1) * w]);
                    }
                }
            }
            if float {
                Const::f32(dims, fv)
            } else {
                Const::i64(dims, iv)
            }
        }
        "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
            let dims = if n.op_type() == "Reshape" {
                let spec = ins
                    .get(1)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| bad("missing shape".into()))?;
                Reshape::new(spec.ints(), a.int("allowzero", 0) != 0)
                    .and_then(|r| r.output_shape(&x.dims))
                    .map_err(|e| bad(e.to_string()))?
            } else {
                super::shape_ops::reshaped(imp, n, &x.dims, axes_of(imp, n, ins, 1))?
            };
            Const {
                dims,
                data: x.data.clone(),
                elem: x.elem,
            }
        }
        "Transpose" => {
            let rank = x.dims.len();
            let perm = match a.ints("perm") {
                Some(p) => p
                    .iter()
                    .map(|&p| resolve(p, rank))
                    .collect::<Option<Vec<_>>>(),
                None => Some((0..rank).rev().collect()),
            }
            .filter(|p| p.len() == rank)
            .ok_or_else(|| bad("bad perm".into()))?;
            let st = strides(&x.dims);
            let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
            let tables: Vec<Vec<usize>> = perm
                .iter()
                .map(|&p| (0..x.dims[p]).map(|j| j * st[p]).collect())
                .collect();
            Const {
                dims: dims.clone(),
                data: pick(&x.data, &offsets(&dims, &tables)),
                elem: x.elem,
            }
        }
        "Slice" => slice(imp, n, x, ins)?,
        "DequantizeLinear" => {
            // a quantized weight: (q - zero) * scale, per index of `axis` or for all
            let s = ins
                .get(1)
                .cloned()
                .flatten()
                .ok_or_else(|| bad("missing scale".into()))?;
            let z = ins.get(2).cloned().flatten();
            if a.has("block_size") && a.int("block_size", 0) != 0 {
                return Err(imp.unsupported(n, "blocked quantization"));
            }
            // the axis only matters for per-axis scales
            let ax = if s.len() == 1 {
                0
            } else {
                resolve(a.int("axis", 1), x.dims.len())
                    .ok_or_else(|| bad("axis out of range".into()))?
            };
            let per = if s.len() == 1 {
                1
            } else {
                x.dims.get(ax).copied().unwrap_or(1)
            };
            if s.len() != per || z.as_ref().is_some_and(|z| z.len() != s.len()) {
                return Err(bad(format!("{} scales for a tensor {:?}", s.len(), x.dims)));
            }
            let inner: usize = x.dims.get(ax + 1..).map_or(1, |d| d.iter().product());
            let (sv, zv) = (s.floats(), z.map_or(vec![0.0; sv_len(&s)], |z| z.floats()));
            let v = x
                .floats()
                .iter()
                .enumerate()
                .map(|(i, &q)| {
                    let c = if per == 1 {
                        0
                    } else {
                        (i / inner.max(1)) % per
                    };
                    (q - zv[c]) * sv[c]
                })
                .collect();
            Const::f32(x.dims.clone(), v)
        }
        "ConstantOfShape" => {
            let dims = x.ints();
            let len = element_count(&super::display_name(n), &dims)?;
            let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            match a.tensor("value") {
                Some(t) => {
                    let v = tensor::from_proto(t, None)?;
                    match v.data {
                        Data::F32(f) if f.len() == 1 => Const::f32(dims, vec![f[0]; len]),
                        Data::I64(i) if i.len() == 1 => Const::i64(dims, vec![i[0]; len]),
                        _ => return Err(bad("value must hold one element".into())),
                    }
                }
                None => Const::f32(dims, vec![0.0; len]),
            }
        }
        op => unreachable!("{op} is not in FOLDABLE"),
    })
}

fn sv_len(c: &Const) -> usize {
    c.len()
}

fn slice(imp: &Importer, n: &NodeProto, x: &Const, ins: &[Option<Rc<Const>>]) -> Result<Const> {
    let a = Attrs::of(n);
    let bad = |why: &str| imp.invalid(n, why.to_string());
    let get = |i: usize, attr: &str| -> Option<Vec<i64>> {
        if imp.opset >= 10 {
            ins.get(i).cloned().flatten().map(|c| c.ints())
        } else {
            a.ints(attr)
        }
    };
    let starts = get(1, "starts").ok_or_else(|| bad("missing starts"))?;
    let ends = get(2, "ends").ok_or_else(|| bad("missing ends"))?;
    let rank = x.dims.len();
    let axes = get(3, "axes").unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps =
        if imp.opset >= 10 { get(4, "") } else { None }.unwrap_or_else(|| vec![1; starts.len()]);
    if [ends.len(), axes.len(), steps.len()]
        .iter()
        .any(|&l| l != starts.len())
    {
        return Err(bad("starts, ends, axes and steps differ in length"));
    }
    let mut picks: Vec<Vec<usize>> = x.dims.iter().map(|&d| (0..d).collect()).collect();
    for k in 0..starts.len() {
        let ax = resolve(axes[k], rank).ok_or_else(|| bad("axis out of range"))?;
        picks[ax] = slice_indices(x.dims[ax], starts[k], ends[k], steps[k])
            .ok_or_else(|| bad("a zero step"))?;
    }
    let st = strides(&x.dims);
    let dims: Vec<usize> = picks.iter().map(Vec::len).collect();
    let tables: Vec<Vec<usize>> = picks
        .iter()
        .zip(&st)
        .map(|(p, &s)| p.iter().map(|&j| j * s).collect())
        .collect();
    Ok(Const {
        dims: dims.clone(),
        data: pick(&x.data, &offsets(&dims, &tables)),
        elem: x.elem,
    })
}
