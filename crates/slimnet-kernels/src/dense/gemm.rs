use crate::error::{check_len, KernelError, Result};
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
        check_len("matrix", rows * cols, data.len())?;
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
    check_len("gemm output", a.rows * b.cols, c.len())?;
    sgemm_unchecked(alpha, a, b, beta, c, threads::num_threads());
    Ok(())
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
