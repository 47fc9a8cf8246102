//! Dynamic quantization of linear layers: i8 weights stored, activations quantized per batch
//! from their observed range at run time, f32 output.

use serde_json::json;
use slimnet_core::io::{parse_config, TensorSource};
use slimnet_core::layers::{Linear, LinearConfig};
use slimnet_core::{Cost, Error, Layer, Result, StoredTensor, Tensor};
use slimnet_kernels::int8::{qlinear_forward, quantize_u8, QMatrix, QOutput, QuantParams};

use super::store::*;

/// A linear layer with symmetric per-channel i8 weights whose input is quantized to u8 with the
/// range of each batch (no calibration needed).
///
/// ```
/// use slimnet_core::layers::LinearConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_quant::layers::DynamicQLinear;
/// let fc = LinearConfig::new(16, 4).init(&mut tensor::rng(0))?;
/// let q = DynamicQLinear::from_linear(&fc)?;
/// let x = tensor::uniform(&[3, 16], -1.0, 1.0, &mut tensor::rng(1));
/// assert!(tensor::max_abs_diff(&q.forward(&x)?, &fc.forward(&x)?) < 0.05);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DynamicQLinear {
    cfg: LinearConfig,
    weight: QMatrix,
    bias: Vec<f32>,
}

impl DynamicQLinear {
    /// Quantizes the weights of `l`.
    ///
    /// # Errors
    /// Non-finite weights.
    pub fn from_linear(l: &Linear) -> Result<Self> {
        let c = l.config().clone();
        let w: Vec<f32> = l.weight.value().iter().copied().collect();
        let weight = QMatrix::quantize(&w, c.out_features, c.in_features)?;
        let bias = match &l.bias {
            Some(b) => b.value().iter().copied().collect(),
            None => vec![0.0; c.out_features],
        };
        Ok(Self {
            cfg: c,
            weight,
            bias,
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
}

impl Layer for DynamicQLinear {
    fn kind(&self) -> &'static str {
        "DynamicQLinear"
    }

    /// `[N, in]` f32 -> `[N, out]` f32.
    ///
    /// Errors on NaN or infinite inputs (their range cannot be quantized).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x.shape())?;
        let xs = slimnet_core::tensor::contiguous(x);
        if let Some(v) = xs.iter().find(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "DynamicQLinear: input value {v} cannot be quantized"
            )));
        }
        let (lo, hi) = xs
            .iter()
            .fold((0.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
        let p = QuantParams::from_range(lo, hi);
        let mut codes = vec![0u8; xs.len()];
        quantize_u8(&xs, p, &mut codes)?;
        let n = x.shape()[0];
        let mut out = vec![0.0f32; n * self.cfg.out_features];
        qlinear_forward(
            &self.weight,
            n,
            &codes,
            p,
            QOutput::F32 {
                out: &mut out,
                bias: Some(&self.bias),
            },
        )?;
        Ok(Tensor::from_shape_vec(vec![n, self.cfg.out_features], out).expect("output shape"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check(input)?;
        Ok(vec![input[0], self.cfg.out_features])
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let output = self.output_shape(input)?;
        let w = self.weight.values().len();
        Ok(Cost {
            output,
            params: w + self.bias.len(),
            macs: input[0] * w,
            bytes: w + 8 * self.bias.len(),
        })
    }

    fn config_json(&self) -> serde_json::Value {
        json!({ "linear": self.cfg })
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        let shape = vec![self.cfg.out_features, self.cfg.in_features];
        f("weight", stored_i8(shape, self.weight.values()));
        f("weight_scale", stored_f32(self.weight.scales()));
        f("bias", stored_f32(&self.bias));
    }
}

pub(crate) fn load_dynamic(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    let c: LinearConfig =
        parse_config("DynamicQLinear", cfg.get("linear").unwrap_or(&json!(null)))?;
    let (shape, q) = load_i8("weight", t)?;
    if shape != [c.out_features, c.in_features] {
        return Err(bad(format!(
            "DynamicQLinear weight {shape:?} does not fit {}x{}",
            c.out_features, c.in_features
        )));
    }
    let s: Vec<f32> = t.f32("weight_scale")?.iter().copied().collect();
    let bias: Vec<f32> = t.f32("bias")?.iter().copied().collect();
    if bias.len() != c.out_features {
        return Err(bad(format!(
            "{} biases for {} outputs",
            bias.len(),
            c.out_features
        )));
    }
    let weight = QMatrix::new(c.out_features, c.in_features, q, s)?;
    Ok(Box::new(DynamicQLinear {
        cfg: c,
        weight,
        bias,
    }))
}
