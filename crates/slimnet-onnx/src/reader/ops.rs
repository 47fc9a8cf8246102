//! Import of the compute ops: convolution, fully-connected, batch norm, pooling, activations,
//! softmax.

use slimnet_core::layers::{
    Activation, ActivationKind, AvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig,
    GlobalAvgPool, Linear, LinearConfig, MaxPool2d, PoolConfig, Softmax,
};
use slimnet_core::{Layer, Tensor};

use crate::error::Result;
use crate::layers::{
    axis as resolve, BinaryOp, Clamp, ConstOp, MatMul, PRelu, Pad, PadMode, Pool2d, PoolKind,
    SoftmaxAxis, Transpose,
};
use crate::proto::NodeProto;
use slimnet_core::graph::NodeId;

use super::attrs::Attrs;
use super::{Importer, Val};

/// A size from an attribute: a positive integer up to 2^20.
pub(super) fn size(imp: &Importer, n: &NodeProto, what: &str, v: i64, min: i64) -> Result<usize> {
    if (min..=1 << 20).contains(&v) {
        Ok(v as usize)
    } else {
        Err(imp.invalid(n, format!("{what} {v} out of range")))
    }
}

/// Two sizes from an attribute (default `[d, d]`), for 2-D ops only.
pub(super) fn pair(
    imp: &Importer,
    n: &NodeProto,
    name: &str,
    d: i64,
    min: i64,
) -> Result<[usize; 2]> {
    let v = Attrs::of(n).ints(name).unwrap_or_else(|| vec![d, d]);
    if v.len() != 2 {
        return Err(imp.unsupported(n, format!("`{name}` {v:?}: slimnet supports 2-D ops")));
    }
    Ok([
        size(imp, n, name, v[0], min)?,
        size(imp, n, name, v[1], min)?,
    ])
}

/// The pads `[top, left, bottom, right]` from `pads` or `auto_pad`, for an input of spatial
/// size `hw`, windows spanning `span` and strides `stride`.
fn pads(
    imp: &Importer,
    n: &NodeProto,
    hw: [usize; 2],
    span: [usize; 2],
    stride: [usize; 2],
) -> Result<[usize; 4]> {
    let a = Attrs::of(n);
    match a.string("auto_pad", "NOTSET").as_str() {
        "NOTSET" | "" => {
            let p = a.ints("pads").unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 {
                return Err(imp.unsupported(n, format!("pads {p:?}: slimnet supports 2-D ops")));
            }
            let mut out = [0; 4];
            for (o, &v) in out.iter_mut().zip(&p) {
                *o = size(imp, n, "pad", v, 0)?;
            }
            Ok(out)
        }
        "VALID" => Ok([0; 4]),
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            let mut out = [0; 4];
            for i in 0..2 {
                let o = hw[i].div_ceil(stride[i]);
                let total = ((o - 1) * stride[i] + span[i]).saturating_sub(hw[i]);
                let small = total / 2;
                let (b, e) = if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out[i] = b;
                out[i + 2] = e;
            }
            Ok(out)
        }
        m => Err(imp.invalid(n, format!("unknown auto_pad `{m}`"))),
    }
}

/// The 4-D input of a 2-D op.
pub(super) fn input4(
    imp: &Importer,
    n: &NodeProto,
) -> Result<(slimnet_core::graph::NodeId, Vec<usize>)> {
    let (x, s) = imp.act(n, 0)?;
    if s.len() != 4 {
        return Err(imp.unsupported(
            n,
            format!(
                "input of rank {} ({s:?}): slimnet's convolutions and pools are 2-D (NCHW)",
                s.len()
            ),
        ));
    }
    Ok((x, s))
}

/// Splits asymmetric pads into a symmetric part and the rest, which a [`Pad`] layer in front
/// takes (with `fill`); returns the new input and the symmetric `[ph, pw]`.
fn split_pads(
    imp: &mut Importer,
    n: &NodeProto,
    x: slimnet_core::graph::NodeId,
    s: Vec<usize>,
    p: [usize; 4],
    fill: f32,
) -> Result<(slimnet_core::graph::NodeId, Vec<usize>, [usize; 2])> {
    let sym = [p[0].min(p[2]), p[1].min(p[3])];
    let rest = [p[0] - sym[0], p[1] - sym[1], p[2] - sym[0], p[3] - sym[1]];
    if rest == [0; 4] {
        return Ok((x, s, sym));
    }
    let pads = vec![
        (0, 0),
        (0, 0),
        (rest[0] as i64, rest[2] as i64),
        (rest[1] as i64, rest[3] as i64),
    ];
    let layer = Pad::new(pads, PadMode::Constant(fill))?;
    match imp.push(n, "_pad", Box::new(layer), x, &s)? {
        Val::Act(id, shape) => Ok((id, shape, sym)),
        Val::Const(_) => unreachable!("push gives activations"),
    }
}

pub(crate) fn conv(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let w = imp.konst(n, 1)?;
    let b = imp.konst_opt(n, 2)?;
    let bias = b.map(|b| {
        b.tensor()
            .into_shape_with_order(ndarray::IxDyn(&[b.len()]))
            .expect("length")
    });
    let (x, s, conv) = build_conv(imp, n, w.tensor(), bias)?;
    imp.push(n, "", Box::new(conv), x, &s)
}

/// The convolution of node `n` (Conv, QLinearConv, ConvInteger: the attributes are the same)
/// with weight `w` (OIHW) and `bias`, and the node it reads (a `Pad` in front takes the
/// asymmetric part of the padding).
pub(crate) fn build_conv(
    imp: &mut Importer,
    n: &NodeProto,
    w: Tensor,
    bias: Option<Tensor>,
) -> Result<(NodeId, Vec<usize>, Conv2d)> {
    let (x, s) = input4(imp, n)?;
    let a = Attrs::of(n);
    let dims = w.shape().to_vec();
    if dims.len() != 4 {
        return Err(imp.unsupported(
            n,
            format!("weight of shape {dims:?}: slimnet supports 2-D convolutions"),
        ));
    }
    let groups = size(imp, n, "group", a.int("group", 1), 1)?;
    let (o, ipg, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
    if let Some(k) = a.ints("kernel_shape") {
        if k != [kh as i64, kw as i64] {
            return Err(imp.invalid(
                n,
                format!("kernel_shape {k:?} does not match the weight {dims:?}"),
            ));
        }
    }
    let stride = pair(imp, n, "strides", 1, 1)?;
    let dil = pair(imp, n, "dilations", 1, 1)?;
    let span = [(kh.max(1) - 1) * dil[0] + 1, (kw.max(1) - 1) * dil[1] + 1];
    let p = pads(imp, n, [s[2], s[3]], span, stride)?;
    let (x, s, sym) = split_pads(imp, n, x, s, p, 0.0)?;
    let mut cfg = Conv2dConfig::new(ipg * groups, o, 1)
        .with_kernel(kh, kw)
        .with_groups(groups)
        .with_padding2(sym[0], sym[1])
        .with_bias(bias.is_some());
    cfg.stride = stride;
    cfg.dilation = dil;
    if s[1] != cfg.in_channels {
        return Err(imp.invalid(
            n,
            format!(
                "input of {} channels for a weight {dims:?} in {groups} groups",
                s[1]
            ),
        ));
    }
    let conv = Conv2d::from_parts(cfg, w, bias).map_err(|e| imp.invalid(n, e.to_string()))?;
    Ok((x, s, conv))
}

pub(crate) fn gemm(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (mut x, mut s) = imp.act(n, 0)?;
    let b = imp.konst(n, 1)?;
    // C computed from the input (`addmm` of two products) is added after the layer
    let (c, c_act) = match imp.input(n, 2)? {
        Some(Val::Act(id, shape)) => (None, Some((id, shape))),
        _ => (imp.konst_opt(n, 2)?, None),
    };
    let a = Attrs::of(n);
    let (alpha, beta) = (a.float("alpha", 1.0), a.float("beta", 1.0));
    if s.len() != 2 || b.dims.len() != 2 {
        return Err(imp.invalid(
            n,
            format!("Gemm needs 2-D operands, got {s:?} and {:?}", b.dims),
        ));
    }
    if a.int("transA", 0) != 0 {
        let t = imp.push(
            n,
            "_transpose",
            Box::new(Transpose::new(vec![1, 0])?),
            x,
            &s,
        )?;
        let Val::Act(id, shape) = t else {
            unreachable!("push gives activations")
        };
        (x, s) = (id, shape);
    }
    let bt = b.tensor();
    let w: Tensor = if a.int("transB", 0) != 0 {
        bt
    } else {
        bt.t().as_standard_layout().into_owned()
    };
    let w = w * alpha;
    let (out, k) = (w.shape()[0], w.shape()[1]);
    if s[1] != k {
        return Err(imp.invalid(
            n,
            format!("input {s:?} does not fit the weight {:?}", b.dims),
        ));
    }
    // a bias per output goes into the layer; anything else is added after it
    let (bias, extra) = match &c {
        Some(c) if c.len() == out && c.dims.last() == Some(&out) && c.dims.len() <= 2 => (
            Some(
                c.tensor()
                    .into_shape_with_order(ndarray::IxDyn(&[out]))
                    .expect("length")
                    * beta,
            ),
            None,
        ),
        Some(c) if c.len() == 1 => (
            Some(Tensor::from_elem(
                ndarray::IxDyn(&[out]),
                c.floats()[0] * beta,
            )),
            None,
        ),
        Some(c) => (None, Some(c.tensor() * beta)),
        None => (None, None),
    };
    let lin = Linear::from_parts(LinearConfig::new(k, out).with_bias(bias.is_some()), w, bias)
        .map_err(|e| imp.invalid(n, e.to_string()))?;
    let v = imp.push(n, "", Box::new(lin), x, &s)?;
    if let Some((mut cid, mut cs)) = c_act {
        let Val::Act(id, shape) = v else {
            unreachable!("push gives activations")
        };
        if beta != 1.0 {
            let scale = ConstOp::new(
                BinaryOp::Mul,
                Tensor::from_elem(ndarray::IxDyn(&[]), beta),
                false,
            );
            let Val::Act(scaled, ss) = imp.push(n, "_beta", Box::new(scale), cid, &cs)? else {
                unreachable!("push gives activations")
            };
            (cid, cs) = (scaled, ss);
        }
        let out = slimnet_core::tensor::broadcast_shape(&shape, &cs).ok_or_else(|| {
            imp.invalid(
                n,
                format!("C of shape {cs:?} does not broadcast to {shape:?}"),
            )
        })?;
        let name = imp.name(n, "_c");
        return Ok(Val::Act(imp.graph.add(&name, id, cid)?, out));
    }
    match extra {
        None => Ok(v),
        Some(c) => {
            let Val::Act(id, shape) = v else {
                unreachable!("push gives activations")
            };
            imp.push(
                n,
                "_bias",
                Box::new(ConstOp::new(BinaryOp::Add, c, false)),
                id,
                &shape,
            )
        }
    }
}

pub(crate) fn matmul(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    if let Some(Val::Act(y, sy)) = imp.input(n, 1)? {
        // both operands computed from the input (attention): a graph node of its own
        let out = slimnet_core::tensor::matmul_shape(&s, &sy)
            .ok_or_else(|| imp.invalid(n, format!("shapes {s:?} and {sy:?} do not multiply")))?;
        let name = imp.name(n, "");
        return Ok(Val::Act(imp.graph.matmul(&name, x, y)?, out));
    }
    let b = imp.konst(n, 1)?;
    if s.len() == 2 && b.dims.len() == 2 && s[1] == b.dims[0] {
        let w = b.tensor().t().as_standard_layout().into_owned();
        let lin = Linear::from_parts(
            LinearConfig::new(b.dims[0], b.dims[1]).with_bias(false),
            w,
            None,
        )
        .map_err(|e| imp.invalid(n, e.to_string()))?;
        return imp.push(n, "", Box::new(lin), x, &s);
    }
    let m = MatMul::new(b.tensor()).map_err(|e| imp.invalid(n, e.to_string()))?;
    imp.push(n, "", Box::new(m), x, &s)
}

pub(crate) fn batchnorm(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let a = Attrs::of(n);
    if a.int("training_mode", 0) != 0 || (1..5).any(|k| imp.output_used(n, k)) {
        return Err(imp.unsupported(n, "training mode (batch statistics, extra outputs)"));
    }
    if imp.opset < 9 && a.int("spatial", 1) == 0 {
        return Err(imp.unsupported(n, "spatial = 0 (per-position statistics)"));
    }
    let t = |i: usize| -> Result<Tensor> {
        let c = imp.konst(n, i)?;
        let len = c.len();
        Ok(c.tensor()
            .into_shape_with_order(ndarray::IxDyn(&[len]))
            .expect("length"))
    };
    let (scale, bias, mean, var) = (t(1)?, t(2)?, t(3)?, t(4)?);
    let ch = scale.len();
    if s.len() < 2 || s[1] != ch || [&bias, &mean, &var].iter().any(|v| v.len() != ch) {
        return Err(imp.invalid(
            n,
            format!(
                "input {s:?} with {ch} scales, {} shifts, {} means, {} variances",
                bias.len(),
                mean.len(),
                var.len()
            ),
        ));
    }
    let eps = a.float("epsilon", 1e-5);
    if s.len() == 4 && eps > 0.0 {
        let mut cfg = BatchNormConfig::new(ch);
        cfg.eps = eps;
        cfg.momentum = (1.0 - a.float("momentum", 0.9)).clamp(0.0, 1.0);
        let bn = BatchNorm2d::from_parts(cfg, scale, bias, mean, var)
            .map_err(|e| imp.invalid(n, e.to_string()))?;
        return imp.push(n, "", Box::new(bn), x, &s);
    }
    // other ranks: the same function as a per-channel scale and shift
    let mut shape = vec![ch];
    shape.extend(std::iter::repeat_n(1, s.len() - 2));
    let k: Vec<f32> = scale
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let sh: Vec<f32> = bias
        .iter()
        .zip(&mean)
        .zip(&k)
        .map(|((b, m), k)| b - m * k)
        .collect();
    let kt = Tensor::from_shape_vec(ndarray::IxDyn(&shape), k).expect("length");
    let st = Tensor::from_shape_vec(ndarray::IxDyn(&shape), sh).expect("length");
    let Val::Act(id, s2) = imp.push(
        n,
        "_scale",
        Box::new(ConstOp::new(BinaryOp::Mul, kt, false)),
        x,
        &s,
    )?
    else {
        unreachable!("push gives activations")
    };
    imp.push(
        n,
        "",
        Box::new(ConstOp::new(BinaryOp::Add, st, false)),
        id,
        &s2,
    )
}

pub(crate) fn pool(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = input4(imp, n)?;
    if imp.output_used(n, 1) {
        return Err(imp.unsupported(n, "the Indices output of MaxPool"));
    }
    let a = Attrs::of(n);
    if !a.has("kernel_shape") {
        return Err(imp.invalid(n, "missing kernel_shape"));
    }
    let kernel = pair(imp, n, "kernel_shape", 0, 1)?;
    let stride = pair(imp, n, "strides", 1, 1)?;
    let dil = pair(imp, n, "dilations", 1, 1)?;
    let span = [(kernel[0] - 1) * dil[0] + 1, (kernel[1] - 1) * dil[1] + 1];
    let p = pads(imp, n, [s[2], s[3]], span, stride)?;
    let ceil = a.int("ceil_mode", 0) != 0;
    let max = n.op_type() == "MaxPool";
    let cip = a.int("count_include_pad", 0) != 0;
    let kind = if max {
        PoolKind::Max
    } else {
        PoolKind::Avg {
            count_include_pad: cip,
        }
    };
    let general = Pool2d::new(kind, kernel, stride, p, dil, ceil)
        .map_err(|e| imp.invalid(n, e.to_string()))?;
    let floor = Pool2d::new(kind, kernel, stride, p, dil, false)?;
    let same_as_floor = general.output_shape(&s).ok() == floor.output_shape(&s).ok();
    let symmetric = p[0] == p[2] && p[1] == p[3] && p[0] < kernel[0] && p[1] < kernel[1];
    if symmetric && dil == [1, 1] && (!ceil || same_as_floor) {
        let mut cfg = PoolConfig::new(1);
        cfg.kernel = kernel;
        cfg.stride = stride;
        cfg.padding = [p[0], p[1]];
        cfg.count_include_pad = cip;
        let layer: Box<dyn Layer> = if max {
            Box::new(MaxPool2d::new(cfg)?)
        } else {
            Box::new(AvgPool2d::new(cfg)?)
        };
        return imp.push(n, "", layer, x, &s);
    }
    imp.push(n, "", Box::new(general), x, &s)
}

pub(crate) fn global_pool(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = input4(imp, n)?;
    imp.push(n, "", Box::new(GlobalAvgPool::new()), x, &s)
}

pub(crate) fn activation(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let a = Attrs::of(n);
    let layer: Box<dyn Layer> = match n.op_type() {
        "Relu" => Box::new(Activation::relu()),
        "Sigmoid" => Box::new(Activation::sigmoid()),
        "Tanh" => Box::new(Activation::tanh()),
        "HardSwish" => Box::new(Activation::hard_swish()),
        "LeakyRelu" => Box::new(Activation::new(ActivationKind::LeakyRelu {
            alpha: a.float("alpha", 0.01),
        })?),
        "HardSigmoid" => Box::new(Activation::new(ActivationKind::HardSigmoid {
            alpha: a.float("alpha", 0.2),
            beta: a.float("beta", 0.5),
        })?),
        _ => {
            let (lo, hi) = if imp.opset < 11 {
                (
                    a.float("min", f32::NEG_INFINITY),
                    a.float("max", f32::INFINITY),
                )
            } else {
                let bound = |i: usize, d: f32| -> Result<f32> {
                    match imp.konst_opt(n, i)? {
                        None => Ok(d),
                        Some(c) => c
                            .scalar()
                            .ok_or_else(|| imp.invalid(n, format!("bound {i} must be a scalar"))),
                    }
                };
                (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
            };
            // on u8 codes the bounds are codes too
            let (lo, hi) = match imp.domain(n, 0) {
                Some(d) => {
                    let real = |v: f32| (v - d.zero_point as f32) * d.scale;
                    (
                        real(lo.max(0.0)),
                        if hi >= 255.0 { f32::INFINITY } else { real(hi) },
                    )
                }
                None => (lo, hi),
            };
            match (lo, hi) {
                (0.0, 6.0) => Box::new(Activation::relu6()),
                (0.0, f32::INFINITY) => Box::new(Activation::relu()),
                _ => Box::new(Clamp::new(lo, hi).map_err(|e| imp.invalid(n, e.to_string()))?),
            }
        }
    };
    imp.push(n, "", layer, x, &s)
}

pub(crate) fn softmax(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let log = n.op_type() == "LogSoftmax";
    let flatten = imp.opset < 13;
    let axis = Attrs::of(n).int("axis", if flatten { 1 } else { -1 });
    let r = resolve(axis, s.len())
        .ok_or_else(|| imp.invalid(n, format!("axis {axis} for rank {}", s.len())))?;
    // core softmax works over axis 1 of any rank (the old form agrees when nothing follows)
    let core = r == 1 && (!flatten || s.len() == 2);
    let layer: Box<dyn Layer> = if core {
        Box::new(if log { Softmax::log() } else { Softmax::new() })
    } else {
        Box::new(SoftmaxAxis::new(axis, log, flatten && r + 1 != s.len()))
    };
    imp.push(n, "", layer, x, &s)
}

pub(crate) fn prelu(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = imp.act(n, 0)?;
    let c = imp.konst(n, 1)?;
    let mut slope = c.tensor();
    // before opset 7 a slope per channel is given as a vector and meant for axis 1
    if imp.opset < 7 && c.dims.len() == 1 && s.len() > 2 && s.get(1) == Some(&c.len()) {
        let mut d = vec![c.len()];
        d.resize(s.len() - 1, 1);
        slope = slope
            .into_shape_with_order(ndarray::IxDyn(&d))
            .expect("same length");
    }
    imp.push(n, "", Box::new(PRelu::new(slope)), x, &s)
}
