//! Factorizations on `faer` (the default backend).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::{cholesky, evd, householder, qr, svd};
use faer::{Conj, Mat, MatRef};

use super::par;

/// Factorizations a scalar supports.
pub trait Factor: Sized {
    /// Thin SVD, `None` when the iteration does not converge.
    fn svd(a: MatRef<'_, Self>) -> Option<super::ThinSvd<Self>>;
    /// Thin Q of a Householder QR.
    fn qr_q(a: MatRef<'_, Self>) -> Mat<Self>;
    /// Ascending eigenvalues and eigenvectors of a symmetric matrix.
    fn eigh(a: MatRef<'_, Self>) -> Option<(Vec<Self>, Mat<Self>)>;
    /// Cholesky solve, `None` when the matrix is not numerically positive definite.
    fn cholesky_solve(g: MatRef<'_, Self>, b: MatRef<'_, Self>) -> Option<Mat<Self>>;
}

macro_rules! impl_factor {
    ($t:ty) => {
        impl Factor for $t {
            fn svd(a: MatRef<'_, $t>) -> Option<super::ThinSvd<$t>> {
                let (m, n) = a.shape();
                let k = m.min(n);
                let p = par();
                let mut u = Mat::<$t>::zeros(m, k);
                let mut v = Mat::<$t>::zeros(n, k);
                let mut s = faer::diag::Diag::<$t>::zeros(k);
                let thin = svd::ComputeSvdVectors::Thin;
                let mut buf = MemBuffer::new(svd::svd_scratch::<$t>(
                    m,
                    n,
                    thin,
                    thin,
                    p,
                    Default::default(),
                ));
                svd::svd(
                    a,
                    s.as_mut(),
                    Some(u.as_mut()),
                    Some(v.as_mut()),
                    p,
                    MemStack::new(&mut buf),
                    Default::default(),
                )
                .ok()?;
                let s: Vec<$t> = s.column_vector().iter().copied().collect();
                Some(super::ThinSvd { u, s, v })
            }

            fn qr_q(a: MatRef<'_, $t>) -> Mat<$t> {
                let (m, n) = a.shape();
                let k = m.min(n);
                let p = par();
                let mut f = a.to_owned();
                let bs = qr::no_pivoting::factor::recommended_block_size::<$t>(m, n);
                let mut coeff = Mat::<$t>::zeros(bs, k);
                let mut buf = MemBuffer::new(qr::no_pivoting::factor::qr_in_place_scratch::<$t>(
                    m,
                    n,
                    bs,
                    p,
                    Default::default(),
                ));
                qr::no_pivoting::factor::qr_in_place(
                    f.as_mut(),
                    coeff.as_mut(),
                    p,
                    MemStack::new(&mut buf),
                    Default::default(),
                );
                let mut q = Mat::<$t>::identity(m, k);
                let mut buf = MemBuffer::new(
                    householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<$t>(
                        m, bs, k,
                    ),
                );
                householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
                    f.as_ref().get(.., ..k),
                    coeff.as_ref(),
                    Conj::No,
                    q.as_mut(),
                    p,
                    MemStack::new(&mut buf),
                );
                q
            }

            fn eigh(a: MatRef<'_, $t>) -> Option<(Vec<$t>, Mat<$t>)> {
                let n = a.nrows();
                let p = par();
                let mut u = Mat::<$t>::zeros(n, n);
                let mut s = faer::diag::Diag::<$t>::zeros(n);
                let mut buf = MemBuffer::new(evd::self_adjoint_evd_scratch::<$t>(
                    n,
                    evd::ComputeEigenvectors::Yes,
                    p,
                    Default::default(),
                ));
                evd::self_adjoint_evd(
                    a,
                    s.as_mut(),
                    Some(u.as_mut()),
                    p,
                    MemStack::new(&mut buf),
                    Default::default(),
                )
                .ok()?;
                Some((s.column_vector().iter().copied().collect(), u))
            }

            fn cholesky_solve(g: MatRef<'_, $t>, b: MatRef<'_, $t>) -> Option<Mat<$t>> {
                let n = g.nrows();
                let p = par();
                let mut l = g.to_owned();
                let mut buf = MemBuffer::new(
                    cholesky::llt::factor::cholesky_in_place_scratch::<$t>(n, p, Default::default()),
                );
                cholesky::llt::factor::cholesky_in_place(
                    l.as_mut(),
                    Default::default(),
                    p,
                    MemStack::new(&mut buf),
                    Default::default(),
                )
                .ok()?;
                let mut x = b.to_owned();
                let mut buf = MemBuffer::new(cholesky::llt::solve::solve_in_place_scratch::<$t>(
                    n,
                    x.ncols(),
                    p,
                ));
                cholesky::llt::solve::solve_in_place(
                    l.as_ref(),
                    x.as_mut(),
                    p,
                    MemStack::new(&mut buf),
                );
                Some(x)
            }
        }
    };
}

impl_factor!(f32);
impl_factor!(f64);
