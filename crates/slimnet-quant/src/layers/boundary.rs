//! Boundary layers between the f32 and the u8 parts of a quantized graph.

use serde_json::json;
use slimnet_core::io::TensorSource;
use slimnet_core::{Cost, Layer, Result, StoredTensor, Tensor};
use slimnet_kernels::int8::QuantParams;

use super::store::{dequantize_tensor, load_params, quantize_tensor, store_params};

/// f32 -> u8 codes: `q = clamp(round(x / scale) + zero_point, 0, 255)` (NaN becomes code 0).
///
/// The codes leave as exact integers in an f32 tensor (see the crate docs), to be read by int8
/// layers.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_kernels::int8::QuantParams;
/// use slimnet_quant::layers::{Dequantize, Quantize};
/// let p = QuantParams { scale: 0.5, zero_point: 10 };
/// let x = tensor::from_vec(&[1, 4], vec![0.0, 1.0, -100.0, 1000.0])?;
/// let q = Quantize::new(p).forward(&x)?;
/// assert_eq!(q.as_slice().unwrap(), &[10.0, 12.0, 0.0, 255.0]); // saturates, never wraps
/// let back = Dequantize::new(p).forward(&q)?;
/// assert_eq!(back.as_slice().unwrap(), &[0.0, 1.0, -5.0, 122.5]);
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

    /// Any shape -> the same shape (codes).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(quantize_tensor(x, self.params))
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
        json!({})
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        store_params("output", self.params, f);
    }
}

/// u8 codes -> f32: `x = (q - zero_point) * scale`.
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

    /// Any shape (codes) -> the same shape (f32).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(dequantize_tensor(x, self.params))
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
        json!({})
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        store_params("input", self.params, f);
    }
}

pub(crate) fn load_quantize(
    _: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Quantize::new(load_params("output", t)?)))
}

pub(crate) fn load_dequantize(
    _: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Dequantize::new(load_params("input", t)?)))
}
