//! Element-wise activations: ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, HardSigmoid, HardSwish.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::{Cost, Layer};
use crate::tensor::Tensor;
use crate::value::{Codes, Value, ValueKind};

/// Which element-wise function an [`Activation`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ActivationKind {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x` if positive, else `alpha * x`.
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f32,
    },
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
}

impl ActivationKind {
    /// The kind name used in model files.
    pub fn name(self) -> &'static str {
        match self {
            ActivationKind::Relu => "ReLU",
            ActivationKind::Relu6 => "ReLU6",
            ActivationKind::LeakyRelu { .. } => "LeakyReLU",
            ActivationKind::Sigmoid => "Sigmoid",
            ActivationKind::Tanh => "Tanh",
            ActivationKind::HardSigmoid { .. } => "HardSigmoid",
            ActivationKind::HardSwish => "HardSwish",
        }
    }

    /// Every kind name, for the model-file registry.
    pub const NAMES: [&'static str; 7] = [
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
    ];

    #[inline]
    pub(crate) fn f(self, x: f32) -> f32 {
        match self {
            // NaN passes through (`f32::max` would turn it into 0 and hide it)
            ActivationKind::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            ActivationKind::Relu6 => x.clamp(0.0, 6.0), // NaN stays NaN
            ActivationKind::LeakyRelu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            ActivationKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            ActivationKind::Tanh => x.tanh(),
            ActivationKind::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            ActivationKind::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// Derivative with respect to the input.
    #[inline]
    pub(crate) fn df(self, x: f32) -> f32 {
        match self {
            ActivationKind::Relu => (x > 0.0) as u8 as f32,
            ActivationKind::Relu6 => (x > 0.0 && x < 6.0) as u8 as f32,
            ActivationKind::LeakyRelu { alpha } => {
                if x > 0.0 {
                    1.0
                } else {
                    alpha
                }
            }
            ActivationKind::Sigmoid => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            }
            ActivationKind::Tanh => 1.0 - x.tanh().powi(2),
            ActivationKind::HardSigmoid { alpha, beta } => {
                let v = alpha * x + beta;
                if v > 0.0 && v < 1.0 {
                    alpha
                } else {
                    0.0
                }
            }
            ActivationKind::HardSwish => {
                if x <= -3.0 {
                    0.0
                } else if x >= 3.0 {
                    1.0
                } else {
                    x / 3.0 + 0.5
                }
            }
        }
    }
}

/// An element-wise activation layer; works on any shape.
///
/// ```
/// use slimnet_core::layers::Activation;
/// use slimnet_core::{tensor, Layer};
/// let y = Activation::relu().forward(&tensor::from_vec(&[1, 2], vec![-1.0, 2.0])?)?;
/// assert_eq!(y.as_slice().unwrap(), &[0.0, 2.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Activation {
    kind: ActivationKind,
    cache: Option<Tensor>,
}

impl Activation {
    /// An activation of the given kind.
    ///
    /// # Errors
    /// Non-finite parameters.
    pub fn new(kind: ActivationKind) -> Result<Self> {
        let ok = match kind {
            ActivationKind::LeakyRelu { alpha } => alpha.is_finite(),
            ActivationKind::HardSigmoid { alpha, beta } => alpha.is_finite() && beta.is_finite(),
            _ => true,
        };
        if !ok {
            return Err(Error::config(format!("non-finite parameter in {kind:?}")));
        }
        Ok(Self { kind, cache: None })
    }

    /// ReLU.
    pub fn relu() -> Self {
        Self {
            kind: ActivationKind::Relu,
            cache: None,
        }
    }

    /// ReLU6.
    pub fn relu6() -> Self {
        Self {
            kind: ActivationKind::Relu6,
            cache: None,
        }
    }

    /// LeakyReLU with the given negative slope.
    pub fn leaky_relu(alpha: f32) -> Self {
        Self {
            kind: ActivationKind::LeakyRelu { alpha },
            cache: None,
        }
    }

    /// Sigmoid.
    pub fn sigmoid() -> Self {
        Self {
            kind: ActivationKind::Sigmoid,
            cache: None,
        }
    }

    /// Tanh.
    pub fn tanh() -> Self {
        Self {
            kind: ActivationKind::Tanh,
            cache: None,
        }
    }

    /// HardSigmoid `clamp(x / 6 + 1/2, 0, 1)` (PyTorch's convention).
    pub fn hard_sigmoid() -> Self {
        Self {
            kind: ActivationKind::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            cache: None,
        }
    }

    /// HardSwish.
    pub fn hard_swish() -> Self {
        Self {
            kind: ActivationKind::HardSwish,
            cache: None,
        }
    }

    /// The function applied.
    pub fn activation_kind(&self) -> ActivationKind {
        self.kind
    }
}

impl Layer for Activation {
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// Any shape -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.kind;
        Ok(match k {
            // its own loop, which the compiler vectorizes
            ActivationKind::Relu => crate::buffers::map(x, |v| ActivationKind::Relu.f(v)),
            _ => crate::buffers::map(x, |v| k.f(v)),
        })
    }

    /// ReLU also works on u8 codes: `max(code, zero_point)`, with the same quantization.
    fn accepts(&self, kind: ValueKind) -> bool {
        kind == ValueKind::F32 || self.kind == ActivationKind::Relu
    }

    fn output_kind(&self, input: ValueKind) -> ValueKind {
        match input {
            ValueKind::U8(_) if self.kind == ActivationKind::Relu => input,
            _ => ValueKind::F32,
        }
    }

    fn forward_value(&self, x: &Value) -> Result<Value> {
        match x {
            Value::U8(c) if self.kind == ActivationKind::Relu => {
                let zp = c.params.zero_point;
                Ok(Value::U8(Codes {
                    data: c.data.mapv(|q| q.max(zp)),
                    params: c.params,
                }))
            }
            _ => Ok(Value::F32(self.forward(&x.to_f32())?)),
        }
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some(x.clone());
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let x = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache(self.kind.name()))?;
        if x.shape() != grad_out.shape() {
            return Err(Error::shape(
                format!("gradient {:?}", x.shape()),
                grad_out.shape(),
            ));
        }
        let k = self.kind;
        let mut dx = grad_out.to_owned();
        dx.zip_mut_with(&x, |d, &v| *d *= k.df(v));
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        Ok(Cost {
            output: input.to_vec(),
            ..Cost::default()
        })
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self.kind).expect("serializes")
    }
}
