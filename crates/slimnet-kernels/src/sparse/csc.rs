//! Compressed sparse columns, for single-vector products that skip zero inputs.
//!
//! A CSR product reads every stored weight. When the input vector itself has many zeros —
//! image pixels, or the output of a ReLU — a column-major walk touches only the columns of
//! the non-zero inputs (the dataflow of Han et al.'s EIE accelerator, 2016). The saving
//! multiplies the one from weight sparsity.
//!
//! A stored value of a sparse column costs one scattered update of the output (a load and a
//! store that the next column may hit again). A column that keeps more than about one value per
//! 16 rows is cheaper as a dense, zero-padded column of whole 16-lane vectors, which the walk
//! accumulates in registers; [`CscMatrix::from_csr`] keeps such columns in that form too, up to
//! a memory budget the size of a core's L2 cache (beyond it they would come from slower memory
//! and lose their edge).

use super::CsrMatrix;
use crate::error::{check_len, Result};
use crate::isa::vectorized;
use crate::Activation;

/// Rows per vector of a dense column (one AVX-512 register).
const LANES: usize = 16;
/// A column is kept dense when it stores at least this fraction of its rows, the break-even
/// measured on LeNet-300-100 (`cargo run --release -p slimnet-prune --example batch1_layers`).
pub const DENSE_COLUMN_FILL: f32 = 1.0 / 16.0;
/// Bytes of dense columns a matrix keeps at most.
pub const DENSE_COLUMN_BUDGET: usize = 1 << 20;
/// Inputs per word of an activity bit mask.
const WORD: usize = 64;
/// Relative costs of the batch-1 products, in tenths of a CSR row-product non-zero, measured
/// with every input active (`cargo run --release -p slimnet-kernels --example batch1_formats`):
/// a scattered update of a sparse column, and one 16-row block of a dense column.
const SCATTER_COST: u32 = 14;
const DENSE_BLOCK_COST: u32 = 25;
const CSR_COST: u64 = 10;

/// A `[rows, cols]` f32 matrix in compressed sparse column form: column `c` holds
/// `values[col_ptr[c]..col_ptr[c + 1]]` at the rows `row_idx[..]` of the same range.
///
/// Built from a validated [`CsrMatrix`], so every row index is below `rows`. Columns that
/// store many values are also kept as dense, zero-padded columns
/// ([`dense_columns`](Self::dense_columns)), which [`csc_matvec`] walks with whole vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct CscMatrix {
    rows: usize,
    cols: usize,
    col_ptr: Vec<u32>,
    row_idx: Vec<u32>,
    values: Vec<f32>,
    /// Sum of each row's stored values.
    row_sums: Vec<f32>,
    /// Stored values per column.
    col_nnz: Vec<u32>,
    /// Expected cost of walking each column (`SCATTER_COST` / `DENSE_BLOCK_COST` units).
    col_cost: Vec<u32>,
    /// Each column's slot among the dense columns (meaningful where `dense_bits` is set).
    dense_slot: Vec<u32>,
    /// Bit `c % 64` of word `c / 64`: column `c` is walked in dense form.
    dense_bits: Vec<u64>,
    /// The same for the non-empty columns walked in sparse form.
    sparse_bits: Vec<u64>,
    /// Number of dense columns.
    n_dense: usize,
    /// The dense columns, `[rows / LANES (rounded up)][n_dense][LANES]`, zero past `rows`: the
    /// walk reads one row block of every active dense column in turn.
    dense: Vec<f32>,
}

impl CscMatrix {
    /// The column-major copy of a CSR matrix (a counting-sort transpose, `O(nnz + cols)`),
    /// keeping the columns that store at least [`DENSE_COLUMN_FILL`] of their rows also in
    /// dense form, fullest first, within [`DENSE_COLUMN_BUDGET`] bytes.
    ///
    /// ```
    /// use slimnet_kernels::sparse::{CscMatrix, CsrMatrix};
    /// let csr = CsrMatrix::from_dense(&[1.0, 0.0, 0.0, 2.0, 3.0, 0.0], 2, 3, None)?;
    /// let csc = CscMatrix::from_csr(&csr);
    /// assert_eq!((csc.rows(), csc.cols(), csc.nnz()), (2, 3, 3));
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    pub fn from_csr(m: &CsrMatrix) -> Self {
        Self::with_dense_columns(m, DENSE_COLUMN_FILL, DENSE_COLUMN_BUDGET)
    }

    /// [`from_csr`](Self::from_csr) with a chosen fill above which a column is kept dense
    /// (`f32::INFINITY`: none; `0.0`: every column with a stored value) and a byte budget for
    /// the dense columns.
    pub fn with_dense_columns(m: &CsrMatrix, min_fill: f32, budget_bytes: usize) -> Self {
        let (rows, cols) = (m.rows(), m.cols());
        let mut counts = vec![0u32; cols + 1];
        for r in 0..rows {
            for c in m.row(r).1 {
                counts[c + 1] += 1;
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
            for (&v, c) in v.iter().zip(k) {
                let slot = next[c] as usize;
                row_idx[slot] = r as u32;
                values[slot] = v;
                next[c] += 1;
            }
        }
        let mut csc = Self {
            rows,
            cols,
            col_ptr,
            row_idx,
            values,
            row_sums,
            col_nnz: vec![0; cols],
            col_cost: vec![0; cols],
            dense_slot: vec![0; cols],
            dense_bits: vec![0; cols.div_ceil(WORD)],
            sparse_bits: vec![0; cols.div_ceil(WORD)],
            n_dense: 0,
            dense: Vec::new(),
        };
        for c in 0..cols {
            csc.col_nnz[c] = csc.col_ptr[c + 1] - csc.col_ptr[c];
        }
        csc.keep_dense_columns(min_fill, budget_bytes);
        csc
    }

    fn column_nnz(&self, c: usize) -> usize {
        self.col_nnz[c] as usize
    }

    /// Chooses the dense columns and fills `dense`.
    fn keep_dense_columns(&mut self, min_fill: f32, budget_bytes: usize) {
        let blocks = self.rows.div_ceil(LANES);
        let column_bytes = (blocks * LANES * 4).max(1);
        let mut chosen: Vec<usize> = (0..self.cols)
            .filter(|&c| {
                let nnz = self.column_nnz(c);
                nnz > 0 && nnz as f32 >= min_fill * self.rows as f32
            })
            .collect();
        // fullest first: they save the most scattered updates per byte
        chosen.sort_by_key(|&c| std::cmp::Reverse(self.column_nnz(c)));
        chosen.truncate(budget_bytes / column_bytes);
        chosen.sort_unstable();
        let n = chosen.len();
        let mut dense = vec![0f32; blocks * n * LANES];
        for (slot, &c) in chosen.iter().enumerate() {
            self.dense_slot[c] = slot as u32;
            let (lo, hi) = (self.col_ptr[c] as usize, self.col_ptr[c + 1] as usize);
            for (&r, &v) in self.row_idx[lo..hi].iter().zip(&self.values[lo..hi]) {
                let r = r as usize;
                dense[((r / LANES) * n + slot) * LANES + r % LANES] = v;
            }
        }
        self.n_dense = n;
        self.dense = dense;
        for c in 0..self.cols {
            let bit = 1u64 << (c % WORD);
            if chosen.binary_search(&c).is_ok() {
                self.dense_bits[c / WORD] |= bit;
            } else if self.col_nnz[c] > 0 {
                self.sparse_bits[c / WORD] |= bit;
            }
            self.col_cost[c] = if self.dense_bits[c / WORD] & bit != 0 {
                DENSE_BLOCK_COST.saturating_mul(blocks as u32)
            } else {
                SCATTER_COST.saturating_mul(self.col_nnz[c])
            };
        }
    }

    /// Number of columns also kept in dense form.
    pub fn dense_columns(&self) -> usize {
        self.n_dense
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

    /// Stored values in the columns whose input in `x` differs from `skip`: the values
    /// [`csc_matvec`] reads for `x` (those of dense columns with their zero padding aside).
    pub fn active_nnz(&self, x: &[f32], skip: f32) -> usize {
        let mut sums = [0u64; 2];
        let n = x.len().min(self.cols);
        weighted_active(&self.col_nnz[..n], &x[..n], [skip, skip], &mut sums)
            .expect("equal lengths");
        sums[0] as usize
    }

    /// The input value [`csc_matvec`] should skip for `x`, when the column walk is expected
    /// to beat the row-major CSR product: zero (ReLU outputs, raw pixels) or the value of
    /// `x[0]` (the background of a normalized image), whichever leaves less work, by a cost
    /// model of both products measured on the machines used (a scattered update costs 1.4
    /// gathered ones, a 16-row block of a dense column 2.5). `None` when the row-major
    /// product is expected to be faster.
    pub fn skip_value(&self, x: &[f32]) -> Option<f32> {
        let first = *x.first()?;
        let first = if first.is_finite() { first } else { 0.0 };
        let mut sums = [0u64; 2];
        let n = x.len().min(self.cols);
        weighted_active(&self.col_cost[..n], &x[..n], [0.0, first], &mut sums)
            .expect("equal lengths");
        let [zero, background] = sums;
        let (cost, skip) = if background < zero {
            (background, first)
        } else {
            (zero, 0.0)
        };
        (cost < CSR_COST * self.nnz() as u64).then_some(skip)
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
/// use slimnet_kernels::Activation;
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
    // Which inputs are active is unpredictable, so it is read from bit masks (built without
    // branches) and walked with trailing-zero counts, a few instructions per active input.
    const CHUNK: usize = 1024;
    let mut masks = [0u64; CHUNK / WORD];
    let mut dense = [(0u32, 0f32); CHUNK];
    for (c0, xs) in x.chunks(CHUNK).enumerate() {
        let masks = &mut masks[..xs.len().div_ceil(WORD)];
        active_mask(xs, skip, masks)?;
        let w0 = c0 * CHUNK / WORD;
        let mut nd = 0;
        for (i, &active) in masks.iter().enumerate() {
            let base = (w0 + i) * WORD;
            let mut bits = active & w.dense_bits[w0 + i];
            while bits != 0 {
                let c = base + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                dense[nd] = (w.dense_slot[c], x[c] - skip);
                nd += 1;
            }
            let mut bits = active & w.sparse_bits[w0 + i];
            while bits != 0 {
                let c = base + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let xv = x[c] - skip;
                let (lo, hi) = (w.col_ptr[c] as usize, w.col_ptr[c + 1] as usize);
                let (rows, vals) = (&w.row_idx[lo..hi], &w.values[lo..hi]);
                for (&r, &v) in rows.iter().zip(vals) {
                    // SAFETY: `from_csr` copies row indices of a validated CSR matrix with
                    // `rows` rows, so `r < rows == y.len()` (checked above).
                    unsafe { *y.get_unchecked_mut(r as usize) += xv * v };
                }
            }
        }
        if nd > 0 {
            add_dense_columns(&w.dense, w.n_dense, &dense[..nd], y)?;
        }
    }
    if act != Activation::Identity {
        for v in y.iter_mut() {
            *v = act.apply(*v);
        }
    }
    Ok(())
}

vectorized! {
    /// `y += sum over (slot, xv) in columns of xv * dense column slot`, one row block of
    /// `LANES` at a time, with four independent accumulators.
    fn add_dense_columns(dense: &[f32], n_dense: usize, columns: &[(u32, f32)], y: &mut [f32]) {
        if n_dense == 0 {
            return Ok(());
        }
        for (block, yb) in dense.chunks_exact(n_dense * LANES).zip(y.chunks_mut(LANES)) {
            let mut acc = [[0f32; LANES]; 4];
            let mut quads = columns.chunks_exact(4);
            for quad in &mut quads {
                for (a, &(slot, xv)) in acc.iter_mut().zip(quad) {
                    let s = slot as usize * LANES;
                    let col: &[f32; LANES] = block[s..s + LANES].try_into().expect("a slot");
                    for (a, w) in a.iter_mut().zip(col) {
                        *a += xv * w;
                    }
                }
            }
            for &(slot, xv) in quads.remainder() {
                let s = slot as usize * LANES;
                let col: &[f32; LANES] = block[s..s + LANES].try_into().expect("a slot");
                for (a, w) in acc[0].iter_mut().zip(col) {
                    *a += xv * w;
                }
            }
            for (l, v) in yb.iter_mut().enumerate() {
                *v += (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
            }
        }
        Ok(())
    }
}

vectorized! {
    /// Bit `j % 64` of `masks[j / 64]` set when `x[j] != skip` (NaN counts as active), zero
    /// past the end of `x`.
    fn active_mask(x: &[f32], skip: f32, masks: &mut [u64]) {
        check_len("activity masks", x.len().div_ceil(WORD), masks.len())?;
        for (m, xs) in masks.iter_mut().zip(x.chunks(WORD)) {
            let mut bits = 0u64;
            for (j, &v) in xs.iter().enumerate() {
                bits |= u64::from(v != skip) << j;
            }
            *m = bits;
        }
        Ok(())
    }
}

vectorized! {
    /// `sums[k]`: the sum of `weights[c]` over the inputs with `x[c] != skips[k]`.
    fn weighted_active(weights: &[u32], x: &[f32], skips: [f32; 2], sums: &mut [u64; 2]) {
        check_len("column weights", weights.len(), x.len())?;
        let (mut a, mut b) = (0u64, 0u64);
        for (&w, &v) in weights.iter().zip(x) {
            a += if v != skips[0] { u64::from(w) } else { 0 };
            b += if v != skips[1] { u64::from(w) } else { 0 };
        }
        *sums = [a, b];
        Ok(())
    }
}
