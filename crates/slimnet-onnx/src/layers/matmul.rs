//! Matrix product with a constant right operand (ONNX `MatMul` where a
//! [`Linear`](slimnet_core::layers::Linear) does not fit: inputs of rank other than 2, batched
//! constants).

use ndarray::{Ix2, IxDyn};
use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::{Error, Layer, Result, Tensor};

use super::elementwise::broadcast_shape;
use slimnet_core::tensor::checked_len;

/// `x @ b` with NumPy's `matmul` rules: the last two axes multiply, the leading axes broadcast,
/// and a rank-1 operand is a row (left) or a column (right) that is dropped from the result.
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

struct Plan {
    /// Broadcast batch shape.
    batch: Vec<usize>,
    n: usize,
    k: usize,
    m: usize,
    out: Vec<usize>,
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

    fn plan(&self, a: &[usize]) -> Result<Plan> {
        let bs = self.b.shape();
        let bad = || Error::shape(format!("a left operand for {bs:?} in a matrix product"), a);
        if a.is_empty() {
            return Err(bad());
        }
        let (a2, a_row) = if a.len() == 1 {
            (vec![1, a[0]], true)
        } else {
            (a.to_vec(), false)
        };
        let (b2, b_col) = if bs.len() == 1 {
            (vec![bs[0], 1], true)
        } else {
            (bs.to_vec(), false)
        };
        let (n, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
        let (k2, m) = (b2[b2.len() - 2], b2[b2.len() - 1]);
        if k != k2 {
            return Err(bad());
        }
        let batch = broadcast_shape(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).ok_or_else(bad)?;
        let mut out = batch.clone();
        if !a_row {
            out.push(n);
        }
        if !b_col {
            out.push(m);
        }
        checked_len(&out)?;
        Ok(Plan {
            batch,
            n,
            k,
            m,
            out,
        })
    }
}

impl Layer for MatMul {
    fn kind(&self) -> &'static str {
        "MatMul"
    }

    /// `[..., N, K]` (or `[K]`) -> `[..., N, M]` for a constant `[..., K, M]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.plan(x.shape())?;
        let mut ashape = p.batch.clone();
        ashape.extend([p.n, p.k]);
        let mut bshape = p.batch.clone();
        bshape.extend([p.k, p.m]);
        let a_full = x
            .to_shape(IxDyn(&if x.ndim() == 1 {
                vec![1, p.k]
            } else {
                x.shape().to_vec()
            }))
            .expect("same length")
            .into_owned();
        let b_full = self
            .b
            .to_shape(IxDyn(&if self.b.ndim() == 1 {
                vec![p.k, 1]
            } else {
                self.b.shape().to_vec()
            }))
            .expect("same length")
            .into_owned();
        let a = a_full.broadcast(IxDyn(&ashape)).expect("checked by plan");
        let b = b_full.broadcast(IxDyn(&bshape)).expect("checked by plan");
        let count: usize = p.batch.iter().product();
        let a = a.to_shape(IxDyn(&[count, p.n, p.k])).expect("same length");
        let b = b.to_shape(IxDyn(&[count, p.k, p.m])).expect("same length");
        let mut out = Vec::with_capacity(count * p.n * p.m);
        for i in 0..count {
            let ai = a
                .index_axis(ndarray::Axis(0), i)
                .into_dimensionality::<Ix2>()
                .expect("2-D");
            let bi = b
                .index_axis(ndarray::Axis(0), i)
                .into_dimensionality::<Ix2>()
                .expect("2-D");
            out.extend(ai.dot(&bi).iter().copied());
        }
        Ok(Tensor::from_shape_vec(IxDyn(&p.out), out).expect("length"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.plan(input)?.out)
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
