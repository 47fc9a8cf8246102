//! Measured latency of layers, graphs and plans: the timer behind speed checks, reports and
//! examples (benchmarks use criterion).
//!
//! ```
//! use slimnet_core::timing::{latency, TimingConfig};
//! use slimnet_core::{models, tensor};
//! let model = models::lenet5(&mut tensor::rng(0))?;
//! let t = latency(&model, &[1, 1, 28, 28], &TimingConfig::quick())?;
//! assert!(t.median_us > 0.0 && t.min_us <= t.median_us);
//! # Ok::<(), slimnet_core::Error>(())
//! ```

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::layer::Layer;
use crate::tensor::{self, Tensor};

/// How long to measure.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TimingConfig {
    /// Untimed runs first.
    pub warmup: usize,
    /// Least number of timed runs.
    pub runs: usize,
    /// Least total time of the timed runs.
    pub min_time: Duration,
}

impl Default for TimingConfig {
    /// 3 warm-up runs, then at least 20 runs and 200 ms.
    fn default() -> Self {
        Self {
            warmup: 3,
            runs: 20,
            min_time: Duration::from_millis(200),
        }
    }
}

impl TimingConfig {
    /// 1 warm-up run and at least 5 runs (for tests and quick looks).
    pub fn quick() -> Self {
        Self {
            warmup: 1,
            runs: 5,
            min_time: Duration::ZERO,
        }
    }

    /// Sets the least number of timed runs.
    pub fn with_runs(mut self, runs: usize) -> Self {
        self.runs = runs.max(1);
        self
    }

    /// Sets the least total time of the timed runs.
    pub fn with_min_time(mut self, t: Duration) -> Self {
        self.min_time = t;
        self
    }
}

/// Microseconds per run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median over the timed runs.
    pub median_us: f64,
    /// Fastest run.
    pub min_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Number of timed runs.
    pub runs: usize,
}

impl Latency {
    /// Latency statistics of run times in microseconds.
    ///
    /// # Panics
    /// When `times` is empty.
    pub fn of(mut times: Vec<f64>) -> Self {
        assert!(!times.is_empty(), "at least one run");
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        Self {
            median_us: at(0.5),
            min_us: times[0],
            p90_us: at(0.9),
            mean_us: times.iter().sum::<f64>() / times.len() as f64,
            runs: times.len(),
        }
    }
}

/// How long [`settle`] runs a model before timing it in an alternation with another model.
///
/// A model that takes its turn after another one runs slow at first: its first two calls
/// refill the cache, and after a model whose kernels use AVX-512 registers the next ones run
/// at a lower clock for a few milliseconds more (on an Intel Xeon with AMX, the character
/// CNN's int8 model after ten runs of its dense f32 model at the AVX-512 level: 640 and 320
/// us for the first two calls, 205-230 us for the next eight, 197-203 us from the tenth or
/// so on, 2 ms in; at the AVX2 level 200 us from the third call).
pub const SETTLE: Duration = Duration::from_millis(10);

/// Runs `f` untimed at least twice and for at least `at_least`, so that the timed runs after
/// it see the model as it runs when served alone (its weights in cache, the clock steady; see
/// [`SETTLE`]). Returns the number of runs.
///
/// ```
/// use std::time::Duration;
/// use slimnet_core::timing::settle;
/// let runs = settle(|| Ok(()), Duration::ZERO)?;
/// assert_eq!(runs, 2);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// The first error of `f`.
pub fn settle(mut f: impl FnMut() -> Result<()>, at_least: Duration) -> Result<usize> {
    let start = Instant::now();
    let mut runs = 0;
    while runs < 2 || start.elapsed() < at_least {
        f()?;
        runs += 1;
    }
    Ok(runs)
}

/// Times `f` as `cfg` says.
///
/// # Errors
/// The first error of `f`.
pub fn time(mut f: impl FnMut() -> Result<()>, cfg: &TimingConfig) -> Result<Latency> {
    for _ in 0..cfg.warmup {
        f()?;
    }
    let mut times = Vec::new();
    let mut spent = Duration::ZERO;
    while times.len() < cfg.runs.max(1) || spent < cfg.min_time {
        let t = Instant::now();
        f()?;
        let d = t.elapsed();
        spent += d;
        times.push(d.as_secs_f64() * 1e6);
    }
    Ok(Latency::of(times))
}

/// The inference latency of `layer` (a graph, a plan's layer, any layer) on a random input of
/// `shape`. The input sits in a buffer from [`buffers::output`](crate::buffers::output), as a
/// previous layer's output would, and each output goes back to the pool untimed, as a graph
/// hands on values it no longer needs. Threads are the caller's setting.
///
/// # Errors
/// When the layer rejects the input.
pub fn latency(layer: &dyn Layer, shape: &[usize], cfg: &TimingConfig) -> Result<Latency> {
    let x = tensor::uniform(shape, -1.0, 1.0, &mut tensor::rng(0));
    latency_on(layer, &x, cfg)
}

/// [`latency`] on a given input.
///
/// # Errors
/// When the layer rejects the input.
pub fn latency_on(layer: &dyn Layer, x: &Tensor, cfg: &TimingConfig) -> Result<Latency> {
    let mut input = crate::buffers::output(x.shape());
    input.assign(x);
    let mut spare: Option<Tensor> = None;
    let r = time(
        || {
            if let Some(y) = spare.take() {
                crate::buffers::recycle(y);
            }
            spare = Some(std::hint::black_box(layer.forward(&input)?));
            Ok(())
        },
        cfg,
    );
    if let Some(y) = spare {
        crate::buffers::recycle(y);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn settle_runs_twice_and_for_the_time_asked() {
        let mut runs = 0;
        let start = Instant::now();
        let n = settle(
            || {
                runs += 1;
                Ok(())
            },
            Duration::from_millis(5),
        )
        .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(5));
        assert_eq!(n, runs);
        assert!(n > 2, "a no-op runs many times in 5 ms, ran {n}");
        let slow = settle(
            || {
                std::thread::sleep(Duration::from_millis(3));
                Ok(())
            },
            Duration::from_millis(1),
        )
        .unwrap();
        assert_eq!(slow, 2);
    }

    #[test]
    fn settle_stops_at_the_first_error() {
        let mut runs = 0;
        let r = settle(
            || {
                runs += 1;
                Err(Error::Graph("no".into()))
            },
            Duration::from_secs(10),
        );
        assert!(r.is_err());
        assert_eq!(runs, 1);
    }
}
