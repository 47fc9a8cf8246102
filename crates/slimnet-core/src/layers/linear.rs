//! Fully-connected layer.

use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use slimnet_kernels::dense;
use slimnet_kernels::Activation;

use crate::error::{Error, Result};
use crate::layer::{Cost, Layer};
use crate::param::Param;
use crate::tensor::{contiguous, normal, zeros, SlimRng, Tensor};

/// Hyper-parameters of a [`Linear`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LinearConfig {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl LinearConfig {
    /// A linear layer with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Self {
            in_features,
            out_features,
            bias: true,
        }
    }

    /// Sets whether the layer has a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Checks the configuration: features in `1..=2^28` and a weight within the memory
    /// ceiling of [`limits`](crate::limits).
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Limit`] saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        validate(self)
    }

    /// Builds the layer with He-normal weights and a zero bias.
    ///
    /// # Errors
    /// Zero or absurdly large sizes.
    pub fn init(self, rng: &mut SlimRng) -> Result<Linear> {
        validate(&self)?;
        let w = normal(
            &[self.out_features, self.in_features],
            0.0,
            (2.0 / self.in_features as f32).sqrt(),
            rng,
        );
        let b = self.bias.then(|| zeros(&[self.out_features]));
        Linear::from_parts(self, w, b)
    }
}

fn validate(c: &LinearConfig) -> Result<()> {
    if c.in_features == 0
        || c.out_features == 0
        || c.in_features > 1 << 28
        || c.out_features > 1 << 28
    {
        return Err(Error::config(format!(
            "features {}x{} must be in 1..=2^28",
            c.in_features, c.out_features
        )));
    }
    crate::limits::check_shape("weight", &[c.out_features, c.in_features], 4)?;
    Ok(())
}

/// Fully-connected layer: `y = x W^T + b` with `W` of shape `[out, in]`.
///
/// ```
/// use slimnet_core::layers::LinearConfig;
/// use slimnet_core::{tensor, Layer};
/// let fc = LinearConfig::new(4, 2).init(&mut tensor::rng(0))?;
/// assert_eq!(fc.forward(&tensor::zeros(&[3, 4]))?.shape(), &[3, 2]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Linear {
    cfg: LinearConfig,
    /// Weight `[out, in]`.
    pub weight: Param,
    /// Bias `[out]`.
    pub bias: Option<Param>,
    cache: Option<Tensor>,
}

impl Linear {
    /// A layer from its configuration and tensors.
    ///
    /// # Errors
    /// An invalid configuration or tensors whose shapes do not match it.
    pub fn from_parts(cfg: LinearConfig, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        validate(&cfg)?;
        if weight.shape() != [cfg.out_features, cfg.in_features] {
            return Err(Error::config(format!(
                "weight of shape {:?}, expected [{}, {}]",
                weight.shape(),
                cfg.out_features,
                cfg.in_features
            )));
        }
        match (&bias, cfg.bias) {
            (Some(b), true) if b.shape() == [cfg.out_features] => {}
            (None, false) => {}
            _ => return Err(Error::config("bias does not match the configuration")),
        }
        Ok(Self {
            cfg,
            weight: Param::new(weight.as_standard_layout().into_owned()),
            bias: bias.map(Param::new),
            cache: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LinearConfig {
        &self.cfg
    }

    fn check(&self, shape: &[usize]) -> Result<usize> {
        if shape.len() != 2 || shape[1] != self.cfg.in_features {
            return Err(Error::shape(
                format!("[N, {}]", self.cfg.in_features),
                shape,
            ));
        }
        let (inf, outf) = (self.cfg.in_features, self.cfg.out_features);
        crate::limits::check_macs("linear", &[shape[0], inf, outf])?;
        Ok(shape[0])
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "Linear"
    }

    /// `[N, in]` -> `[N, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = self.check(x.shape())?;
        let xs = contiguous(x);
        let mut y = vec![0.0; n * self.cfg.out_features];
        let bias = self.bias.as_ref().map(|b| contiguous(b.value()));
        dense::linear_forward(
            n,
            self.cfg.in_features,
            self.cfg.out_features,
            &xs,
            &contiguous(self.weight.value()),
            bias.as_deref(),
            Activation::Identity,
            &mut y,
        )?;
        Ok(Tensor::from_shape_vec(IxDyn(&[n, self.cfg.out_features]), y).expect("length"))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some(x.as_standard_layout().into_owned());
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let x = self.cache.take().ok_or_else(|| Error::no_cache("Linear"))?;
        let n = x.shape()[0];
        if grad_out.shape() != [n, self.cfg.out_features] {
            return Err(Error::shape(
                format!("gradient [{n}, {}]", self.cfg.out_features),
                grad_out.shape(),
            ));
        }
        let dy = contiguous(grad_out);
        let mut dx = vec![0.0; n * self.cfg.in_features];
        let (w, gw) = self.weight.value_and_grad_mut();
        dense::linear_backward(
            n,
            self.cfg.in_features,
            self.cfg.out_features,
            &contiguous(&x),
            &contiguous(w),
            &dy,
            Some(&mut dx),
            gw.as_slice_mut().expect("contiguous"),
            self.bias
                .as_mut()
                .map(|b| b.grad.as_slice_mut().expect("contiguous")),
        )?;
        Ok(Tensor::from_shape_vec(IxDyn(&[n, self.cfg.in_features]), dx).expect("length"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![self.check(input)?, self.cfg.out_features])
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let n = self.check(input)?;
        let params = self.weight.len() + self.bias.as_ref().map_or(0, Param::len);
        Ok(Cost {
            output: vec![n, self.cfg.out_features],
            params,
            macs: n * self.cfg.in_features * self.cfg.out_features,
            bytes: params * 4,
        })
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        f("weight", &self.weight);
        if let Some(b) = &self.bias {
            f("bias", b);
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            f("bias", b);
        }
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serializes")
    }
}
