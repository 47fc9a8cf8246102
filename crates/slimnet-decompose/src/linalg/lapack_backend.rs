//! Factorizations on LAPACK through `ndarray-linalg` (feature `lapack`, system OpenBLAS).

use faer::{Mat, MatRef};
use ndarray::Array2;
use ndarray_linalg::{Eigh, FactorizeC, JobSvd, SolveC, QR, SVDDC, UPLO};

/// Factorizations a scalar supports.
pub trait Factor: Sized {
    /// Thin SVD, `None` when LAPACK reports a failure.
    fn svd(a: MatRef<'_, Self>) -> Option<super::ThinSvd<Self>>;
    /// Thin Q of a Householder QR.
    fn qr_q(a: MatRef<'_, Self>) -> Mat<Self>;
    /// Ascending eigenvalues and eigenvectors of a symmetric matrix.
    fn eigh(a: MatRef<'_, Self>) -> Option<(Vec<Self>, Mat<Self>)>;
    /// Cholesky solve, `None` when the matrix is not numerically positive definite.
    fn cholesky_solve(g: MatRef<'_, Self>, b: MatRef<'_, Self>) -> Option<Mat<Self>>;
}

fn to_nd<T: Copy>(a: MatRef<'_, T>) -> Array2<T> {
    Array2::from_shape_fn((a.nrows(), a.ncols()), |(i, j)| a[(i, j)])
}

fn to_faer<T: Copy>(a: &Array2<T>) -> Mat<T> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]])
}

macro_rules! impl_factor {
    ($t:ty) => {
        impl Factor for $t {
            fn svd(a: MatRef<'_, $t>) -> Option<super::ThinSvd<$t>> {
                let (u, s, vt) = to_nd(a).svddc(JobSvd::Some).ok()?;
                let (u, vt) = (u?, vt?);
                Some(super::ThinSvd {
                    u: to_faer(&u),
                    s: s.to_vec(),
                    v: to_faer(&vt.t().to_owned()),
                })
            }

            fn qr_q(a: MatRef<'_, $t>) -> Mat<$t> {
                let (q, _) = to_nd(a).qr().expect("QR of a finite matrix");
                to_faer(&q)
            }

            fn eigh(a: MatRef<'_, $t>) -> Option<(Vec<$t>, Mat<$t>)> {
                let (w, v) = to_nd(a).eigh(UPLO::Lower).ok()?;
                Some((w.to_vec(), to_faer(&v)))
            }

            fn cholesky_solve(g: MatRef<'_, $t>, b: MatRef<'_, $t>) -> Option<Mat<$t>> {
                let f = to_nd(g).factorizec(UPLO::Lower).ok()?;
                let mut x = Mat::<$t>::zeros(b.nrows(), b.ncols());
                for j in 0..b.ncols() {
                    let col = ndarray::Array1::from_iter(b.col(j).iter().copied());
                    let sol = f.solvec(&col).ok()?;
                    for (i, v) in sol.iter().enumerate() {
                        x[(i, j)] = *v;
                    }
                }
                Some(x)
            }
        }
    };
}

impl_factor!(f32);
impl_factor!(f64);
