//! An adaptive histogram and the range methods computed from it.

use serde::{Deserialize, Serialize};

use super::{check_finite, extremes, Observer};
use crate::error::{QuantError, Result};

/// Number of histogram bins.
const BINS: usize = 2048;

/// How a [`HistogramObserver`] turns its histogram into a range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RangeMethod {
    /// Clip both tails at this percentile (e.g. `99.99`): the range is
    /// `[q(100 - p), q(p)]`.
    Percentile(f32),
    /// The range `[a * min, a * max]` (over 100 factors `a` in `(0, 1]`) minimising the expected
    /// squared error of 8-bit affine quantization: rounding noise `s^2 / 12` inside the range,
    /// squared clipping distance outside.
    Mse,
    /// The KL-divergence threshold of entropy calibration on magnitudes: the threshold `T`
    /// whose 8-bit quantized distribution (255 levels for non-negative data, 128 per side
    /// otherwise) is closest to the clipped reference; the range is `[max(min, -T), min(max, T)]`.
    Entropy,
}

/// A histogram over `[lo, lo + BINS * width)` that doubles its bin width when values fall
/// outside (merging neighbouring bins), keeping the exact extremes beside it.
#[derive(Debug, Clone)]
pub struct HistogramObserver {
    method: RangeMethod,
    lo: f64,
    width: f64,
    counts: Vec<f64>,
    min: f32,
    max: f32,
    total: f64,
}

impl HistogramObserver {
    /// An empty histogram observer.
    pub fn new(method: RangeMethod) -> Self {
        Self {
            method,
            lo: 0.0,
            width: 0.0,
            counts: vec![0.0; BINS],
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            total: 0.0,
        }
    }

    fn hi(&self) -> f64 {
        self.lo + BINS as f64 * self.width
    }

    fn grow_right(&mut self) {
        let mut c = vec![0.0; BINS];
        for (i, v) in c.iter_mut().take(BINS / 2).enumerate() {
            *v = self.counts[2 * i] + self.counts[2 * i + 1];
        }
        self.counts = c;
        self.width *= 2.0;
    }

    fn grow_left(&mut self) {
        let hi = self.hi();
        let mut c = vec![0.0; BINS];
        for i in 0..BINS / 2 {
            c[BINS / 2 + i] = self.counts[2 * i] + self.counts[2 * i + 1];
        }
        self.counts = c;
        self.width *= 2.0;
        self.lo = hi - BINS as f64 * self.width;
    }

    /// Bin centre.
    fn centre(&self, i: usize) -> f64 {
        self.lo + (i as f64 + 0.5) * self.width
    }

    fn percentile(&self, p: f32) -> (f32, f32) {
        let p = (p as f64).clamp(50.0, 100.0) / 100.0;
        let tail = self.total * (1.0 - p);
        let (mut acc, mut lo_bin) = (0.0, 0);
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc > tail {
                lo_bin = i;
                break;
            }
        }
        let (mut acc, mut hi_bin) = (0.0, BINS - 1);
        for (i, c) in self.counts.iter().enumerate().rev() {
            acc += c;
            if acc > tail {
                hi_bin = i;
                break;
            }
        }
        let lo = (self.lo + lo_bin as f64 * self.width) as f32;
        let hi = (self.lo + (hi_bin + 1) as f64 * self.width) as f32;
        (lo.max(self.min), hi.min(self.max))
    }

    /// Expected squared error of 8-bit affine quantization of the histogram over `[a, b]`.
    fn quant_error(&self, a: f64, b: f64) -> f64 {
        let (a, b) = (a.min(0.0), b.max(0.0));
        let s = ((b - a) / 255.0).max(f64::MIN_POSITIVE);
        let noise = s * s / 12.0;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0.0)
            .map(|(i, c)| {
                let x = self.centre(i);
                let clip = if x < a {
                    (a - x).powi(2)
                } else if x > b {
                    (x - b).powi(2)
                } else {
                    noise
                };
                c * clip
            })
            .sum()
    }

    fn mse(&self) -> (f32, f32) {
        let (mn, mx) = (self.min as f64, self.max as f64);
        let mut best = (f64::INFINITY, 1.0);
        for k in 1..=100 {
            let a = k as f64 / 100.0;
            let e = self.quant_error(a * mn, a * mx);
            if e < best.0 {
                best = (e, a);
            }
        }
        ((best.1 * mn) as f32, (best.1 * mx) as f32)
    }

    fn entropy(&self) -> (f32, f32) {
        let one_sided = self.min >= 0.0;
        let levels = if one_sided { 255 } else { 128 };
        // magnitudes into BINS bins over [0, max |x|]
        let m = (self.min.abs().max(self.max.abs())) as f64;
        let w = m / BINS as f64;
        let mut mag = vec![0.0f64; BINS];
        for (i, c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0.0) {
            let j = ((self.centre(i).abs() / w) as usize).min(BINS - 1);
            mag[j] += c;
        }
        if one_sided {
            // exact zeros (the ReLU spike) are represented exactly by the zero point; left in,
            // their spike would dominate the divergence and drag the threshold down
            mag[0] = 0.0;
        }
        let mut best = (f64::INFINITY, BINS);
        for t in levels..=BINS {
            let mut p: Vec<f64> = mag[..t].to_vec();
            p[t - 1] += mag[t..].iter().sum::<f64>();
            // q: the first t bins *without* the outliers merged into `levels` chunks, each spread
            // evenly over its non-empty bins (as in TensorRT's entropy calibration)
            let mut q = vec![0.0f64; t];
            for l in 0..levels {
                let (s, e) = (l * t / levels, (l + 1) * t / levels);
                let total: f64 = mag[s..e].iter().sum();
                let nz = mag[s..e].iter().filter(|v| **v > 0.0).count();
                if nz > 0 {
                    for j in s..e {
                        if mag[j] > 0.0 {
                            q[j] = total / nz as f64;
                        }
                    }
                }
            }
            let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
            if ps <= 0.0 || qs <= 0.0 {
                continue;
            }
            let mut kl = 0.0;
            for (pi, qi) in p.iter().zip(&q) {
                if *pi > 0.0 {
                    let (pn, qn) = (pi / ps, (qi / qs).max(1e-12));
                    kl += pn * (pn / qn).ln();
                }
            }
            if kl < best.0 {
                best = (kl, t);
            }
        }
        let t = (best.1 as f64 * w) as f32;
        (self.min.max(-t), self.max.min(t))
    }
}

impl Observer for HistogramObserver {
    fn observe(&mut self, x: &[f32]) -> Result<()> {
        check_finite(x)?;
        if x.is_empty() {
            return Ok(());
        }
        let (a, b) = extremes(x);
        if self.total == 0.0 {
            let span = (b - a) as f64;
            let floor = (a.abs().max(b.abs()) as f64 * 1e-7).max(1e-30);
            self.width = (span / BINS as f64).max(floor);
            self.lo = a as f64;
        }
        while (a as f64) < self.lo {
            self.grow_left();
        }
        while (b as f64) >= self.hi() {
            self.grow_right();
        }
        for &v in x {
            let i = (((v as f64 - self.lo) / self.width) as usize).min(BINS - 1);
            self.counts[i] += 1.0;
        }
        self.min = self.min.min(a);
        self.max = self.max.max(b);
        self.total += x.len() as f64;
        Ok(())
    }

    fn range(&self) -> Result<(f32, f32)> {
        if self.total == 0.0 {
            return Err(QuantError::NoData {
                layer: String::new(),
            });
        }
        // a (nearly) constant input: nothing to clip
        if (self.max - self.min) as f64 <= 4.0 * self.width {
            return Ok((self.min, self.max));
        }
        Ok(match self.method {
            RangeMethod::Percentile(p) => self.percentile(p),
            RangeMethod::Mse => self.mse(),
            RangeMethod::Entropy => self.entropy(),
        })
    }

    fn clone_box(&self) -> Box<dyn Observer> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_grows_without_losing_counts() {
        let mut h = HistogramObserver::new(RangeMethod::Percentile(100.0));
        h.observe(&[0.0, 1.0]).unwrap();
        h.observe(&[-100.0, 1000.0]).unwrap();
        assert_eq!(h.counts.iter().sum::<f64>(), 4.0);
        assert!(h.lo <= -100.0 && h.hi() > 1000.0);
        let (lo, hi) = h.range().unwrap();
        assert_eq!((lo, hi), (-100.0, 1000.0));
    }

    #[test]
    fn entropy_on_relu_like_data_clips_the_long_tail() {
        // exponential-ish data: most mass near 0, a few huge values
        let mut x: Vec<f32> = (0..100_000)
            .map(|i| -((1.0 - (i as f32 + 0.5) / 100_000.0).ln()))
            .collect();
        x.push(200.0);
        let mut h = HistogramObserver::new(RangeMethod::Entropy);
        h.observe(&x).unwrap();
        let (lo, hi) = h.range().unwrap();
        assert!(lo >= 0.0);
        assert!(hi > 3.0 && hi < 50.0, "{hi}");
    }
}

#[cfg(test)]
mod entropy_tests {
    use super::*;

    #[test]
    fn entropy_keeps_a_uniform_range() {
        let x: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 999.0).collect();
        let mut h = HistogramObserver::new(RangeMethod::Entropy);
        h.observe(&x).unwrap();
        let (lo, hi) = h.range().unwrap();
        assert!(lo == 0.0 && hi > 0.95, "{lo} {hi}");
        let y: Vec<f32> = x.iter().map(|v| 2.0 * v - 1.0).collect();
        let mut h = HistogramObserver::new(RangeMethod::Entropy);
        h.observe(&y).unwrap();
        let (lo, hi) = h.range().unwrap();
        assert!(lo < -0.95 && hi > 0.95, "{lo} {hi}");
    }
}
