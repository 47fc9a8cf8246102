//! One-dimensional k-means with linear initialisation (Deep Compression's weight sharing).

use crate::error::{QuantError, Result};

/// Clusters `values` into `k` centroids: centroids start evenly spaced over `[min, max]` (linear
/// initialisation, which keeps the rare large weights represented), then Lloyd iterations
/// assign every value to its nearest centroid and move centroids to their cluster means, until
/// no assignment changes or `iters` iterations. Returns the centroids (ascending) and each
/// value's cluster. A cluster that loses all its values keeps its centroid.
///
/// # Errors
/// `k` outside `1..=256`, or a non-finite value.
///
/// ```
/// use slimnet_quant::share::kmeans;
/// let v = [0.9, 1.0, 1.1, -2.1, -2.0, -1.9];
/// let (c, a) = kmeans(&v, 2, 20)?;
/// assert!((c[0] + 2.0).abs() < 1e-6 && (c[1] - 1.0).abs() < 1e-6);
/// assert_eq!(a, vec![1, 1, 1, 0, 0, 0]);
/// # Ok::<(), slimnet_quant::QuantError>(())
/// ```
pub fn kmeans(values: &[f32], k: usize, iters: usize) -> Result<(Vec<f32>, Vec<u8>)> {
    if !(1..=256).contains(&k) {
        return Err(QuantError::invalid(
            "",
            format!("k-means with {k} clusters (1..=256)"),
        ));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(QuantError::invalid(
            "",
            format!("cannot cluster the value {v}"),
        ));
    }
    if values.is_empty() {
        return Ok((vec![0.0; k], vec![]));
    }
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut c: Vec<f32> = (0..k)
        .map(|i| {
            if k == 1 {
                (lo + hi) / 2.0
            } else {
                lo + (hi - lo) * i as f32 / (k - 1) as f32
            }
        })
        .collect();
    let mut assign = vec![0u8; values.len()];
    let mut first = true;
    for _ in 0..iters.max(1) {
        let mut changed = false;
        for (a, &v) in assign.iter_mut().zip(values) {
            let n = nearest(&c, v) as u8;
            if n != *a || first {
                changed = true;
                *a = n;
            }
        }
        first = false;
        if !changed {
            break;
        }
        let mut sum = vec![0.0f64; k];
        let mut cnt = vec![0usize; k];
        for (&a, &v) in assign.iter().zip(values) {
            sum[a as usize] += v as f64;
            cnt[a as usize] += 1;
        }
        for j in 0..k {
            if cnt[j] > 0 {
                c[j] = (sum[j] / cnt[j] as f64) as f32;
            }
        }
    }
    Ok((c, assign))
}

/// Index of the centroid nearest to `v` in ascending centroids.
fn nearest(c: &[f32], v: f32) -> usize {
    let i = c.partition_point(|&x| x < v);
    if i == 0 {
        0
    } else if i == c.len() || (v - c[i - 1]) <= (c[i] - v) {
        i - 1
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::tensor;

    #[test]
    fn finds_known_clusters() {
        let mut rng = tensor::rng(5);
        let centres = [-3.0f32, -1.0, 0.5, 4.0];
        let mut v = Vec::new();
        for &c in &centres {
            v.extend(tensor::normal(&[500], c, 0.05, &mut rng).iter().copied());
        }
        let (c, a) = kmeans(&v, 4, 100).unwrap();
        for (got, want) in c.iter().zip(&centres) {
            assert!((got - want).abs() < 0.02, "{c:?}");
        }
        for (i, &x) in a.iter().enumerate() {
            assert_eq!(x as usize, i / 500);
        }
    }

    #[test]
    fn centroids_are_ascending_and_bad_input_errors() {
        let v: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32).collect();
        let (c, _) = kmeans(&v, 32, 50).unwrap();
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
        assert!(kmeans(&v, 0, 5).is_err());
        assert!(kmeans(&v, 257, 5).is_err());
        assert!(kmeans(&[1.0, f32::NAN], 2, 5).is_err());
        let (c, a) = kmeans(&[2.0; 10], 4, 5).unwrap();
        assert!(a.iter().all(|&x| c[x as usize] == 2.0));
    }
}
