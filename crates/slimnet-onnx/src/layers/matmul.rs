//! Matrix product with a constant right operand (ONNX `MatMul` where a
//! [`Linear`](slimnet_core::layers::Linear) does not fit: inputs of rank other than 2, batched
//! constants).

use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::tensor::{matmul, matmul_shape};
use slimnet_core::{Error, Layer, Result, Tensor};

/// `x @ b` with NumPy's `matmul` rules ([`slimnet_core::tensor::matmul`]): the last two axes
/// multiply, the leading axes broadcast, and a rank-1 operand is a row (left) or a column
/// (right) that is dropped from the result.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::MatMul;
/// let m = MatMul::new(tensor::from_vec(&[3, 2], vec![1.0; 6])?)?;
/// assert_eq!(m.output_shape(&[4, 5, 3])?, vec![4, 5, 2]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MatMul {
    b: Tensor,
}

impl MatMul {
    /// A product with the constant `b` on the right.
    ///
    /// # Errors
    /// A rank-0 `b`.
    pub fn new(b: Tensor) -> Result<Self> {
        if b.ndim() == 0 {
            return Err(Error::config("MatMul needs a right operand of rank >= 1"));
        }
        Ok(Self {
            b: b.as_standard_layout().into_owned(),
        })
    }

    /// The right operand.
    pub fn weight(&self) -> &Tensor {
        &self.b
    }
}

impl Layer for MatMul {
    fn kind(&self) -> &'static str {
        "MatMul"
    }

    /// `[..., N, K]` (or `[K]`) -> `[..., N, M]` for a constant `[..., K, M]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        matmul(x, &self.b)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        matmul_shape(input, self.b.shape()).ok_or_else(|| {
            Error::shape(
                format!(
                    "a left operand for {:?} in a matrix product",
                    self.b.shape()
                ),
                input,
            )
        })
    }

    fn visit_buffers(&self, f: &mut dyn FnMut(&str, &Tensor)) {
        f("weight", &self.b);
    }

    fn config_json(&self) -> Value {
        json!({})
    }
}

pub(crate) fn load(_: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    Ok(Box::new(MatMul::new(t.f32("weight")?)?))
}
