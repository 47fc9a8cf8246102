//! Format choice and a wrapper over every format.

use super::{sealed, BsrMatrix, CsrMatrix, NmMatrix, SparseMatrix};
use crate::dense::matvec::small_batch_linear;
use crate::dense::{sgemm_unchecked, MatRef};
use crate::error::{check_len, Result};
use crate::isa::Isa;
use crate::Activation;

/// A storage format for a weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SparseFormat {
    /// Keep the matrix dense and use GEMM.
    Dense,
    /// Compressed sparse rows.
    Csr,
    /// Block sparse rows with `(br, bc)` blocks.
    Bsr {
        /// Block shape.
        block: (usize, usize),
    },
    /// N:M structured sparsity.
    Nm {
        /// Non-zeros per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

/// Density below which CSR beats this crate's dense kernels, by batch (columns of the dense
/// operand).
///
/// Measured on the 4096x4096 linear layer (`benches/sparse.rs`, `benches/peers`): at batch 1
/// the dense product is memory-bound and CSR (about 4 ms per unit of density) wins up to
/// about 45-50% density; at batch 64 CSR at 30% density still took about 0.6x the dense time,
/// so the limit is 35%.
pub const CSR_MAX_DENSITY: [(usize, f64); 2] = [(1, 0.45), (usize::MAX, 0.35)];

fn csr_limit(batch: usize) -> f64 {
    CSR_MAX_DENSITY
        .iter()
        .find(|(b, _)| batch <= *b)
        .map_or(0.35, |(_, d)| *d)
}

/// Picks a format from the density of kept weights and the product's shape, for unstructured
/// sparsity: dense above the break-even density, CSR below it.
///
/// `batch` is the number of columns of the dense operand (batch size for a linear layer,
/// output pixels for a convolution). Use [`SparseWeight::from_dense_auto`] to also consider
/// blocked and N:M formats, which depend on where the non-zeros are.
///
/// ```
/// use slimnet_kernels::sparse::{choose_format, SparseFormat};
/// assert_eq!(choose_format(0.1, 4096, 4096, 1), SparseFormat::Csr);
/// assert_eq!(choose_format(0.9, 4096, 4096, 64), SparseFormat::Dense);
/// ```
pub fn choose_format(density: f64, rows: usize, cols: usize, batch: usize) -> SparseFormat {
    if rows == 0 || cols == 0 {
        return SparseFormat::Csr;
    }
    if density < csr_limit(batch) {
        SparseFormat::Csr
    } else {
        SparseFormat::Dense
    }
}

/// A dense row-major `[rows, cols]` matrix, the [`SparseFormat::Dense`] member of
/// [`SparseWeight`].
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix {
    rows: usize,
    cols: usize,
    values: Vec<f32>,
}

impl DenseMatrix {
    /// Wraps a row-major buffer.
    ///
    /// # Errors
    /// When `values.len() != rows * cols`.
    pub fn new(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self> {
        let len = rows
            .checked_mul(cols)
            .ok_or_else(|| crate::KernelError::Invalid {
                what: "dense matrix shape",
                reason: format!("{rows}x{cols} overflows"),
            })?;
        check_len("dense matrix", len, values.len())?;
        Ok(Self { rows, cols, values })
    }

    /// The row-major values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

impl sealed::Sealed for DenseMatrix {}

impl SparseMatrix for DenseMatrix {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn nnz(&self) -> usize {
        self.values.len()
    }
    fn to_dense(&self) -> Vec<f32> {
        self.values.clone()
    }
    fn storage_bytes(&self) -> usize {
        4 * self.values.len()
    }
    fn spmm_rows(
        &self,
        isa: Isa,
        r0: usize,
        r1: usize,
        b: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    ) {
        if n == 1 {
            // one vector: dot products, not a GEMM that packs the whole matrix for one column
            let w = &self.values[r0 * self.cols..r1 * self.cols];
            let c = &mut c[..r1 - r0];
            small_batch_linear(isa, 1, self.cols, r1 - r0, &b[..self.cols], w, c);
            for (i, v) in c.iter_mut().enumerate() {
                *v = act.apply(*v + bias.map_or(0.0, |b| b[r0 + i]));
            }
            return;
        }
        let w = MatRef::row_major(
            &self.values[r0 * self.cols..r1 * self.cols],
            r1 - r0,
            self.cols,
        )
        .expect("row range of the dense matrix");
        let bm = MatRef::row_major(&b[..self.cols * n], self.cols, n).expect("dense operand");
        let c = &mut c[..(r1 - r0) * n];
        // rows are already split across threads by the caller
        sgemm_unchecked(1.0, w, bm, 0.0, c, 1);
        for (i, row) in c.chunks_mut(n.max(1)).enumerate() {
            let bv = bias.map_or(0.0, |b| b[r0 + i]);
            row.iter_mut().for_each(|v| *v = act.apply(*v + bv));
        }
    }
}

/// Any of the weight formats, chosen at run time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SparseWeight {
    /// Dense storage.
    Dense(DenseMatrix),
    /// Compressed sparse rows.
    Csr(CsrMatrix),
    /// Block sparse rows.
    Bsr(BsrMatrix),
    /// N:M structured sparsity.
    Nm(NmMatrix),
}

/// What a stored BSR block value costs relative to a CSR non-zero (a BSR value needs no index
/// and shares its input load across the block's rows), by batch: at batch 1 there is no row of
/// operand columns to amortize the block's bookkeeping over, and a 4x1 block value cost 0.65 of
/// a CSR non-zero on the 4096x4096 layer (`cargo run --release -p slimnet-kernels --example
/// batch1_formats`).
fn bsr_value_cost(batch: usize) -> f64 {
    if batch <= 1 {
        0.65
    } else {
        0.45
    }
}

impl SparseWeight {
    /// Builds the given format from a dense row-major `[rows, cols]` matrix and an optional
    /// mask of kept entries (without a mask, non-zeros are kept).
    ///
    /// # Errors
    /// Wrong lengths, or a format the matrix does not fit (block shape, N:M pattern).
    pub fn from_dense(
        format: SparseFormat,
        dense: &[f32],
        rows: usize,
        cols: usize,
        mask: Option<&[bool]>,
    ) -> Result<Self> {
        Ok(match format {
            SparseFormat::Dense => {
                super::csr::check_dense(dense, rows, cols, mask)?;
                let values = match mask {
                    Some(m) => dense
                        .iter()
                        .zip(m)
                        .map(|(v, k)| if *k { *v } else { 0.0 })
                        .collect(),
                    None => dense.to_vec(),
                };
                Self::Dense(DenseMatrix::new(rows, cols, values)?)
            }
            SparseFormat::Csr => Self::Csr(CsrMatrix::from_dense(dense, rows, cols, mask)?),
            SparseFormat::Bsr { block } => {
                Self::Bsr(BsrMatrix::from_dense(dense, rows, cols, block, mask)?)
            }
            SparseFormat::Nm { n, m } => {
                Self::Nm(NmMatrix::from_dense(dense, rows, cols, (n, m), mask)?)
            }
        })
    }

    /// Picks the format expected to be fastest for this matrix and a dense operand with
    /// `batch` columns, then builds it: dense or CSR by [`choose_format`], replaced by `8x1` or
    /// `4x1` blocks when the non-zeros cluster so that blocks cost less, or by 2:4 when the
    /// matrix follows that pattern at half density.
    ///
    /// # Errors
    /// Wrong lengths.
    pub fn from_dense_auto(
        dense: &[f32],
        rows: usize,
        cols: usize,
        mask: Option<&[bool]>,
        batch: usize,
    ) -> Result<Self> {
        super::csr::check_dense(dense, rows, cols, mask)?;
        let keep = |i: usize| mask.map_or(dense[i] != 0.0, |m| m[i]);
        let total = rows * cols;
        let nnz = (0..total).filter(|&i| keep(i)).count();
        let density = if total == 0 {
            0.0
        } else {
            nnz as f64 / total as f64
        };
        let base = choose_format(density, rows, cols, batch);
        let limit = csr_limit(batch);
        // cost of each candidate in "CSR non-zeros per dense element"; dense costs `limit`
        let mut best = (base, density.min(limit));
        for br in [8usize, 4] {
            if !rows.is_multiple_of(br) || total == 0 {
                continue;
            }
            let blocks = (0..rows / br)
                .map(|bi| {
                    (0..cols)
                        .filter(|&c| (0..br).any(|r| keep((bi * br + r) * cols + c)))
                        .count()
                })
                .sum::<usize>();
            let cost = blocks as f64 * br as f64 / total as f64 * bsr_value_cost(batch);
            if cost < best.1 {
                best = (SparseFormat::Bsr { block: (br, 1) }, cost);
            }
        }
        if cols.is_multiple_of(4) && total > 0 && density > 0.3 {
            let fits = (0..total / 4).all(|g| (0..4).filter(|&p| keep(g * 4 + p)).count() <= 2);
            // 2:4 stores half the values plus one byte each: about 0.6 of dense traffic
            if fits && 0.6 * limit.max(0.5) < best.1 {
                best = (SparseFormat::Nm { n: 2, m: 4 }, 0.3);
            }
        }
        Self::from_dense(best.0, dense, rows, cols, mask)
    }

    /// The format of this weight.
    pub fn format(&self) -> SparseFormat {
        match self {
            Self::Dense(_) => SparseFormat::Dense,
            Self::Csr(_) => SparseFormat::Csr,
            Self::Bsr(b) => SparseFormat::Bsr { block: b.block() },
            Self::Nm(m) => {
                let (n, m) = m.pattern();
                SparseFormat::Nm { n, m }
            }
        }
    }

    fn inner(&self) -> &dyn SparseMatrix {
        match self {
            Self::Dense(m) => m,
            Self::Csr(m) => m,
            Self::Bsr(m) => m,
            Self::Nm(m) => m,
        }
    }
}

impl sealed::Sealed for SparseWeight {}

impl SparseMatrix for SparseWeight {
    fn rows(&self) -> usize {
        self.inner().rows()
    }
    fn cols(&self) -> usize {
        self.inner().cols()
    }
    fn nnz(&self) -> usize {
        self.inner().nnz()
    }
    fn to_dense(&self) -> Vec<f32> {
        self.inner().to_dense()
    }
    fn storage_bytes(&self) -> usize {
        self.inner().storage_bytes()
    }
    fn row_align(&self) -> usize {
        self.inner().row_align()
    }
    fn spmm_rows(
        &self,
        isa: Isa,
        r0: usize,
        r1: usize,
        b: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    ) {
        self.inner().spmm_rows(isa, r0, r1, b, n, bias, act, c)
    }
}
