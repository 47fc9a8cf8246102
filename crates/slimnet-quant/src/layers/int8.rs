//! int8 deploy layers: [`QConv2d`] (groups 1 or depthwise) and [`QLinear`], running on the
//! u8 x i8 kernels of slimnet-kernels.
//!
//! Inputs are u8 activation codes (quantized with the layer's input parameters); weights are
//! symmetric per-channel i8; biases are i32 in units of `input_scale * weight_scale[channel]`
//! (saturated, never wrapped). The output is either requantized u8 codes (optionally with a
//! fused ReLU: clamped at the output zero point) or dequantized f32.

use serde::{Deserialize, Serialize};
use serde_json::json;
use slimnet_core::io::{parse_config, TensorSource};
use slimnet_core::layers::{Conv2d, Conv2dConfig, Linear, LinearConfig};
use slimnet_core::tensor::zeros;
use slimnet_core::{Cost, Error, Layer, Result, StoredTensor, Tensor};
use slimnet_kernels::dense::ConvGeometry;
use slimnet_kernels::int8::{
    qconv2d_forward, qdepthwise_forward, qlinear_forward, quantize_weights_per_channel, QMatrix,
    QOutput, QuantParams,
};

use super::store::*;

/// What an int8 layer writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QOut {
    /// Requantized u8 codes with these parameters; `relu` clamps at real zero.
    Codes {
        /// Output quantization.
        params: QuantParams,
        /// Fused ReLU.
        relu: bool,
    },
    /// Dequantized f32 (`acc * s_in * s_w + bias`).
    F32,
}

#[derive(Debug, Serialize, Deserialize)]
struct OutCfg {
    output: String,
    relu: bool,
}

/// Quantized weights, bias and activation parameters shared by the int8 layers.
#[derive(Debug, Clone)]
struct QCore {
    weight: QMatrix,
    bias: Vec<i32>,
    fbias: Vec<f32>,
    input: QuantParams,
    output: QOut,
}

impl QCore {
    fn quantize(w: &Tensor, b: Option<&Tensor>, input: QuantParams, output: QOut) -> Result<Self> {
        let rows = w.shape()[0];
        let cols = w.len() / rows.max(1);
        let data: Vec<f32> = w.iter().copied().collect();
        let (q, s) = quantize_weights_per_channel(&data, rows)?;
        let bias = (0..rows)
            .map(|c| {
                let v = b.map_or(0.0, |b| b[c]) as f64 / (input.scale as f64 * s[c] as f64);
                v.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect();
        Self::from_parts(rows, cols, q, s, bias, input, output)
    }

    fn from_parts(
        rows: usize,
        cols: usize,
        q: Vec<i8>,
        s: Vec<f32>,
        bias: Vec<i32>,
        input: QuantParams,
        output: QOut,
    ) -> Result<Self> {
        if bias.len() != rows {
            return Err(Error::config(format!(
                "{} biases for {rows} channels",
                bias.len()
            )));
        }
        let weight = QMatrix::new(rows, cols, q, s)?;
        let fbias = bias
            .iter()
            .zip(weight.scales())
            .map(|(&b, &sw)| (b as f64 * input.scale as f64 * sw as f64) as f32)
            .collect();
        Ok(Self {
            weight,
            bias,
            fbias,
            input,
            output,
        })
    }

    /// Runs `kernel` with the right output buffer and wraps the result in a tensor.
    fn run(
        &self,
        shape: &[usize],
        kernel: impl FnOnce(QOutput<'_>) -> slimnet_kernels::Result<()>,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        match self.output {
            QOut::Codes { params, relu } => {
                let mut out = vec![0u8; n];
                kernel(QOutput::U8 {
                    out: &mut out,
                    params,
                    bias: Some(&self.bias),
                    relu,
                })?;
                Ok(tensor_of_codes(shape, &out))
            }
            QOut::F32 => {
                let mut out = vec![0f32; n];
                kernel(QOutput::F32 {
                    out: &mut out,
                    bias: Some(&self.fbias),
                })?;
                Ok(Tensor::from_shape_vec(shape.to_vec(), out).expect("output fills shape"))
            }
        }
    }

    fn out_cfg(&self) -> OutCfg {
        match self.output {
            QOut::Codes { relu, .. } => OutCfg {
                output: "u8".into(),
                relu,
            },
            QOut::F32 => OutCfg {
                output: "f32".into(),
                relu: false,
            },
        }
    }

    fn stored(&self, wshape: &[usize], f: &mut dyn FnMut(&str, StoredTensor)) {
        f("weight", stored_i8(wshape.to_vec(), self.weight.values()));
        f("weight_scale", stored_f32(self.weight.scales()));
        f("bias", stored_i32(&self.bias));
        store_params("input", self.input, f);
        if let QOut::Codes { params, .. } = self.output {
            store_params("output", params, f);
        }
    }

    fn load(cfg: &serde_json::Value, wshape: &[usize], t: &mut TensorSource<'_>) -> Result<Self> {
        let oc: OutCfg = parse_config("int8 output", cfg)?;
        let (shape, q) = load_i8("weight", t)?;
        if shape != wshape {
            return Err(bad(format!(
                "int8 weight of shape {shape:?}, expected {wshape:?}"
            )));
        }
        let s: Vec<f32> = t.f32("weight_scale")?.iter().copied().collect();
        let bias = load_i32("bias", t)?;
        let input = load_params("input", t)?;
        let output = match oc.output.as_str() {
            "u8" => QOut::Codes {
                params: load_params("output", t)?,
                relu: oc.relu,
            },
            "f32" => QOut::F32,
            o => return Err(bad(format!("int8 output `{o}` is neither u8 nor f32"))),
        };
        let rows = wshape[0];
        let cols = wshape[1..].iter().product();
        Self::from_parts(rows, cols, q, s, bias, input, output)
    }

    fn bytes(&self) -> usize {
        let r = self.weight.rows();
        self.weight.values().len() + 8 * r + 10
    }

    fn params(&self) -> usize {
        self.weight.values().len() + self.bias.len()
    }
}

/// int8 2-D convolution (groups 1, or depthwise with groups = channels).
///
/// ```
/// use slimnet_core::layers::Conv2dConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_kernels::int8::QuantParams;
/// use slimnet_quant::layers::{QConv2d, QOut, Quantize};
/// let conv = Conv2dConfig::new(2, 4, 3).with_padding(1).init(&mut tensor::rng(0))?;
/// let xq = QuantParams::from_range(0.0, 1.0);
/// let q = QConv2d::from_conv(&conv, xq, QOut::F32)?;
/// let x = tensor::uniform(&[1, 2, 5, 5], 0.0, 1.0, &mut tensor::rng(1));
/// let y = q.forward(&Quantize::new(xq).forward(&x)?)?;
/// let want = conv.forward(&x)?;
/// assert!(tensor::max_abs_diff(&y, &want) < 0.05);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QConv2d {
    cfg: Conv2dConfig,
    core: QCore,
}

impl QConv2d {
    /// Quantizes a convolution (weights per output channel, bias to i32) for inputs quantized
    /// with `input`.
    ///
    /// # Errors
    /// Groups other than 1 or the channel count, non-finite weights, or scales whose ratio the
    /// fixed-point requantization cannot represent.
    pub fn from_conv(conv: &Conv2d, input: QuantParams, output: QOut) -> Result<Self> {
        let cfg = conv.config().clone();
        check_groups(&cfg)?;
        let core = QCore::quantize(
            &conv.weight.value,
            conv.bias.as_ref().map(|b| &b.value),
            input,
            output,
        )?;
        Ok(Self { cfg, core })
    }

    /// The configuration of the float convolution.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// What the layer writes.
    pub fn output(&self) -> QOut {
        self.core.output
    }

    /// Input quantization.
    pub fn input_params(&self) -> QuantParams {
        self.core.input
    }

    fn geometry(&self, input: &[usize]) -> Result<ConvGeometry> {
        self.cfg.geometry(input)
    }
}

fn check_groups(cfg: &Conv2dConfig) -> Result<()> {
    let dw = cfg.groups == cfg.in_channels && cfg.groups == cfg.out_channels;
    if cfg.groups != 1 && !dw {
        return Err(Error::config(format!(
            "int8 convolution needs groups 1 or depthwise, got {} groups",
            cfg.groups
        )));
    }
    Ok(())
}

impl Layer for QConv2d {
    fn kind(&self) -> &'static str {
        "QConv2d"
    }

    /// `[N, C, H, W]` codes -> `[N, O, OH, OW]` codes or f32.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.geometry(x.shape())?;
        let xs = codes_of(x);
        let shape = [g.batch, g.out_channels, g.out_h(), g.out_w()];
        let (w, xq) = (&self.core.weight, self.core.input);
        self.core.run(&shape, |out| {
            if g.groups == 1 {
                qconv2d_forward(&g, &xs, xq, w, out)
            } else {
                qdepthwise_forward(&g, &xs, xq, w, out)
            }
        })
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(input)?;
        Ok(vec![g.batch, g.out_channels, g.out_h(), g.out_w()])
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let g = self.geometry(input)?;
        Ok(Cost {
            output: vec![g.batch, g.out_channels, g.out_h(), g.out_w()],
            params: self.core.params(),
            macs: g.macs(),
            bytes: self.core.bytes(),
        })
    }

    fn config_json(&self) -> serde_json::Value {
        let o = self.core.out_cfg();
        json!({"conv": self.cfg, "output": o.output, "relu": o.relu})
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        self.core.stored(&self.cfg.weight_shape(), f);
    }
}

pub(crate) fn load_qconv(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    let conv: Conv2dConfig = parse_config("QConv2d", cfg.get("conv").unwrap_or(&json!(null)))?;
    check_groups(&conv)?;
    // the stored weight must exist with this shape before anything of that size is allocated
    let core = QCore::load(cfg, &conv.weight_shape(), t)?;
    // validates the configuration the same way a float convolution does
    let b = conv.bias.then(|| zeros(&[conv.out_channels]));
    Conv2d::from_parts(conv.clone(), zeros(&conv.weight_shape()), b)?;
    Ok(Box::new(QConv2d { cfg: conv, core }))
}

/// int8 fully-connected layer: `[N, in]` codes -> `[N, out]` codes or f32.
#[derive(Debug, Clone)]
pub struct QLinear {
    cfg: LinearConfig,
    core: QCore,
}

impl QLinear {
    /// Quantizes a linear layer for inputs quantized with `input`.
    ///
    /// # Errors
    /// Non-finite weights, or scales the fixed-point requantization cannot represent.
    pub fn from_linear(l: &Linear, input: QuantParams, output: QOut) -> Result<Self> {
        let core = QCore::quantize(
            &l.weight.value,
            l.bias.as_ref().map(|b| &b.value),
            input,
            output,
        )?;
        Ok(Self {
            cfg: l.config().clone(),
            core,
        })
    }

    /// What the layer writes.
    pub fn output(&self) -> QOut {
        self.core.output
    }

    /// Input quantization.
    pub fn input_params(&self) -> QuantParams {
        self.core.input
    }

    fn check(&self, input: &[usize]) -> Result<()> {
        if input.len() != 2 || input[1] != self.cfg.in_features {
            return Err(Error::shape(
                format!("[N, {}]", self.cfg.in_features),
                input,
            ));
        }
        Ok(())
    }
}

impl Layer for QLinear {
    fn kind(&self) -> &'static str {
        "QLinear"
    }

    /// `[N, in]` codes -> `[N, out]` codes or f32.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x.shape())?;
        let n = x.shape()[0];
        let xs = codes_of(x);
        let (w, xq) = (&self.core.weight, self.core.input);
        self.core.run(&[n, self.cfg.out_features], |out| {
            qlinear_forward(w, n, &xs, xq, out)
        })
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check(input)?;
        Ok(vec![input[0], self.cfg.out_features])
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let output = self.output_shape(input)?;
        Ok(Cost {
            output,
            params: self.core.params(),
            macs: input[0] * self.cfg.in_features * self.cfg.out_features,
            bytes: self.core.bytes(),
        })
    }

    fn config_json(&self) -> serde_json::Value {
        let o = self.core.out_cfg();
        json!({"linear": self.cfg, "output": o.output, "relu": o.relu})
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        self.core
            .stored(&[self.cfg.out_features, self.cfg.in_features], f);
    }
}

pub(crate) fn load_qlinear(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    let lin: LinearConfig = parse_config("QLinear", cfg.get("linear").unwrap_or(&json!(null)))?;
    if lin.in_features == 0 || lin.out_features == 0 {
        return Err(bad("QLinear with zero features"));
    }
    let core = QCore::load(cfg, &[lin.out_features, lin.in_features], t)?;
    Ok(Box::new(QLinear { cfg: lin, core }))
}
