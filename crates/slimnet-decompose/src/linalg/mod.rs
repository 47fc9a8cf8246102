//! Dense linear algebra used by the decompositions: matrix products, thin SVD, thin QR, symmetric
//! eigendecomposition and symmetric positive-definite solves on column-major `faer` matrices.
//!
//! Products always run on `faer`. The factorizations run on `faer` by default and on LAPACK
//! (through `ndarray-linalg`) with the `lapack` feature; both give the same results up to
//! rounding and pass the same tests.

use faer::linalg::matmul::matmul as faer_matmul;
use faer::{Accum, Mat, MatRef, Par};

use crate::error::{DecomposeError, Result};

#[cfg(not(feature = "lapack"))]
mod faer_backend;
#[cfg(not(feature = "lapack"))]
use faer_backend as backend;
#[cfg(feature = "lapack")]
mod lapack_backend;
#[cfg(feature = "lapack")]
use lapack_backend as backend;

/// A real scalar the decompositions compute in (`f32` or `f64`).
pub(crate) trait Elem:
    faer::traits::RealField + Copy + Send + Sync + std::fmt::Debug + 'static + backend::Factor
{
    /// From `f64` (rounding for `f32`).
    fn of(v: f64) -> Self;
    /// To `f64`.
    fn f(self) -> f64;
}

impl Elem for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn f(self) -> f64 {
        self as f64
    }
}

impl Elem for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn f(self) -> f64 {
        self
    }
}

/// The parallelism matching `slimnet_kernels::threads::num_threads()`.
pub(crate) fn par() -> Par {
    match slimnet_kernels::threads::num_threads() {
        0 | 1 => Par::Seq,
        n => Par::rayon(n),
    }
}

/// `a * b`.
pub(crate) fn matmul<T: Elem>(a: MatRef<'_, T>, b: MatRef<'_, T>) -> Mat<T> {
    let mut c = Mat::zeros(a.nrows(), b.ncols());
    faer_matmul(c.as_mut(), Accum::Replace, a, b, T::of(1.0), par());
    c
}

/// A thin SVD `a = u diag(s) v^T`: `u` is `m x k`, `s` descending (length `k`), `v` is `n x k`,
/// `k = min(m, n)`.
pub(crate) struct ThinSvd<T> {
    pub u: Mat<T>,
    pub s: Vec<T>,
    pub v: Mat<T>,
}

/// Thin SVD.
///
/// # Errors
/// [`DecomposeError::NoConvergence`] when the backend's iteration fails.
pub(crate) fn svd<T: Elem>(a: MatRef<'_, T>) -> Result<ThinSvd<T>> {
    if a.nrows() == 0 || a.ncols() == 0 {
        return Err(DecomposeError::invalid(format!(
            "cannot take the SVD of an empty {}x{} matrix",
            a.nrows(),
            a.ncols()
        )));
    }
    T::svd(a).ok_or_else(|| DecomposeError::NoConvergence {
        layer: String::new(),
        method: "SVD".into(),
        iterations: 0,
        error: f64::NAN,
        change: f64::NAN,
        tol: 0.0,
    })
}

/// An orthonormal basis of the column space of `a` (`m x min(m, n)`), by Householder QR.
pub(crate) fn qr_q<T: Elem>(a: MatRef<'_, T>) -> Mat<T> {
    T::qr_q(a)
}

/// Eigenvalues (ascending) and eigenvectors of the symmetric matrix `a`.
///
/// # Errors
/// [`DecomposeError::NoConvergence`] when the backend's iteration fails.
pub(crate) fn eigh<T: Elem>(a: MatRef<'_, T>) -> Result<(Vec<T>, Mat<T>)> {
    T::eigh(a).ok_or_else(|| DecomposeError::NoConvergence {
        layer: String::new(),
        method: "symmetric eigendecomposition".into(),
        iterations: 0,
        error: f64::NAN,
        change: f64::NAN,
        tol: 0.0,
    })
}

/// Solves `g x = b` for a symmetric positive semi-definite `g` (`r x r`) and `b` (`r x k`).
/// Uses Cholesky; when `g` is singular to working precision it falls back to the
/// pseudo-inverse through the eigendecomposition, dropping eigenvalues below
/// `max_eig * r * eps`.
///
/// # Errors
/// [`DecomposeError::NoConvergence`] when even the eigendecomposition fails.
pub(crate) fn solve_psd<T: Elem>(g: MatRef<'_, T>, b: MatRef<'_, T>) -> Result<Mat<T>> {
    if let Some(x) = T::cholesky_solve(g, b) {
        if x.col_iter().all(|c| c.iter().all(|v| v.f().is_finite())) {
            return Ok(x);
        }
    }
    let (w, q) = eigh(g)?;
    let wmax = w.iter().fold(0.0f64, |m, v| m.max(v.f().abs()));
    let cut = wmax * g.nrows() as f64 * f64::from(f32::EPSILON).min(T::epsilon_impl().f()) * 10.0;
    // x = q diag(1/w) q^T b
    let qtb = matmul(q.transpose(), b);
    let mut scaled = qtb;
    for (i, wi) in w.iter().enumerate() {
        let inv = if wi.f() > cut { 1.0 / wi.f() } else { 0.0 };
        for j in 0..scaled.ncols() {
            scaled[(i, j)] = T::of(scaled[(i, j)].f() * inv);
        }
    }
    Ok(matmul(q.as_ref(), scaled.as_ref()))
}

/// Frobenius norm in f64.
#[cfg(test)]
pub(crate) fn fro<T: Elem>(m: MatRef<'_, T>) -> f64 {
    let mut s = 0.0f64;
    for c in m.col_iter() {
        for v in c.iter() {
            s += v.f() * v.f();
        }
    }
    s.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svd_qr_eigh_solve_identities() {
        let a = Mat::<f64>::from_fn(7, 4, |i, j| {
            ((i * 3 + j * 5) % 7) as f64 - 2.5 + (i == j) as u8 as f64
        });
        let d = svd(a.as_ref()).unwrap();
        assert_eq!((d.u.ncols(), d.s.len(), d.v.ncols()), (4, 4, 4));
        assert!(d.s.windows(2).all(|w| w[0] >= w[1]));
        let mut us = d.u.clone();
        for j in 0..4 {
            for i in 0..7 {
                us[(i, j)] *= d.s[j];
            }
        }
        let r = matmul(us.as_ref(), d.v.transpose());
        assert!(fro((&r - &a).as_ref()) < 1e-10 * fro(a.as_ref()));
        let q = qr_q(a.as_ref());
        let qtq = matmul(q.transpose(), q.as_ref());
        assert!(fro((&qtq - Mat::<f64>::identity(4, 4)).as_ref()) < 1e-12);
        let g = matmul(a.transpose(), a.as_ref());
        let (w, v) = eigh(g.as_ref()).unwrap();
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
        assert!((w[3].sqrt() - d.s[0]).abs() < 1e-9);
        let mut vw = v.clone();
        for j in 0..4 {
            for i in 0..4 {
                vw[(i, j)] *= w[j];
            }
        }
        assert!(fro((&matmul(vw.as_ref(), v.transpose()) - &g).as_ref()) < 1e-9);
        let b = Mat::<f64>::from_fn(4, 2, |i, j| (i + j) as f64);
        let x = solve_psd(g.as_ref(), b.as_ref()).unwrap();
        assert!(fro((&matmul(g.as_ref(), x.as_ref()) - &b).as_ref()) < 1e-9);
        // a singular system falls back to the pseudo-inverse (least-norm solution)
        let s = Mat::<f64>::from_fn(3, 3, |i, j| ((i + 1) * (j + 1)) as f64);
        let rhs = Mat::<f64>::from_fn(3, 1, |i, _| (i + 1) as f64);
        let x = solve_psd(s.as_ref(), rhs.as_ref()).unwrap();
        assert!(fro((&matmul(s.as_ref(), x.as_ref()) - &rhs).as_ref()) < 1e-9);
    }
}
