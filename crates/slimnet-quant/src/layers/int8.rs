//! int8 deploy layers: [`QConv2d`] (groups 1 or depthwise) and [`QLinear`], running on the
//! u8 x i8 kernels of slimnet-kernels, with dense or sparse (CSR) i8 weights.
//!
//! Inputs are u8 activation codes quantized with the layer's input parameters; weights are
//! symmetric per-channel i8 (a pruned weight keeps only its non-zeros); biases are i32 in units
//! of `input_scale * weight_scale[channel]` (saturated, never wrapped). The output is u8 codes
//! requantized for the layers that read them, or dequantized f32; a fused ReLU clamps at real
//! zero either way.
//!
//! On a graph edge the layer reads codes ([`Value::U8`]) and hands its codes straight to the
//! next int8 layer. Called with f32 ([`Layer::forward`]) it quantizes its input itself and
//! returns real values, so it also stands alone.

use serde::{Deserialize, Serialize};
use serde_json::json;
use slimnet_core::io::{parse_config, TensorSource};
use slimnet_core::layers::{Conv2d, Conv2dConfig, Linear, LinearConfig};
use slimnet_core::value::{Codes, Value, ValueKind};
use slimnet_core::{Cost, Error, Layer, Param, Result, StoredTensor, Tensor};
use slimnet_kernels::int8::{
    qconv2d_forward, qdepthwise_forward, qlinear_forward, qsparse_conv2d_forward,
    qsparse_linear_forward, quantize_weights_per_channel_bits, QCsrMatrix, QMatrix, QOutput,
    QuantParams,
};
use slimnet_kernels::ConvGeometry;

use super::sparse_store::{load_csr, store_csr};
use super::store::*;

/// What an int8 layer writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QOut {
    /// Requantized u8 codes with these parameters (those its readers take).
    Codes(QuantParams),
    /// Dequantized f32 (`acc * s_in * s_w + bias`).
    F32,
}

/// Below this fraction of kept weights, a pruned layer runs on the sparse int8 kernel.
pub const SPARSE_DENSITY: f64 = 0.4;

#[derive(Debug, Serialize, Deserialize)]
struct OutCfg {
    output: String,
    relu: bool,
    #[serde(default)]
    sparse: bool,
}

/// The i8 weight: dense, or CSR holding only the kept weights of a pruned layer.
#[derive(Debug, Clone)]
enum QWeight {
    Dense(QMatrix),
    Sparse(QCsrMatrix),
}

impl QWeight {
    fn scales(&self) -> &[f32] {
        match self {
            QWeight::Dense(m) => m.scales(),
            QWeight::Sparse(m) => m.scales(),
        }
    }

    fn rows(&self) -> usize {
        match self {
            QWeight::Dense(m) => m.rows(),
            QWeight::Sparse(m) => m.rows(),
        }
    }

    /// Dense row-major i8 values and the scales.
    fn dense_i8(&self) -> (Vec<i8>, Vec<f32>) {
        match self {
            QWeight::Dense(m) => (m.values().to_vec(), m.scales().to_vec()),
            QWeight::Sparse(m) => {
                let (rows, cols) = (m.rows(), m.cols());
                let mut d = vec![0i8; rows * cols];
                let (ptr, idx, vals) = (m.row_ptr(), m.col_idx(), m.values());
                for r in 0..rows {
                    for k in ptr[r] as usize..ptr[r + 1] as usize {
                        d[r * cols + idx[k] as usize] = vals[k];
                    }
                }
                (d, m.scales().to_vec())
            }
        }
    }

    /// The stored levels: every weight of a dense weight, the kept ones of a sparse one.
    fn levels(&self) -> &[i8] {
        match self {
            QWeight::Dense(m) => m.values(),
            QWeight::Sparse(m) => m.values(),
        }
    }

    fn stored_values(&self) -> usize {
        match self {
            QWeight::Dense(m) => m.values().len(),
            QWeight::Sparse(m) => m.nnz(),
        }
    }
}

/// Quantized weights, bias and activation parameters shared by the int8 layers.
#[derive(Debug, Clone)]
struct QCore {
    weight: QWeight,
    bias: Vec<i32>,
    fbias: Vec<f32>,
    input: QuantParams,
    output: QOut,
    relu: bool,
}

impl QCore {
    /// Quantizes a float weight (its mask, when it has one, says which weights are kept: a
    /// layer keeping under [`SPARSE_DENSITY`] of them gets a sparse weight).
    fn quantize(w: &Param, b: Option<&Param>, input: QuantParams, bits: u32) -> Result<Self> {
        let v = w.value();
        let rows = v.shape()[0];
        let cols = v.len() / rows.max(1);
        let data: Vec<f32> = v.iter().copied().collect();
        let keep: Option<Vec<bool>> = w.mask().map(|m| m.iter().map(|&k| k != 0.0).collect());
        let kept = keep
            .as_ref()
            .map_or(data.len(), |k| k.iter().filter(|&&k| k).count());
        let sparse = keep.is_some() && (kept as f64) < SPARSE_DENSITY * data.len() as f64;
        let weight = if sparse {
            QWeight::Sparse(QCsrMatrix::from_dense_bits(
                rows,
                cols,
                &data,
                keep.as_deref(),
                bits,
            )?)
        } else {
            let (q, s) = quantize_weights_per_channel_bits(&data, rows, bits)?;
            QWeight::Dense(QMatrix::new(rows, cols, q, s)?)
        };
        let s = weight.scales();
        let bias = (0..rows)
            .map(|c| {
                let v = b.map_or(0.0, |b| b.value()[c]) as f64 / (input.scale as f64 * s[c] as f64);
                v.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect();
        Self::from_parts(weight, bias, input, QOut::F32, false)
    }

    fn from_parts(
        weight: QWeight,
        bias: Vec<i32>,
        input: QuantParams,
        output: QOut,
        relu: bool,
    ) -> Result<Self> {
        let rows = weight.rows();
        if bias.len() != rows {
            return Err(Error::config(format!(
                "{} biases for {rows} channels",
                bias.len()
            )));
        }
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
            relu,
        })
    }

    fn output_kind(&self) -> ValueKind {
        match self.output {
            QOut::Codes(p) => ValueKind::U8(p),
            QOut::F32 => ValueKind::F32,
        }
    }

    /// Runs `kernel` on the input codes with the right output buffer.
    fn run(
        &self,
        x: &Value,
        shape: &[usize],
        kernel: impl FnOnce(&QWeight, &[u8], QOutput<'_>) -> slimnet_kernels::Result<()>,
    ) -> Result<Value> {
        let x = x.to_kind(ValueKind::U8(self.input));
        let Value::U8(codes) = x.as_ref() else {
            unreachable!("converted to codes")
        };
        let xs = codes.as_contiguous();
        let n: usize = shape.iter().product();
        match self.output {
            QOut::Codes(params) => {
                let mut out = vec![0u8; n];
                kernel(
                    &self.weight,
                    &xs,
                    QOutput::U8 {
                        out: &mut out,
                        params,
                        bias: Some(&self.bias),
                        relu: self.relu,
                    },
                )?;
                Ok(Value::U8(Codes::from_vec(shape, out, params)))
            }
            QOut::F32 => {
                let mut out = slimnet_core::buffers::output(shape);
                let o = out.as_slice_mut().expect("a fresh tensor is contiguous");
                kernel(
                    &self.weight,
                    &xs,
                    QOutput::F32 {
                        out: o,
                        bias: Some(&self.fbias),
                    },
                )?;
                if self.relu {
                    o.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                Ok(Value::F32(out))
            }
        }
    }

    fn out_cfg(&self) -> OutCfg {
        OutCfg {
            output: match self.output {
                QOut::Codes(_) => "u8".into(),
                QOut::F32 => "f32".into(),
            },
            relu: self.relu,
            sparse: matches!(self.weight, QWeight::Sparse(_)),
        }
    }

    /// The dequantized weight `[rows, cols]` (i8 times its row's scale), the f32 bias and the
    /// fused ReLU: the layer's core form, without its activation quantization.
    fn dequantized(&self, wshape: &[usize]) -> Result<(Tensor, Tensor)> {
        let (q, s) = self.weight.dense_i8();
        let cols = q.len() / s.len().max(1);
        let w: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * s[i / cols.max(1)])
            .collect();
        let w = slimnet_core::tensor::from_vec(wshape, w)?;
        let b = slimnet_core::tensor::from_vec(&[self.fbias.len()], self.fbias.clone())?;
        Ok((w, b))
    }

    /// `layer`, followed by a ReLU when one is fused.
    fn with_fused_relu(&self, layer: Box<dyn Layer>) -> Result<Box<dyn Layer>> {
        if !self.relu {
            return Ok(layer);
        }
        Ok(Box::new(
            slimnet_core::Sequential::new()
                .push_boxed("layer", layer)
                .push("relu", slimnet_core::layers::Activation::relu())
                .build()?,
        ))
    }

    fn stored(&self, wshape: &[usize], f: &mut dyn FnMut(&str, StoredTensor)) {
        match &self.weight {
            QWeight::Dense(m) => f("weight", stored_i8(wshape.to_vec(), m.values())),
            QWeight::Sparse(m) => store_csr(m, f),
        }
        f("weight_scale", stored_f32(self.weight.scales()));
        f("bias", stored_i32(&self.bias));
    }

    fn load(cfg: &serde_json::Value, wshape: &[usize], t: &mut TensorSource<'_>) -> Result<Self> {
        let oc: OutCfg = parse_config("int8 output", cfg)?;
        // a sparse weight is made dense (one byte a value) when it is lowered or exported
        slimnet_core::limits::check_shape("int8 weight", wshape, 1)?;
        let rows = wshape[0];
        let cols = wshape[1..].iter().product();
        let s: Vec<f32> = t.f32("weight_scale")?.iter().copied().collect();
        let weight = if oc.sparse {
            QWeight::Sparse(load_csr(t, rows, cols, s)?)
        } else {
            let (shape, q) = load_i8("weight", t)?;
            if shape != wshape {
                return Err(bad(format!(
                    "int8 weight of shape {shape:?}, expected {wshape:?}"
                )));
            }
            QWeight::Dense(QMatrix::new(rows, cols, q, s)?)
        };
        let bias = load_i32("bias", t)?;
        let input = params_from(cfg, "input_quant")?;
        let output = match oc.output.as_str() {
            "u8" => QOut::Codes(params_from(cfg, "output_quant")?),
            "f32" => QOut::F32,
            o => return Err(bad(format!("int8 output `{o}` is neither u8 nor f32"))),
        };
        Self::from_parts(weight, bias, input, output, oc.relu)
    }

    fn bytes(&self, wshape: &[usize]) -> usize {
        let mut n = 0;
        self.stored(wshape, &mut |_, t| n += t.bytes.len());
        n
    }

    fn params(&self) -> usize {
        self.weight.stored_values() + self.bias.len()
    }

    fn config(&self, key: &str, inner: serde_json::Value) -> serde_json::Value {
        let o = self.out_cfg();
        let mut v = json!({key: inner, "output": o.output, "relu": o.relu, "sparse": o.sparse,
                           "input_quant": params_json(self.input)});
        if let QOut::Codes(p) = self.output {
            v["output_quant"] = params_json(p);
        }
        v
    }
}

/// What the int8 layers share: how their output is written. The rules that join int8 layers
/// ([`link_int8`](crate::ptq::link_int8)) work through it.
pub trait Int8Layer: Layer + Clone + 'static {
    /// The quantization its input is read with.
    fn input_params(&self) -> QuantParams;

    /// What the layer writes.
    fn output(&self) -> QOut;

    /// Whether a ReLU is fused into the output.
    fn relu(&self) -> bool;

    /// Whether the weight is sparse (a pruned layer on the sparse int8 kernel).
    fn is_sparse(&self) -> bool;

    /// The weight as dense row-major i8 values `[out, in * kh * kw]` (zeros where a sparse
    /// weight stores nothing) and one scale per output channel: what an exporter writes.
    fn weight_i8(&self) -> (Vec<i8>, Vec<f32>);

    /// The i32 bias, in units of input scale times weight scale.
    fn bias_i32(&self) -> &[i32];

    /// The same layer writing `output`.
    fn with_output(self, output: QOut) -> Self;

    /// The same layer with a ReLU fused into its output (or not).
    fn with_relu(self, relu: bool) -> Self;
}

/// Implements [`Int8Layer`] for a layer holding its [`QCore`] in `core`.
macro_rules! int8_layer {
    ($t:ty) => {
        impl Int8Layer for $t {
            fn input_params(&self) -> QuantParams {
                self.core.input
            }

            fn output(&self) -> QOut {
                self.core.output
            }

            fn relu(&self) -> bool {
                self.core.relu
            }

            fn is_sparse(&self) -> bool {
                matches!(self.core.weight, QWeight::Sparse(_))
            }

            fn weight_i8(&self) -> (Vec<i8>, Vec<f32>) {
                self.core.weight.dense_i8()
            }

            fn bias_i32(&self) -> &[i32] {
                &self.core.bias
            }

            fn with_output(mut self, output: QOut) -> Self {
                self.core.output = output;
                self
            }

            fn with_relu(mut self, relu: bool) -> Self {
                self.core.relu = relu;
                self
            }
        }
    };
}

/// The typed-value methods of [`Layer`] every int8 layer shares: codes in (converted from f32
/// when a caller hands reals), codes or f32 out; `forward` quantizes its own input.
macro_rules! int8_value_path {
    () => {
        /// Real values in and out (the input is quantized, the output dequantized).
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            Ok(self.run(&Value::F32(x.clone()))?.into_f32())
        }

        fn input_kind(&self) -> ValueKind {
            ValueKind::U8(self.core.input)
        }

        fn output_kind(&self, _: ValueKind) -> ValueKind {
            self.core.output_kind()
        }

        fn forward_value(&self, x: &Value) -> Result<Value> {
            self.run(x)
        }
    };
}

/// int8 2-D convolution (groups 1, or depthwise with groups = channels), with a dense or (for
/// a pruned one-group convolution) sparse weight.
///
/// ```
/// use slimnet_core::layers::Conv2dConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_kernels::int8::QuantParams;
/// use slimnet_quant::layers::QConv2d;
/// let conv = Conv2dConfig::new(2, 4, 3).with_padding(1).init(&mut tensor::rng(0))?;
/// let q = QConv2d::from_conv(&conv, QuantParams::from_range(0.0, 1.0))?;
/// let x = tensor::uniform(&[1, 2, 5, 5], 0.0, 1.0, &mut tensor::rng(1));
/// assert!(tensor::max_abs_diff(&q.forward(&x)?, &conv.forward(&x)?) < 0.05);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QConv2d {
    cfg: Conv2dConfig,
    core: QCore,
}

impl QConv2d {
    /// Quantizes a convolution for inputs quantized with `input` (weights per output channel,
    /// bias to i32); it writes f32 until told otherwise ([`with_output`](Self::with_output)).
    ///
    /// # Errors
    /// Groups other than 1 or the channel count (or a sparse grouped weight), non-finite
    /// weights, or scales whose ratio the fixed-point requantization cannot represent.
    pub fn from_conv(conv: &Conv2d, input: QuantParams) -> Result<Self> {
        Self::from_conv_with_bits(conv, input, 8)
    }

    /// [`from_conv`](Self::from_conv) with `bits`-bit weights (`2..=8`; levels
    /// `±(2^(bits-1) - 1)` stored as i8). 7-bit weights run the AVX2 kernels' `vpmaddubsw`
    /// paths, exactly (see `slimnet_kernels::int8::NARROW_MAX`).
    ///
    /// # Errors
    /// As [`from_conv`](Self::from_conv), and `bits` outside `2..=8`.
    pub fn from_conv_with_bits(conv: &Conv2d, input: QuantParams, bits: u32) -> Result<Self> {
        let cfg = conv.config().clone();
        check_groups(&cfg)?;
        let mut core = QCore::quantize(&conv.weight, conv.bias.as_ref(), input, bits)?;
        if cfg.groups != 1 {
            if let QWeight::Sparse(_) = core.weight {
                // depthwise weights are tiny: run them dense
                let mut dense = conv.clone();
                dense.weight.clear_mask();
                core = QCore::quantize(&dense.weight, conv.bias.as_ref(), input, bits)?;
            }
        }
        Ok(Self { cfg, core })
    }

    /// The configuration of the float convolution.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// The weight's stored i8 levels (each stands for `level * scale` of its output channel):
    /// every weight of a dense layer, the kept ones of a sparse one, row after row.
    pub fn weight_levels(&self) -> &[i8] {
        self.core.weight.levels()
    }

    fn geometry(&self, input: &[usize]) -> Result<ConvGeometry> {
        self.cfg.geometry(input)
    }

    fn run(&self, x: &Value) -> Result<Value> {
        let g = self.geometry(x.shape())?;
        let shape = [g.batch, g.out_channels, g.out_h(), g.out_w()];
        let xq = self.core.input;
        self.core.run(x, &shape, |w, xs, out| match w {
            QWeight::Dense(w) if g.groups == 1 => qconv2d_forward(&g, xs, xq, w, out),
            QWeight::Dense(w) => qdepthwise_forward(&g, xs, xq, w, out),
            QWeight::Sparse(w) => qsparse_conv2d_forward(&g, xs, xq, w, out),
        })
    }
}

int8_layer!(QConv2d);
int8_layer!(QLinear);

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
        if self.is_sparse() {
            "QSparseConv2d"
        } else {
            "QConv2d"
        }
    }

    // `[N, C, H, W]` -> `[N, O, OH, OW]`
    int8_value_path!();

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(input)?;
        Ok(vec![g.batch, g.out_channels, g.out_h(), g.out_w()])
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let g = self.geometry(input)?;
        let macs = match &self.core.weight {
            QWeight::Sparse(w) => g.batch * g.out_h() * g.out_w() * w.nnz(),
            QWeight::Dense(_) => g.macs(),
        };
        Ok(Cost {
            output: vec![g.batch, g.out_channels, g.out_h(), g.out_w()],
            params: self.core.params(),
            macs,
            bytes: self.core.bytes(&self.cfg.weight_shape()),
        })
    }

    /// The dequantized float convolution (and the fused ReLU).
    fn to_core(&self) -> Option<Result<Box<dyn Layer>>> {
        Some((|| {
            let (w, b) = self.core.dequantized(&self.cfg.weight_shape())?;
            let cfg = self.cfg.clone().with_bias(true);
            self.core
                .with_fused_relu(Box::new(Conv2d::from_parts(cfg, w, Some(b))?))
        })())
    }

    fn config_json(&self) -> serde_json::Value {
        self.core
            .config("conv", serde_json::to_value(&self.cfg).expect("serializes"))
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
    // validates the configuration the same way a float convolution does, without allocating
    // its weight
    conv.validate()?;
    let core = QCore::load(cfg, &conv.weight_shape(), t)?;
    Ok(Box::new(QConv2d { cfg: conv, core }))
}

/// int8 fully-connected layer: `[N, in]` -> `[N, out]`, with a dense or (for a pruned layer)
/// sparse weight.
///
/// ```
/// use slimnet_core::layers::LinearConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_kernels::int8::QuantParams;
/// use slimnet_quant::layers::QLinear;
/// let mut fc = LinearConfig::new(64, 8).init(&mut tensor::rng(0))?;
/// // keep one weight in ten: the int8 layer stores only those
/// let mask = tensor::from_vec(&[8, 64], (0..512).map(|i| (i % 10 == 0) as u8 as f32).collect())?;
/// fc.weight.set_mask(mask)?;
/// let q = QLinear::from_linear(&fc, QuantParams::from_range(-1.0, 1.0))?;
/// assert_eq!(q.kind(), "QSparseLinear");
/// let x = tensor::uniform(&[2, 64], -1.0, 1.0, &mut tensor::rng(1));
/// assert!(tensor::max_abs_diff(&q.forward(&x)?, &fc.forward(&x)?) < 0.05);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QLinear {
    cfg: LinearConfig,
    core: QCore,
}

impl QLinear {
    /// The configuration of the float layer.
    pub fn config(&self) -> &LinearConfig {
        &self.cfg
    }

    /// The weight's stored i8 levels (see [`QConv2d::weight_levels`]).
    pub fn weight_levels(&self) -> &[i8] {
        self.core.weight.levels()
    }

    /// Quantizes a linear layer for inputs quantized with `input`; it writes f32 until told
    /// otherwise ([`with_output`](Self::with_output)).
    ///
    /// # Errors
    /// Non-finite weights, or scales the fixed-point requantization cannot represent.
    pub fn from_linear(l: &Linear, input: QuantParams) -> Result<Self> {
        Self::from_linear_with_bits(l, input, 8)
    }

    /// [`from_linear`](Self::from_linear) with `bits`-bit weights (see
    /// [`QConv2d::from_conv_with_bits`]).
    ///
    /// # Errors
    /// As [`from_linear`](Self::from_linear), and `bits` outside `2..=8`.
    pub fn from_linear_with_bits(l: &Linear, input: QuantParams, bits: u32) -> Result<Self> {
        let core = QCore::quantize(&l.weight, l.bias.as_ref(), input, bits)?;
        Ok(Self {
            cfg: l.config().clone(),
            core,
        })
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

    fn run(&self, x: &Value) -> Result<Value> {
        self.check(x.shape())?;
        let n = x.shape()[0];
        let xq = self.core.input;
        self.core
            .run(x, &[n, self.cfg.out_features], |w, xs, out| match w {
                QWeight::Dense(w) => qlinear_forward(w, n, xs, xq, out),
                QWeight::Sparse(w) => qsparse_linear_forward(w, n, xs, xq, out),
            })
    }
}

impl Layer for QLinear {
    fn kind(&self) -> &'static str {
        if self.is_sparse() {
            "QSparseLinear"
        } else {
            "QLinear"
        }
    }

    // `[N, in]` -> `[N, out]`
    int8_value_path!();

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check(input)?;
        Ok(vec![input[0], self.cfg.out_features])
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let output = self.output_shape(input)?;
        Ok(Cost {
            output,
            params: self.core.params(),
            macs: input[0] * self.core.weight.stored_values(),
            bytes: self
                .core
                .bytes(&[self.cfg.out_features, self.cfg.in_features]),
        })
    }

    /// The dequantized float layer (and the fused ReLU).
    fn to_core(&self) -> Option<Result<Box<dyn Layer>>> {
        Some((|| {
            let c = &self.cfg;
            let (w, b) = self.core.dequantized(&[c.out_features, c.in_features])?;
            let cfg = c.clone().with_bias(true);
            self.core
                .with_fused_relu(Box::new(Linear::from_parts(cfg, w, Some(b))?))
        })())
    }

    fn config_json(&self) -> serde_json::Value {
        self.core.config(
            "linear",
            serde_json::to_value(&self.cfg).expect("serializes"),
        )
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
    lin.validate()?;
    let core = QCore::load(cfg, &[lin.out_features, lin.in_features], t)?;
    Ok(Box::new(QLinear { cfg: lin, core }))
}
