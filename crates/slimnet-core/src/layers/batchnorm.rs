//! Batch normalization over the channels of NCHW input.

use ndarray::Ix1;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::{Cost, Layer};
use crate::param::Param;
use crate::tensor::{expect_nchw, Tensor};

/// Hyper-parameters of a [`BatchNorm2d`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchNormConfig {
    /// Channels.
    pub num_features: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Weight of the new batch statistic in the running average.
    pub momentum: f32,
}

impl BatchNormConfig {
    /// PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`.
    pub fn new(num_features: usize) -> Self {
        Self {
            num_features,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// Builds the layer: scale 1, shift 0, running mean 0, running variance 1.
    ///
    /// # Errors
    /// Zero channels, or `eps`/`momentum` out of range.
    pub fn init(self) -> Result<BatchNorm2d> {
        let c = self.num_features;
        BatchNorm2d::from_parts(
            self,
            Tensor::ones(vec![c]),
            Tensor::zeros(vec![c]),
            Tensor::zeros(vec![c]),
            Tensor::ones(vec![c]),
        )
    }
}

/// Batch normalization: batch statistics in training, running statistics in evaluation.
///
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, per channel of `[N, C, H, W]` input.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    cfg: BatchNormConfig,
    /// Scale (gamma) `[C]`.
    pub weight: Param,
    /// Shift (beta) `[C]`.
    pub bias: Param,
    /// Running mean `[C]`.
    pub running_mean: Tensor,
    /// Running (unbiased) variance `[C]`.
    pub running_var: Tensor,
    cache: Option<(Tensor, Vec<f32>)>,
}

impl BatchNorm2d {
    /// A layer from its configuration and tensors.
    ///
    /// # Errors
    /// Invalid configuration, tensors not of shape `[C]`, or a negative running variance.
    pub fn from_parts(
        cfg: BatchNormConfig,
        weight: Tensor,
        bias: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
    ) -> Result<Self> {
        let c = cfg.num_features;
        if c == 0
            || c > 1 << 24
            || !(cfg.eps > 0.0 && cfg.eps.is_finite())
            || !(0.0..=1.0).contains(&cfg.momentum)
        {
            return Err(Error::config(format!(
                "num_features {c} must be positive, eps {} positive, momentum {} in [0, 1]",
                cfg.eps, cfg.momentum
            )));
        }
        for (name, t) in [
            ("weight", &weight),
            ("bias", &bias),
            ("running_mean", &running_mean),
            ("running_var", &running_var),
        ] {
            if t.shape() != [c] {
                return Err(Error::config(format!(
                    "{name} of shape {:?}, expected [{c}]",
                    t.shape()
                )));
            }
        }
        if running_var.iter().any(|v| v.is_nan() || *v < 0.0) {
            return Err(Error::config("running_var must be non-negative"));
        }
        Ok(Self {
            cfg,
            weight: Param::new(weight),
            bias: Param::new(bias),
            running_mean,
            running_var,
            cache: None,
        })
    }

    /// Sets the weight of each new batch in the running statistics (`momentum` in `[0, 1]`;
    /// `1 / (b + 1)` for batch `b` gives their plain average over a pass, as when
    /// re-estimating them).
    ///
    /// ```
    /// use slimnet_core::layers::BatchNormConfig;
    /// let mut bn = BatchNormConfig::new(4).init()?;
    /// bn.set_momentum(0.5)?;
    /// assert_eq!(bn.config().momentum, 0.5);
    /// assert!(bn.set_momentum(1.5).is_err() && bn.set_momentum(f32::NAN).is_err());
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// A momentum outside `[0, 1]` (or NaN).
    pub fn set_momentum(&mut self, momentum: f32) -> Result<()> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::config(format!(
                "BatchNorm momentum {momentum} must be in [0, 1]"
            )));
        }
        self.cfg.momentum = momentum;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        &self.cfg
    }

    /// Per-channel `(scale, shift)` such that eval output is `x * scale + shift`; used to fold
    /// the layer into a preceding convolution.
    pub fn folded(&self) -> (Vec<f32>, Vec<f32>) {
        let mut scale = Vec::with_capacity(self.cfg.num_features);
        let mut shift = Vec::with_capacity(self.cfg.num_features);
        for c in 0..self.cfg.num_features {
            let s = self.weight.value()[c] / (self.running_var[c] + self.cfg.eps).sqrt();
            scale.push(s);
            shift.push(self.bias.value()[c] - self.running_mean[c] * s);
        }
        (scale, shift)
    }
}

/// Per channel of `c`, the sums of `a` and of `a * b` over its `[H, W]` planes (`a` and `b`
/// in NCHW memory order, `plane` values a plane), accumulated in f64 in memory order; channels
/// are split across the kernel threads for large batches (the same sums in the same order).
fn channel_sums(a: &[f32], b: &[f32], c: usize, plane: usize) -> Vec<(f64, f64)> {
    let mut sums = vec![(0.0f64, 0.0f64); c];
    let images = a.len() / (c * plane).max(1);
    crate::buffers::for_parts(&mut sums, 1, a.len(), |channels, sums| {
        for (ch, (s, sp)) in channels.zip(sums) {
            for n in 0..images {
                let at = (n * c + ch) * plane..(n * c + ch + 1) * plane;
                for (&u, &v) in a[at.clone()].iter().zip(&b[at]) {
                    *s += u as f64;
                    *sp += (u as f64) * (v as f64);
                }
            }
        }
    });
    sums
}

impl Layer for BatchNorm2d {
    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }

    /// `[N, C, H, W]` -> same shape, with running statistics.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        expect_nchw(x.shape(), Some(self.cfg.num_features))?;
        let (scale, shift) = self.folded();
        let plane: usize = x.shape()[2..].iter().product();
        if x.is_empty() {
            return Ok(x.clone());
        }
        let c = scale.len();
        // one `[H, W]` plane per (image, channel), in memory order
        Ok(crate::buffers::map_planes(x, plane, |i, src, dst| {
            let (a, b) = (scale[i % c], shift[i % c]);
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v * a + b);
        }))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = expect_nchw(x.shape(), Some(self.cfg.num_features))?;
        let m = (n * h * w) as f64;
        if m == 0.0 {
            return Err(Error::shape("a non-empty batch", x.shape()));
        }
        let plane = h * w;
        let xs = crate::tensor::contiguous(x);
        let (mut mean, mut var) = (vec![0.0f32; c], vec![0.0f32; c]);
        for (ch, (s, s2)) in channel_sums(&xs, &xs, c, plane).into_iter().enumerate() {
            let mu = s / m;
            mean[ch] = mu as f32;
            var[ch] = (s2 / m - mu * mu).max(0.0) as f32;
        }
        let mom = self.cfg.momentum;
        let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 } as f32;
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + self.cfg.eps).sqrt())
            .collect();
        for ch in 0..c {
            self.running_mean[ch] = (1.0 - mom) * self.running_mean[ch] + mom * mean[ch];
            self.running_var[ch] = (1.0 - mom) * self.running_var[ch] + mom * var[ch] * unbias;
        }
        // one `[H, W]` plane per (image, channel), in memory order
        let xhat = crate::buffers::map_planes(x, plane, |i, src, dst| {
            let (mu, k) = (mean[i % c], inv_std[i % c]);
            dst.iter_mut()
                .zip(src)
                .for_each(|(d, &v)| *d = (v - mu) * k);
        });
        let (gamma, beta) = (self.weight.value(), self.bias.value());
        let y = crate::buffers::map_planes(&xhat, plane, |i, src, dst| {
            let (g, b) = (gamma[i % c], beta[i % c]);
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v * g + b);
        });
        self.cache = Some((xhat, inv_std));
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let (xhat, inv_std) = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("BatchNorm2d"))?;
        if grad_out.shape() != xhat.shape() {
            return Err(Error::shape(
                format!("gradient {:?}", xhat.shape()),
                grad_out.shape(),
            ));
        }
        let c = self.cfg.num_features;
        let m = (xhat.len() / c) as f32;
        if xhat.is_empty() {
            return Ok(grad_out.to_owned());
        }
        let plane = xhat.len() / (xhat.shape()[0] * c);
        let dy = crate::tensor::contiguous(grad_out);
        let xh = xhat.as_slice().expect("the cached input is contiguous");
        let sums = channel_sums(&dy, xh, c, plane);
        let (gamma, gw) = self.weight.value_and_grad_mut();
        let mut gw = gw.view_mut().into_dimensionality::<Ix1>().expect("1-d");
        let mut gb = self
            .bias
            .grad
            .view_mut()
            .into_dimensionality::<Ix1>()
            .expect("1-d");
        let mut coef = Vec::with_capacity(c);
        for (ch, &(sdy, sdyx)) in sums.iter().enumerate() {
            gw[ch] += sdyx as f32;
            gb[ch] += sdy as f32;
            coef.push((gamma[ch] * inv_std[ch] / m, sdy as f32, sdyx as f32));
        }
        let mut dx = crate::buffers::output(xhat.shape());
        let out = dx.as_slice_mut().expect("an output buffer is contiguous");
        let elements = out.len();
        crate::buffers::for_parts(out, plane, elements, |planes, out| {
            for (i, dst) in planes.zip(out.chunks_exact_mut(plane)) {
                let (k, sdy, sdyx) = coef[i % c];
                let at = i * plane..(i + 1) * plane;
                for ((o, &d), &x) in dst.iter_mut().zip(&dy[at.clone()]).zip(&xh[at]) {
                    *o = k * (m * d - sdy - x * sdyx);
                }
            }
        });
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        expect_nchw(input, Some(self.cfg.num_features))?;
        Ok(input.to_vec())
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        expect_nchw(input, Some(self.cfg.num_features))?;
        let params = 2 * self.cfg.num_features;
        Ok(Cost {
            output: input.to_vec(),
            params,
            macs: input.iter().product(),
            bytes: 4 * self.cfg.num_features * 4,
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

    fn visit_buffers(&self, f: &mut dyn FnMut(&str, &Tensor)) {
        f("running_mean", &self.running_mean);
        f("running_var", &self.running_var);
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serializes")
    }
}
