//! Softmax and log-softmax over axis 1.

use ndarray::Axis;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::Tensor;

/// Softmax or log-softmax over axis 1 (the class or channel axis) of a tensor of rank >= 2.
#[derive(Debug, Clone)]
pub struct Softmax {
    log: bool,
    cache: Option<Tensor>,
}

#[derive(Serialize, Deserialize)]
struct SoftmaxConfig {
    log: bool,
}

impl Softmax {
    /// Softmax.
    pub fn new() -> Self {
        Self {
            log: false,
            cache: None,
        }
    }

    /// Log-softmax.
    pub fn log() -> Self {
        Self {
            log: true,
            cache: None,
        }
    }

    /// Whether this is log-softmax.
    pub fn is_log(&self) -> bool {
        self.log
    }
}

impl Default for Softmax {
    fn default() -> Self {
        Self::new()
    }
}

/// Log-softmax over axis 1 of a tensor of rank >= 2 (numerically stable).
pub(crate) fn log_softmax_axis1(x: &Tensor) -> Tensor {
    let mut y = x.to_owned();
    // Move axis 1 last, so that each lane is one distribution.
    let mut v = y.view_mut();
    v.swap_axes(1, x.ndim() - 1);
    for mut lane in v.lanes_mut(Axis(x.ndim() - 1)) {
        let m = lane.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + lane.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        lane.mapv_inplace(|v| v - lse);
    }
    y
}

impl Layer for Softmax {
    fn kind(&self) -> &'static str {
        if self.log {
            "LogSoftmax"
        } else {
            "Softmax"
        }
    }

    /// `[N, C, ...]` -> the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.ndim() < 2 {
            return Err(Error::shape("[N, C, ...] (rank >= 2)", x.shape()));
        }
        let ls = log_softmax_axis1(x);
        Ok(if self.log { ls } else { ls.mapv(f32::exp) })
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some(y.clone());
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let y = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache(self.kind()))?;
        if y.shape() != grad_out.shape() {
            return Err(Error::shape(
                format!("gradient {:?}", y.shape()),
                grad_out.shape(),
            ));
        }
        let nd = y.ndim();
        let mut dx = grad_out.to_owned();
        let mut dv = dx.view_mut();
        dv.swap_axes(1, nd - 1);
        let mut yv = y.view();
        yv.swap_axes(1, nd - 1);
        for (mut d, yl) in dv
            .lanes_mut(Axis(nd - 1))
            .into_iter()
            .zip(yv.lanes(Axis(nd - 1)))
        {
            if self.log {
                // dx = dy - softmax * sum(dy)
                let s: f32 = d.sum();
                d.zip_mut_with(&yl, |g, &l| *g -= l.exp() * s);
            } else {
                // dx = y * (dy - sum(dy * y))
                let s: f32 = d.iter().zip(yl.iter()).map(|(g, v)| g * v).sum();
                d.zip_mut_with(&yl, |g, &v| *g = v * (*g - s));
            }
        }
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.len() < 2 {
            return Err(Error::shape("[N, C, ...] (rank >= 2)", input));
        }
        Ok(input.to_vec())
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(SoftmaxConfig { log: self.log }).expect("serializes")
    }
}
