//! Element-wise arithmetic of an activation with a constant tensor (ONNX `Add`, `Sub`, `Mul`,
//! `Div` with one constant operand), with NumPy broadcasting.

use ndarray::Axis;
use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::{Error, Layer, Result, Tensor};

/// The arithmetic of a [`ConstOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
}

impl BinaryOp {
    /// The ONNX op type (`Add`, `Sub`, `Mul`, `Div`).
    pub fn onnx_name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
        }
    }

    /// The op of an ONNX op type.
    pub fn from_onnx(name: &str) -> Option<Self> {
        Some(match name {
            "Add" => BinaryOp::Add,
            "Sub" => BinaryOp::Sub,
            "Mul" => BinaryOp::Mul,
            "Div" => BinaryOp::Div,
            _ => return None,
        })
    }

    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// The shape of `a` and `b` broadcast together (NumPy rules), if they broadcast.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            match (da, db) {
                _ if da == db => Some(da),
                (1, d) | (d, 1) => Some(d),
                _ => None,
            }
        })
        .collect()
}

/// `x op c` (or `c op x`) for a constant tensor `c`, broadcasting both ways.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::{BinaryOp, ConstOp};
/// // per-channel scale of an NCHW activation
/// let scale = tensor::from_vec(&[2, 1, 1], vec![2.0, 10.0])?;
/// let layer = ConstOp::new(BinaryOp::Mul, scale, false);
/// let y = layer.forward(&tensor::from_vec(&[1, 2, 1, 1], vec![1.0, 1.0])?)?;
/// assert_eq!(y.as_slice().unwrap(), &[2.0, 10.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConstOp {
    op: BinaryOp,
    constant: Tensor,
    const_first: bool,
    cache: Option<Vec<usize>>,
}

impl ConstOp {
    /// `x op constant`, or `constant op x` when `const_first`.
    pub fn new(op: BinaryOp, constant: Tensor, const_first: bool) -> Self {
        Self {
            op,
            constant: constant.as_standard_layout().into_owned(),
            const_first,
            cache: None,
        }
    }

    /// The op, the constant and whether the constant is the left operand.
    pub fn parts(&self) -> (BinaryOp, &Tensor, bool) {
        (self.op, &self.constant, self.const_first)
    }
}

/// Sums `g` over the axes where `shape` was broadcast, giving a tensor of `shape`.
fn reduce_to(g: Tensor, shape: &[usize]) -> Tensor {
    let mut r = g;
    while r.ndim() > shape.len() {
        r = r.sum_axis(Axis(0));
    }
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && r.shape()[i] != 1 {
            r = r.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    r
}

impl Layer for ConstOp {
    fn kind(&self) -> &'static str {
        "ConstOp"
    }

    /// Any shape that broadcasts with the constant -> the broadcast shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.output_shape(x.shape())?;
        let xb = x
            .broadcast(out.as_slice())
            .expect("checked by output_shape");
        let cb = self
            .constant
            .broadcast(out.as_slice())
            .expect("checked by output_shape");
        let mut y = xb.to_owned();
        let op = self.op;
        if self.const_first {
            y.zip_mut_with(&cb, |v, &c| *v = op.apply(c, *v));
        } else {
            y.zip_mut_with(&cb, |v, &c| *v = op.apply(*v, c));
        }
        Ok(y)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = Some(x.shape().to_vec());
        self.forward(x)
    }

    /// The input gradient (the constant is not trained); `c / x` cannot train.
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let shape = self.cache.take().ok_or_else(|| Error::Backward {
            layer: String::new(),
            reason: "ConstOp: backward called without a preceding forward_train".into(),
        })?;
        let c = self
            .constant
            .broadcast(g.shape())
            .ok_or_else(|| Error::shape("the forward output shape", g.shape()))?;
        let gx = match (self.op, self.const_first) {
            (BinaryOp::Add, _) | (BinaryOp::Sub, false) => g.clone(),
            (BinaryOp::Sub, true) => -g,
            (BinaryOp::Mul, _) => g * &c,
            (BinaryOp::Div, false) => g / &c,
            (BinaryOp::Div, true) => {
                return Err(Error::Backward {
                    layer: String::new(),
                    reason: "ConstOp: `constant / x` cannot be trained".into(),
                })
            }
        };
        Ok(reduce_to(gx, &shape))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        broadcast_shape(input, self.constant.shape()).ok_or_else(|| {
            Error::shape(
                format!("a shape that broadcasts with {:?}", self.constant.shape()),
                input,
            )
        })
    }

    fn visit_buffers(&self, f: &mut dyn FnMut(&str, &Tensor)) {
        f("constant", &self.constant);
    }

    fn config_json(&self) -> Value {
        json!({"op": self.op.onnx_name(), "const_first": self.const_first})
    }
}

pub(crate) fn load(cfg: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let op = cfg
        .get("op")
        .and_then(Value::as_str)
        .and_then(BinaryOp::from_onnx)
        .ok_or_else(|| Error::ModelFile("ConstOp config: `op` is not Add/Sub/Mul/Div".into()))?;
    let first = cfg
        .get("const_first")
        .and_then(Value::as_bool)
        .ok_or_else(|| Error::ModelFile("ConstOp config: `const_first` is not a bool".into()))?;
    Ok(Box::new(ConstOp::new(op, t.f32("constant")?, first)))
}
