//! Batch-1 latency of whole models on real images, as the examples report speed-ups.

use slimnet_core::data::Dataset;
use slimnet_core::timing::{settle, Latency, SETTLE};
use slimnet_core::{Layer, Result};

/// The batch-1 latency of each of `models` on the images of `images`, on one kernel thread.
///
/// Each of `rounds` rounds runs every model in turn over every image, one image per call, and
/// records the model's mean microseconds per image; the statistics are over the rounds. Each
/// turn starts with untimed calls on the images for [`SETTLE`] (at least two), which bring
/// the model's weights back into cache and let the clock settle after the previous model's
/// AVX-512 code, so each is timed as when served alone. Running the models in alternation
/// lets a change of machine load hit them alike, and real images matter: sparse layers skip
/// zero inputs at batch 1.
///
/// ```
/// use slimnet_core::{data::Dataset, models, tensor};
/// use slimnet_testkit::speed;
/// let (a, b) = (models::lenet300(&mut tensor::rng(0))?, models::lenet5(&mut tensor::rng(0))?);
/// let x = tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// let images = Dataset::new(x, vec![0; 4], 10)?;
/// let t = speed::batch1(&[&a, &b], &images, 3)?;
/// assert_eq!((t.len(), t[0].runs), (2, 3));
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// A model that rejects the images.
pub fn batch1(models: &[&dyn Layer], images: &Dataset, rounds: usize) -> Result<Vec<Latency>> {
    batch1_threads(models, images, rounds, 1)
}

/// [`batch1`] on `threads` kernel threads.
///
/// # Errors
/// A model that rejects the images.
pub fn batch1_threads(
    models: &[&dyn Layer],
    images: &Dataset,
    rounds: usize,
    threads: usize,
) -> Result<Vec<Latency>> {
    let xs: Vec<_> = (0..images.len()).map(|i| images.batch(&[i]).0).collect();
    slimnet_kernels::threads::with(threads, || {
        let mut times = vec![Vec::with_capacity(rounds); models.len()];
        for _ in 0..rounds.max(1) {
            for (m, t) in models.iter().zip(&mut times) {
                let mut next = xs.iter().cycle();
                settle(
                    || match next.next() {
                        Some(x) => m.forward(x).map(drop),
                        None => Ok(()),
                    },
                    SETTLE,
                )?;
                let start = std::time::Instant::now();
                for x in &xs {
                    std::hint::black_box(m.forward(x)?);
                }
                t.push(start.elapsed().as_secs_f64() * 1e6 / xs.len().max(1) as f64);
            }
        }
        Ok(times.into_iter().map(Latency::of).collect())
    })
}
