//! Compressed sparse columns, for single-vector products that skip zero inputs.
//!
//! A CSR product reads every stored weight. When the input vector itself has many zeros —
//! image pixels, or the output of a ReLU — a column-major walk touches only the columns of
//! the non-zero inputs (the dataflow of Han et al.'s EIE accelerator, 2016). The saving
//! multiplies the one from weight sparsity.

use super::CsrMatrix;
use crate::dense::Activation;
use crate::error::{check_len, Result};

/// A `[rows, cols]` f32 matrix in compressed sparse column form: column `c` holds
/// `values[col_ptr[c]..col_ptr[c + 1]]` at the rows `row_idx[..]` of the same range.
///
/// Built from a validated [`CsrMatrix`], so every row index is below `rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct CscMatrix {
    rows: usize,
    cols: usize,
    col_ptr: Vec<u32>,
    row_idx: Vec<u32>,
    values: Vec<f32>,
    /// Sum of each row's stored values.
    row_sums: Vec<f32>,
}

impl CscMatrix {
    /// The column-major copy of a CSR matrix (a counting-sort transpose, `O(nnz + cols)`).
    ///
    /// ```
    /// use slimnet_kernels::sparse::{CscMatrix, CsrMatrix};
    /// let csr = CsrMatrix::from_dense(&[1.0, 0.0, 0.0, 2.0, 3.0, 0.0], 2, 3, None)?;
    /// let csc = CscMatrix::from_csr(&csr);
    /// assert_eq!((csc.rows(), csc.cols(), csc.nnz()), (2, 3, 3));
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    pub fn from_csr(m: &CsrMatrix) -> Self {
        let (rows, cols) = (m.rows(), m.cols());
        let mut counts = vec![0u32; cols + 1];
        for r in 0..rows {
            for &c in m.row(r).1 {
                counts[c as usize + 1] += 1;
            }
        }
        for c in 0..cols {
            counts[c + 1] += counts[c];
        }
        let col_ptr = counts.clone();
        let nnz = col_ptr[cols] as usize;
        let (mut row_idx, mut values) = (vec![0u32; nnz], vec![0f32; nnz]);
        let mut next = counts;
        let mut row_sums = vec![0f32; rows];
        for (r, sum) in row_sums.iter_mut().enumerate() {
            let (v, k) = m.row(r);
            *sum = v.iter().sum();
            for (&v, &c) in v.iter().zip(k) {
                let slot = next[c as usize] as usize;
                row_idx[slot] = r as u32;
                values[slot] = v;
                next[c as usize] += 1;
            }
        }
        Self {
            rows,
            cols,
            col_ptr,
            row_idx,
            values,
            row_sums,
        }
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Stored values in the columns whose input in `x` differs from `skip`: the work
    /// [`csc_matvec`] does for `x`.
    pub fn active_nnz(&self, x: &[f32], skip: f32) -> usize {
        // branch-free, so it vectorizes: which inputs are active is unpredictable
        let ptr = &self.col_ptr[..x.len().min(self.cols) + 1];
        let active: u64 = x
            .iter()
            .zip(ptr.iter().zip(&ptr[1..]))
            .map(|(v, (lo, hi))| u64::from(*v != skip) * u64::from(hi - lo))
            .sum();
        active as usize
    }

    /// The input value [`csc_matvec`] should skip for `x`, when the column walk is expected
    /// to beat a row-major product: zero (ReLU outputs, raw pixels) or the value of `x[0]`
    /// (the background of a normalized image), whichever leaves less work, provided fewer
    /// than 3/4 of the stored values remain active (a scattered update costs a little more
    /// than a gathered one on the machines measured). `None` when neither pays.
    pub fn skip_value(&self, x: &[f32]) -> Option<f32> {
        let first = *x.first()?;
        let first = if first.is_finite() { first } else { 0.0 };
        // both candidates in one branch-free pass
        let ptr = &self.col_ptr[..x.len().min(self.cols) + 1];
        let (zero, background) =
            x.iter()
                .zip(ptr.iter().zip(&ptr[1..]))
                .fold((0u64, 0u64), |(z, b), (v, (lo, hi))| {
                    let len = u64::from(hi - lo);
                    (
                        z + u64::from(*v != 0.0) * len,
                        b + u64::from(*v != first) * len,
                    )
                });
        let best = if background < zero {
            (background as usize, first)
        } else {
            (zero as usize, 0.0)
        };
        (best.0 * 4 < self.nnz() * 3).then_some(best.1)
    }
}

/// `y = act(W x + bias)` for one input vector `x` of length `cols`, visiting only the columns
/// of `W` whose input differs from `skip`: it computes `W (x - skip) + skip * (W 1) + bias`
/// with the row sums `W 1` kept by the matrix. `y` has length `rows`. Pick `skip` with
/// [`CscMatrix::skip_value`].
///
/// Results equal the row-major product up to f32 rounding.
///
/// ```
/// use slimnet_kernels::dense::Activation;
/// use slimnet_kernels::sparse::{csc_matvec, CscMatrix, CsrMatrix};
/// let csr = CsrMatrix::from_dense(&[1.0, 0.0, 0.0, 2.0, 3.0, 0.0], 2, 3, None)?;
/// let mut y = [0.0; 2];
/// let csc = CscMatrix::from_csr(&csr);
/// csc_matvec(&csc, &[1.0, 0.0, 2.0], 0.0, Some(&[0.5, -10.0]), Activation::Relu, &mut y)?;
/// assert_eq!(y, [1.5, 0.0]);
/// csc_matvec(&csc, &[1.0, 1.0, 1.0], 1.0, None, Activation::Identity, &mut y)?;
/// assert_eq!(y, [1.0, 5.0]);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
///
/// # Errors
/// When `x`, `y` or `bias` has the wrong length.
pub fn csc_matvec(
    w: &CscMatrix,
    x: &[f32],
    skip: f32,
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) -> Result<()> {
    check_len("csc matvec input", w.cols, x.len())?;
    check_len("csc matvec output", w.rows, y.len())?;
    if let Some(b) = bias {
        check_len("csc matvec bias", w.rows, b.len())?;
    }
    for (r, out) in y.iter_mut().enumerate() {
        *out = bias.map_or(0.0, |b| b[r]) + skip * w.row_sums[r];
    }
    // Active columns are gathered into a list first, without branches, so the walk below
    // does not mispredict on every unpredictable input.
    const CHUNK: usize = 256;
    let mut list = [0u32; CHUNK];
    for (c0, xs) in x.chunks(CHUNK).enumerate() {
        let mut n = 0;
        for (j, &v) in xs.iter().enumerate() {
            list[n] = (c0 * CHUNK + j) as u32;
            n += usize::from(v != skip);
        }
        for &c in &list[..n] {
            let c = c as usize;
            let xv = x[c] - skip;
            let (lo, hi) = (w.col_ptr[c] as usize, w.col_ptr[c + 1] as usize);
            let (rows, vals) = (&w.row_idx[lo..hi], &w.values[lo..hi]);
            for (&r, &v) in rows.iter().zip(vals) {
                // SAFETY: `from_csr` copies row indices of a validated CSR matrix with `rows`
                // rows, so `r < rows == y.len()` (checked above).
                unsafe { *y.get_unchecked_mut(r as usize) += xv * v };
            }
        }
    }
    if act != Activation::Identity {
        for v in y.iter_mut() {
            *v = act.apply(*v);
        }
    }
    Ok(())
}
