//! Weight-only quantization: 2- to 8-bit packed weights in the file, f32 compute on the
//! dequantized weights.

use safetensors::Dtype;
use serde_json::json;
use slimnet_core::io::{parse_config, TensorSource};
use slimnet_core::layers::{Conv2d, Conv2dConfig, Linear, LinearConfig};
use slimnet_core::{Cost, Error, Layer, Param, Result, StoredTensor, Tensor};

use super::store::*;
use crate::error::to_core;
use crate::pack::{pack_bits, unpack_bits};
use crate::scheme::{quantize, Granularity, QScheme, QWeights};

/// A Conv2d or Linear whose weight is stored as packed `bits`-bit codes with per-tensor or
/// per-channel scales and zero points; it computes in f32 with the dequantized weight.
///
/// ```
/// use slimnet_core::layers::LinearConfig;
/// use slimnet_core::{io, tensor, Graph, Layer};
/// use slimnet_quant::{layers::WeightOnly, scheme::QScheme};
/// let fc = LinearConfig::new(64, 32).init(&mut tensor::rng(0))?;
/// let q = WeightOnly::new(Box::new(fc), QScheme::affine(4)?)?;
/// let mut bytes = 0;
/// q.stored_tensors(&mut |_, t| bytes += t.bytes.len());
/// assert!(bytes * 6 < 64 * 32 * 4); // 4-bit codes and per-channel scales, not f32
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct WeightOnly {
    inner: Box<dyn Layer>,
    q: QWeights,
}

fn weight_of(l: &dyn Layer) -> Option<(&Param, Option<&Param>)> {
    if let Some(c) = l.downcast_ref::<Conv2d>() {
        return Some((&c.weight, c.bias.as_ref()));
    }
    l.downcast_ref::<Linear>()
        .map(|f| (&f.weight, f.bias.as_ref()))
}

/// Rebuilds a Conv2d or Linear with another weight (keeping the bias and the weight's mask).
pub(crate) fn with_weight(l: &dyn Layer, w: Tensor) -> Result<Box<dyn Layer>> {
    let mut out: Box<dyn Layer> = if let Some(c) = l.downcast_ref::<Conv2d>() {
        let b = c.bias.as_ref().map(|b| b.value().clone());
        Box::new(Conv2d::from_parts(c.config().clone(), w, b)?)
    } else if let Some(f) = l.downcast_ref::<Linear>() {
        let b = f.bias.as_ref().map(|b| b.value().clone());
        Box::new(Linear::from_parts(f.config().clone(), w, b)?)
    } else {
        return Err(Error::config(format!(
            "only Conv2d and Linear weights can be replaced, not {}",
            l.kind()
        )));
    };
    if let Some((p, _)) = weight_of(l) {
        if let Some(m) = p.mask() {
            let m = m.clone();
            let mut err = None;
            out.visit_params_mut(&mut |n, q| {
                if n == "weight" {
                    err = q.set_mask(m.clone()).err();
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
    }
    Ok(out)
}

impl WeightOnly {
    /// Quantizes the weight of a Conv2d or Linear with `scheme`.
    ///
    /// # Errors
    /// Another layer kind, a bad bit width, or non-finite weights.
    pub fn new(layer: Box<dyn Layer>, scheme: QScheme) -> Result<Self> {
        let (w, _) = weight_of(layer.as_ref()).ok_or_else(|| {
            Error::config(format!("weight-only quantization of a {}", layer.kind()))
        })?;
        let q = quantize(w.value(), scheme).map_err(to_core)?;
        let inner = with_weight(layer.as_ref(), q.dequantize())?;
        Ok(Self { inner, q })
    }

    /// The quantized weight.
    pub fn weights(&self) -> &QWeights {
        &self.q
    }

    /// The float layer it computes with.
    pub fn inner(&self) -> &dyn Layer {
        self.inner.as_ref()
    }
}

impl Layer for WeightOnly {
    fn kind(&self) -> &'static str {
        "WeightOnly"
    }

    /// As the wrapped layer.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.forward(x)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner.output_shape(input)
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let mut c = self.inner.cost(input)?;
        let mut bytes = 0;
        self.stored_tensors(&mut |_, t| bytes += t.bytes.len());
        c.bytes = bytes;
        Ok(c)
    }

    fn config_json(&self) -> serde_json::Value {
        json!({"inner": self.inner.kind(), "config": self.inner.config_json(), "scheme": self.q.scheme})
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        let packed = pack_bits(&self.q.codes, self.q.scheme.bits).expect("codes fit their width");
        f(
            "weight_codes",
            stored(Dtype::U8, vec![packed.len()], packed),
        );
        f("weight_scale", stored_f32(&self.q.scales));
        let zps: Vec<u8> = self.q.zero_points.iter().map(|&z| z as u8).collect();
        f("weight_zero_point", stored(Dtype::U8, vec![zps.len()], zps));
        self.inner.visit_params(&mut |n, p| {
            if n == "bias" {
                f("bias", StoredTensor::from_f32(p.value()));
            }
        });
    }
}

pub(crate) fn load_weight_only(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    let kind = cfg.get("inner").and_then(|v| v.as_str()).unwrap_or("");
    let inner_cfg = cfg.get("config").unwrap_or(&json!(null));
    let scheme: QScheme = parse_config(
        "WeightOnly scheme",
        cfg.get("scheme").unwrap_or(&json!(null)),
    )?;
    scheme.validate().map_err(to_core)?;
    let (_, packed) = load_u8("weight_codes", t)?;
    let (shape, has_bias): (Vec<usize>, bool) = match kind {
        "Conv2d" => {
            let c: Conv2dConfig = parse_config("Conv2d", inner_cfg)?;
            c.validate()?;
            (c.weight_shape().to_vec(), c.bias)
        }
        "Linear" => {
            let c: LinearConfig = parse_config("Linear", inner_cfg)?;
            c.validate()?;
            (vec![c.out_features, c.in_features], c.bias)
        }
        other => return Err(bad(format!("WeightOnly around unknown kind `{other}`"))),
    };
    // the codes (one byte each) and the dequantized f32 weight are made from this size
    let n = slimnet_core::limits::check_shape("WeightOnly weight", &shape, 4)?;
    if crate::pack::packed_len(n, scheme.bits) != packed.len() {
        return Err(bad(format!(
            "{} packed bytes for a {shape:?} weight of {} bits",
            packed.len(),
            scheme.bits
        )));
    }
    let codes = unpack_bits(&packed, scheme.bits, n).map_err(to_core)?;
    let scales: Vec<f32> = t.f32("weight_scale")?.iter().copied().collect();
    let (_, zps) = load_u8("weight_zero_point", t)?;
    let groups = match scheme.granularity {
        Granularity::PerTensor => 1,
        Granularity::PerChannel => shape[0],
    };
    if scales.len() != groups || zps.len() != groups {
        return Err(bad(format!(
            "{} scales and {} zero points for {groups} groups",
            scales.len(),
            zps.len()
        )));
    }
    let q = QWeights {
        scheme,
        shape: shape.clone(),
        codes,
        scales,
        zero_points: zps.iter().map(|&z| z as i32).collect(),
    };
    let w = q.dequantize();
    let b = if has_bias { Some(t.f32("bias")?) } else { None };
    let inner: Box<dyn Layer> = match kind {
        "Conv2d" => Box::new(Conv2d::from_parts(
            parse_config("Conv2d", inner_cfg)?,
            w,
            b,
        )?),
        _ => Box::new(Linear::from_parts(
            parse_config("Linear", inner_cfg)?,
            w,
            b,
        )?),
    };
    Ok(Box::new(WeightOnly { inner, q }))
}
