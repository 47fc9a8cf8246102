//! Explicit boundaries between the f32 and the u8 parts of a graph. Quantized graphs do not
//! need them (a value is converted where a reader needs the other kind); they mark a
//! quantization point by hand.

use serde_json::json;
use slimnet_core::io::TensorSource;
use slimnet_core::value::{Value, ValueKind};
use slimnet_core::{Cost, Layer, Result, Tensor};
use slimnet_kernels::int8::QuantParams;

use super::store::{params_from, params_json};

/// f32 -> u8 codes: `q = clamp(round(x / scale) + zero_point, 0, 255)` (NaN becomes code 0).
/// On a graph edge it hands on the codes; as an f32 layer it returns the values the codes
/// stand for (fake quantization).
///
/// ```
/// use slimnet_core::value::Value;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_kernels::int8::QuantParams;
/// use slimnet_quant::layers::Quantize;
/// let p = QuantParams { scale: 0.5, zero_point: 10 };
/// let x = tensor::from_vec(&[1, 4], vec![0.0, 1.0, -100.0, 1000.0])?;
/// let Value::U8(q) = Quantize::new(p).forward_value(&Value::F32(x.clone()))? else { panic!() };
/// assert_eq!(q.data.as_slice().unwrap(), &[10, 12, 0, 255]); // saturates, never wraps
/// let y = Quantize::new(p).forward(&x)?;
/// assert_eq!(y.as_slice().unwrap(), &[0.0, 1.0, -5.0, 122.5]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Quantize {
    params: QuantParams,
}

impl Quantize {
    /// A quantize layer.
    pub fn new(params: QuantParams) -> Self {
        Self { params }
    }

    /// Its parameters.
    pub fn params(&self) -> QuantParams {
        self.params
    }
}

impl Layer for Quantize {
    fn kind(&self) -> &'static str {
        "Quantize"
    }

    /// Any shape -> the same shape (the values the codes stand for).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.params;
        Ok(x.mapv(|v| p.dequantize(p.quantize(v))))
    }

    fn accepts(&self, _: ValueKind) -> bool {
        true
    }

    fn output_kind(&self, _: ValueKind) -> ValueKind {
        ValueKind::U8(self.params)
    }

    fn forward_value(&self, x: &Value) -> Result<Value> {
        Ok(x.clone().into_kind(ValueKind::U8(self.params)))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        Ok(Cost {
            output: input.to_vec(),
            params: 0,
            macs: 0,
            bytes: 5,
        })
    }

    fn config_json(&self) -> serde_json::Value {
        json!({"output_quant": params_json(self.params)})
    }
}

/// u8 codes -> f32: `x = (q - zero_point) * scale`; f32 passes unchanged.
#[derive(Debug, Clone)]
pub struct Dequantize {
    params: QuantParams,
}

impl Dequantize {
    /// A dequantize layer.
    pub fn new(params: QuantParams) -> Self {
        Self { params }
    }

    /// Its parameters.
    pub fn params(&self) -> QuantParams {
        self.params
    }
}

impl Layer for Dequantize {
    fn kind(&self) -> &'static str {
        "Dequantize"
    }

    /// Any shape -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn accepts(&self, _: ValueKind) -> bool {
        true
    }

    fn forward_value(&self, x: &Value) -> Result<Value> {
        Ok(Value::F32(x.to_f32().into_owned()))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        Ok(Cost {
            output: input.to_vec(),
            params: 0,
            macs: 0,
            bytes: 5,
        })
    }

    fn config_json(&self) -> serde_json::Value {
        json!({"input_quant": params_json(self.params)})
    }
}

pub(crate) fn load_quantize(
    cfg: &serde_json::Value,
    _: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Quantize::new(params_from(cfg, "output_quant")?)))
}

pub(crate) fn load_dequantize(
    cfg: &serde_json::Value,
    _: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Dequantize::new(params_from(cfg, "input_quant")?)))
}
