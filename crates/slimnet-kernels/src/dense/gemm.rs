use crate::error::{check_len2, KernelError, Result};
use crate::threads;

/// A read-only view of an f32 matrix with arbitrary row and column strides.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    ///
    /// # Errors
    /// When `data.len() != rows * cols`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        check_len2("matrix", rows, cols, data.len())?;
        Ok(Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        })
    }

    /// A matrix with explicit strides (in elements).
    ///
    /// # Errors
    /// When an element the strides address lies outside `data`.
    pub fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self> {
        let need = if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1)
                .checked_mul(rs)
                .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
                .and_then(|v| v.checked_add(1))
                .ok_or(KernelError::Invalid {
                    what: "matrix strides",
                    reason: "overflow".into(),
                })?
        };
        if need > data.len() {
            return Err(KernelError::Length {
                what: "strided matrix",
                expected: need,
                actual: data.len(),
            });
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Element `(i, j)`.
    ///
    /// # Panics
    /// When out of range.
    #[inline]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    /// Row `i`, columns `j..j + w`, when they are contiguous.
    #[inline]
    pub(crate) fn row_slice(&self, i: usize, j: usize, w: usize) -> Option<&'a [f32]> {
        if self.cs == 1 || w <= 1 {
            let s = i * self.rs + j * self.cs;
            Some(&self.data[s..s + w])
        } else {
            None
        }
    }

    /// Row stride.
    #[inline]
    pub(crate) fn rs(&self) -> usize {
        self.rs
    }

    /// Column stride.
    #[inline]
    pub(crate) fn cs(&self) -> usize {
        self.cs
    }

    /// Pointer to element `(i, j)`.
    ///
    /// # Panics
    /// When out of range.
    #[inline]
    pub(crate) fn ptr_at(&self, i: usize, j: usize) -> *const f32 {
        &self.data[i * self.rs + j * self.cs]
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// `C = alpha * A * B + beta * C`, with `C` row-major `A.rows() x B.cols()`.
///
/// When `beta == 0`, `C` is not read (it may hold garbage, even NaN).
///
/// # Errors
/// When inner dimensions differ or `c` has the wrong length.
///
/// ```
/// use slimnet_kernels::dense::{sgemm, MatRef};
/// let a = [1.0f32, 2.0, 3.0, 4.0];
/// let b = [1.0f32, 0.0, 0.0, 1.0];
/// let mut c = [0.0f32; 4];
/// sgemm(1.0, MatRef::row_major(&a, 2, 2)?, MatRef::row_major(&b, 2, 2)?, 0.0, &mut c)?;
/// assert_eq!(c, a);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
pub fn sgemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) -> Result<()> {
    if a.cols != b.rows {
        return Err(KernelError::Invalid {
            what: "gemm inner dimension",
            reason: format!("A is {}x{}, B is {}x{}", a.rows, a.cols, b.rows, b.cols),
        });
    }
    check_len2("gemm output", a.rows, b.cols, c.len())?;
    sgemm_unchecked(alpha, a, b, beta, c, threads::num_threads());
    Ok(())
}

/// Which f32 GEMM implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// slimnet's AVX-512 kernel (when the CPU has AVX-512).
    Own,
    /// The `gemm` crate.
    GemmCrate,
}

/// The backend, from `SLIMNET_GEMM=gemm` (the `gemm` crate) or the default (own kernel).
pub(crate) fn gemm_backend() -> Backend {
    static B: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
    *B.get_or_init(|| match std::env::var("SLIMNET_GEMM").as_deref() {
        Ok("gemm") => Backend::GemmCrate,
        _ => Backend::Own,
    })
}

/// Whether the AVX-512 kernel should run: the CPU has it, the product is not tiny, `A` has at
/// least one full row panel (8 rows), and `B` is row-major (packing a strided `B` costs as much as a
/// matrix-vector product; those shapes go to the `gemm` crate).
fn own_kernel_fits(a: &MatRef<'_>, b: &MatRef<'_>) -> bool {
    b.cs == 1 && own_kernel_fits_shape(a.rows, a.cols, b.cols)
}

/// Whether the own AVX-512 kernel runs an `[m, k] x [k, n]` product whose `B` is row-major.
pub(crate) fn own_kernel_fits_shape(m: usize, k: usize, n: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && crate::isa::features().avx512
        && gemm_backend() == Backend::Own
        && m >= 8
        && m * k * n >= 32 * 32 * 32
}

/// [`sgemm`] after its checks, with an explicit thread count.
pub(crate) fn sgemm_unchecked(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    n_threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|v| *v *= beta);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if own_kernel_fits(&a, &b) {
        // SAFETY: AVX-512F is available; the shapes were checked by the caller
        // (`a.cols == b.rows`, `c.len() == m * n`).
        unsafe { super::sgemm_x86::sgemm_avx512(alpha, a, b, beta, c, n_threads) };
        return;
    }
    let mut run = move || {
        let par = if n_threads > 1 {
            gemm::Parallelism::Rayon(n_threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the views were bounds-checked when built (every addressed element lies inside
        // its slice), `c` holds exactly m*n elements addressed with row stride n and column
        // stride 1, and `c` does not alias `a` or `b` (it is a unique borrow).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                beta != 0.0,
                a.data.as_ptr(),
                a.cs as isize,
                a.rs as isize,
                b.data.as_ptr(),
                b.cs as isize,
                b.rs as isize,
                beta,
                alpha,
                false,
                false,
                false,
                par,
            );
        }
    };
    if n_threads > 1 {
        threads::with_pool(run)
    } else {
        run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0.0;
                for p in 0..a.cols {
                    s += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                }
                c[i * b.cols + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive_with_transposes_and_beta() {
        let (m, k, n) = (7, 13, 5);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
        let am = MatRef::row_major(&a, m, k).unwrap();
        let bt = MatRef::row_major(&b, n, k).unwrap().t();
        let want = naive(am, bt);
        let mut c = vec![1.0; m * n];
        sgemm(2.0, am, bt, 0.5, &mut c).unwrap();
        for (x, w) in c.iter().zip(&want) {
            assert!((x - (2.0 * w + 0.5)).abs() < 1e-3, "{x} vs {w}");
        }
    }

    /// Relative tolerance of f32 GEMM against an f64 reference, scaled by `sum |a_ik b_kj|`.
    const GEMM_TOL: f32 = 1e-5;

    #[test]
    fn large_ragged_shapes_transposes_alpha_beta_and_threads() {
        let mut seed = 1u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (m, k, n) in [
            (37, 300, 70),
            (8, 32, 128),
            (9, 257, 33),
            (1, 1000, 100),
            (64, 40, 17),
            // every row count left over after full 6-row panels (37: 1, 8: 2, 9: 3, 64: 4,
            // 23: 5), and column tails of one to four vectors past full 64-column tiles
            (23, 45, 70),
            (19, 150, 50),
            (22, 33, 64),
            (15, 129, 31),
            (4, 70, 96),
            (2, 10, 300),
            (12, 260, 40),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let am = if ta {
                    // store A^T and view it transposed
                    let mut t = vec![0.0; m * k];
                    for i in 0..m {
                        for p in 0..k {
                            t[p * m + i] = a[i * k + p];
                        }
                    }
                    t
                } else {
                    a.clone()
                };
                let bm = if tb {
                    let mut t = vec![0.0; k * n];
                    for p in 0..k {
                        for j in 0..n {
                            t[j * k + p] = b[p * n + j];
                        }
                    }
                    t
                } else {
                    b.clone()
                };
                let av = if ta {
                    MatRef::row_major(&am, k, m).unwrap().t()
                } else {
                    MatRef::row_major(&am, m, k).unwrap()
                };
                let bv = if tb {
                    MatRef::row_major(&bm, n, k).unwrap().t()
                } else {
                    MatRef::row_major(&bm, k, n).unwrap()
                };
                for (alpha, beta, nt) in
                    [(1.0, 0.0, 1), (0.5, 0.0, 1), (0.5, 2.0, 2), (1.0, 1.0, 1)]
                {
                    let mut c = c0.clone();
                    crate::threads::with(nt, || sgemm(alpha, av, bv, beta, &mut c)).unwrap();
                    for i in 0..m {
                        for j in 0..n {
                            let (mut s, mut mag) = (0.0f64, 0.0f64);
                            for p in 0..k {
                                let t = a[i * k + p] as f64 * b[p * n + j] as f64;
                                s += t;
                                mag += t.abs();
                            }
                            let want = alpha as f64 * s + beta as f64 * c0[i * n + j] as f64;
                            let got = c[i * n + j] as f64;
                            let tol =
                                GEMM_TOL as f64 * (mag + c0[i * n + j].abs() as f64 * 2.0 + 1.0);
                            assert!(
                                (got - want).abs() <= tol,
                                "{m}x{k}x{n} ta={ta} tb={tb} a={alpha} b={beta} ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let a = [0.0f32; 6];
        let am = MatRef::row_major(&a, 2, 3).unwrap();
        let mut c = [0.0f32; 4];
        assert!(sgemm(1.0, am, am, 0.0, &mut c).is_err());
        assert!(MatRef::row_major(&a, 2, 4).is_err());
        assert!(MatRef::strided(&a, 2, 3, 4, 1).is_err());
    }
}
