//! Tucker decompositions: HOSVD, HOOI, and partial Tucker (Tucker-2 for convolution kernels).
//!
//! A Tucker model writes a tensor as a small core multiplied along each decomposed mode by a
//! factor with orthonormal columns: `X ≈ G ×_0 U_0 ×_1 U_1 …`. Modes that are not decomposed
//! keep their size in the core (partial Tucker); Tucker-2 of an OIHW kernel decomposes the
//! output and input channel modes only.
//!
//! ```
//! use ndarray::ArrayD;
//! use slimnet_decompose::tucker::{tucker2, TuckerConfig};
//! let w = ArrayD::from_shape_fn(vec![8, 6, 3, 3], |i| ((i[0] + 2 * i[1]) % 5) as f32 + i[2] as f32 - i[3] as f32);
//! let t = tucker2(w.view(), 8, 6, &TuckerConfig::default())?;
//! assert!(t.rel_error < 1e-5);
//! assert_eq!(t.core.shape(), &[8, 6, 3, 3]);
//! # Ok::<(), slimnet_decompose::DecomposeError>(())
//! ```

use faer::Mat;
use ndarray::{Array2, ArrayD, ArrayViewD};

use crate::dense::Dense;
use crate::error::{check_finite, check_rank, DecomposeError, Result};
use crate::linalg;

/// Settings of [`hooi`] and [`partial_tucker`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TuckerConfig {
    /// Maximum HOOI sweeps after the HOSVD start (default 50; 0 gives the HOSVD).
    pub max_iterations: usize,
    /// Stop when the relative error changes by less than this fraction in one sweep
    /// (default `1e-7`).
    pub tol: f64,
}

impl Default for TuckerConfig {
    fn default() -> Self {
        Self {
            max_iterations: 50,
            tol: 1e-7,
        }
    }
}

impl TuckerConfig {
    /// Sets the maximum number of HOOI sweeps (0: HOSVD only).
    pub fn with_max_iterations(mut self, n: usize) -> Self {
        self.max_iterations = n;
        self
    }

    /// Sets the tolerance on the relative change of the error.
    pub fn with_tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
}

/// A fitted (partial) Tucker model.
#[derive(Debug, Clone, PartialEq)]
pub struct Tucker {
    /// The core; decomposed modes have the rank's size, the others their original size.
    pub core: ArrayD<f32>,
    /// Per mode, `Some(U)` (`I_n x r_n`, orthonormal columns) for decomposed modes.
    pub factors: Vec<Option<Array2<f32>>>,
    /// HOOI sweeps run (0 for a plain HOSVD).
    pub iterations: usize,
    /// Relative reconstruction error `||X - X̂|| / ||X||`.
    pub rel_error: f64,
}

impl Tucker {
    /// The tensor `G ×_n U_n` over the decomposed modes.
    pub fn reconstruct(&self) -> ArrayD<f32> {
        let mut g = Dense::from_view(&self.core.view());
        for (n, f) in self.factors.iter().enumerate() {
            if let Some(u) = f {
                let m = Mat::from_fn(u.nrows(), u.ncols(), |i, j| u[[i, j]] as f64);
                g = g.mode_product(n, m.as_ref());
            }
        }
        g.to_array()
    }

    /// Stored values: the core and the factors.
    pub fn n_params(&self) -> usize {
        self.core.len()
            + self
                .factors
                .iter()
                .flatten()
                .map(|u| u.len())
                .sum::<usize>()
    }

    /// The ranks of the decomposed modes (`None` for kept modes).
    pub fn ranks(&self) -> Vec<Option<usize>> {
        self.factors
            .iter()
            .map(|f| f.as_ref().map(|u| u.ncols()))
            .collect()
    }
}

/// Tucker by truncated higher-order SVD: each factor is the leading left singular vectors of the
/// unfolding. `ranks` has one entry per mode.
///
/// # Errors
/// As [`partial_tucker`].
pub fn hosvd(x: ArrayViewD<'_, f32>, ranks: &[usize]) -> Result<Tucker> {
    let r: Vec<Option<usize>> = ranks.iter().map(|&r| Some(r)).collect();
    partial_tucker(x, &r, &TuckerConfig::default().with_max_iterations(0))
}

/// Tucker by higher-order orthogonal iteration (HOOI), started from the HOSVD.
///
/// # Errors
/// As [`partial_tucker`].
pub fn hooi(x: ArrayViewD<'_, f32>, ranks: &[usize], cfg: &TuckerConfig) -> Result<Tucker> {
    let r: Vec<Option<usize>> = ranks.iter().map(|&r| Some(r)).collect();
    partial_tucker(x, &r, cfg)
}

/// Tucker-2 of an OIHW convolution kernel: the output (`r_out`) and input (`r_in`) channel modes
/// are decomposed, the spatial modes kept.
///
/// # Errors
/// A tensor that is not 4-D, and the errors of [`partial_tucker`].
pub fn tucker2(
    w: ArrayViewD<'_, f32>,
    r_out: usize,
    r_in: usize,
    cfg: &TuckerConfig,
) -> Result<Tucker> {
    if w.ndim() != 4 {
        return Err(DecomposeError::invalid(format!(
            "Tucker-2 needs an OIHW kernel, got shape {:?}",
            w.shape()
        )));
    }
    partial_tucker(w, &[Some(r_out), Some(r_in), None, None], cfg)
}

/// Partial Tucker: decomposes the modes whose `ranks` entry is `Some`, by HOSVD then HOOI sweeps.
/// HOOI updates each factor to the leading left singular vectors of the tensor projected on
/// all other factors; with orthonormal factors `||X - X̂||² = ||X||² - ||G||²`.
///
/// # Errors
/// `ranks` whose length differs from the order, no decomposed mode, a rank of 0 or above its
/// mode size, an empty tensor, NaN or infinite entries, or an SVD that fails.
pub fn partial_tucker(
    x: ArrayViewD<'_, f32>,
    ranks: &[Option<usize>],
    cfg: &TuckerConfig,
) -> Result<Tucker> {
    let shape = x.shape().to_vec();
    if ranks.len() != shape.len() || ranks.iter().all(Option::is_none) || shape.contains(&0) {
        return Err(DecomposeError::invalid(format!(
            "Tucker ranks {ranks:?} do not fit a non-empty tensor of shape {shape:?}"
        )));
    }
    // the core's size in each mode: the rank where one is asked, the mode's size elsewhere
    let kept: Vec<usize> = (0..shape.len())
        .map(|n| ranks[n].unwrap_or(shape[n]))
        .collect();
    for (n, r) in ranks.iter().enumerate() {
        if let Some(r) = *r {
            // HOOI takes mode n's factor from the unfolding of the tensor projected on the
            // other factors: shape[n] x (product of the other modes' core sizes)
            let others: usize = kept
                .iter()
                .enumerate()
                .filter(|&(m, _)| m != n)
                .map(|(_, &k)| k)
                .product();
            let max = shape[n].min(others);
            check_rank(r, max, || {
                format!(
                    "mode {n} of a {shape:?} tensor with core sizes {kept:?} (at most {max}: \
                     its size and the product of the other core sizes)"
                )
            })?;
        }
    }
    check_finite(x.iter(), "tensor")?;
    let xd = Dense::from_view(&x);
    let norm_x = xd.norm();
    let modes: Vec<usize> = (0..shape.len()).filter(|&n| ranks[n].is_some()).collect();
    let leading = |t: &Dense, n: usize, r: usize| -> Result<Mat<f64>> {
        let d = linalg::svd(t.unfold(n).as_ref())?;
        Ok(d.u.get(.., ..r).to_owned())
    };
    let mut factors: Vec<Option<Mat<f64>>> = vec![None; shape.len()];
    for &n in &modes {
        factors[n] = Some(leading(&xd, n, ranks[n].expect("decomposed mode"))?);
    }
    let project_all_but = |skip: Option<usize>, f: &[Option<Mat<f64>>]| -> Dense {
        let mut t = xd.clone();
        for &m in &modes {
            if Some(m) != skip {
                t = t.mode_product(m, f[m].as_ref().expect("decomposed").transpose());
            }
        }
        t
    };
    let error_of = |core: &Dense| -> f64 {
        if norm_x == 0.0 {
            return 0.0;
        }
        let g = core.norm();
        ((norm_x * norm_x - g * g).max(0.0)).sqrt() / norm_x
    };
    let mut core = project_all_but(None, &factors);
    let mut err = error_of(&core);
    let mut iterations = 0;
    for it in 1..=cfg.max_iterations {
        if modes.len() < 2 && it > 1 {
            break; // one decomposed mode: the HOSVD is already optimal
        }
        iterations = it;
        for &n in &modes {
            let y = project_all_but(Some(n), &factors);
            factors[n] = Some(leading(&y, n, ranks[n].expect("decomposed mode"))?);
        }
        core = project_all_but(None, &factors);
        let new_err = error_of(&core);
        let change = (err - new_err).abs() / err.max(f64::MIN_POSITIVE);
        err = new_err;
        if change < cfg.tol || err < 1e-12 {
            break;
        }
    }
    // the exact error (the orthogonality identity loses accuracy near zero)
    let out = Tucker {
        core: core.to_array(),
        factors: factors
            .iter()
            .map(|f| {
                f.as_ref().map(|u| {
                    Array2::from_shape_fn((u.nrows(), u.ncols()), |(i, j)| u[(i, j)] as f32)
                })
            })
            .collect(),
        iterations,
        rel_error: err,
    };
    let exact = crate::util::relative_error(x.iter().copied(), out.reconstruct().iter().copied());
    Ok(Tucker {
        rel_error: exact,
        ..out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::tests::{cp_tensor, tucker_tensor};

    #[test]
    fn exact_multilinear_rank_reconstructs() {
        let x = tucker_tensor(&[9, 8, 5], &[3, 4, 2], 0.0, 1);
        let h = hosvd(x.view(), &[3, 4, 2]).unwrap();
        assert!(h.rel_error < 1e-5, "{}", h.rel_error);
        assert_eq!(h.n_params(), 3 * 4 * 2 + 9 * 3 + 8 * 4 + 5 * 2);
        let w = tucker_tensor(&[16, 12, 3, 3], &[5, 4, 3, 3], 0.0, 2);
        let t = tucker2(w.view(), 5, 4, &TuckerConfig::default()).unwrap();
        assert!(t.rel_error < 1e-5, "{}", t.rel_error);
        assert_eq!(t.ranks(), vec![Some(5), Some(4), None, None]);
    }

    #[test]
    fn error_falls_with_rank_and_hooi_beats_hosvd() {
        let x = cp_tensor(&[12, 10, 3, 3], 20, 0.05, 4);
        let mut last = f64::INFINITY;
        for r in [1, 2, 4, 7, 10] {
            let t = tucker2(x.view(), r, r, &TuckerConfig::default()).unwrap();
            assert!(t.rel_error < last);
            let h = tucker2(
                x.view(),
                r,
                r,
                &TuckerConfig::default().with_max_iterations(0),
            )
            .unwrap();
            assert!(
                t.rel_error <= h.rel_error + 1e-9,
                "{} > {}",
                t.rel_error,
                h.rel_error
            );
            last = t.rel_error;
        }
        let full = tucker2(x.view(), 12, 10, &TuckerConfig::default()).unwrap();
        assert!(full.rel_error < 1e-5);
    }

    #[test]
    fn bad_input() {
        let x = tucker_tensor(&[4, 3, 2], &[2, 2, 2], 0.0, 0);
        let e = hosvd(x.view(), &[2, 4, 1]).unwrap_err().to_string();
        // at most the product of the other modes' core sizes (2 x 1), below the mode's size 3
        assert!(e.contains("rank 4 is out of range 1..=2 for mode 1"), "{e}");
        assert!(hosvd(x.view(), &[2, 2]).is_err());
        assert!(hosvd(x.view(), &[0, 2, 2]).is_err());
        let mut y = x.clone();
        y[[0, 0, 0]] = f32::NAN;
        assert!(hosvd(y.view(), &[1, 1, 1])
            .unwrap_err()
            .to_string()
            .contains("NaN"));
        assert!(tucker2(x.view(), 1, 1, &TuckerConfig::default()).is_err());
    }
}
