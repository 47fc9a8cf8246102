//! Writing int8 layers as integer ONNX ops that ONNX Runtime runs in int8: `QLinearConv`
//! (u8 activations, per-channel i8 weights, i32 bias) where the layer writes u8 codes; a
//! linear layer writing f32 as `MatMulInteger` and a per-channel rescale, a convolution
//! writing f32 as a float `Conv` of its dequantized weight (see [`export`]).
//! slimnet-onnx does not know the int8 layer types (they live in slimnet-quant); whoever
//! registers their exporter hands their parts over as a [`QuantizedLayer`].

use slimnet_core::layers::Conv2dConfig;
use slimnet_core::value::ValueKind;
use slimnet_kernels::int8::QuantParams;

use super::attr;
use super::LayerExport;
use crate::error::Result;

/// The geometry of an int8 layer.
#[derive(Debug, Clone)]
pub enum QuantizedShape {
    /// A convolution (groups 1 or depthwise).
    Conv(Conv2dConfig),
    /// A fully-connected layer `[N, inputs] -> [N, outputs]`.
    Linear {
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
    },
}

/// The parts of an int8 layer: `y = requant(sum (x - x_zp) * w + bias)` per output channel.
#[derive(Debug, Clone)]
pub struct QuantizedLayer {
    /// Dense row-major i8 weight, one row of `inputs * kh * kw` per output channel.
    pub weight: Vec<i8>,
    /// One scale per output channel (symmetric: zero point 0).
    pub scales: Vec<f32>,
    /// i32 bias in units of input scale times the channel's weight scale.
    pub bias: Vec<i32>,
    /// The quantization of the input codes.
    pub input: QuantParams,
    /// The quantization of the output codes, or `None` for a dequantized f32 output.
    pub output: Option<QuantParams>,
    /// Whether a ReLU is fused into the output.
    pub relu: bool,
    /// The geometry.
    pub shape: QuantizedShape,
}

/// Writes `q` for the layer of `cx` (its input is read as codes of `q.input`).
///
/// # Errors
/// Parts whose sizes do not agree.
pub fn export(cx: &mut LayerExport<'_>, q: &QuantizedLayer) -> Result<()> {
    let rows = q.scales.len();
    if rows == 0 || q.bias.len() != rows || !q.weight.len().is_multiple_of(rows) {
        return Err(cx.error(format!(
            "{} weights, {} scales and {} biases do not agree",
            q.weight.len(),
            rows,
            q.bias.len()
        )));
    }
    let cols = q.weight.len() / rows;
    let (conv_attrs, wshape, linear) = match &q.shape {
        QuantizedShape::Conv(c) => {
            let p = c.padding;
            let attrs = vec![
                attr::sizes("kernel_shape", &c.kernel),
                attr::sizes("strides", &c.stride),
                attr::sizes("pads", &[p[0], p[1], p[0], p[1]]),
                attr::sizes("dilations", &c.dilation),
                attr::int("group", c.groups as i64),
            ];
            (attrs, c.weight_shape().to_vec(), None)
        }
        QuantizedShape::Linear { inputs, outputs } => {
            (vec![], vec![*outputs, *inputs, 1, 1], Some(*inputs))
        }
    };
    if wshape.iter().product::<usize>() != rows * cols || wshape[0] != rows {
        return Err(cx.error(format!(
            "weight {wshape:?} does not hold {rows} x {cols} values"
        )));
    }
    if q.output.is_none() && linear.is_none() {
        return conv_f32(cx, q, &wshape, conv_attrs);
    }
    let x = cx.input_codes(q.input);
    match q.output {
        Some(out) => {
            let (xs, xz) = cx.qparams("input", q.input);
            // codes out: QLinearConv (a 1x1 convolution for a linear layer)
            let x4 = match linear {
                Some(k) => {
                    let s = cx.init_i64("shape_in", &[4], &[0, k as i64, 1, 1]);
                    cx.node("Reshape", &[&x, &s], vec![])
                }
                None => x,
            };
            let w = cx.init_i8("weight", &wshape, &q.weight);
            let ws = cx.init_f32("weight_scale", &[rows], &q.scales);
            let wz = cx.init_i8("weight_zero_point", &[rows], &vec![0; rows]);
            let (ys, yz) = cx.qparams("output", out);
            let b = cx.init_i32("bias", &[rows], &q.bias);
            let mut y = cx.node(
                "QLinearConv",
                &[&x4, &xs, &xz, &w, &ws, &wz, &ys, &yz, &b],
                conv_attrs,
            );
            if q.relu && out.zero_point > 0 {
                let z = cx.init_u8("relu_min", &[], &[out.zero_point]);
                y = cx.node("Clip", &[&y, &z], vec![]);
            }
            if linear.is_some() {
                let s = cx.init_i64("shape_out", &[2], &[0, -1]);
                y = cx.node("Reshape", &[&y, &s], vec![]);
            }
            cx.set_output(y, ValueKind::U8(out));
        }
        None => {
            // f32 out (a linear layer): the exact integer accumulator, rescaled per output
            let xz = cx.init_u8("input_zero_point", &[], &[q.input.zero_point]);
            let acc = match linear {
                Some(k) => {
                    let mut wt = vec![0i8; rows * cols];
                    for r in 0..rows {
                        for c in 0..cols {
                            wt[c * rows + r] = q.weight[r * cols + c];
                        }
                    }
                    let w = cx.init_i8("weight", &[k, rows], &wt);
                    cx.node("MatMulInteger", &[&x, &w, &xz], vec![])
                }
                None => unreachable!("convolutions writing f32 returned above"),
            };
            let f = cx.node("Cast", &[&acc], vec![attr::int("to", 1)]);
            let per = [rows];
            let sc: Vec<f32> = q
                .scales
                .iter()
                .map(|&s| (q.input.scale as f64 * s as f64) as f32)
                .collect();
            let fb: Vec<f32> = q
                .bias
                .iter()
                .zip(&q.scales)
                .map(|(&b, &s)| (b as f64 * q.input.scale as f64 * s as f64) as f32)
                .collect();
            let sc = cx.init_f32("scale", &per, &sc);
            let fb = cx.init_f32("bias", &per, &fb);
            let m = cx.node("Mul", &[&f, &sc], vec![]);
            let mut y = cx.node("Add", &[&m, &fb], vec![]);
            if q.relu {
                y = cx.node("Relu", &[&y], vec![]);
            }
            cx.set_output(y, ValueKind::F32);
        }
    }
    Ok(())
}

/// A convolution writing f32: `x` dequantized, a float `Conv` with the dequantized weight
/// (`q * scale`, the values slimnet computes with). ONNX Runtime's `ConvInteger` is several
/// times slower than its float convolution, and it does not fold a `DequantizeLinear` of a
/// weight, so f32 weights are what runs fastest; these layers (the ones before a merge or a
/// float layer) store 4 bytes per weight in the file.
fn conv_f32(
    cx: &mut LayerExport<'_>,
    q: &QuantizedLayer,
    wshape: &[usize],
    attrs: Vec<crate::proto::AttributeProto>,
) -> Result<()> {
    let rows = q.scales.len();
    let cols = q.weight.len() / rows;
    let x = cx.input_f32();
    let wf: Vec<f32> = q
        .weight
        .iter()
        .enumerate()
        .map(|(i, &v)| v as f32 * q.scales[i / cols])
        .collect();
    let w = cx.init_f32("weight", wshape, &wf);
    let fb: Vec<f32> = q
        .bias
        .iter()
        .zip(&q.scales)
        .map(|(&b, &s)| (b as f64 * q.input.scale as f64 * s as f64) as f32)
        .collect();
    let b = cx.init_f32("bias", &[rows], &fb);
    let mut y = cx.node("Conv", &[&x, &w, &b], attrs);
    if q.relu {
        y = cx.node("Relu", &[&y], vec![]);
    }
    cx.set_output(y, ValueKind::F32);
    Ok(())
}
