//! Exporters of the core layers and of this crate's layers.

use slimnet_core::layers::{
    Activation, ActivationKind, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool,
    Linear, MaxPool2d, PoolConfig, Softmax,
};
use slimnet_core::value::ValueKind;
use slimnet_core::Tensor;

use super::attr;
use super::{ExportRegistry, LayerExport};
use crate::error::Result;
use crate::layers::{
    Clamp, ConstOp, MatMul, PRelu, Pad, PadMode, Pool2d, PoolKind, Reduce, Reshape, Slice,
    SoftmaxAxis, Transpose, Unary,
};

fn data(t: &Tensor) -> Vec<f32> {
    t.iter().copied().collect()
}

/// An f32 tensor initializer named `<path>.<suffix>`.
fn tensor(cx: &mut LayerExport<'_>, suffix: &str, t: &Tensor) -> String {
    cx.init_f32(suffix, t.shape(), &data(t))
}

/// A one-input op on f32 that keeps the input's kind rules simple.
fn unary(
    cx: &mut LayerExport<'_>,
    op: &str,
    attrs: Vec<crate::proto::AttributeProto>,
) -> Result<()> {
    let x = cx.input_f32();
    let y = cx.node(op, &[&x], attrs);
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

/// A one-input op that works on codes as on reals (the output keeps the input's kind).
fn passthrough(
    cx: &mut LayerExport<'_>,
    op: &str,
    attrs: Vec<crate::proto::AttributeProto>,
) -> Result<()> {
    let x = cx.input();
    let y = cx.node(op, &[&x], attrs);
    let k = cx.input_kind();
    cx.set_output(y, k);
    Ok(())
}

fn pool_attrs(c: &PoolConfig) -> Vec<crate::proto::AttributeProto> {
    let p = c.padding;
    vec![
        attr::sizes("kernel_shape", &c.kernel),
        attr::sizes("strides", &c.stride),
        attr::sizes("pads", &[p[0], p[1], p[0], p[1]]),
    ]
}

pub(super) fn activation(l: &Activation, cx: &mut LayerExport<'_>) -> Result<()> {
    match l.activation_kind() {
        ActivationKind::Relu => match cx.input_kind() {
            // ReLU on codes: max(code, zero point), same quantization
            ValueKind::U8(p) => {
                let x = cx.input();
                let z = cx.init_u8("zero_point", &[], &[p.zero_point]);
                let y = cx.node("Clip", &[&x, &z], vec![]);
                cx.set_output(y, ValueKind::U8(p));
                Ok(())
            }
            _ => unary(cx, "Relu", vec![]),
        },
        ActivationKind::Relu6 => {
            let x = cx.input_f32();
            let lo = cx.init_f32("min", &[], &[0.0]);
            let hi = cx.init_f32("max", &[], &[6.0]);
            let y = cx.node("Clip", &[&x, &lo, &hi], vec![]);
            cx.set_output(y, ValueKind::F32);
            Ok(())
        }
        ActivationKind::LeakyRelu { alpha } => {
            unary(cx, "LeakyRelu", vec![attr::float("alpha", alpha)])
        }
        ActivationKind::Sigmoid => unary(cx, "Sigmoid", vec![]),
        ActivationKind::Tanh => unary(cx, "Tanh", vec![]),
        ActivationKind::HardSigmoid { alpha, beta } => unary(
            cx,
            "HardSigmoid",
            vec![attr::float("alpha", alpha), attr::float("beta", beta)],
        ),
        ActivationKind::HardSwish => unary(cx, "HardSwish", vec![]),
        k => Err(cx.error(format!("activation {k:?} has no ONNX form here"))),
    }
}

fn conv(l: &Conv2d, cx: &mut LayerExport<'_>) -> Result<()> {
    let c = l.config();
    let x = cx.input_f32();
    let w = tensor(cx, "weight", l.weight.value());
    let mut ins = vec![x, w];
    if let Some(b) = &l.bias {
        ins.push(tensor(cx, "bias", b.value()));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let p = c.padding;
    let y = cx.node(
        "Conv",
        &refs,
        vec![
            attr::sizes("kernel_shape", &c.kernel),
            attr::sizes("strides", &c.stride),
            attr::sizes("pads", &[p[0], p[1], p[0], p[1]]),
            attr::sizes("dilations", &c.dilation),
            attr::int("group", c.groups as i64),
        ],
    );
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn linear(l: &Linear, cx: &mut LayerExport<'_>) -> Result<()> {
    let x = cx.input_f32();
    let w = tensor(cx, "weight", l.weight.value());
    let mut ins = vec![x, w];
    if let Some(b) = &l.bias {
        ins.push(tensor(cx, "bias", b.value()));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let y = cx.node("Gemm", &refs, vec![attr::int("transB", 1)]);
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn batchnorm(l: &BatchNorm2d, cx: &mut LayerExport<'_>) -> Result<()> {
    let x = cx.input_f32();
    let s = tensor(cx, "weight", l.weight.value());
    let b = tensor(cx, "bias", l.bias.value());
    let m = tensor(cx, "running_mean", &l.running_mean);
    let v = tensor(cx, "running_var", &l.running_var);
    let y = cx.node(
        "BatchNormalization",
        &[&x, &s, &b, &m, &v],
        vec![attr::float("epsilon", l.config().eps)],
    );
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn pad(l: &Pad, cx: &mut LayerExport<'_>) -> Result<()> {
    let (pads, mode) = l.parts();
    let x = cx.input_f32();
    let mut v: Vec<i64> = pads.iter().map(|p| p.0).collect();
    v.extend(pads.iter().map(|p| p.1));
    let p = cx.init_i64("pads", &[v.len()], &v);
    let fill = match mode {
        PadMode::Constant(f) => f,
        _ => 0.0,
    };
    let f = cx.init_f32("value", &[], &[fill]);
    let y = cx.node(
        "Pad",
        &[&x, &p, &f],
        vec![attr::string("mode", mode.onnx_name())],
    );
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn clamp(l: &Clamp, cx: &mut LayerExport<'_>) -> Result<()> {
    let (lo, hi) = l.bounds();
    let x = cx.input_f32();
    let lo = if lo.is_finite() {
        cx.init_f32("min", &[], &[lo])
    } else {
        String::new()
    };
    let hi = if hi.is_finite() {
        cx.init_f32("max", &[], &[hi])
    } else {
        String::new()
    };
    let y = cx.node("Clip", &[&x, &lo, &hi], vec![]);
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn const_op(l: &ConstOp, cx: &mut LayerExport<'_>) -> Result<()> {
    let (op, c, first) = l.parts();
    let x = cx.input_f32();
    let c = tensor(cx, "constant", c);
    let ins = if first {
        [c.as_str(), x.as_str()]
    } else {
        [x.as_str(), c.as_str()]
    };
    let y = cx.node(op.onnx_name(), &ins, vec![]);
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn reshape(l: &Reshape, cx: &mut LayerExport<'_>) -> Result<()> {
    let (spec, allowzero) = l.spec();
    let x = cx.input_f32();
    let s = cx.init_i64("shape", &[spec.len()], spec);
    let y = cx.node(
        "Reshape",
        &[&x, &s],
        vec![attr::int("allowzero", allowzero as i64)],
    );
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn pool2d(l: &Pool2d, cx: &mut LayerExport<'_>) -> Result<()> {
    let (kind, k, s, p, d, ceil) = l.parts();
    let mut attrs = vec![
        attr::sizes("kernel_shape", &k),
        attr::sizes("strides", &s),
        attr::sizes("pads", &p),
        attr::sizes("dilations", &d),
        attr::int("ceil_mode", ceil as i64),
    ];
    match kind {
        PoolKind::Max => unary(cx, "MaxPool", attrs),
        PoolKind::Avg { count_include_pad } => {
            attrs.push(attr::int("count_include_pad", count_include_pad as i64));
            unary(cx, "AveragePool", attrs)
        }
    }
}

fn softmax_axis(l: &SoftmaxAxis, cx: &mut LayerExport<'_>) -> Result<()> {
    let (axis, log, flatten) = l.parts();
    let op = if log { "LogSoftmax" } else { "Softmax" };
    if !flatten {
        return unary(cx, op, vec![attr::int("axis", axis)]);
    }
    // the pre-opset-13 form: flatten from `axis`, softmax the rows, restore the shape
    let x = cx.input_f32();
    let shape = cx.node("Shape", &[&x], vec![]);
    let f = cx.node("Flatten", &[&x], vec![attr::int("axis", axis)]);
    let s = cx.node(op, &[&f], vec![attr::int("axis", 1)]);
    let y = cx.node("Reshape", &[&s, &shape], vec![]);
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn matmul(l: &MatMul, cx: &mut LayerExport<'_>) -> Result<()> {
    let x = cx.input_f32();
    let b = tensor(cx, "weight", l.weight());
    let y = cx.node("MatMul", &[&x, &b], vec![]);
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

pub(super) fn register(r: &mut ExportRegistry) {
    r.register::<Conv2d>(conv);
    r.register::<Linear>(linear);
    r.register::<BatchNorm2d>(batchnorm);
    r.register::<Activation>(activation);
    r.register::<MaxPool2d>(|l, cx| passthrough(cx, "MaxPool", pool_attrs(l.config())));
    r.register::<AvgPool2d>(|l, cx| {
        let mut a = pool_attrs(l.config());
        a.push(attr::int(
            "count_include_pad",
            l.config().count_include_pad as i64,
        ));
        unary(cx, "AveragePool", a)
    });
    r.register::<GlobalAvgPool>(|_, cx| unary(cx, "GlobalAveragePool", vec![]));
    r.register::<Flatten>(|_, cx| passthrough(cx, "Flatten", vec![attr::int("axis", 1)]));
    r.register::<Dropout>(|_, cx| {
        let (x, k) = (cx.input(), cx.input_kind());
        cx.set_output(x, k);
        Ok(())
    });
    r.register::<Softmax>(|l, cx| {
        let op = if l.is_log() { "LogSoftmax" } else { "Softmax" };
        unary(cx, op, vec![attr::int("axis", 1)])
    });
    r.register::<Pad>(pad);
    r.register::<Clamp>(clamp);
    r.register::<ConstOp>(const_op);
    r.register::<Reshape>(reshape);
    r.register::<Transpose>(|l, cx| unary(cx, "Transpose", vec![attr::sizes("perm", l.perm())]));
    r.register::<Pool2d>(pool2d);
    r.register::<SoftmaxAxis>(softmax_axis);
    r.register::<MatMul>(matmul);
    r.register::<Unary>(|l, cx| {
        let attrs = l.op().attributes().into_iter();
        unary(
            cx,
            l.op().onnx_name(),
            attrs.map(|(k, v)| attr::float(k, v)).collect(),
        )
    });
    r.register::<Reduce>(reduce);
    r.register::<Slice>(slice);
    r.register::<PRelu>(|l, cx| {
        let x = cx.input_f32();
        let s = tensor(cx, "slope", l.slope());
        let y = cx.node("PRelu", &[&x, &s], vec![]);
        cx.set_output(y, ValueKind::F32);
        Ok(())
    });
}

fn reduce(l: &Reduce, cx: &mut LayerExport<'_>) -> Result<()> {
    let (op, axes, keepdims) = l.parts();
    let x = cx.input_f32();
    let keep = attr::int("keepdims", keepdims as i64);
    // written for opset 19: ReduceSum takes its axes as an input since opset 13, ReduceMean
    // since 18
    let y = if axes.is_empty() {
        cx.node(op.onnx_name(), &[&x], vec![keep])
    } else {
        let a = cx.init_i64("axes", &[axes.len()], axes);
        cx.node(op.onnx_name(), &[&x, &a], vec![keep])
    };
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn slice(l: &Slice, cx: &mut LayerExport<'_>) -> Result<()> {
    let (starts, ends, axes, steps) = l.parts();
    let x = cx.input_f32();
    let k = [starts.len()];
    let s = cx.init_i64("starts", &k, starts);
    let e = cx.init_i64("ends", &k, ends);
    let a = cx.init_i64("axes", &k, axes);
    let st = cx.init_i64("steps", &k, steps);
    let y = cx.node("Slice", &[&x, &s, &e, &a, &st], vec![]);
    cx.set_output(y, ValueKind::F32);
    Ok(())
}
