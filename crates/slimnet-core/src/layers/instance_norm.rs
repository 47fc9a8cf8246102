//! Instance normalization: each `[H, W]` plane of each sample normalised on its own (ONNX
//! `InstanceNormalization`), the normalisation of style-transfer networks.

use ndarray::IxDyn;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::{Cost, Layer};
use crate::layers::{Activation, ActivationKind};
use crate::param::Param;
use crate::tensor::{contiguous, expect_nchw, Tensor};

/// Hyper-parameters of an [`InstanceNorm2d`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InstanceNormConfig {
    /// Channels.
    pub num_features: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// An activation applied to the output in the same pass (fused by [`Graph::freeze`] where
    /// one follows); `None` in a training graph as built.
    ///
    /// [`Graph::freeze`]: crate::Graph::freeze
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationKind>,
}

impl InstanceNormConfig {
    /// `num_features` channels with ONNX's and PyTorch's `eps = 1e-5`.
    pub fn new(num_features: usize) -> Self {
        Self {
            num_features,
            eps: 1e-5,
            activation: None,
        }
    }

    /// Sets `eps`.
    pub fn with_eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Applies `kind` to the output (see [`InstanceNormConfig::activation`]).
    pub fn with_activation(mut self, kind: ActivationKind) -> Self {
        self.activation = Some(kind);
        self
    }

    /// Builds the layer with scale 1 and bias 0 (the plain normalisation).
    ///
    /// # Errors
    /// Zero channels, more than `2^24`, an `eps` that is not finite and positive, or an
    /// activation with a parameter that is not finite.
    pub fn init(self) -> Result<InstanceNorm2d> {
        let c = self.num_features;
        InstanceNorm2d::from_parts(self, Tensor::ones(vec![c]), Tensor::zeros(vec![c]))
    }
}

/// Instance normalization with a per-channel affine transform: for every sample `n` and
/// channel `c` of `[N, C, H, W]` input,
/// `y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]`, where `mean` and the biased
/// variance `var` are taken over that plane's `H * W` values. Training and inference compute the
/// same function (there are no running statistics).
///
/// ```
/// use slimnet_core::layers::InstanceNormConfig;
/// use slimnet_core::{tensor, Layer};
/// let norm = InstanceNormConfig::new(2).init()?;
/// let x = tensor::from_vec(&[1, 2, 1, 2], vec![1.0, 3.0, 10.0, 10.0])?;
/// let y = norm.forward(&x)?;
/// // the first plane becomes -1, 1 (up to eps); a constant plane becomes 0
/// assert!((y[[0, 0, 0, 0]] + 1.0).abs() < 1e-4 && (y[[0, 0, 0, 1]] - 1.0).abs() < 1e-4);
/// assert_eq!(y[[0, 1, 0, 0]], 0.0);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct InstanceNorm2d {
    cfg: InstanceNormConfig,
    /// Scale `[C]`.
    pub weight: Param,
    /// Shift `[C]`.
    pub bias: Param,
    /// The normalised input and the inverse standard deviation of each plane.
    cache: Option<(Tensor, Vec<f32>)>,
}

impl InstanceNorm2d {
    /// A layer from its configuration, scale and shift.
    ///
    /// # Errors
    /// Zero channels or more than `2^24`, an `eps` that is not finite and positive, an
    /// activation with a parameter that is not finite, or a scale or shift not of shape `[C]`.
    pub fn from_parts(cfg: InstanceNormConfig, weight: Tensor, bias: Tensor) -> Result<Self> {
        let c = cfg.num_features;
        if c == 0 || c > 1 << 24 || !(cfg.eps > 0.0 && cfg.eps.is_finite()) {
            return Err(Error::config(format!(
                "InstanceNorm2d: num_features {c} must be in 1..=2^24 and eps {} positive",
                cfg.eps
            )));
        }
        if let Some(kind) = cfg.activation {
            Activation::new(kind)?;
        }
        for (name, t) in [("weight", &weight), ("bias", &bias)] {
            if t.shape() != [c] {
                return Err(Error::config(format!(
                    "InstanceNorm2d {name} of shape {:?}, expected [{c}]",
                    t.shape()
                )));
            }
        }
        Ok(Self {
            cfg,
            weight: Param::new(weight),
            bias: Param::new(bias),
            cache: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InstanceNormConfig {
        &self.cfg
    }

    /// The input's shape checked, and the size of one plane.
    fn plane(&self, input: &[usize]) -> Result<usize> {
        let (_, _, h, w) = expect_nchw(input, Some(self.cfg.num_features))?;
        if h == 0 || w == 0 {
            return Err(Error::shape(
                format!("[N, {}, H, W] with H, W > 0", self.cfg.num_features),
                input,
            ));
        }
        Ok(h * w)
    }

    /// The normalised input `x_hat` and each plane's inverse standard deviation.
    fn normalise(&self, x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
        let m = self.plane(x.shape())?;
        let mut xs = contiguous(x).into_owned();
        let eps = f64::from(self.cfg.eps);
        let mut inv_std = Vec::with_capacity(xs.len() / m);
        for p in xs.chunks_exact_mut(m) {
            let (mean, is) = plane_stats(p, eps);
            p.iter_mut()
                .for_each(|v| *v = ((f64::from(*v) - mean) * is) as f32);
            inv_std.push(is as f32);
        }
        Ok((xs, inv_std))
    }
}

/// The mean of a plane and its inverse standard deviation `1 / sqrt(var + eps)`, summed in f64
/// over eight lanes (so that the loops vectorize).
fn plane_stats(p: &[f32], eps: f64) -> (f64, f64) {
    fn sum(p: &[f32], f: impl Fn(f32) -> f64) -> f64 {
        let mut acc = [0.0f64; 8];
        let chunks = p.chunks_exact(8);
        let rest: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        acc.iter().sum::<f64>() + rest
    }
    let m = p.len() as f64;
    let mean = sum(p, f64::from) / m;
    let var = sum(p, |v| (f64::from(v) - mean).powi(2)) / m;
    (mean, 1.0 / (var + eps).sqrt())
}

impl Layer for InstanceNorm2d {
    fn kind(&self) -> &'static str {
        "InstanceNorm2d"
    }

    /// `[N, C, H, W]` -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = self.plane(x.shape())?;
        let (c, eps) = (self.cfg.num_features, f64::from(self.cfg.eps));
        let (g, b) = (self.weight.value(), self.bias.value());
        let act = self.cfg.activation;
        // normalisation and affine map in one pass per plane, into a reused buffer; the
        // activation while the plane is still in cache
        Ok(crate::buffers::map_planes(x, m, |i, src, dst| {
            let (mean, is) = plane_stats(src, eps);
            let (mean, a, b) = (mean as f32, (is as f32) * g[i % c], b[i % c]);
            match act {
                None => dst
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &v)| *d = (v - mean) * a + b),
                // ReLU written out, as the ReLU layer computes it (NaN passes through): through
                // `ActivationKind::f` the loop does not vectorize (16 planes of 256x256: 1.1
                // against 2.1-2.9 ms)
                Some(ActivationKind::Relu) => dst.iter_mut().zip(src).for_each(|(d, &v)| {
                    let y = (v - mean) * a + b;
                    *d = if y < 0.0 { 0.0 } else { y }
                }),
                Some(k) => dst
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &v)| *d = k.f((v - mean) * a + b)),
            }
        }))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        // the output as inference computes it (same bits), the normalised input for backward
        let y = self.forward(x)?;
        let (xhat, inv_std) = self.normalise(x)?;
        let xhat = Tensor::from_shape_vec(IxDyn(x.shape()), xhat).expect("the input's length");
        self.cache = Some((xhat, inv_std));
        Ok(y)
    }

    /// Per plane of `m = H * W` values:
    /// `dx = weight * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))`; the
    /// scale gradient is `sum(dy * x_hat)` and the shift gradient `sum(dy)`, over samples and
    /// positions. With an activation, `dy` is first multiplied by its derivative at
    /// `weight * x_hat + bias`.
    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let (xhat, inv_std) = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("InstanceNorm2d"))?;
        if grad_out.shape() != xhat.shape() {
            return Err(Error::shape(
                format!("gradient {:?}", xhat.shape()),
                grad_out.shape(),
            ));
        }
        let c = self.cfg.num_features;
        let m = xhat.shape()[2] * xhat.shape()[3];
        let mut dy = contiguous(grad_out);
        if let Some(k) = self.cfg.activation {
            let (g, b) = (self.weight.value(), self.bias.value());
            let xh = xhat.as_slice().expect("the cached tensor is contiguous");
            for (i, (d, x)) in dy
                .to_mut()
                .chunks_exact_mut(m)
                .zip(xh.chunks_exact(m))
                .enumerate()
            {
                let (g, b) = (g[i % c], b[i % c]);
                d.iter_mut()
                    .zip(x)
                    .for_each(|(d, &x)| *d *= k.df(x * g + b));
            }
        }
        let xh = xhat.as_slice().expect("the cached tensor is contiguous");
        let mut dx = vec![0.0f32; xh.len()];
        let (gamma, gw) = self.weight.value_and_grad_mut();
        let gw = gw.as_slice_mut().expect("a parameter is contiguous");
        let gb = self
            .bias
            .grad
            .as_slice_mut()
            .expect("a parameter is contiguous");
        for (i, ((d, x), o)) in dy
            .chunks_exact(m)
            .zip(xh.chunks_exact(m))
            .zip(dx.chunks_exact_mut(m))
            .enumerate()
        {
            let ch = i % c;
            let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
            for (&d, &x) in d.iter().zip(x) {
                sdy += f64::from(d);
                sdyx += f64::from(d) * f64::from(x);
            }
            gw[ch] += sdyx as f32;
            gb[ch] += sdy as f32;
            let k = f64::from(gamma[ch]) * f64::from(inv_std[i]) / m as f64;
            for ((o, &d), &x) in o.iter_mut().zip(d).zip(x) {
                *o = (k * (m as f64 * f64::from(d) - sdy - f64::from(x) * sdyx)) as f32;
            }
        }
        Ok(Tensor::from_shape_vec(IxDyn(xhat.shape()), dx).expect("the input's length"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.plane(input)?;
        Ok(input.to_vec())
    }

    /// About four operations per value (statistics, normalisation, affine) are counted as
    /// two multiply-accumulates.
    fn cost(&self, input: &[usize]) -> Result<Cost> {
        self.plane(input)?;
        let params = 2 * self.cfg.num_features;
        Ok(Cost {
            output: input.to_vec(),
            params,
            macs: 2 * input.iter().product::<usize>(),
            bytes: params * 4,
        })
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        f("weight", &self.weight);
        f("bias", &self.bias);
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("weight", &mut self.weight);
        f("bias", &mut self.bias);
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serializes")
    }
}
