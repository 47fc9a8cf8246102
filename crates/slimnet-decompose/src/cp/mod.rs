//! CANDECOMP/PARAFAC (CP) decomposition by alternating least squares, and its refinement by
//! Levenberg-Marquardt ([`cp_refine_lm`]).
//!
//! A rank-`R` CP model writes a tensor as a sum of `R` outer products,
//! `X ≈ Σ_r λ_r · a_r^(0) ∘ a_r^(1) ∘ … ∘ a_r^(N-1)`, with unit-norm factor columns and the scales
//! in `λ`. [`cp_als`] fits it by alternating least squares with SVD or random initialisation,
//! column normalisation, a stopping rule on the relative change of the relative error, and an
//! extrapolating line search against stalls (swamps).
//!
//! ```
//! use ndarray::ArrayD;
//! use slimnet_decompose::cp::{cp_als, CpConfig};
//! // an exact rank-1 tensor
//! let x = ArrayD::from_shape_fn(vec![4, 3, 2], |i| (1 + i[0]) as f32 * (2 + i[1]) as f32 * (1 + 2 * i[2]) as f32);
//! let cp = cp_als(x.view(), 1, &CpConfig::default())?;
//! assert!(cp.rel_error < 1e-5 && cp.converged);
//! assert_eq!(cp.n_params(), 1 + 4 + 3 + 2);
//! # Ok::<(), slimnet_decompose::DecomposeError>(())
//! ```

mod als;
mod lm;

use ndarray::{Array1, Array2, ArrayD, ArrayViewD};

pub use als::cp_als;
pub use lm::{cp_refine_lm, LmConfig, LmStats};

/// How [`cp_als`] initialises the factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpInit {
    /// Leading left singular vectors of each unfolding (HOSVD-style); columns beyond the mode size
    /// are seeded Gaussian.
    Svd,
    /// Seeded Gaussian factors.
    Random,
}

/// Settings of [`cp_als`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CpConfig {
    /// Maximum ALS sweeps (default 500).
    pub max_iterations: usize,
    /// Stop when the relative error changes by less than this fraction in one sweep (default
    /// `1e-6`). `0` disables the test: exactly `max_iterations` sweeps run and the result is
    /// returned without a convergence check.
    pub tol: f64,
    /// Stop as soon as the relative error falls below this (default `1e-7`).
    pub error_floor: f64,
    /// Initialisation (default SVD).
    pub init: CpInit,
    /// Seed for random initialisation and random padding columns.
    pub seed: u64,
    /// Extrapolating line search against stalls (default on): after each sweep, try
    /// `A + s (A - A_prev)` with `s = k^(1/3)` and keep it when it lowers the error.
    pub line_search: bool,
    /// Fail with [`DecomposeError::NoConvergence`](crate::DecomposeError::NoConvergence) when `max_iterations` is
    /// reached with `tol > 0` unmet (default true). When false, the result says `converged: false`.
    pub strict: bool,
    /// Extra runs from seeded random starts (default 0), a defence against stalls and poor local
    /// minima: every run gets the full sweep budget and the fit with the lowest error is kept.
    pub restarts: usize,
}

impl Default for CpConfig {
    fn default() -> Self {
        Self {
            max_iterations: 500,
            tol: 1e-6,
            error_floor: 1e-7,
            init: CpInit::Svd,
            seed: 0,
            line_search: true,
            strict: true,
            restarts: 0,
        }
    }
}

impl CpConfig {
    /// Sets the maximum number of sweeps.
    pub fn with_max_iterations(mut self, n: usize) -> Self {
        self.max_iterations = n;
        self
    }

    /// Sets the tolerance on the relative change of the error (0: run every sweep).
    pub fn with_tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Sets the initialisation.
    pub fn with_init(mut self, init: CpInit) -> Self {
        self.init = init;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Turns the line search on or off.
    pub fn with_line_search(mut self, on: bool) -> Self {
        self.line_search = on;
        self
    }

    /// Sets whether an unmet tolerance is an error.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets the number of extra random restarts.
    pub fn with_restarts(mut self, n: usize) -> Self {
        self.restarts = n;
        self
    }
}

/// A fitted CP model.
#[derive(Debug, Clone, PartialEq)]
pub struct Cp {
    /// Scales `λ_r`, length `R`.
    pub weights: Array1<f32>,
    /// One factor per mode, `I_n x R`, unit-norm columns.
    pub factors: Vec<Array2<f32>>,
    /// ALS sweeps run.
    pub iterations: usize,
    /// Relative reconstruction error `||X - X̂|| / ||X||` at the end.
    pub rel_error: f64,
    /// Whether the stopping rule was met (always true when `tol` is 0).
    pub converged: bool,
    /// Line-search steps accepted.
    pub line_search_accepted: usize,
    /// What [`cp_refine_lm`] did, when the model comes from it (`None` from [`cp_als`]).
    pub refinement: Option<LmStats>,
}

impl Cp {
    /// The rank `R`.
    pub fn rank(&self) -> usize {
        self.weights.len()
    }

    /// The tensor `Σ_r λ_r a_r^(0) ∘ …`.
    pub fn reconstruct(&self) -> ArrayD<f32> {
        let shape: Vec<usize> = self.factors.iter().map(|f| f.nrows()).collect();
        let f: Vec<faer::Mat<f64>> = self
            .factors
            .iter()
            .enumerate()
            .map(|(n, a)| {
                faer::Mat::from_fn(a.nrows(), a.ncols(), |i, j| {
                    let w = if n == 0 { self.weights[j] as f64 } else { 1.0 };
                    a[[i, j]] as f64 * w
                })
            })
            .collect();
        let m = als::model_transposed(&f);
        let mut data = Vec::with_capacity(m.nrows() * m.ncols());
        for i in 0..m.ncols() {
            data.extend(m.col(i).iter().map(|&v| v as f32));
        }
        ArrayD::from_shape_vec(ndarray::IxDyn(&shape), data).expect("shape matches")
    }

    /// Stored values: the weights and every factor.
    pub fn n_params(&self) -> usize {
        self.weights.len() + self.factors.iter().map(|f| f.len()).sum::<usize>()
    }

    /// `||x - reconstruct()|| / ||x||`.
    pub fn relative_error(&self, x: ArrayViewD<'_, f32>) -> f64 {
        crate::util::relative_error(x.iter().copied(), self.reconstruct().iter().copied())
    }
}

/// The largest rank accepted for a tensor of `shape`: the product of all mode sizes but the
/// largest, a bound on the rank of any tensor of that shape.
pub fn max_cp_rank(shape: &[usize]) -> usize {
    let largest = shape.iter().copied().max().unwrap_or(0);
    shape.iter().product::<usize>() / largest.max(1)
}
