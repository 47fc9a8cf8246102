//! Element-wise arithmetic: of an activation with a constant tensor (ONNX `Add`, `Sub`,
//! `Mul`, `Div`, `Pow` with one constant operand, with NumPy broadcasting), and the unary
//! functions ONNX graphs apply to activations (`Sqrt`, `Reciprocal`, `Exp`, `Log`, `Neg`,
//! `Abs`, `Elu`, `Selu`, `Softplus`, `Softsign`).

use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
pub(crate) use slimnet_core::tensor::broadcast_shape;
use slimnet_core::tensor::sum_to_shape;
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
    /// `a` to the power `b`.
    Pow,
}

impl BinaryOp {
    /// The ONNX op type (`Add`, `Sub`, `Mul`, `Div`, `Pow`).
    pub fn onnx_name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
        }
    }

    /// The op of an ONNX op type.
    pub fn from_onnx(name: &str) -> Option<Self> {
        Some(match name {
            "Add" => BinaryOp::Add,
            "Sub" => BinaryOp::Sub,
            "Mul" => BinaryOp::Mul,
            "Div" => BinaryOp::Div,
            "Pow" => BinaryOp::Pow,
            _ => return None,
        })
    }

    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            // squares (a layer norm's variance) as one product, as exact as ONNX Runtime's
            BinaryOp::Pow if b == 2.0 => a * a,
            BinaryOp::Pow => a.powf(b),
        }
    }
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
    /// The input of the last training forward pass (its shape is all a sum or product needs).
    cache: Option<Tensor>,
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
        self.cache = Some(x.clone());
        self.forward(x)
    }

    /// The input gradient (the constant is not trained); `c / x` cannot train.
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let x = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("ConstOp"))?;
        let shape = x.shape().to_vec();
        let xb = x
            .broadcast(g.shape())
            .ok_or_else(|| Error::shape("the forward output shape", g.shape()))?;
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
            // d/dx x^c = c x^(c-1); d/dx c^x = c^x ln c
            (BinaryOp::Pow, false) => {
                let mut d = g.to_owned();
                ndarray::Zip::from(&mut d)
                    .and(&xb)
                    .and(&c)
                    .for_each(|d, &x, &c| *d *= c * x.powf(c - 1.0));
                d
            }
            (BinaryOp::Pow, true) => {
                let mut d = g.to_owned();
                ndarray::Zip::from(&mut d)
                    .and(&xb)
                    .and(&c)
                    .for_each(|d, &x, &c| *d *= c.powf(x) * c.ln());
                d
            }
        };
        Ok(sum_to_shape(gx, &shape))
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
        .ok_or_else(|| {
            Error::ModelFile("ConstOp config: `op` is not Add/Sub/Mul/Div/Pow".into())
        })?;
    let first = cfg
        .get("const_first")
        .and_then(Value::as_bool)
        .ok_or_else(|| Error::ModelFile("ConstOp config: `const_first` is not a bool".into()))?;
    Ok(Box::new(ConstOp::new(op, t.f32("constant")?, first)))
}

/// A function applied to every value of an activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// Square root.
    Sqrt,
    /// `1 / x`.
    Reciprocal,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `x` for `x > 0`, else `alpha (e^x - 1)`.
    Elu {
        /// The scale of the negative part.
        alpha: f32,
    },
    /// `gamma x` for `x > 0`, else `gamma alpha (e^x - 1)`.
    Selu {
        /// The scale of the negative part.
        alpha: f32,
        /// The scale of both parts.
        gamma: f32,
    },
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
}

/// The op types of [`UnaryOp`].
pub(crate) const UNARY_OPS: [&str; 10] = [
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Elu",
    "Selu",
    "Softplus",
    "Softsign",
];

impl UnaryOp {
    /// The ONNX op type.
    pub fn onnx_name(self) -> &'static str {
        match self {
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Reciprocal => "Reciprocal",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Neg => "Neg",
            UnaryOp::Abs => "Abs",
            UnaryOp::Elu { .. } => "Elu",
            UnaryOp::Selu { .. } => "Selu",
            UnaryOp::Softplus => "Softplus",
            UnaryOp::Softsign => "Softsign",
        }
    }

    /// The op of an ONNX op type, its float attributes read through `attr(name, default)`
    /// (ONNX's defaults: Elu's alpha 1, Selu's alpha 1.6732632 and gamma 1.0507009).
    pub fn from_onnx(name: &str, attr: impl Fn(&str, f32) -> f32) -> Option<Self> {
        Some(match name {
            "Sqrt" => UnaryOp::Sqrt,
            "Reciprocal" => UnaryOp::Reciprocal,
            "Exp" => UnaryOp::Exp,
            "Log" => UnaryOp::Log,
            "Neg" => UnaryOp::Neg,
            "Abs" => UnaryOp::Abs,
            "Elu" => UnaryOp::Elu {
                alpha: attr("alpha", 1.0),
            },
            "Selu" => UnaryOp::Selu {
                alpha: attr("alpha", 1.673_263_2),
                gamma: attr("gamma", 1.050_701),
            },
            "Softplus" => UnaryOp::Softplus,
            "Softsign" => UnaryOp::Softsign,
            _ => return None,
        })
    }

    /// The float attributes, by ONNX name.
    pub fn attributes(self) -> Vec<(&'static str, f32)> {
        match self {
            UnaryOp::Elu { alpha } => vec![("alpha", alpha)],
            UnaryOp::Selu { alpha, gamma } => vec![("alpha", alpha), ("gamma", gamma)],
            _ => vec![],
        }
    }

    fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
            UnaryOp::Selu { alpha, gamma } => gamma * if x > 0.0 { x } else { alpha * x.exp_m1() },
            // ln(1 + e^x) without overflow for large x
            UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryOp::Softsign => x / (1.0 + x.abs()),
        }
    }

    /// The derivative at `x`, given `y = f(x)`.
    fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            UnaryOp::Sqrt => 0.5 / y,
            UnaryOp::Reciprocal => -y * y,
            UnaryOp::Exp => y,
            UnaryOp::Log => 1.0 / x,
            UnaryOp::Neg => -1.0,
            UnaryOp::Abs => x.signum(),
            UnaryOp::Elu { alpha } => {
                if x > 0.0 {
                    1.0
                } else {
                    y + alpha
                }
            }
            UnaryOp::Selu { alpha, gamma } => {
                if x > 0.0 {
                    gamma
                } else {
                    y + gamma * alpha
                }
            }
            UnaryOp::Softplus => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Softsign => 1.0 / ((1.0 + x.abs()) * (1.0 + x.abs())),
        }
    }
}

/// `f(x)` for every value of an activation (any shape).
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::{Unary, UnaryOp};
/// let y = Unary::new(UnaryOp::Sqrt).forward(&tensor::from_vec(&[1, 2], vec![4.0, 9.0])?)?;
/// assert_eq!(y.as_slice().unwrap(), &[2.0, 3.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Unary {
    op: UnaryOp,
    cache: Option<(Tensor, Tensor)>,
}

impl Unary {
    /// The layer applying `op`.
    pub fn new(op: UnaryOp) -> Self {
        Self { op, cache: None }
    }

    /// The function.
    pub fn op(&self) -> UnaryOp {
        self.op
    }
}

impl Layer for Unary {
    fn kind(&self) -> &'static str {
        "Unary"
    }

    /// Any shape -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let op = self.op;
        Ok(x.mapv(|v| op.apply(v)))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some((x.clone(), y.clone()));
        Ok(y)
    }

    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let (x, y) = self.cache.take().ok_or_else(|| Error::no_cache("Unary"))?;
        if g.shape() != x.shape() {
            return Err(Error::shape(format!("gradient {:?}", x.shape()), g.shape()));
        }
        let op = self.op;
        let mut d = g.to_owned();
        ndarray::Zip::from(&mut d)
            .and(&x)
            .and(&y)
            .for_each(|d, &x, &y| *d *= op.derivative(x, y));
        Ok(d)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn config_json(&self) -> Value {
        let mut cfg = json!({"op": self.op.onnx_name()});
        for (name, v) in self.op.attributes() {
            cfg[name] = json!(v);
        }
        cfg
    }
}

pub(crate) fn load_unary(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let attr = |name: &str, default: f32| {
        cfg.get(name)
            .and_then(Value::as_f64)
            .map_or(default, |v| v as f32)
    };
    let op = cfg
        .get("op")
        .and_then(Value::as_str)
        .and_then(|name| UnaryOp::from_onnx(name, attr))
        .ok_or_else(|| Error::ModelFile("Unary config: `op` is not a known function".into()))?;
    Ok(Box::new(Unary::new(op)))
}
