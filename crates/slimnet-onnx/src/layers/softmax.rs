//! Softmax and log-softmax over any axis (ONNX `Softmax` / `LogSoftmax`, both the opset-13
//! single-axis form and the older form that flattens the trailing axes).

use ndarray::{Axis, IxDyn};
use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::{Error, Layer, Result, Tensor};

use super::axis as resolve;

/// Softmax (or log-softmax) over one axis, or — with `flatten` (ONNX before opset 13) — over
/// all axes from `axis` on, taken together.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::SoftmaxAxis;
/// let y = SoftmaxAxis::new(0, false, false).forward(&tensor::from_vec(&[2, 1], vec![0.0, 0.0])?)?;
/// assert_eq!(y.as_slice().unwrap(), &[0.5, 0.5]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SoftmaxAxis {
    axis: i64,
    log: bool,
    flatten: bool,
}

impl SoftmaxAxis {
    /// Softmax over `axis` (negative counts from the end); `log` for log-softmax; `flatten`
    /// for the pre-opset-13 form.
    pub fn new(axis: i64, log: bool, flatten: bool) -> Self {
        Self { axis, log, flatten }
    }

    /// `(axis, log, flatten)`.
    pub fn parts(&self) -> (i64, bool, bool) {
        (self.axis, self.log, self.flatten)
    }

    fn lane(&self, mut lane: ndarray::ArrayViewMut1<'_, f32>) {
        let m = lane.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + lane.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        if self.log {
            lane.mapv_inplace(|v| v - lse);
        } else {
            lane.mapv_inplace(|v| (v - lse).exp());
        }
    }
}

impl Layer for SoftmaxAxis {
    fn kind(&self) -> &'static str {
        "SoftmaxAxis"
    }

    /// Any shape with the axis -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = resolve(self.axis, x.ndim())
            .ok_or_else(|| Error::shape(format!("a rank holding axis {}", self.axis), x.shape()))?;
        let mut y = x.as_standard_layout().into_owned();
        if self.flatten {
            let rows: usize = x.shape()[..a].iter().product();
            let cols: usize = x.shape()[a..].iter().product();
            let mut y2 = y
                .into_shape_with_order(IxDyn(&[rows, cols]))
                .expect("same length");
            for lane in y2.lanes_mut(Axis(1)) {
                self.lane(lane);
            }
            y = y2
                .into_shape_with_order(IxDyn(x.shape()))
                .expect("same length");
        } else {
            for lane in y.lanes_mut(Axis(a)) {
                self.lane(lane);
            }
        }
        Ok(y)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        resolve(self.axis, input.len())
            .map(|_| input.to_vec())
            .ok_or_else(|| Error::shape(format!("a rank holding axis {}", self.axis), input))
    }

    fn config_json(&self) -> Value {
        json!({"axis": self.axis, "log": self.log, "flatten": self.flatten})
    }
}

pub(crate) fn load(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let b = |n: &str| cfg.get(n).and_then(Value::as_bool).unwrap_or(false);
    let axis = cfg
        .get("axis")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::ModelFile("SoftmaxAxis config: `axis` is not an integer".into()))?;
    Ok(Box::new(SoftmaxAxis::new(axis, b("log"), b("flatten"))))
}
