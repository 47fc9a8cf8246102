//! Importance criteria: which weights or filters matter least.
//!
//! A [`Criterion`] scores every weight of a parameter (higher is more important) and, for
//! structured pruning, every output filter. Built in: [`Magnitude`], [`Random`], [`Taylor`]
//! (first-order, `|gradient * weight|`), [`L1Norm`] and [`L2Norm`] of filters, and [`Fpgm`]
//! (filters nearest the geometric median are redundant). Users add their own by implementing
//! the trait.
//!
//! ```
//! use slimnet_core::{tensor, Param};
//! use slimnet_prune::criterion::{Criterion, L2Norm, Magnitude};
//! let p = Param::new(tensor::from_vec(&[2, 2], vec![1.0, -3.0, 0.5, 0.5])?);
//! assert_eq!(Magnitude.weight_scores("w", &p)?.as_slice().unwrap(), &[1.0, 3.0, 0.5, 0.5]);
//! let f = L2Norm.filter_scores("w", &p)?;
//! assert!((f[0] - 10f32.sqrt()).abs() < 1e-6);
//! # Ok::<(), slimnet_prune::PruneError>(())
//! ```

use ndarray::Axis;
use slimnet_core::{tensor, Param, Tensor};

use crate::error::{PruneError, Result};

/// Scores weights (and filters) by importance; the lowest scores are pruned first.
pub trait Criterion: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// One score per weight, of the parameter's shape. `path` is the parameter's dotted path
    /// (`fc1.weight`), for criteria that need a per-layer seed or statistics.
    ///
    /// # Errors
    /// When the criterion cannot score single weights of this parameter.
    fn weight_scores(&self, path: &str, param: &Param) -> Result<Tensor>;

    /// One score per output filter (slice along axis 0). Defaults to the sum of the weight
    /// scores of each filter.
    ///
    /// # Errors
    /// As [`weight_scores`](Self::weight_scores).
    fn filter_scores(&self, path: &str, param: &Param) -> Result<Vec<f32>> {
        let s = self.weight_scores(path, param)?;
        Ok(s.outer_iter().map(|f| f.sum()).collect())
    }
}

impl<C: Criterion + ?Sized> Criterion for Box<C> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn weight_scores(&self, path: &str, param: &Param) -> Result<Tensor> {
        (**self).weight_scores(path, param)
    }
    fn filter_scores(&self, path: &str, param: &Param) -> Result<Vec<f32>> {
        (**self).filter_scores(path, param)
    }
}

/// Weight magnitude `|w|` (Han et al. 2015); filters by the sum of magnitudes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Magnitude;

impl Criterion for Magnitude {
    fn name(&self) -> &str {
        "magnitude"
    }
    fn weight_scores(&self, _: &str, p: &Param) -> Result<Tensor> {
        Ok(p.value().mapv(f32::abs))
    }
}

/// Uniform random scores: the baseline every criterion should beat. Deterministic for a seed
/// and a parameter path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random {
    /// Seed, mixed with the parameter path.
    pub seed: u64,
}

impl Random {
    /// Random scores from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }
}

/// FNV-1a hash of a path, to give each layer its own random stream.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Criterion for Random {
    fn name(&self) -> &str {
        "random"
    }
    fn weight_scores(&self, path: &str, p: &Param) -> Result<Tensor> {
        let mut rng = tensor::rng(self.seed ^ fnv(path));
        Ok(tensor::uniform(p.value().shape(), 0.0, 1.0, &mut rng))
    }
}

/// First-order Taylor expansion of the loss change, `|g * w|` per weight (Molchanov et al.),
/// and `|sum over the filter of g * w|` per filter. Reads the gradients accumulated in each
/// [`Param`]; fill them with [`accumulate_gradients`](crate::accumulate_gradients) first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Taylor;

fn check_grad(path: &str, p: &Param) -> Result<()> {
    if p.grad.iter().all(|g| *g == 0.0) {
        return Err(PruneError::unsupported(
            path,
            "Taylor criterion needs gradients, but they are all zero; call \
             accumulate_gradients before pruning",
        ));
    }
    Ok(())
}

impl Criterion for Taylor {
    fn name(&self) -> &str {
        "taylor"
    }
    fn weight_scores(&self, path: &str, p: &Param) -> Result<Tensor> {
        check_grad(path, p)?;
        Ok((p.value() * &p.grad).mapv(f32::abs))
    }
    fn filter_scores(&self, path: &str, p: &Param) -> Result<Vec<f32>> {
        check_grad(path, p)?;
        let prod = p.value() * &p.grad;
        Ok(prod.outer_iter().map(|f| f.sum().abs()).collect())
    }
}

/// L1 norm of each filter (Li et al. 2017); single weights by `|w|`.
#[derive(Debug, Clone, Copy, Default)]
pub struct L1Norm;

impl Criterion for L1Norm {
    fn name(&self) -> &str {
        "l1"
    }
    fn weight_scores(&self, _: &str, p: &Param) -> Result<Tensor> {
        Ok(p.value().mapv(f32::abs))
    }
}

/// L2 norm of each filter; single weights by `w^2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct L2Norm;

impl Criterion for L2Norm {
    fn name(&self) -> &str {
        "l2"
    }
    fn weight_scores(&self, _: &str, p: &Param) -> Result<Tensor> {
        Ok(p.value().mapv(|v| v * v))
    }
    fn filter_scores(&self, _: &str, p: &Param) -> Result<Vec<f32>> {
        Ok(p.value()
            .outer_iter()
            .map(|f| f.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect())
    }
}

/// Filter pruning via geometric median (He et al. 2019): a filter's score is the sum of its
/// Euclidean distances to the layer's other filters, so filters nearest the geometric median —
/// the most replaceable ones — score lowest. Scores filters only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fpgm;

impl Criterion for Fpgm {
    fn name(&self) -> &str {
        "fpgm"
    }
    fn weight_scores(&self, path: &str, _: &Param) -> Result<Tensor> {
        Err(PruneError::unsupported(
            path,
            "FPGM scores whole filters; use it for structured pruning",
        ))
    }
    fn filter_scores(&self, _: &str, p: &Param) -> Result<Vec<f32>> {
        let o = p.value().shape()[0];
        let flat: Vec<Vec<f64>> = p
            .value()
            .axis_iter(Axis(0))
            .map(|f| f.iter().map(|&v| v as f64).collect())
            .collect();
        let mut score = vec![0.0f64; o];
        for i in 0..o {
            for j in i + 1..o {
                let d = flat[i]
                    .iter()
                    .zip(&flat[j])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
                score[i] += d;
                score[j] += d;
            }
        }
        Ok(score.into_iter().map(|s| s as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(shape: &[usize], v: Vec<f32>) -> Param {
        Param::new(tensor::from_vec(shape, v).unwrap())
    }

    #[test]
    fn filter_norms() {
        let p = param(&[3, 2], vec![1.0, -1.0, 3.0, 4.0, 0.0, -0.5]);
        assert_eq!(L1Norm.filter_scores("w", &p).unwrap(), vec![2.0, 7.0, 0.5]);
        assert_eq!(
            L2Norm.filter_scores("w", &p).unwrap(),
            vec![2f32.sqrt(), 5.0, 0.5]
        );
        assert_eq!(
            Magnitude.filter_scores("w", &p).unwrap(),
            vec![2.0, 7.0, 0.5]
        );
    }

    #[test]
    fn fpgm_ranks_the_median_filter_lowest() {
        // filters at 0, 1 and 10 on a line: the middle one is nearest the others
        let p = param(&[3, 1], vec![0.0, 1.0, 10.0]);
        let s = Fpgm.filter_scores("w", &p).unwrap();
        assert_eq!(s, vec![11.0, 10.0, 19.0]);
        assert!(Fpgm.weight_scores("conv1.weight", &p).is_err());
    }

    #[test]
    fn taylor_needs_and_uses_gradients() {
        let mut p = param(&[2, 2], vec![1.0, 2.0, -3.0, 4.0]);
        let e = Taylor.weight_scores("fc1.weight", &p).unwrap_err();
        assert!(e.to_string().starts_with("fc1.weight: "), "{e}");
        p.grad = tensor::from_vec(&[2, 2], vec![0.5, -1.0, 1.0, 1.0]).unwrap();
        let s = Taylor.weight_scores("fc1.weight", &p).unwrap();
        assert_eq!(s.as_slice().unwrap(), &[0.5, 2.0, 3.0, 4.0]);
        assert_eq!(Taylor.filter_scores("w", &p).unwrap(), vec![1.5, 1.0]);
    }

    #[test]
    fn random_is_seeded_per_path() {
        let p = param(&[4, 4], vec![0.0; 16]);
        let a = Random::new(1).weight_scores("a", &p).unwrap();
        assert_eq!(a, Random::new(1).weight_scores("a", &p).unwrap());
        assert_ne!(a, Random::new(1).weight_scores("b", &p).unwrap());
        assert_ne!(a, Random::new(2).weight_scores("a", &p).unwrap());
    }
}
