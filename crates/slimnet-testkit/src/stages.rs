//! A table of a model's compression steps: accuracy, size, speed.

use std::fmt;

use slimnet_core::data::Dataset;
use slimnet_core::timing::{latency, Latency, TimingConfig};
use slimnet_core::{io, train, Graph, Layer, Result};

use crate::{speed, Table};

/// What one step left: accuracy on the test set, parameters (stored values), file bytes and
/// batch-1 latency on one thread (microseconds; see [`Stages`] for what is timed).
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Step name.
    pub name: String,
    /// Test accuracy.
    pub accuracy: f32,
    /// Stored values (non-zeros of sparse layers, codes of int8 ones).
    pub params: usize,
    /// Bytes of the model file.
    pub bytes: usize,
    /// Batch-1 latency, one thread, microseconds (the median unless
    /// [`Stages::fastest`]).
    pub latency_us: f64,
}

/// Measures each step of a compression pipeline against the first (the dense model).
///
/// Latency is that of the frozen plan ([`Graph::freeze`]) on a random input, or, with
/// [`timed_on_test_images`](Self::timed_on_test_images), that of the model as it is on real
/// test images, every step timed again in interleaved rounds at each new step.
///
/// ```no_run
/// # fn main() -> slimnet_core::Result<()> {
/// use slimnet_core::{data, models, tensor};
/// use slimnet_testkit::Stages;
/// let test = data::mnist(data::Split::Test)?.take(500);
/// let mut stages = Stages::new(test, &[1, 1, 28, 28]);
/// stages.measure("f32", &models::lenet5(&mut tensor::rng(0))?)?;
/// println!("{stages}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Stages {
    test: Dataset,
    input: Vec<usize>,
    timing: TimingConfig,
    images: Option<TestImages>,
    /// The steps measured so far, the dense model first.
    pub steps: Vec<Measured>,
}

/// The images of [`Stages::timed_on_test_images`].
#[derive(Debug, Clone)]
struct TestImages {
    images: Dataset,
    rounds: usize,
    fastest: bool,
    /// The model of every step, timed again with each new one.
    models: Vec<Graph>,
}

impl Stages {
    /// A table measured on `test`, timing inputs of shape `input` (batch 1).
    pub fn new(test: Dataset, input: &[usize]) -> Self {
        Self {
            test,
            input: input.to_vec(),
            timing: TimingConfig::default(),
            images: None,
            steps: Vec::new(),
        }
    }

    /// Times each model as it is (not a frozen plan) on the first `images` test images at
    /// batch 1, the median of `rounds` rounds over them ([`speed::batch1`]); real images
    /// matter, as sparse layers skip zero inputs at batch 1. Each [`measure`](Self::measure)
    /// times every step so far again, in interleaved rounds, so that the latencies in the table
    /// were taken under the same machine load.
    pub fn timed_on_test_images(mut self, images: usize, rounds: usize) -> Self {
        self.images = Some(TestImages {
            images: self.test.take(images),
            rounds,
            fastest: false,
            models: Vec::new(),
        });
        self
    }

    /// With [`timed_on_test_images`](Self::timed_on_test_images), reports the fastest round
    /// instead of the median: steadier when other work shares the machine.
    pub fn fastest(mut self) -> Self {
        if let Some(t) = &mut self.images {
            t.fastest = true;
        }
        self
    }

    /// Measures `model` as the step `name` and returns the measurement.
    ///
    /// # Errors
    /// A model that rejects the test set or cannot be saved.
    pub fn measure(&mut self, name: &str, model: &Graph) -> Result<&Measured> {
        let accuracy = train::accuracy(model, &self.test)?;
        let params = model.cost(&self.input)?.params;
        let bytes = io::to_bytes(model)?.len();
        let latency_us = match &mut self.images {
            Some(t) => {
                t.models.push(model.clone());
                let models: Vec<&dyn Layer> = t.models.iter().map(|m| m as &dyn Layer).collect();
                let times = speed::batch1(&models, &t.images, t.rounds)?;
                let pick = |l: &Latency| if t.fastest { l.min_us } else { l.median_us };
                for (step, time) in self.steps.iter_mut().zip(&times) {
                    step.latency_us = pick(time);
                }
                pick(times.last().expect("one per model"))
            }
            None => {
                let plan = model.freeze(&self.input)?;
                let one = || latency(&plan, &self.input, &self.timing);
                slimnet_kernels::threads::with(1, one)?.median_us
            }
        };
        self.steps.push(Measured {
            name: name.to_string(),
            accuracy,
            params,
            bytes,
            latency_us,
        });
        Ok(self.steps.last().expect("just pushed"))
    }

    /// The first step (the dense model) and the last.
    pub fn first_last(&self) -> Option<(&Measured, &Measured)> {
        Some((self.steps.first()?, self.steps.last()?))
    }
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = Table::new(&[
            "step",
            "accuracy",
            "params",
            "file bytes",
            "size x",
            "latency us",
            "speed x",
        ]);
        let base = self.steps.first();
        for s in &self.steps {
            let (size, speed) = base.map_or((1.0, 1.0), |b| {
                (b.bytes as f64 / s.bytes as f64, b.latency_us / s.latency_us)
            });
            t.row(&[
                s.name.clone(),
                format!("{:.4}", s.accuracy),
                s.params.to_string(),
                s.bytes.to_string(),
                format!("{size:.1}"),
                format!("{:.1}", s.latency_us),
                format!("{speed:.2}"),
            ]);
        }
        write!(f, "{t}")
    }
}
