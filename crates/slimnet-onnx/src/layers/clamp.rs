//! Clamping to `[min, max]` (ONNX `Clip` with bounds other than ReLU's and ReLU6's).

use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::{Error, Layer, Result, Tensor};

/// `min(max(x, min), max)` element-wise, on any shape (so `min > max` gives `max`
/// everywhere, as ONNX `Clip` does). NaN passes through.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::Clamp;
/// let y = Clamp::new(-1.0, 2.0)?.forward(&tensor::from_vec(&[3], vec![-5.0, 0.5, 9.0])?)?;
/// assert_eq!(y.as_slice().unwrap(), &[-1.0, 0.5, 2.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Clamp {
    min: f32,
    max: f32,
    cache: Option<Tensor>,
}

impl Clamp {
    /// A clamp to `[min, max]` (either may be infinite).
    ///
    /// # Errors
    /// A NaN bound.
    pub fn new(min: f32, max: f32) -> Result<Self> {
        if min.is_nan() || max.is_nan() {
            return Err(Error::config(format!(
                "clamp bounds {min}, {max} must not be NaN"
            )));
        }
        Ok(Self {
            min,
            max,
            cache: None,
        })
    }

    /// The bounds `(min, max)`.
    pub fn bounds(&self) -> (f32, f32) {
        (self.min, self.max)
    }

    fn f(&self, v: f32) -> f32 {
        if v.is_nan() {
            v
        } else {
            v.max(self.min).min(self.max)
        }
    }
}

impl Layer for Clamp {
    fn kind(&self) -> &'static str {
        "Clamp"
    }

    /// Any shape -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.mapv(|v| self.f(v)))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = Some(x.clone());
        self.forward(x)
    }

    /// Passes the gradient where the input was strictly inside the bounds.
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let x = self.cache.take().ok_or_else(|| Error::no_cache("Clamp"))?;
        let mut out = g.clone();
        out.zip_mut_with(&x, |g, &x| {
            if !(x > self.min && x < self.max) {
                *g = 0.0
            }
        });
        Ok(out)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn config_json(&self) -> Value {
        json!({"min": finite_or_null(self.min), "max": finite_or_null(self.max)})
    }
}

/// JSON has no infinities: they are written as `null`.
fn finite_or_null(v: f32) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

pub(crate) fn load(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let bound = |name: &str, inf: f32| -> Result<f32> {
        match cfg.get(name) {
            Some(Value::Null) => Ok(inf),
            Some(v) => v
                .as_f64()
                .map(|v| v as f32)
                .ok_or_else(|| Error::ModelFile(format!("Clamp config: `{name}` is not a number"))),
            None => Err(Error::ModelFile(format!("Clamp config: missing `{name}`"))),
        }
    };
    Ok(Box::new(Clamp::new(
        bound("min", f32::NEG_INFINITY)?,
        bound("max", f32::INFINITY)?,
    )?))
}
