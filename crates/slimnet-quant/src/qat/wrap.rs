//! [`QatWeights`]: a Conv2d or Linear trained with fake-quantized input and weights.

use serde_json::json;
use slimnet_core::io::{parse_config, TensorSource};
use slimnet_core::layers::{Conv2d, Linear};
use slimnet_core::{Cost, Error, Layer, Param, Result, StoredTensor, Tensor};
use slimnet_kernels::int8::QuantParams;

use super::FakeQuantize;
use crate::error::to_core;
use crate::scheme::{fake_quantize, QScheme};

/// Wraps a Conv2d or Linear so that it computes as its int8 layer will: its input goes through
/// a [`FakeQuantize`] (u8 codes with a range learnt by a moving-average observer) and its
/// weight is quantized (8-bit symmetric per channel), while the optimizer updates the float
/// weight: the straight-through estimator hands the gradient of the quantized weight to the
/// float one. A pruning mask on the weight is kept (pruned weights stay zero).
///
/// ```
/// use slimnet_core::layers::LinearConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_quant::qat::QatWeights;
/// let fc = LinearConfig::new(8, 2).init(&mut tensor::rng(0))?;
/// let mut q = QatWeights::new(Box::new(fc.clone()))?;
/// let x = tensor::uniform(&[4, 8], -1.0, 1.0, &mut tensor::rng(1));
/// let y = q.forward_train(&x)?;
/// assert!(tensor::max_abs_diff(&y, &fc.forward(&x)?) < 0.05);
/// assert!(q.input_params().is_some()); // the input range was observed
/// q.backward(&tensor::zeros(&[4, 2]).mapv(|_| 1.0))?;
/// let mut g = 0.0;
/// q.visit_params(&mut |n, p| if n == "weight" { g = p.grad.sum() });
/// assert!(g != 0.0);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QatWeights {
    inner: Box<dyn Layer>,
    input: FakeQuantize,
    scheme: QScheme,
    cache: Option<Tensor>,
}

fn weight_mut(l: &mut dyn Layer) -> Option<&mut Param> {
    if l.as_any().is::<Conv2d>() {
        return l.downcast_mut::<Conv2d>().map(|c| &mut c.weight);
    }
    l.downcast_mut::<Linear>().map(|f| &mut f.weight)
}

fn weight(l: &dyn Layer) -> Option<&Param> {
    if let Some(c) = l.downcast_ref::<Conv2d>() {
        return Some(&c.weight);
    }
    l.downcast_ref::<Linear>().map(|f| &f.weight)
}

impl QatWeights {
    /// Wraps a Conv2d or Linear, with an input observer of averaging constant 0.01.
    ///
    /// # Errors
    /// Another layer kind.
    pub fn new(inner: Box<dyn Layer>) -> Result<Self> {
        if weight(inner.as_ref()).is_none() {
            return Err(Error::config(format!(
                "QAT wraps Conv2d or Linear, not {}",
                inner.kind()
            )));
        }
        Ok(Self {
            inner,
            input: FakeQuantize::new("input", 0.01),
            scheme: QScheme::default(),
            cache: None,
        })
    }

    /// Sets the averaging constant of the input observer.
    pub fn with_averaging(mut self, c: f32) -> Self {
        self.input = FakeQuantize::new("input", c);
        self
    }

    /// Fake-quantizes the weight to `bits` bits (symmetric, per output channel; 8 by default),
    /// as the int8 layer that [`convert`](super::convert) makes will store it.
    ///
    /// # Errors
    /// `bits` outside `2..=8`.
    pub fn with_weight_bits(mut self, bits: u32) -> crate::Result<Self> {
        self.scheme = QScheme::symmetric(bits)?;
        Ok(self)
    }

    /// The bits of the fake-quantized weight.
    pub fn weight_bits(&self) -> u32 {
        self.scheme.bits
    }

    /// The float layer.
    pub fn inner(&self) -> &dyn Layer {
        self.inner.as_ref()
    }

    /// Unwraps the float layer.
    pub fn into_inner(self) -> Box<dyn Layer> {
        self.inner
    }

    /// The input quantization learnt so far (`None` before the first training batch).
    pub fn input_params(&self) -> Option<QuantParams> {
        self.input.params()
    }

    /// The input range learnt so far.
    pub fn input_range(&self) -> Option<(f32, f32)> {
        self.input.range()
    }

    /// Stops updating the input range.
    pub fn freeze(&mut self) {
        self.input.freeze();
    }

    fn quantized(&self) -> Result<Tensor> {
        let w = weight(self.inner.as_ref()).expect("checked at construction");
        fake_quantize(w.value(), self.scheme).map_err(to_core)
    }

    /// Runs `f` on the inner layer with weight `wq`, then puts the float weight back.
    fn with_quantized<T>(
        &mut self,
        wq: Tensor,
        f: impl FnOnce(&mut dyn Layer) -> Result<T>,
    ) -> Result<T> {
        let p = weight_mut(self.inner.as_mut()).expect("checked at construction");
        let wf = std::mem::replace(p.value_mut(), wq);
        let r = f(self.inner.as_mut());
        *weight_mut(self.inner.as_mut())
            .expect("checked")
            .value_mut() = wf;
        r
    }
}

impl Layer for QatWeights {
    fn kind(&self) -> &'static str {
        "QatWeights"
    }

    /// As the wrapped layer, with quantized input and weights.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.input.forward(x)?;
        let mut l = self.inner.clone();
        *weight_mut(l.as_mut()).expect("checked").value_mut() = self.quantized()?;
        l.forward(&x)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let x = self.input.forward_train(x)?;
        let wq = self.quantized()?;
        let y = self.with_quantized(wq.clone(), |l| l.forward_train(&x))?;
        self.cache = Some(wq);
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let wq = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("QatWeights"))?;
        // straight-through: the gradient of the quantized weight lands on the float weight
        let g = self.with_quantized(wq, |l| l.backward(grad_out))?;
        self.input.backward(&g)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner.output_shape(input)
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        self.inner.cost(input)
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        self.inner.visit_params(f);
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        self.inner.visit_params_mut(f);
    }

    fn config_json(&self) -> serde_json::Value {
        json!({"inner": self.inner.kind(), "config": self.inner.config_json(),
               "input": self.input.config_json(), "weight_bits": self.scheme.bits})
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        self.inner.stored_tensors(f);
        self.input
            .stored_tensors(&mut |name, t| f(&format!("input.{name}"), t));
    }
}

pub(crate) fn load_qat_weights(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    let inner_cfg = cfg.get("config").unwrap_or(&json!(null));
    let w = t.f32("weight")?;
    let b = t.f32_opt("bias")?;
    let inner: Box<dyn Layer> = match cfg.get("inner").and_then(|v| v.as_str()) {
        Some("Conv2d") => Box::new(Conv2d::from_parts(
            parse_config("Conv2d", inner_cfg)?,
            w,
            b,
        )?),
        Some("Linear") => Box::new(Linear::from_parts(
            parse_config("Linear", inner_cfg)?,
            w,
            b,
        )?),
        other => return Err(Error::ModelFile(format!("QatWeights around {other:?}"))),
    };
    let input =
        super::fake_quant::load_state(cfg.get("input").unwrap_or(&json!(null)), t, "input.")?;
    let mut q = QatWeights::new(inner)?;
    q.input = input;
    // files written before the setting existed hold 8-bit weights
    if let Some(b) = cfg.get("weight_bits").and_then(|v| v.as_u64()) {
        q = q.with_weight_bits(b as u32).map_err(to_core)?;
    }
    Ok(Box::new(q))
}
