//! Measured speed of a layer and of its replacement.

use std::time::Duration;

use slimnet_core::timing::{latency_on, TimingConfig};
use slimnet_core::{tensor, Layer};

use crate::error::Result;

/// Settings of the speed check: both layers run on the layer's input shape with batch 1 on one
/// thread; the replacement is kept when `time_after * margin <= time_before`.
///
/// The two layers take turns, five runs at a time, until each has had at least `runs` timed
/// runs and spent at least `min_time` in them; the minimum per layer is compared. The time
/// floor gives a layer of a few microseconds hundreds of runs: the first few dozen runs of a
/// freshly built layer inside a process that has been training can be a quarter slower than
/// its steady state (LeNet-5's conv1 rewrite measured 10.2 us in its first 40 runs, 7.0 us
/// after), which 20 runs alone would take for its speed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpeedCheck {
    /// Required speed-up factor (default 1.05: at least 5% faster).
    pub margin: f64,
    /// Least number of timed runs per layer; the minimum is used (default 20).
    pub runs: usize,
    /// Least total time of the timed runs per layer (default 20 ms).
    pub min_time: Duration,
}

impl Default for SpeedCheck {
    fn default() -> Self {
        Self {
            margin: 1.05,
            runs: 20,
            min_time: Duration::from_millis(20),
        }
    }
}

impl SpeedCheck {
    /// A check with this margin.
    pub fn with_margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }

    /// Sets the least number of timed runs.
    pub fn with_runs(mut self, runs: usize) -> Self {
        self.runs = runs.max(1);
        self
    }

    /// Sets the least total time of the timed runs per layer.
    pub fn with_min_time(mut self, min_time: Duration) -> Self {
        self.min_time = min_time;
        self
    }

    /// (before, after) microseconds on `input` with its batch set to 1, one thread.
    ///
    /// # Errors
    /// When a layer rejects the input.
    pub fn compare(
        &self,
        before: &dyn Layer,
        after: &dyn Layer,
        input: &[usize],
    ) -> Result<(f64, f64)> {
        let mut shape = input.to_vec();
        shape[0] = 1;
        let x = tensor::uniform(&shape, -1.0, 1.0, &mut tensor::rng(0));
        // interleave to share any drift in machine load fairly
        let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
        let (mut spent_a, mut spent_b) = (0.0, 0.0);
        let min_us = self.min_time.as_secs_f64() * 1e6;
        let mut runs = 0;
        while runs < self.runs.max(1) || spent_a < min_us || spent_b < min_us {
            let (best, total) = time_runs(before, &x, 5)?;
            (a, spent_a) = (a.min(best), spent_a + total);
            let (best, total) = time_runs(after, &x, 5)?;
            (b, spent_b) = (b.min(best), spent_b + total);
            runs += 5;
        }
        Ok((a, b))
    }
}

/// The minimum over `runs` of one inference forward pass of `layer` on `x`, in microseconds, on
/// one thread of this thread's kernels (a scoped setting: other threads are not affected). One
/// untimed warm-up run first; the input and outputs are handled as inside a graph (see
/// [`slimnet_core::timing::latency_on`]).
///
/// # Errors
/// When the layer rejects the input.
pub fn time_layer(layer: &dyn Layer, x: &tensor::Tensor, runs: usize) -> Result<f64> {
    time_runs(layer, x, runs).map(|(best, _)| best)
}

/// [`time_layer`]'s minimum and the sum of its timed runs, in microseconds.
fn time_runs(layer: &dyn Layer, x: &tensor::Tensor, runs: usize) -> Result<(f64, f64)> {
    let cfg = TimingConfig::default()
        .with_runs(runs.max(1))
        .with_min_time(Duration::ZERO);
    let t = slimnet_kernels::threads::with(1, || latency_on(layer, x, &cfg))?;
    Ok((t.min_us, t.mean_us * t.runs as f64))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use slimnet_core::layers::Conv2dConfig;

    use super::*;

    #[test]
    fn compare_runs_each_layer_for_at_least_min_time() {
        // a layer of a few microseconds: `runs` alone would be over in well under a millisecond
        let l = Conv2dConfig::new(1, 4, 3)
            .init(&mut tensor::rng(0))
            .unwrap();
        let floor = Duration::from_millis(50);
        let check = SpeedCheck::default().with_runs(1).with_min_time(floor);
        let t = Instant::now();
        let (a, b) = check.compare(&l, &l, &[1, 1, 8, 8]).unwrap();
        // both layers' timed runs add up to at least the floor each
        assert!(t.elapsed() >= 2 * floor, "{:?}", t.elapsed());
        assert!(a > 0.0 && a.is_finite() && b > 0.0 && b.is_finite());
        // without a floor, the same check is over after the one group of five runs each
        let t = Instant::now();
        SpeedCheck::default()
            .with_runs(1)
            .with_min_time(Duration::ZERO)
            .compare(&l, &l, &[1, 1, 8, 8])
            .unwrap();
        assert!(t.elapsed() < floor, "{:?}", t.elapsed());
    }
}
