//! ONNX `PRelu`: a leaky ReLU whose negative slope is a tensor (one per channel, typically).

use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::tensor::broadcast_shape;
use slimnet_core::{Error, Layer, Result, Tensor};

/// `x` where `x > 0`, else `slope * x`, with `slope` broadcast against the input (NumPy
/// rules; the output keeps the input's shape).
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::PRelu;
/// // one slope per channel of an NCHW input
/// let p = PRelu::new(tensor::from_vec(&[2, 1, 1], vec![0.5, 0.1])?);
/// let y = p.forward(&tensor::from_vec(&[1, 2, 1, 2], vec![-2.0, 3.0, -10.0, 1.0])?)?;
/// assert_eq!(y.as_slice().unwrap(), &[-1.0, 3.0, -1.0, 1.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PRelu {
    slope: Tensor,
    cache: Option<Tensor>,
}

impl PRelu {
    /// A PReLU with the negative slopes `slope`.
    pub fn new(slope: Tensor) -> Self {
        Self {
            slope: slope.as_standard_layout().into_owned(),
            cache: None,
        }
    }

    /// The negative slopes.
    pub fn slope(&self) -> &Tensor {
        &self.slope
    }
}

impl Layer for PRelu {
    fn kind(&self) -> &'static str {
        "PRelu"
    }

    /// Any shape the slopes broadcast to -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.output_shape(x.shape())?;
        let s = self.slope.broadcast(x.shape()).expect("checked above");
        let mut y = x.to_owned();
        y.zip_mut_with(&s, |v, &a| {
            if *v < 0.0 {
                *v *= a
            }
        });
        Ok(y)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = Some(x.clone());
        self.forward(x)
    }

    /// The input gradient (the slopes are constants).
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let x = self.cache.take().ok_or_else(|| Error::no_cache("PRelu"))?;
        if g.shape() != x.shape() {
            return Err(Error::shape(format!("gradient {:?}", x.shape()), g.shape()));
        }
        let s = self.slope.broadcast(x.shape()).expect("checked in forward");
        let mut d = g.to_owned();
        ndarray::Zip::from(&mut d)
            .and(&x)
            .and(&s)
            .for_each(|d, &x, &a| {
                if x < 0.0 {
                    *d *= a
                }
            });
        Ok(d)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match broadcast_shape(input, self.slope.shape()) {
            Some(s) if s == input => Ok(s),
            _ => Err(Error::shape(
                format!("a shape the slopes {:?} broadcast to", self.slope.shape()),
                input,
            )),
        }
    }

    fn visit_buffers(&self, f: &mut dyn FnMut(&str, &Tensor)) {
        f("slope", &self.slope);
    }

    fn config_json(&self) -> Value {
        json!({})
    }
}

pub(crate) fn load(_: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    Ok(Box::new(PRelu::new(t.f32("slope")?)))
}
