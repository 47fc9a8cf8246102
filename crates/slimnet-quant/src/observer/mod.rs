//! Calibration observers: they watch the values flowing through one point of a network and
//! choose the range `[lo, hi]` that an 8-bit affine quantizer will cover.
//!
//! - [`MinMax`]: the extreme values seen.
//! - [`MovingAverageMinMax`]: an exponential moving average of per-batch extremes (QAT default).
//! - [`HistogramObserver`] with a [`RangeMethod`]: percentile clipping, the range minimising the
//!   expected squared quantization error (MSE), or the KL-divergence (entropy) threshold of
//!   TensorRT-style calibration, all from one adaptive 2048-bin histogram.
//!
//! Every observer rejects NaN and infinity ([`QuantError::NonFinite`]) and reports
//! [`QuantError::NoData`] when asked for a range before seeing a value. A constant tensor gives a
//! zero-width range, which [`to_params`] widens to include 0 (a constant 0 gets scale 1).
//!
//! ```
//! use slimnet_quant::observer::{ObserverKind, RangeMethod};
//! let mut obs = ObserverKind::Histogram(RangeMethod::Percentile(99.0)).build();
//! let xs: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).chain([50.0]).collect();
//! obs.observe(&xs)?;
//! let (lo, hi) = obs.range()?;
//! assert!(lo <= 0.01 && (0.95..1.05).contains(&hi), "{lo} {hi}"); // the outlier is clipped
//! # Ok::<(), slimnet_quant::QuantError>(())
//! ```

mod histogram;

pub use histogram::{HistogramObserver, RangeMethod};

use std::fmt::Debug;

use serde::{Deserialize, Serialize};
use slimnet_kernels::int8::QuantParams;

use crate::error::{QuantError, Result};

/// Watches values and proposes a quantization range.
pub trait Observer: Debug + Send + Sync {
    /// Records a batch of values.
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] for NaN or infinity (nothing of the batch is recorded).
    fn observe(&mut self, x: &[f32]) -> Result<()>;

    /// The range to quantize, `lo <= hi`.
    ///
    /// # Errors
    /// [`QuantError::NoData`] before any value was observed.
    fn range(&self) -> Result<(f32, f32)>;

    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn Observer>;
}

impl Clone for Box<dyn Observer> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Which observer to build.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ObserverKind {
    /// [`MinMax`].
    #[default]
    MinMax,
    /// [`MovingAverageMinMax`] with the given averaging constant in `(0, 1]`.
    MovingAverage(f32),
    /// [`HistogramObserver`] with a range method.
    Histogram(RangeMethod),
}

impl ObserverKind {
    /// A fresh observer of this kind.
    pub fn build(&self) -> Box<dyn Observer> {
        match *self {
            ObserverKind::MinMax => Box::new(MinMax::default()),
            ObserverKind::MovingAverage(c) => Box::new(MovingAverageMinMax::new(c)),
            ObserverKind::Histogram(m) => Box::new(HistogramObserver::new(m)),
        }
    }
}

/// The first non-finite value of `x`.
pub(crate) fn check_finite(x: &[f32]) -> Result<()> {
    match x.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(QuantError::NonFinite {
            layer: String::new(),
            value,
        }),
        None => Ok(()),
    }
}

/// Extremes of a non-empty finite slice.
fn extremes(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        })
}

/// u8 affine parameters for a range (see [`QuantParams::from_range`]: widened to include 0; a
/// zero-width range at 0 gets scale 1).
pub fn to_params(lo: f32, hi: f32) -> QuantParams {
    QuantParams::from_range(lo, hi)
}

/// The extreme values seen.
#[derive(Debug, Clone, Default)]
pub struct MinMax {
    range: Option<(f32, f32)>,
}

impl Observer for MinMax {
    fn observe(&mut self, x: &[f32]) -> Result<()> {
        check_finite(x)?;
        if x.is_empty() {
            return Ok(());
        }
        let (a, b) = extremes(x);
        self.range = Some(match self.range {
            Some((lo, hi)) => (lo.min(a), hi.max(b)),
            None => (a, b),
        });
        Ok(())
    }

    fn range(&self) -> Result<(f32, f32)> {
        self.range.ok_or(QuantError::NoData {
            layer: String::new(),
        })
    }

    fn clone_box(&self) -> Box<dyn Observer> {
        Box::new(self.clone())
    }
}

/// Exponential moving average of per-batch extremes: `r <- r + c * (batch - r)`; the first batch
/// sets the range.
#[derive(Debug, Clone)]
pub struct MovingAverageMinMax {
    c: f32,
    range: Option<(f32, f32)>,
}

impl MovingAverageMinMax {
    /// An observer with averaging constant `c` (clamped into `(0, 1]`; 0.01 is common).
    pub fn new(c: f32) -> Self {
        let c = if c.is_finite() {
            c.clamp(1e-6, 1.0)
        } else {
            0.01
        };
        Self { c, range: None }
    }
}

impl Observer for MovingAverageMinMax {
    fn observe(&mut self, x: &[f32]) -> Result<()> {
        check_finite(x)?;
        if x.is_empty() {
            return Ok(());
        }
        let (a, b) = extremes(x);
        self.range = Some(match self.range {
            Some((lo, hi)) => (lo + self.c * (a - lo), hi + self.c * (b - hi)),
            None => (a, b),
        });
        Ok(())
    }

    fn range(&self) -> Result<(f32, f32)> {
        self.range.ok_or(QuantError::NoData {
            layer: String::new(),
        })
    }

    fn clone_box(&self) -> Box<dyn Observer> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::tensor;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        tensor::normal(&[n], 0.0, 1.0, &mut tensor::rng(seed))
            .into_iter()
            .collect()
    }

    #[test]
    fn min_max_and_moving_average() {
        let mut m = MinMax::default();
        assert!(matches!(m.range(), Err(QuantError::NoData { .. })));
        m.observe(&[1.0, -2.0]).unwrap();
        m.observe(&[3.0]).unwrap();
        assert_eq!(m.range().unwrap(), (-2.0, 3.0));
        let mut a = MovingAverageMinMax::new(0.5);
        a.observe(&[0.0, 4.0]).unwrap();
        a.observe(&[-2.0, 2.0]).unwrap();
        assert_eq!(a.range().unwrap(), (-1.0, 3.0));
    }

    #[test]
    fn non_finite_values_are_rejected() {
        for kind in [
            ObserverKind::MinMax,
            ObserverKind::MovingAverage(0.1),
            ObserverKind::Histogram(RangeMethod::Mse),
        ] {
            let mut o = kind.build();
            let e = o.observe(&[1.0, f32::NAN]).unwrap_err();
            assert!(matches!(e, QuantError::NonFinite { .. }), "{e}");
            assert!(o.observe(&[f32::INFINITY]).is_err());
            assert!(matches!(o.range(), Err(QuantError::NoData { .. })));
        }
    }

    #[test]
    fn gaussian_ranges_are_ordered_sensibly() {
        let x = gaussian(200_000, 1);
        let range = |k: ObserverKind| {
            let mut o = k.build();
            for c in x.chunks(10_000) {
                o.observe(c).unwrap();
            }
            o.range().unwrap()
        };
        let (lo, hi) = range(ObserverKind::MinMax);
        assert!(hi > 4.0 && lo < -4.0);
        let (plo, phi) = range(ObserverKind::Histogram(RangeMethod::Percentile(99.9)));
        // the 99.9th percentile of a standard normal is 3.09
        assert!((phi - 3.09).abs() < 0.05, "{phi}");
        assert!((plo + 3.09).abs() < 0.05, "{plo}");
        let (_, mse_hi) = range(ObserverKind::Histogram(RangeMethod::Mse));
        let (_, kl_hi) = range(ObserverKind::Histogram(RangeMethod::Entropy));
        // both clip the sparse tails of a Gaussian but keep its bulk
        assert!(mse_hi > 2.5 && mse_hi < hi, "{mse_hi}");
        assert!(kl_hi > 2.0 && kl_hi < hi, "{kl_hi}");
    }

    #[test]
    fn constant_tensor_gives_a_usable_range() {
        for kind in [
            ObserverKind::MinMax,
            ObserverKind::Histogram(RangeMethod::Percentile(99.0)),
            ObserverKind::Histogram(RangeMethod::Mse),
            ObserverKind::Histogram(RangeMethod::Entropy),
        ] {
            let mut o = kind.build();
            o.observe(&[2.0; 100]).unwrap();
            let (lo, hi) = o.range().unwrap();
            let p = to_params(lo, hi);
            assert!(p.scale.is_finite() && p.scale > 0.0, "{kind:?}");
            assert!(
                (p.dequantize(p.quantize(2.0)) - 2.0).abs() <= p.scale,
                "{kind:?} {lo} {hi}"
            );
            let mut z = kind.build();
            z.observe(&[0.0; 10]).unwrap();
            let (lo, hi) = z.range().unwrap();
            assert_eq!(to_params(lo, hi).scale, 1.0);
        }
    }
}
