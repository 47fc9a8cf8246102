//! CP refinement by damped Gauss-Newton (Levenberg-Marquardt), the non-linear least-squares
//! solver Lebedev et al. (2015) used after CP-ALS.
//!
//! All factors move at once. Each iteration solves `(J^T J + μ I) p = -g` by preconditioned
//! conjugate gradients without forming `J^T J`: its block `(n, m)` acts on a factor step `V_m` as
//! `V_n Γ_n` on the diagonal and `A_n (Γ_nm ∗ V_m^T A_m)` off it, where `Γ_n` (`Γ_nm`) is the
//! Hadamard product of the factor Gram matrices `A_k^T A_k` over `k ≠ n` (`k ≠ n, m`). The
//! preconditioner is the block diagonal `(Γ_n + μ I) ⊗ I`. The damping `μ` follows the gain
//! ratio (Madsen, Nielsen and Tingleff's rule).

use faer::{Mat, MatRef};
use ndarray::{Array1, Array2, ArrayViewD};

use super::Cp;
use crate::dense::{khatri_rao, Dense};
use crate::error::{check_finite, check_rank, DecomposeError, Result};
use crate::linalg;

/// Settings of [`cp_refine_lm`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LmConfig {
    /// Maximum outer (Gauss-Newton) iterations (default 200).
    pub max_iterations: usize,
    /// Stop when an accepted step changes the relative error by less than this fraction
    /// (default `1e-6`).
    pub tol: f64,
    /// Stop as soon as the relative error falls below this (default `1e-7`).
    pub error_floor: f64,
    /// Initial damping relative to the largest diagonal entry of `J^T J` (default `1e-3`).
    pub damping: f64,
    /// Conjugate-gradient iterations per step (default 50).
    pub max_cg_iterations: usize,
    /// Conjugate gradients stop once the residual falls below this fraction of the right-hand
    /// side (default `1e-4`). A step counts towards convergence only when its solve got there:
    /// a truncated solve can make tiny progress in a swamp without being near a minimum.
    pub cg_tol: f64,
    /// Fail with [`DecomposeError::NoConvergence`] when the tolerance is unmet after `max_iterations`
    /// (default true). When false, the result's [`LmStats::converged`] says so.
    pub strict: bool,
}

impl Default for LmConfig {
    fn default() -> Self {
        Self {
            max_iterations: 200,
            tol: 1e-6,
            error_floor: 1e-7,
            damping: 1e-3,
            max_cg_iterations: 50,
            cg_tol: 1e-4,
            strict: true,
        }
    }
}

impl LmConfig {
    /// Sets the maximum number of outer iterations.
    pub fn with_max_iterations(mut self, n: usize) -> Self {
        self.max_iterations = n;
        self
    }

    /// Sets the tolerance on the relative change of the error.
    pub fn with_tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Sets the initial relative damping.
    pub fn with_damping(mut self, d: f64) -> Self {
        self.damping = d;
        self
    }

    /// Sets the conjugate-gradient iterations per step.
    pub fn with_max_cg_iterations(mut self, n: usize) -> Self {
        self.max_cg_iterations = n;
        self
    }

    /// Sets the relative residual at which conjugate gradients stop.
    pub fn with_cg_tol(mut self, tol: f64) -> Self {
        self.cg_tol = tol;
        self
    }

    /// Sets whether an unmet tolerance is an error.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

/// What a Levenberg-Marquardt refinement did (kept in [`Cp::refinement`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LmStats {
    /// Outer iterations run (accepted and rejected steps).
    pub iterations: usize,
    /// Steps accepted.
    pub accepted: usize,
    /// Conjugate-gradient iterations over all steps.
    pub cg_iterations: usize,
    /// Relative error of the starting model.
    pub initial_error: f64,
    /// Relative error at the end (also in [`Cp::rel_error`]).
    pub final_error: f64,
    /// The damping `μ` at the end.
    pub damping: f64,
    /// Whether the stopping rule was met.
    pub converged: bool,
}

/// Refines the CP model `start` of `x` by Levenberg-Marquardt and returns the refined model
/// (unit-norm columns, scales in `weights`) with [`Cp::refinement`] filled in. The result never
/// has a larger error than `start`: rejected steps leave the model unchanged.
///
/// ```
/// use ndarray::ArrayD;
/// use slimnet_decompose::cp::{cp_als, cp_refine_lm, CpConfig, LmConfig};
/// let x = ArrayD::from_shape_fn(vec![5, 4, 3], |i| {
///     (1 + i[0]) as f32 * (2 + i[1]) as f32 * (1 + i[2]) as f32 + (i[0] * i[2]) as f32 * (3 - i[1] as i32) as f32
/// });
/// let als = cp_als(x.view(), 2, &CpConfig::default().with_max_iterations(3).with_strict(false))?;
/// let lm = cp_refine_lm(x.view(), &als, &LmConfig::default().with_strict(false))?;
/// assert!(lm.rel_error <= als.rel_error);
/// assert_eq!(lm.refinement.as_ref().unwrap().final_error, lm.rel_error);
/// # Ok::<(), slimnet_decompose::DecomposeError>(())
/// ```
///
/// # Errors
/// A model whose factor shapes do not match `x`, rank 0, NaN or infinite entries in `x` or the
/// model, a non-finite iterate, or — with `strict` — no convergence within `max_iterations`
/// ([`DecomposeError::NoConvergence`] with the iterations run, the error reached and the last change).
pub fn cp_refine_lm(x: ArrayViewD<'_, f32>, start: &Cp, cfg: &LmConfig) -> Result<Cp> {
    let shape = x.shape().to_vec();
    let model_shape: Vec<usize> = start.factors.iter().map(|f| f.nrows()).collect();
    if shape.len() < 2 || shape.contains(&0) {
        return Err(DecomposeError::invalid(format!(
            "CP refinement needs a non-empty tensor of order >= 2, got shape {shape:?}"
        )));
    }
    if model_shape != shape {
        return Err(DecomposeError::invalid(format!(
            "the CP model has mode sizes {model_shape:?} but the tensor has shape {shape:?}"
        )));
    }
    let rank = start.rank();
    check_rank(rank, super::max_cp_rank(&shape).max(rank), || {
        format!("a CP model of a {shape:?} tensor")
    })?;
    if start.factors.iter().any(|f| f.ncols() != rank) {
        return Err(DecomposeError::invalid(format!(
            "every CP factor needs {rank} columns (the number of weights)"
        )));
    }
    if !(cfg.damping > 0.0 && cfg.damping.is_finite())
        || cfg.tol.is_nan()
        || cfg.tol < 0.0
        || cfg.cg_tol.is_nan()
        || cfg.cg_tol < 0.0
    {
        return Err(DecomposeError::invalid(format!(
            "LM damping must be positive and finite and the tolerances non-negative, got \
             damping {}, tol {} and cg_tol {}",
            cfg.damping, cfg.tol, cfg.cg_tol
        )));
    }
    check_finite(x.iter(), "tensor")?;
    check_finite(start.weights.iter(), "CP weights")?;
    for f in &start.factors {
        check_finite(f.iter(), "CP factor")?;
    }
    let xd = Dense::from_view(&x);
    let norm_x = xd.norm();
    let order = shape.len();
    // fold the weights evenly into the factors, keeping the scale balanced across modes
    let mut a: Vec<Mat<f64>> = start
        .factors
        .iter()
        .enumerate()
        .map(|(n, f)| {
            Mat::from_fn(f.nrows(), rank, |i, r| {
                let w = start.weights[r] as f64;
                let s = w.abs().powf(1.0 / order as f64);
                let s = if n == 0 { s * w.signum() } else { s };
                f[[i, r]] as f64 * s
            })
        })
        .collect();
    let initial = residual_error(&xd, &a, norm_x);
    let mut stats = LmStats {
        iterations: 0,
        accepted: 0,
        cg_iterations: 0,
        initial_error: initial,
        final_error: initial,
        damping: 0.0,
        converged: norm_x == 0.0 || initial < cfg.error_floor,
    };
    if norm_x == 0.0 {
        // the zero tensor: the zero model fits it exactly
        stats.final_error = 0.0;
        let mut cp = finish(a, stats);
        cp.weights.fill(0.0);
        cp.rel_error = 0.0;
        return Ok(cp);
    }
    if stats.converged {
        return Ok(finish(a, stats));
    }
    // only the largest mode's unfolding is used (see State::new)
    let unfoldings: Vec<Mat<f64>> = (0..order)
        .map(|n| {
            if n == largest_mode(&shape) {
                xd.unfold(n)
            } else {
                Mat::zeros(0, 0)
            }
        })
        .collect();
    let mut err = initial;
    let mut mu = f64::NAN;
    let mut nu = 2.0;
    let mut change = f64::NAN;
    let mut rejected_in_row = 0;
    let mut state = State::new(&unfoldings, &a);
    for it in 1..=cfg.max_iterations {
        stats.iterations = it;
        if mu.is_nan() {
            let diag = state
                .gamma
                .iter()
                .flat_map(|g| (0..rank).map(move |r| g[(r, r)]))
                .fold(0.0f64, f64::max);
            mu = cfg.damping * diag.max(f64::MIN_POSITIVE);
        }
        let neg_g: Vec<Mat<f64>> = state.grad.iter().map(|g| -g).collect();
        let (p, cg_its, cg_res) = pcg(&state, &a, &neg_g, mu, cfg.max_cg_iterations, cfg.cg_tol)?;
        stats.cg_iterations += cg_its;
        // predicted decrease of 0.5 ||r||^2: -g.p - 0.5 p.(J^T J) p
        let jp = state.jtj(&a, &p);
        let pred = dot(&neg_g, &p) - 0.5 * dot(&p, &jp);
        let cand: Vec<Mat<f64>> = a.iter().zip(&p).map(|(x, d)| x + d).collect();
        let cand_err = residual_error(&xd, &cand, norm_x);
        if !cand_err.is_finite() || !pred.is_finite() {
            return Err(no_convergence(it, err, change, cfg.tol));
        }
        let actual = 0.5 * (err * err - cand_err * cand_err) * norm_x * norm_x;
        let rho = if pred > 0.0 { actual / pred } else { -1.0 };
        if rho > 0.0 && cand_err < err {
            change = (err - cand_err) / err;
            a = cand;
            err = cand_err;
            stats.accepted += 1;
            rejected_in_row = 0;
            mu *= (1.0 - (2.0 * rho - 1.0).powi(3)).max(1.0 / 3.0);
            nu = 2.0;
            state = State::new(&unfoldings, &a);
            if err < cfg.error_floor || (change < cfg.tol && cg_res <= cfg.cg_tol) {
                stats.converged = true;
                break;
            }
        } else {
            rejected_in_row += 1;
            mu *= nu;
            nu *= 2.0;
            // the damped step has shrunk to a tiny gradient step and still does not lower the
            // error: a stationary point to working precision
            if rejected_in_row >= 30 || !mu.is_finite() {
                change = 0.0;
                stats.converged = true;
                break;
            }
        }
    }
    stats.final_error = err;
    stats.damping = mu;
    if !stats.converged && cfg.strict {
        return Err(no_convergence(stats.iterations, err, change, cfg.tol));
    }
    Ok(finish(a, stats))
}

fn no_convergence(iterations: usize, error: f64, change: f64, tol: f64) -> DecomposeError {
    DecomposeError::NoConvergence {
        layer: String::new(),
        method: "CP-LM".into(),
        iterations,
        error,
        change,
        tol,
    }
}

/// The normalised model with its statistics.
fn finish(mut a: Vec<Mat<f64>>, stats: LmStats) -> Cp {
    let rank = a[0].ncols();
    let mut weights = vec![1.0f64; rank];
    for f in a.iter_mut() {
        for (r, w) in weights.iter_mut().enumerate() {
            let n = f.col(r).iter().map(|v| v * v).sum::<f64>().sqrt();
            if n > 0.0 {
                for v in f.col_mut(r).iter_mut() {
                    *v /= n;
                }
            }
            *w *= n;
        }
    }
    Cp {
        weights: Array1::from_iter(weights.iter().map(|&w| w as f32)),
        factors: a
            .iter()
            .map(|f| Array2::from_shape_fn((f.nrows(), f.ncols()), |(i, j)| f[(i, j)] as f32))
            .collect(),
        iterations: stats.iterations,
        rel_error: stats.final_error,
        converged: stats.converged,
        line_search_accepted: 0,
        refinement: Some(stats),
    }
}

/// Per-iterate quantities: Gram matrices, their Hadamard products, and the gradient.
struct State {
    /// `Γ_n = ∗_{k≠n} A_k^T A_k`.
    gamma: Vec<Mat<f64>>,
    /// `Γ_nm = ∗_{k≠n,m} A_k^T A_k` (row-major `n * order + m`; unused on the diagonal).
    pair: Vec<Mat<f64>>,
    /// The gradients `g_n = A_n Γ_n - X_(n) khatri_rao(A_k, k≠n)` of `0.5 ||X - X̂||²`.
    grad: Vec<Mat<f64>>,
}

impl State {
    fn new(unfoldings: &[Mat<f64>], a: &[Mat<f64>]) -> Self {
        let order = a.len();
        let rank = a[0].ncols();
        let grams: Vec<Mat<f64>> = a
            .iter()
            .map(|f| linalg::matmul(f.transpose(), f.as_ref()))
            .collect();
        let had = |skip: &[usize]| {
            let mut m = Mat::<f64>::from_fn(rank, rank, |_, _| 1.0);
            for (k, g) in grams.iter().enumerate() {
                if !skip.contains(&k) {
                    m = Mat::from_fn(rank, rank, |i, j| m[(i, j)] * g[(i, j)]);
                }
            }
            m
        };
        let gamma: Vec<Mat<f64>> = (0..order).map(|n| had(&[n])).collect();
        let pair = (0..order * order)
            .map(|nm| {
                let (n, m) = (nm / order, nm % order);
                if n == m {
                    Mat::zeros(0, 0)
                } else {
                    had(&[n, m])
                }
            })
            .collect();
        // MTTKRPs by a two-level dimension tree as in CP-ALS: the largest mode's from its
        // unfolding, then P = X_(p)^T A_p once and every other mode's as a contraction of P
        let shape: Vec<usize> = a.iter().map(|f| f.nrows()).collect();
        let pivot = largest_mode(&shape);
        let others: Vec<usize> = (0..order).filter(|&n| n != pivot).collect();
        let kr_in: Vec<MatRef<'_, f64>> = others.iter().map(|&m| a[m].as_ref()).collect();
        let m_pivot = linalg::matmul(unfoldings[pivot].as_ref(), khatri_rao(&kr_in).as_ref());
        let pt = linalg::matmul(unfoldings[pivot].transpose(), a[pivot].as_ref());
        let grad = (0..order)
            .map(|n| {
                let mttkrp = if n == pivot {
                    m_pivot.clone()
                } else {
                    super::als::contract_pivot(&pt, &shape, &others, n, a)
                };
                linalg::matmul(a[n].as_ref(), gamma[n].as_ref()) - mttkrp
            })
            .collect();
        Self { gamma, pair, grad }
    }

    /// `J^T J v` for a step `v` (one `I_n x R` block per mode).
    fn jtj(&self, a: &[Mat<f64>], v: &[Mat<f64>]) -> Vec<Mat<f64>> {
        let order = a.len();
        let rank = a[0].ncols();
        // W_m = V_m^T A_m
        let w: Vec<Mat<f64>> = v
            .iter()
            .zip(a)
            .map(|(vm, am)| linalg::matmul(vm.transpose(), am.as_ref()))
            .collect();
        (0..order)
            .map(|n| {
                let mut s = Mat::<f64>::zeros(rank, rank);
                for (m, wm) in w.iter().enumerate() {
                    if m != n {
                        let g = &self.pair[n * order + m];
                        s = Mat::from_fn(rank, rank, |i, j| s[(i, j)] + g[(i, j)] * wm[(i, j)]);
                    }
                }
                linalg::matmul(v[n].as_ref(), self.gamma[n].as_ref())
                    + linalg::matmul(a[n].as_ref(), s.as_ref())
            })
            .collect()
    }
}

/// Solves `(J^T J + μ I) p = b` approximately by conjugate gradients preconditioned with the
/// block diagonal `(Γ_n + μ I)`, until the residual is below `tol` times `||b||`; returns the
/// step, the iterations run and the final relative residual.
fn pcg(
    s: &State,
    a: &[Mat<f64>],
    b: &[Mat<f64>],
    mu: f64,
    max_its: usize,
    tol: f64,
) -> Result<(Vec<Mat<f64>>, usize, f64)> {
    let rank = a[0].ncols();
    let eye = Mat::<f64>::identity(rank, rank);
    // inverse blocks (Γ_n + μ I)^{-1}, symmetric
    let inv: Vec<Mat<f64>> = s
        .gamma
        .iter()
        .map(|g| linalg::solve_psd((g + &eye * mu).as_ref(), eye.as_ref()))
        .collect::<Result<_>>()?;
    let precond =
        |r: &[Mat<f64>]| -> Vec<Mat<f64>> { r.iter().zip(&inv).map(|(x, p)| x * p).collect() };
    let apply = |v: &[Mat<f64>]| -> Vec<Mat<f64>> {
        s.jtj(a, v)
            .into_iter()
            .zip(v)
            .map(|(jv, vv)| jv + vv * mu)
            .collect()
    };
    let mut x: Vec<Mat<f64>> = b.iter().map(|m| Mat::zeros(m.nrows(), m.ncols())).collect();
    let mut r: Vec<Mat<f64>> = b.to_vec();
    let mut z = precond(&r);
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    let b_norm = dot(b, b).sqrt();
    let mut its = 0;
    let mut res = if b_norm > 0.0 { 1.0 } else { 0.0 };
    for _ in 0..max_its.max(1) {
        if res <= tol {
            break;
        }
        its += 1;
        let ap = apply(&p);
        let pap = dot(&p, &ap);
        if pap.is_nan() || pap <= 0.0 {
            break;
        }
        let alpha = rz / pap;
        for (xi, pi) in x.iter_mut().zip(&p) {
            *xi += pi * alpha;
        }
        for (ri, api) in r.iter_mut().zip(&ap) {
            *ri -= api * alpha;
        }
        res = dot(&r, &r).sqrt() / b_norm;
        if res <= tol {
            break;
        }
        z = precond(&r);
        let rz_new = dot(&r, &z);
        let beta = rz_new / rz;
        rz = rz_new;
        for (pi, zi) in p.iter_mut().zip(&z) {
            *pi = zi + &*pi * beta;
        }
    }
    Ok((x, its, res))
}

/// The largest mode (the first of equals), the pivot of the MTTKRP dimension tree.
fn largest_mode(shape: &[usize]) -> usize {
    (0..shape.len())
        .max_by_key(|&n| (shape[n], usize::MAX - n))
        .unwrap_or(0)
}

/// `Σ_n <a_n, b_n>`.
fn dot(a: &[Mat<f64>], b: &[Mat<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            x.col_iter()
                .zip(y.col_iter())
                .map(|(c, d)| c.iter().zip(d.iter()).map(|(u, v)| u * v).sum::<f64>())
                .sum::<f64>()
        })
        .sum()
}

/// `||X - X̂|| / ||X||` with the model formed explicitly (no cancellation near an exact fit).
fn residual_error(x: &Dense, a: &[Mat<f64>], norm_x: f64) -> f64 {
    let model = super::als::model_transposed(a);
    let rows = model.nrows();
    let mut s = 0.0;
    for i in 0..model.ncols() {
        let m = model.col(i).try_as_col_major().expect("owned").as_slice();
        let xi = &x.data[i * rows..(i + 1) * rows];
        s += m
            .iter()
            .zip(xi)
            .map(|(p, q)| (q - p) * (q - p))
            .sum::<f64>();
    }
    if norm_x == 0.0 {
        s.sqrt()
    } else {
        s.sqrt() / norm_x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cp::{cp_als, CpConfig};
    use crate::util::tests::cp_tensor;

    /// Random factors as a model, for the identity checks.
    fn factors(shape: &[usize], rank: usize, seed: u64) -> Vec<Mat<f64>> {
        let x = cp_tensor(&[shape.iter().sum::<usize>(), rank], rank, 0.0, seed);
        let mut off = 0;
        shape
            .iter()
            .map(|&d| {
                let m = Mat::from_fn(d, rank, |i, r| x[[off + i, r]] as f64 * 0.3);
                off += d;
                m
            })
            .collect()
    }

    #[test]
    fn implicit_jtj_and_gradient_match_the_explicit_jacobian() {
        let shape = [4, 3, 2];
        let rank = 2;
        let a = factors(&shape, rank, 5);
        let x = cp_tensor(&shape, 3, 0.0, 9);
        let xd = Dense::from_view(&x.view());
        let unf: Vec<Mat<f64>> = (0..3).map(|n| xd.unfold(n)).collect();
        let st = State::new(&unf, &a);
        // columns of J: the model is linear in each single parameter
        let flat = |m: &[Mat<f64>]| -> Vec<f64> {
            let t = super::super::als::model_transposed(m);
            (0..t.ncols())
                .flat_map(|i| t.col(i).iter().copied().collect::<Vec<_>>())
                .collect()
        };
        let base = flat(&a);
        let mut cols = Vec::new();
        for n in 0..3 {
            for i in 0..shape[n] {
                for r in 0..rank {
                    let mut b = a.clone();
                    b[n][(i, r)] += 1.0;
                    let m = flat(&b);
                    cols.push(m.iter().zip(&base).map(|(p, q)| p - q).collect::<Vec<_>>());
                }
            }
        }
        let v = factors(&shape, rank, 6);
        let vflat: Vec<f64> = v
            .iter()
            .flat_map(|m| (0..m.nrows()).flat_map(move |i| (0..rank).map(move |r| m[(i, r)])))
            .collect();
        let jv: Vec<f64> = (0..base.len())
            .map(|e| cols.iter().zip(&vflat).map(|(c, vv)| c[e] * vv).sum())
            .collect();
        let jtjv: Vec<f64> = cols
            .iter()
            .map(|c| c.iter().zip(&jv).map(|(p, q)| p * q).sum())
            .collect();
        let resid: Vec<f64> = base.iter().zip(&xd.data).map(|(m, x)| m - x).collect();
        let grad: Vec<f64> = cols
            .iter()
            .map(|c| c.iter().zip(&resid).map(|(p, q)| p * q).sum())
            .collect();
        let implicit = st.jtj(&a, &v);
        let mut k = 0;
        for n in 0..3 {
            for i in 0..shape[n] {
                for r in 0..rank {
                    assert!((implicit[n][(i, r)] - jtjv[k]).abs() < 1e-9, "JtJ at {k}");
                    assert!((st.grad[n][(i, r)] - grad[k]).abs() < 1e-9, "grad at {k}");
                    k += 1;
                }
            }
        }
    }

    #[test]
    fn lowers_the_error_of_early_stopped_als_on_noisy_low_rank() {
        let x = cp_tensor(&[16, 12, 3, 3], 6, 0.01, 21);
        let als = cp_als(
            x.view(),
            6,
            &CpConfig::default()
                .with_max_iterations(4)
                .with_line_search(false)
                .with_strict(false),
        )
        .unwrap();
        let lm = cp_refine_lm(x.view(), &als, &LmConfig::default()).unwrap();
        let st = lm.refinement.clone().unwrap();
        assert!(st.converged && st.accepted > 0);
        assert!((st.initial_error - als.rel_error).abs() < 1e-6);
        assert!(
            lm.rel_error < 0.5 * als.rel_error && lm.rel_error < 0.012,
            "{} -> {}",
            als.rel_error,
            lm.rel_error
        );
        // the reported error is the real one
        assert!((lm.relative_error(x.view()) - lm.rel_error).abs() < 1e-5);
    }

    #[test]
    fn recovers_exact_low_rank_tensors() {
        for (shape, r) in [(vec![7, 6, 5], 3), (vec![10, 8, 3, 3], 5)] {
            let x = cp_tensor(&shape, r, 0.0, 4);
            let als = cp_als(
                x.view(),
                r,
                &CpConfig::default()
                    .with_max_iterations(5)
                    .with_strict(false),
            )
            .unwrap();
            let lm = cp_refine_lm(
                x.view(),
                &als,
                &LmConfig::default().with_tol(1e-12).with_max_iterations(200),
            )
            .unwrap();
            assert!(lm.rel_error < 1e-5, "{shape:?}: {}", lm.rel_error);
            assert!(lm.relative_error(x.view()) < 1e-5);
        }
    }

    #[test]
    fn bad_input_and_non_convergence_are_errors() {
        let x = cp_tensor(&[5, 4, 3], 2, 0.1, 0);
        let als = cp_als(
            x.view(),
            2,
            &CpConfig::default()
                .with_max_iterations(2)
                .with_strict(false),
        )
        .unwrap();
        let mut y = x.clone();
        y[[0, 1, 2]] = f32::NAN;
        let e = cp_refine_lm(y.view(), &als, &LmConfig::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("tensor holds a non-finite value (NaN)"),
            "{e}"
        );
        let mut bad = als.clone();
        bad.factors[1][[0, 0]] = f32::INFINITY;
        let e = cp_refine_lm(x.view(), &bad, &LmConfig::default()).unwrap_err();
        assert!(
            e.to_string().contains("CP factor holds a non-finite"),
            "{e}"
        );
        let mut empty = als.clone();
        empty.weights = Array1::zeros(0);
        empty.factors = empty
            .factors
            .iter()
            .map(|f| Array2::zeros((f.nrows(), 0)))
            .collect();
        let e = cp_refine_lm(x.view(), &empty, &LmConfig::default()).unwrap_err();
        assert!(
            e.to_string().contains("rank 0 is out of range 1..=12"),
            "{e}"
        );
        let zero = ndarray::ArrayD::<f32>::zeros(vec![5, 4, 3]);
        let z = cp_refine_lm(zero.view(), &als, &LmConfig::default()).unwrap();
        assert_eq!(z.rel_error, 0.0);
        assert_eq!(z.reconstruct(), zero);
        let other = cp_tensor(&[5, 4, 2], 2, 0.0, 0);
        let e = cp_refine_lm(other.view(), &als, &LmConfig::default()).unwrap_err();
        assert!(e.to_string().contains("mode sizes [5, 4, 3]"), "{e}");
        let e = cp_refine_lm(x.view(), &als, &LmConfig::default().with_damping(0.0)).unwrap_err();
        assert!(e.to_string().contains("damping must be positive"), "{e}");
        // one iteration on a noisy fit with a tight tolerance cannot converge
        let e = cp_refine_lm(
            x.view(),
            &als,
            &LmConfig::default().with_max_iterations(1).with_tol(1e-12),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("CP-LM did not converge: 1 iterations"), "{e}");
        let lax = cp_refine_lm(
            x.view(),
            &als,
            &LmConfig::default()
                .with_max_iterations(1)
                .with_tol(1e-12)
                .with_strict(false),
        )
        .unwrap();
        let st = lax.refinement.unwrap();
        assert!(!st.converged && st.iterations == 1 && st.damping > 0.0);
        assert!(st.final_error <= st.initial_error);
    }
}
