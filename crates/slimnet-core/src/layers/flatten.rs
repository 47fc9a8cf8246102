//! Flatten.

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::Tensor;
use crate::value::{Codes, Value, ValueKind};

/// Flattens every axis after the first: `[N, d1, d2, ...]` -> `[N, d1 * d2 * ...]`.
#[derive(Debug, Clone, Default)]
pub struct Flatten {
    cache: Option<Vec<usize>>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Self::default()
    }
}

fn flat(shape: &[usize]) -> Result<Vec<usize>> {
    if shape.is_empty() {
        return Err(Error::shape("[N, ...] (rank >= 1)", shape));
    }
    Ok(vec![shape[0], shape[1..].iter().product()])
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    /// `[N, ...]` -> `[N, prod(...)]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = flat(x.shape())?;
        Ok(x.as_standard_layout()
            .into_owned()
            .into_shape_with_order(s)
            .expect("same length")
            .into_dyn())
    }

    /// Works on u8 codes as on reals.
    fn accepts(&self, _: ValueKind) -> bool {
        true
    }

    fn output_kind(&self, input: ValueKind) -> ValueKind {
        input
    }

    fn forward_value(&self, x: &Value) -> Result<Value> {
        match x {
            Value::F32(t) => Ok(Value::F32(self.forward(t)?)),
            Value::U8(c) => {
                let s = flat(c.data.shape())?;
                let data = c
                    .data
                    .as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(s)
                    .expect("same length")
                    .into_dyn();
                Ok(Value::U8(Codes {
                    data,
                    params: c.params,
                }))
            }
        }
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some(x.shape().to_vec());
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let shape = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("Flatten"))?;
        let want = flat(&shape)?;
        if grad_out.shape() != want.as_slice() {
            return Err(Error::shape(format!("gradient {want:?}"), grad_out.shape()));
        }
        Ok(grad_out
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(shape)
            .expect("same length")
            .into_dyn())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        flat(input)
    }
}
