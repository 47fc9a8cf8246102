//! [`FakeQuantize`]: simulated u8 activation quantization with a straight-through estimator.

use serde_json::json;
use slimnet_core::io::TensorSource;
use slimnet_core::{Cost, Error, Layer, Result, StoredTensor, Tensor};
use slimnet_kernels::int8::QuantParams;

use crate::error::to_core;
use crate::observer::{MovingAverageMinMax, Observer};

/// Quantizes and dequantizes activations with u8 affine parameters taken from a moving-average
/// min-max observer, exactly as the int8 graph will (`QuantParams::from_range`).
///
/// Training mode observes each batch (unless [frozen](Self::freeze)); the backward pass is the
/// clipped straight-through estimator: the gradient passes unchanged where the input lies inside
/// the representable range and is zero where it was clipped. Before any observation the layer is
/// the identity.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_quant::qat::FakeQuantize;
/// let mut fq = FakeQuantize::new("x", 1.0);
/// let x = tensor::from_vec(&[1, 3], vec![0.0, 0.5, 1.0])?;
/// fq.forward_train(&x)?; // observes [0, 1]
/// fq.freeze();
/// let y = fq.forward_train(&tensor::from_vec(&[1, 3], vec![0.3, 2.0, -1.0])?)?;
/// assert!((y[[0, 0]] - 0.3).abs() <= 0.5 / 255.0);
/// assert_eq!((y[[0, 1]], y[[0, 2]]), (1.0, 0.0)); // clipped
/// let g = fq.backward(&tensor::from_vec(&[1, 3], vec![1.0, 1.0, 1.0])?)?;
/// assert_eq!(g.as_slice().unwrap(), &[1.0, 0.0, 0.0]); // straight through inside the range
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FakeQuantize {
    key: String,
    averaging: f32,
    observer: MovingAverageMinMax,
    range: Option<(f32, f32)>,
    frozen: bool,
    cache: Option<Vec<bool>>,
}

impl FakeQuantize {
    /// A fake quantizer for the value called `key` (the node name whose range it learns), with
    /// the observer's averaging constant.
    pub fn new(key: &str, averaging: f32) -> Self {
        Self {
            key: key.to_string(),
            averaging,
            observer: MovingAverageMinMax::new(averaging),
            range: None,
            frozen: false,
            cache: None,
        }
    }

    /// The node name whose range this layer learns.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current range, once observed.
    pub fn range(&self) -> Option<(f32, f32)> {
        self.range
    }

    /// Stops updating the range.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Whether the range is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The u8 parameters of the current range.
    pub fn params(&self) -> Option<QuantParams> {
        self.range.map(|(lo, hi)| QuantParams::from_range(lo, hi))
    }

    fn apply(&self, x: &Tensor) -> (Tensor, Vec<bool>) {
        match self.params() {
            None => (x.clone(), vec![true; x.len()]),
            Some(p) => {
                let (lo, hi) = (p.dequantize(0), p.dequantize(255));
                let inside = x.iter().map(|&v| v >= lo && v <= hi).collect();
                (x.mapv(|v| p.dequantize(p.quantize(v))), inside)
            }
        }
    }
}

impl Layer for FakeQuantize {
    fn kind(&self) -> &'static str {
        "FakeQuantize"
    }

    /// Any shape -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.apply(x).0)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        if !self.frozen {
            let data = slimnet_core::tensor::contiguous(x);
            self.observer
                .observe(&data)
                .map_err(|e| to_core(e.in_layer(&self.key)))?;
            self.range = self.observer.range().ok();
        }
        let (y, inside) = self.apply(x);
        self.cache = Some(inside);
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let inside = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("FakeQuantize"))?;
        if inside.len() != grad_out.len() {
            return Err(Error::shape(
                format!("a gradient of {} values", inside.len()),
                grad_out.shape(),
            ));
        }
        let mut g = grad_out.as_standard_layout().into_owned();
        for (v, &k) in g.iter_mut().zip(&inside) {
            if !k {
                *v = 0.0;
            }
        }
        Ok(g)
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
        json!({"key": self.key, "averaging": self.averaging, "frozen": self.frozen})
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        if let Some((lo, hi)) = self.range {
            f(
                "range",
                StoredTensor::from_f32(
                    &Tensor::from_shape_vec(vec![2], vec![lo, hi]).expect("2 values"),
                ),
            );
        }
    }
}

pub(crate) fn load_fake_quantize(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    Ok(Box::new(load_state(cfg, t, "")?))
}

/// A fake quantizer from its config and its `<prefix>range` tensor (absent before any
/// observation).
pub(crate) fn load_state(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
    prefix: &str,
) -> Result<FakeQuantize> {
    let key = cfg.get("key").and_then(|v| v.as_str()).unwrap_or_default();
    let averaging = cfg
        .get("averaging")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.01) as f32;
    if !(averaging.is_finite() && averaging > 0.0 && averaging <= 1.0) {
        return Err(Error::ModelFile(format!(
            "FakeQuantize averaging {averaging} is not in (0, 1]"
        )));
    }
    let mut fq = FakeQuantize::new(key, averaging);
    if let Some(r) = t.f32_opt(&format!("{prefix}range"))? {
        if r.len() != 2 || !r.iter().all(|v| v.is_finite()) {
            return Err(Error::ModelFile(
                "FakeQuantize range must hold two finite values".into(),
            ));
        }
        let (lo, hi) = (r[0], r[1]);
        fq.range = Some((lo, hi));
        // resume averaging from the stored range
        let _ = fq.observer.observe(&[lo, hi]);
    }
    fq.frozen = cfg.get("frozen").and_then(|v| v.as_bool()).unwrap_or(false);
    Ok(fq)
}
