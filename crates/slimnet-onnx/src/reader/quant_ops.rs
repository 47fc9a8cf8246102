//! Import of the quantized ops. u8 values of the ONNX graph stand for real values through
//! their quantization (kept in [`Importer::domain`]); the slimnet graph carries them as codes
//! or reals and converts where a layer needs the other kind. `QLinearConv` / `QLinearMatMul`
//! become int8 layers (through [`super::Int8Import`]), `QuantizeLinear` a quantizing layer,
//! `DequantizeLinear` nothing (the value already is real in slimnet), and `ConvInteger` /
//! `MatMulInteger` float layers computing the same integer accumulator.

use slimnet_core::layers::{Linear, LinearConfig};
use slimnet_core::Tensor;
use slimnet_kernels::int8::QuantParams;

use crate::error::Result;
use crate::layers::{BinaryOp, ConstOp};
use crate::proto::NodeProto;

use super::attrs::Attrs;
use super::tensor::{dtype, Const};
use super::{ops, Importer, Val};

/// Quantization parameters from a scalar scale (input `s`) and an optional u8 zero point
/// (input `z`).
fn params(imp: &Importer, n: &NodeProto, s: usize, z: usize) -> Result<QuantParams> {
    let scale = imp
        .konst(n, s)?
        .scalar()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| imp.unsupported(n, "an activation scale that is not one positive number"))?;
    let zero_point = match imp.konst_opt(n, z)? {
        None => 0,
        Some(c) if c.elem == dtype::UINT8 && c.len() == 1 => c.ints()[0].clamp(0, 255) as u8,
        Some(_) => {
            return Err(imp.unsupported(
                n,
                "activation codes other than one u8 zero point (slimnet's codes are u8)",
            ))
        }
    };
    Ok(QuantParams { scale, zero_point })
}

/// `(w - zero) * scale` with one scale (and zero) per index of `axis`, or one for all.
fn dequantized(
    imp: &Importer,
    n: &NodeProto,
    w: &Const,
    scale: &Const,
    zero: Option<&Const>,
    axis: usize,
) -> Result<Tensor> {
    let per = w.dims.get(axis).copied().unwrap_or(1);
    let (s, z) = (scale.floats(), zero.map_or(vec![0.0], |z| z.floats()));
    if !(s.len() == 1 || s.len() == per) || !(z.len() == 1 || z.len() == s.len()) {
        return Err(imp.unsupported(
            n,
            format!(
                "{} scales and {} zero points for a weight {:?}",
                s.len(),
                z.len(),
                w.dims
            ),
        ));
    }
    let inner: usize = w.dims.get(axis + 1..).map_or(1, |d| d.iter().product());
    let v: Vec<f32> = w
        .floats()
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let c = (i / inner.max(1)) % per.max(1);
            let k = if s.len() == 1 { 0 } else { c };
            let kz = if z.len() == 1 { 0 } else { c };
            (q - z[kz]) * s[k]
        })
        .collect();
    Ok(Tensor::from_shape_vec(ndarray::IxDyn(&w.dims), v).expect("length"))
}

/// The int8 constructors, or an error saying where they come from.
fn hooks(imp: &Importer, n: &NodeProto) -> Result<super::Int8Import> {
    imp.int8.ok_or_else(|| {
        imp.unsupported(
            n,
            "int8 layers live in slimnet-quant: import through `slimnet::load`",
        )
    })
}

/// The quantization of input 0, which must be codes of `want` (when given).
fn codes_in(imp: &Importer, n: &NodeProto, want: Option<QuantParams>) -> Result<QuantParams> {
    match (imp.domain(n, 0), want) {
        (Some(d), Some(w)) if d != w => {
            Err(imp.unsupported(n, format!("codes quantized with {d:?} read as {w:?}")))
        }
        (Some(d), _) => Ok(d),
        (None, _) => Err(imp.unsupported(n, "u8 input codes of unknown quantization")),
    }
}

fn act_out(v: &Val) -> (slimnet_core::graph::NodeId, Vec<usize>) {
    match v {
        Val::Act(id, s) => (*id, s.clone()),
        Val::Const(_) => unreachable!("push gives activations"),
    }
}

pub(crate) fn convert(imp: &mut Importer, n: &NodeProto) -> Result<()> {
    let (x, s) = imp.act(n, 0)?;
    let mut out_domain = None;
    let v = match n.op_type() {
        "QuantizeLinear" => {
            let p = params(imp, n, 1, 2)?;
            out_domain = Some(p);
            if imp.domain(n, 0) == Some(p) {
                Val::Act(x, s)
            } else {
                let q = (hooks(imp, n)?.quantize)(p);
                imp.push(n, "", q, x, &s)?
            }
        }
        "DequantizeLinear" => {
            let p = params(imp, n, 1, 2)?;
            let d = codes_in(imp, n, None)?;
            if d == p {
                Val::Act(x, s)
            } else {
                // the same codes read with other parameters: an affine map of the reals
                let t = |v: f32| slimnet_core::tensor::from_vec(&[], vec![v]).expect("scalar");
                let m = ConstOp::new(BinaryOp::Mul, t(p.scale / d.scale), false);
                let (id, s1) = act_out(&imp.push(n, "_scale", Box::new(m), x, &s)?);
                let shift = (d.zero_point as f32 - p.zero_point as f32) * p.scale;
                imp.push(
                    n,
                    "",
                    Box::new(ConstOp::new(BinaryOp::Add, t(shift), false)),
                    id,
                    &s1,
                )?
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
            match imp.domain(n, 0) {
                None => Val::Act(x, s),
                // codes cast to float are the codes themselves: real / scale + zero point
                Some(d) => {
                    let t = |v: f32| slimnet_core::tensor::from_vec(&[], vec![v]).expect("scalar");
                    let m = ConstOp::new(BinaryOp::Mul, t(1.0 / d.scale), false);
                    let (id, s1) = act_out(&imp.push(n, "_scale", Box::new(m), x, &s)?);
                    imp.push(
                        n,
                        "",
                        Box::new(ConstOp::new(BinaryOp::Add, t(d.zero_point as f32), false)),
                        id,
                        &s1,
                    )?
                }
            }
        }
        "QLinearConv" => {
            let xp = params(imp, n, 1, 2)?;
            codes_in(imp, n, Some(xp))?;
            let (w, ws, wz) = (imp.konst(n, 3)?, imp.konst(n, 4)?, imp.konst_opt(n, 5)?);
            let yp = params(imp, n, 6, 7)?;
            let wf = dequantized(imp, n, &w, &ws, wz.as_deref(), 0)?;
            let bias = match imp.konst_opt(n, 8)? {
                None => None,
                Some(b) => {
                    let sb = Const::f32(
                        ws.dims.clone(),
                        ws.floats().iter().map(|v| v * xp.scale).collect(),
                    );
                    let bf =
                        dequantized(imp, n, &Const::f32(vec![b.len()], b.floats()), &sb, None, 0)?;
                    Some(bf)
                }
            };
            let (x, s, conv) = ops::build_conv(imp, n, wf, bias)?;
            let q = (hooks(imp, n)?.layer)(&conv, xp, Some(yp))
                .map_err(|e| imp.invalid(n, e.to_string()))?;
            out_domain = Some(yp);
            imp.push(n, "", q, x, &s)?
        }
        "QLinearMatMul" => {
            let xp = params(imp, n, 1, 2)?;
            codes_in(imp, n, Some(xp))?;
            let (b, bs, bz) = (imp.konst(n, 3)?, imp.konst(n, 4)?, imp.konst_opt(n, 5)?);
            let yp = params(imp, n, 6, 7)?;
            let lin = linear(imp, n, &s, &b, &bs, bz.as_deref(), 1.0)?;
            let q = (hooks(imp, n)?.layer)(&lin, xp, Some(yp))
                .map_err(|e| imp.invalid(n, e.to_string()))?;
            out_domain = Some(yp);
            imp.push(n, "", q, x, &s)?
        }
        "ConvInteger" | "MatMulInteger" => {
            // (x - x_zero) * (w - w_zero) summed, with x - x_zero = real / scale
            let d = codes_in(imp, n, None)?;
            let xz = match imp.konst_opt(n, 2)? {
                None => 0,
                Some(c) if c.len() == 1 => c.ints()[0],
                Some(_) => return Err(imp.unsupported(n, "a zero point per input row")),
            };
            if xz != d.zero_point as i64 {
                return Err(imp.unsupported(
                    n,
                    format!(
                        "input zero point {xz} for codes of zero point {}",
                        d.zero_point
                    ),
                ));
            }
            let w = imp.konst(n, 1)?;
            let wz = imp.konst_opt(n, 3)?;
            let inv = Const::f32(vec![], vec![1.0 / d.scale]);
            if n.op_type() == "ConvInteger" {
                let wf = dequantized(imp, n, &w, &inv, wz.as_deref(), 0)?;
                let (x, s, conv) = ops::build_conv(imp, n, wf, None)?;
                imp.push(n, "", Box::new(conv), x, &s)?
            } else {
                let lin = linear(
                    imp,
                    n,
                    &s,
                    &w,
                    &Const::f32(vec![], vec![1.0]),
                    wz.as_deref(),
                    1.0 / d.scale,
                )?;
                imp.push(n, "", Box::new(lin), x, &s)?
            }
        }
        op => unreachable!("{op} is not a quantized op"),
    };
    imp.set(n, 0, v);
    if let (Some(p), Some(o)) = (out_domain, n.output.first()) {
        imp.domain.insert(o.clone(), p);
    }
    Ok(())
}

/// The linear layer `x @ ((b - zero) * scale * factor)` for a 2-D input of shape `s` (scales
/// and zero points per column of `b` or one for all).
fn linear(
    imp: &Importer,
    n: &NodeProto,
    s: &[usize],
    b: &Const,
    scale: &Const,
    zero: Option<&Const>,
    factor: f32,
) -> Result<Linear> {
    if s.len() != 2 || b.dims.len() != 2 || b.dims[0] != s[1] {
        return Err(imp.unsupported(
            n,
            format!(
                "a product of {s:?} and {:?}: slimnet reads 2-D inputs here",
                b.dims
            ),
        ));
    }
    let bf = dequantized(imp, n, b, scale, zero, 1)? * factor;
    let w = bf.t().as_standard_layout().into_owned();
    Linear::from_parts(
        LinearConfig::new(b.dims[0], b.dims[1]).with_bias(false),
        w,
        None,
    )
    .map_err(|e| imp.invalid(n, e.to_string()))
}
