//! The ALS iteration.

use faer::{Mat, MatRef};
use ndarray::{Array1, Array2, ArrayViewD};
use rand::SeedableRng;

use super::{max_cp_rank, Cp, CpConfig, CpInit};
use crate::dense::{khatri_rao, Dense};
use crate::error::{check_finite, check_rank, DecomposeError, Result};
use crate::linalg;
use crate::util::gaussian;

/// Fits a rank-`rank` CP model to `x` (order >= 2) by alternating least squares.
///
/// Each sweep solves, for every mode `n`, the normal equations
/// `A_n (∗_{m≠n} A_m^T A_m) = X_(n) · khatri_rao(A_m, m≠n)` (the MTTKRP) by Cholesky, falling
/// back to a pseudo-inverse when the Gram product is singular, then moves the column norms into
/// `λ`. The error is tracked without forming the model:
/// `||X - X̂||² = ||X||² - 2⟨X, X̂⟩ + λ^T (∗_n A_n^T A_n) λ`.
///
/// # Errors
/// Order below 2, an empty tensor, NaN or infinite entries, `rank` of 0 or above
/// [`max_cp_rank`], a non-finite iterate, or — with `strict` and `tol > 0` — no convergence
/// within `max_iterations` (the error reports the sweeps run and the error reached).
///
/// With `restarts > 0`, that many further runs start from seeded random factors and the fit with
/// the lowest error is returned (the strict check applies to it).
pub fn cp_als(x: ArrayViewD<'_, f32>, rank: usize, cfg: &CpConfig) -> Result<Cp> {
    let shape = x.shape().to_vec();
    if shape.len() < 2 || shape.contains(&0) {
        return Err(DecomposeError::invalid(format!(
            "CP needs a non-empty tensor of order >= 2, got shape {shape:?}"
        )));
    }
    check_finite(x.iter(), "tensor")?;
    check_rank(rank, max_cp_rank(&shape), || {
        format!("a CP model of a {shape:?} tensor")
    })?;
    let xd = Dense::from_view(&x);
    let (mut best, mut change) = fit(&xd, rank, cfg, cfg.init, cfg.seed)?;
    for k in 0..cfg.restarts {
        let seed = cfg.seed.wrapping_add(1 + k as u64);
        // a restart that breaks down is skipped: the first run already succeeded
        if let Ok((cp, ch)) = fit(&xd, rank, cfg, CpInit::Random, seed) {
            if cp.rel_error < best.rel_error {
                (best, change) = (cp, ch);
            }
        }
    }
    if !best.converged && cfg.strict {
        return Err(DecomposeError::NoConvergence {
            layer: String::new(),
            method: "CP-ALS".into(),
            iterations: best.iterations,
            error: best.rel_error,
            change,
            tol: cfg.tol,
        });
    }
    Ok(best)
}

/// One ALS run from `init` with `seed`; returns the model and the last relative change of the
/// error (the strict check is the caller's).
fn fit(xd: &Dense, rank: usize, cfg: &CpConfig, init: CpInit, seed: u64) -> Result<(Cp, f64)> {
    let shape = xd.shape.clone();
    let norm_x = xd.norm();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    if norm_x == 0.0 {
        // the zero tensor: any unit factors with zero weights
        let factors = shape
            .iter()
            .map(|&d| Array2::from_shape_fn((d, rank), |(i, _)| (i == 0) as u8 as f32))
            .collect();
        let cp = Cp {
            weights: Array1::zeros(rank),
            factors,
            iterations: 0,
            rel_error: 0.0,
            converged: true,
            line_search_accepted: 0,
            refinement: None,
        };
        return Ok((cp, 0.0));
    }
    let order = shape.len();
    // The largest mode is the pivot: its MTTKRP is a product with the full unfolding; then
    // P = X_(p)^T A_p contracts the pivot once, and every other mode's MTTKRP is a cheap
    // contraction of P (a two-level dimension tree).
    let pivot = (0..order)
        .max_by_key(|&n| (shape[n], usize::MAX - n))
        .expect("order >= 2");
    let others: Vec<usize> = (0..order).filter(|&n| n != pivot).collect();
    let x_pivot = xd.unfold(pivot);
    let mut factors: Vec<Mat<f64>> = match init {
        CpInit::Random => shape
            .iter()
            .map(|&d| Mat::from_fn(d, rank, |_, _| gaussian(&mut rng)))
            .collect(),
        CpInit::Svd => {
            let mut f = Vec::with_capacity(order);
            for (n, &d) in shape.iter().enumerate() {
                let svd = linalg::svd(xd.unfold(n).as_ref())?;
                let k = svd.u.ncols();
                f.push(Mat::from_fn(d, rank, |i, j| {
                    if j < k {
                        svd.u[(i, j)]
                    } else {
                        0.0
                    }
                }));
                // columns beyond the mode size: Gaussian
                for j in k..rank {
                    for i in 0..d {
                        f[n][(i, j)] = gaussian(&mut rng);
                    }
                }
            }
            f
        }
    };
    let mut weights = vec![1.0f64; rank];
    for f in factors.iter_mut() {
        let norms = normalize(f);
        for (w, v) in weights.iter_mut().zip(norms) {
            *w *= v;
        }
    }
    let mut grams: Vec<Mat<f64>> = factors
        .iter()
        .map(|f| linalg::matmul(f.transpose(), f.as_ref()))
        .collect();

    let mut err = f64::INFINITY;
    let mut prev: Option<(Vec<Mat<f64>>, Vec<f64>)> = None;
    let mut converged = cfg.tol == 0.0;
    let mut change = f64::NAN;
    let mut iterations = 0;
    let mut accepted = 0;
    for it in 1..=cfg.max_iterations {
        iterations = it;
        let snapshot = cfg.line_search.then(|| (factors.clone(), weights.clone()));
        let mut inner = 0.0;
        let mut pt = Mat::<f64>::zeros(0, 0);
        for (step, &n) in std::iter::once(&pivot).chain(&others).enumerate() {
            let mttkrp = if step == 0 {
                let kr_in: Vec<MatRef<'_, f64>> =
                    others.iter().map(|&m| factors[m].as_ref()).collect();
                linalg::matmul(x_pivot.as_ref(), khatri_rao(&kr_in).as_ref())
            } else {
                contract_pivot(&pt, &shape, &others, n, &factors)
            };
            let mut v = Mat::<f64>::from_fn(rank, rank, |_, _| 1.0);
            for (m, g) in grams.iter().enumerate() {
                if m != n {
                    v = Mat::from_fn(rank, rank, |i, j| v[(i, j)] * g[(i, j)]);
                }
            }
            // A_n^T = V^{-1} M^T
            let at = linalg::solve_psd(v.as_ref(), mttkrp.transpose())?;
            let mut a = at.transpose().to_owned();
            weights = normalize(&mut a);
            if step + 1 == order {
                // <X, X̂> = Σ_{i,r} M[i,r] A[i,r] λ_r
                for (r, w) in weights.iter().enumerate() {
                    let s: f64 = mttkrp
                        .col(r)
                        .iter()
                        .zip(a.col(r).iter())
                        .map(|(x, y)| x * y)
                        .sum();
                    inner += s * w;
                }
            }
            grams[n] = linalg::matmul(a.transpose(), a.as_ref());
            factors[n] = a;
            if step == 0 {
                pt = linalg::matmul(x_pivot.transpose(), factors[pivot].as_ref());
            }
        }
        let mut new_err = model_error(norm_x, inner, &grams, &weights);
        if !new_err.is_finite() {
            return Err(DecomposeError::NoConvergence {
                layer: String::new(),
                method: "CP-ALS".into(),
                iterations: it,
                error: new_err,
                change: f64::NAN,
                tol: cfg.tol,
            });
        }
        if let (Some((pf, pw)), true) = (&prev, it > 2) {
            // extrapolate from the previous sweep's end point
            let step = (it as f64).powf(1.0 / 3.0);
            let cand = extrapolate(&factors, &weights, pf, pw, step);
            let cand_err = full_error(xd, &cand, norm_x);
            if cand_err < new_err {
                let (f, w) = split_weights(cand);
                factors = f;
                weights = w;
                grams = factors
                    .iter()
                    .map(|f| linalg::matmul(f.transpose(), f.as_ref()))
                    .collect();
                new_err = cand_err;
                accepted += 1;
            }
        }
        if cfg.line_search {
            prev = snapshot.map(|_| (factors.clone(), weights.clone()));
        }
        change = if err.is_finite() {
            (err - new_err).abs() / err.max(f64::MIN_POSITIVE)
        } else {
            f64::INFINITY
        };
        err = new_err;
        if err < cfg.error_floor || (cfg.tol > 0.0 && change < cfg.tol) {
            converged = true;
            break;
        }
    }
    let cp = Cp {
        weights: Array1::from_iter(weights.iter().map(|&w| w as f32)),
        factors: factors
            .iter()
            .map(|f| Array2::from_shape_fn((f.nrows(), f.ncols()), |(i, j)| f[(i, j)] as f32))
            .collect(),
        iterations,
        rel_error: err,
        converged: converged || err < cfg.error_floor,
        line_search_accepted: accepted,
        refinement: None,
    };
    Ok((cp, change))
}

/// The MTTKRP of mode `n` from `pt = X_(p)^T A_p` (`rest x R`, rest = the non-pivot modes in
/// row-major order): `M[i_n, r] = Σ_j pt[j, r] Π_{m ∈ others, m ≠ n} A_m[i_m(j), r]`.
pub(super) fn contract_pivot(
    pt: &Mat<f64>,
    shape: &[usize],
    others: &[usize],
    n: usize,
    factors: &[Mat<f64>],
) -> Mat<f64> {
    let rank = pt.ncols();
    let rest = pt.nrows();
    let pos = others
        .iter()
        .position(|&m| m == n)
        .expect("n is not the pivot");
    let stride: usize = others[pos + 1..].iter().map(|&m| shape[m]).product();
    let dim = shape[n];
    let mut out = Mat::<f64>::zeros(dim, rank);
    // w(j) = L(modes before n) · R(modes after n): contract the right part by dot products and
    // scale by the left part, never expanding the full Khatri-Rao column
    let (before, after) = (&others[..pos], &others[pos + 1..]);
    let mut lvec = Vec::new();
    let mut rvec = Vec::new();
    for r in 0..rank {
        kr_column(before, shape, factors, r, &mut lvec);
        kr_column(after, shape, factors, r, &mut rvec);
        let p = pt
            .col(r)
            .try_as_col_major()
            .expect("owned column")
            .as_slice();
        let o = out
            .col_mut(r)
            .try_as_col_major_mut()
            .expect("owned column")
            .as_slice_mut();
        debug_assert_eq!(lvec.len() * dim * stride, rest);
        for (block, &lv) in p.chunks_exact(dim * stride).zip(&lvec) {
            for (oi, seg) in o.iter_mut().zip(block.chunks_exact(stride)) {
                let d: f64 = seg.iter().zip(&rvec).map(|(a, b)| a * b).sum();
                *oi += lv * d;
            }
        }
    }
    out
}

/// Column `r` of the Khatri-Rao product of the factors of `modes` (a single 1 when empty).
fn kr_column(modes: &[usize], shape: &[usize], factors: &[Mat<f64>], r: usize, out: &mut Vec<f64>) {
    out.clear();
    out.push(1.0);
    for &m in modes {
        let col = factors[m].col(r);
        let prev = std::mem::take(out);
        out.reserve(prev.len() * shape[m]);
        for &a in &prev {
            out.extend(col.iter().map(|&c| a * c));
        }
    }
}

/// Scales every column to unit norm and returns the norms (zero columns stay zero, norm 0).
fn normalize(a: &mut Mat<f64>) -> Vec<f64> {
    (0..a.ncols())
        .map(|j| {
            let n = a.col(j).iter().map(|v| v * v).sum::<f64>().sqrt();
            if n > 0.0 {
                for v in a.col_mut(j).iter_mut() {
                    *v /= n;
                }
            }
            n
        })
        .collect()
}

/// `||X - X̂|| / ||X||` from `<X, X̂>` and the factor Gram matrices.
fn model_error(norm_x: f64, inner: f64, grams: &[Mat<f64>], w: &[f64]) -> f64 {
    let r = w.len();
    let mut model = 0.0;
    for i in 0..r {
        for j in 0..r {
            let mut p = w[i] * w[j];
            for g in grams {
                p *= g[(i, j)];
            }
            model += p;
        }
    }
    let sq = (norm_x * norm_x - 2.0 * inner + model).max(0.0);
    sq.sqrt() / norm_x
}

/// Factors with the weights folded into the first one, moved `step` further along the last
/// sweep's direction.
fn extrapolate(f: &[Mat<f64>], w: &[f64], pf: &[Mat<f64>], pw: &[f64], step: f64) -> Vec<Mat<f64>> {
    f.iter()
        .zip(pf)
        .enumerate()
        .map(|(n, (a, p))| {
            Mat::from_fn(a.nrows(), a.ncols(), |i, j| {
                let (cur, old) = if n == 0 {
                    (a[(i, j)] * w[j], p[(i, j)] * pw[j])
                } else {
                    (a[(i, j)], p[(i, j)])
                };
                cur + step * (cur - old)
            })
        })
        .collect()
}

/// Normalises factors, returning them with the product of column norms as weights.
fn split_weights(mut f: Vec<Mat<f64>>) -> (Vec<Mat<f64>>, Vec<f64>) {
    let r = f[0].ncols();
    let mut w = vec![1.0; r];
    for a in f.iter_mut() {
        for (x, n) in w.iter_mut().zip(normalize(a)) {
            *x *= n;
        }
    }
    (f, w)
}

/// The model `X_(0) = A_0 · khatri_rao(A_1, …)^T`, returned transposed (`rest x I_0`, column
/// `i` contiguous) so that its column-major data is the row-major tensor.
pub(crate) fn model_transposed(f: &[Mat<f64>]) -> Mat<f64> {
    let rest: Vec<MatRef<'_, f64>> = f[1..].iter().map(|a| a.as_ref()).collect();
    let kr = khatri_rao(&rest);
    linalg::matmul(kr.as_ref(), f[0].transpose())
}

/// `||X - X̂|| / ||X||` by forming the model (used by the line search).
fn full_error(x: &Dense, f: &[Mat<f64>], norm_x: f64) -> f64 {
    let model = model_transposed(f);
    let rows = model.nrows();
    let mut s = 0.0;
    for i in 0..model.ncols() {
        let m = model.col(i).try_as_col_major().expect("owned").as_slice();
        let xi = &x.data[i * rows..(i + 1) * rows];
        s += m
            .iter()
            .zip(xi)
            .map(|(a, b)| (b - a) * (b - a))
            .sum::<f64>();
    }
    s.sqrt() / norm_x
}

#[cfg(test)]
mod tests {
    use ndarray::ArrayD;

    use super::*;
    use crate::util::tests::cp_tensor;

    #[test]
    fn exact_rank_reconstructs() {
        for (shape, r) in [(vec![6, 5, 4], 3), (vec![8, 6, 3, 3], 4), (vec![10, 7], 5)] {
            let x = cp_tensor(&shape, r, 0.0, 7);
            let cp = cp_als(
                x.view(),
                r,
                &CpConfig::default().with_tol(1e-12).with_strict(false),
            )
            .unwrap();
            assert!(cp.rel_error < 1e-5, "{shape:?}: {}", cp.rel_error);
            assert!((cp.relative_error(x.view()) - cp.rel_error).abs() < 1e-5);
            assert_eq!(cp.n_params(), r + shape.iter().sum::<usize>() * r);
        }
    }

    #[test]
    fn error_falls_as_rank_grows() {
        let x = cp_tensor(&[10, 9, 3, 3], 12, 0.0, 3);
        let mut last = f64::INFINITY;
        for r in [1, 3, 6, 12] {
            let cp = cp_als(
                x.view(),
                r,
                &CpConfig::default()
                    .with_strict(false)
                    .with_max_iterations(300),
            )
            .unwrap();
            assert!(cp.rel_error < last, "rank {r}: {} >= {last}", cp.rel_error);
            last = cp.rel_error;
        }
        assert!(last < 1e-3, "{last}");
    }

    #[test]
    fn random_init_and_noise_reach_the_noise_floor() {
        let x = cp_tensor(&[12, 10, 3, 3], 5, 0.01, 11);
        let cp = cp_als(
            x.view(),
            5,
            &CpConfig::default().with_init(CpInit::Random).with_seed(2),
        )
        .unwrap();
        assert!(cp.converged);
        assert!(cp.rel_error < 0.02, "{}", cp.rel_error);
        let deterministic = cp_als(
            x.view(),
            5,
            &CpConfig::default().with_init(CpInit::Random).with_seed(2),
        )
        .unwrap();
        assert_eq!(cp, deterministic);
    }

    #[test]
    fn restarts_keep_the_best_run() {
        let x = cp_tensor(&[9, 8, 3, 3], 4, 0.05, 13);
        let cfg = CpConfig::default()
            .with_init(CpInit::Random)
            .with_max_iterations(6)
            .with_strict(false);
        let single = cp_als(x.view(), 4, &cfg).unwrap();
        let runs: Vec<f64> = (0..4)
            .map(|k| {
                cp_als(x.view(), 4, &cfg.clone().with_seed(k))
                    .unwrap()
                    .rel_error
            })
            .collect();
        let best = cp_als(x.view(), 4, &cfg.clone().with_restarts(3)).unwrap();
        let lowest = runs.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(best.rel_error, lowest);
        assert!(best.rel_error <= single.rel_error);
        assert!((best.relative_error(x.view()) - best.rel_error).abs() < 1e-5);
    }

    #[test]
    fn bad_input_and_non_convergence() {
        let x = cp_tensor(&[5, 4, 3], 2, 0.0, 0);
        let e = cp_als(x.view(), 0, &CpConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 0 is out of range 1..=12"), "{e}");
        let e = cp_als(x.view(), 13, &CpConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 13"), "{e}");
        let mut y = x.clone();
        y[[1, 1, 1]] = f32::NEG_INFINITY;
        let e = cp_als(y.view(), 2, &CpConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-finite value (-inf)"), "{e}");
        let noisy = cp_tensor(&[9, 8, 7], 6, 0.3, 1);
        let e = cp_als(
            noisy.view(),
            4,
            &CpConfig::default().with_max_iterations(2).with_tol(1e-12),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("CP-ALS did not converge: 2 iterations, relative error"),
            "{e}"
        );
        let e = cp_als(
            ArrayD::<f32>::zeros(vec![3]).view(),
            1,
            &CpConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("order >= 2"));
        // restarts: the strict check applies to the best run
        let e = cp_als(
            noisy.view(),
            4,
            &CpConfig::default()
                .with_max_iterations(2)
                .with_tol(1e-12)
                .with_restarts(2),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("CP-ALS did not converge: 2 iterations"), "{e}");
        let z = cp_als(
            ArrayD::<f32>::zeros(vec![3, 2]).view(),
            1,
            &CpConfig::default(),
        )
        .unwrap();
        assert_eq!(z.reconstruct(), ArrayD::<f32>::zeros(vec![3, 2]));
    }
}
