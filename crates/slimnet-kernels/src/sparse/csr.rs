//! Compressed sparse rows.

use super::driver::{rows_spmm, RowSource};
use super::{sealed, SparseMatrix};
use crate::error::{check_len, KernelError, Result};
use crate::isa::Isa;
use crate::Activation;

/// A `[rows, cols]` f32 matrix in compressed sparse row form.
///
/// Row `r` holds `values[row_ptr[r]..row_ptr[r + 1]]` at columns `col_idx[..]` (same range),
/// strictly increasing within a row. Indices are `u32`, so `nnz` and `cols` are below `2^32`;
/// matrices of at most 65,536 columns store their column indices in two bytes (at batch 1 the
/// product streams the values and indices, so 6 bytes a non-zero instead of 8 are 15% faster
/// on a 4096x4096 matrix at 90% sparsity).
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: ColIdx,
    values: Vec<f32>,
}

/// Column indices, two bytes each when every column fits.
#[derive(Debug, Clone, PartialEq)]
enum ColIdx {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl ColIdx {
    fn new(cols: usize, idx: Vec<u32>) -> Self {
        if cols <= 1 << 16 {
            ColIdx::Narrow(idx.into_iter().map(|c| c as u16).collect())
        } else {
            ColIdx::Wide(idx)
        }
    }

    fn bytes(&self) -> usize {
        match self {
            ColIdx::Narrow(v) => 2 * v.len(),
            ColIdx::Wide(v) => 4 * v.len(),
        }
    }
}

/// Column indices of one row.
#[derive(Clone, Copy)]
pub(crate) enum RowCols<'a> {
    /// Two-byte indices.
    Narrow(&'a [u16]),
    /// Four-byte indices.
    Wide(&'a [u32]),
}

impl RowCols<'_> {
    /// Column `i` of the row.
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> usize {
        match self {
            RowCols::Narrow(k) => k[i] as usize,
            RowCols::Wide(k) => k[i] as usize,
        }
    }
}

fn invalid(what: &'static str, reason: String) -> KernelError {
    KernelError::Invalid { what, reason }
}

/// Checks `mask` (when given) and the shape of a dense `[rows, cols]` matrix.
pub(crate) fn check_dense(
    dense: &[f32],
    rows: usize,
    cols: usize,
    mask: Option<&[bool]>,
) -> Result<()> {
    let total = rows
        .checked_mul(cols)
        .ok_or_else(|| invalid("sparse shape", format!("{rows}x{cols} overflows")))?;
    check_len("dense weight", total, dense.len())?;
    if let Some(m) = mask {
        check_len("sparsity mask", total, m.len())?;
    }
    if cols > u32::MAX as usize || rows > u32::MAX as usize {
        return Err(invalid(
            "sparse shape",
            format!("{rows}x{cols}: rows and columns are indexed by u32"),
        ));
    }
    if cols == 0 && rows > 0 {
        // no weight to keep, but `rows + 1` row pointers to allocate: a shape from a corrupt
        // file, not a layer
        return Err(invalid(
            "sparse shape",
            format!("{rows}x0: a matrix without columns"),
        ));
    }
    Ok(())
}

impl CsrMatrix {
    /// Builds from a dense row-major `[rows, cols]` matrix, keeping the entries where `mask` is
    /// true (or, without a mask, the non-zero entries).
    ///
    /// # Errors
    /// When `dense` or `mask` has the wrong length or the sizes do not fit `u32` indices.
    pub fn from_dense(
        dense: &[f32],
        rows: usize,
        cols: usize,
        mask: Option<&[bool]>,
    ) -> Result<Self> {
        check_dense(dense, rows, cols, mask)?;
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut col_idx = Vec::new();
        let mut values = Vec::new();
        row_ptr.push(0u32);
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                let keep = mask.map_or(dense[i] != 0.0, |m| m[i]);
                if keep {
                    col_idx.push(c as u32);
                    values.push(dense[i]);
                }
            }
            let nnz = u32::try_from(values.len())
                .map_err(|_| invalid("sparse nnz", "more than u32::MAX non-zeros".into()))?;
            row_ptr.push(nnz);
        }
        Ok(Self {
            rows,
            cols,
            row_ptr,
            col_idx: ColIdx::new(cols, col_idx),
            values,
        })
    }

    /// Builds from raw arrays, validating them (as when loading a file that may be corrupt).
    ///
    /// # Errors
    /// When `row_ptr` does not have `rows + 1` entries starting at 0 and non-decreasing up to
    /// `values.len()`, when `col_idx` and `values` differ in length, or when a row's column
    /// indices are not strictly increasing and below `cols`.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        row_ptr: Vec<u32>,
        col_idx: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        check_len("csr row_ptr", rows.saturating_add(1), row_ptr.len())?;
        check_len("csr col_idx", values.len(), col_idx.len())?;
        if cols > u32::MAX as usize {
            return Err(invalid("csr shape", format!("{cols} columns exceed u32")));
        }
        if row_ptr[0] != 0 {
            return Err(invalid("csr row_ptr", format!("starts at {}", row_ptr[0])));
        }
        if row_ptr[rows] as usize != values.len() {
            return Err(invalid(
                "csr row_ptr",
                format!(
                    "ends at {}, but there are {} values",
                    row_ptr[rows],
                    values.len()
                ),
            ));
        }
        for r in 0..rows {
            let (lo, hi) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
            if lo > hi || hi > values.len() {
                return Err(invalid(
                    "csr row_ptr",
                    format!("decreases at row {r} or exceeds {} values", values.len()),
                ));
            }
            let mut prev: Option<u32> = None;
            for &c in &col_idx[lo..hi] {
                if c as usize >= cols || prev.is_some_and(|p| p >= c) {
                    return Err(invalid(
                        "csr col_idx",
                        format!("row {r}: column {c} out of range or not increasing"),
                    ));
                }
                prev = Some(c);
            }
        }
        Ok(Self {
            rows,
            cols,
            row_ptr,
            col_idx: ColIdx::new(cols, col_idx),
            values,
        })
    }

    /// Row pointers, `rows + 1` entries.
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// Column index of every stored value (widened to `u32` when stored in two bytes).
    pub fn col_idx(&self) -> std::borrow::Cow<'_, [u32]> {
        match &self.col_idx {
            ColIdx::Narrow(v) => v.iter().map(|&c| c as u32).collect(),
            ColIdx::Wide(v) => std::borrow::Cow::Borrowed(v),
        }
    }

    /// Stored values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// The values and columns of row `r`.
    ///
    /// # Panics
    /// When `r >= rows`.
    pub fn row(&self, r: usize) -> (&[f32], impl Iterator<Item = usize> + '_) {
        let (v, k) = self.row_parts(r);
        (v, (0..v.len()).map(move |i| k.get(i)))
    }

    /// The values and column indices of row `r`, as stored.
    pub(crate) fn row_parts(&self, r: usize) -> (&[f32], RowCols<'_>) {
        let (lo, hi) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        let k = match &self.col_idx {
            ColIdx::Narrow(k) => RowCols::Narrow(&k[lo..hi]),
            ColIdx::Wide(k) => RowCols::Wide(&k[lo..hi]),
        };
        (&self.values[lo..hi], k)
    }
}

/// One CSR row as `(value, column)` pairs.
#[derive(Clone)]
pub(crate) struct CsrRow<'a> {
    v: &'a [f32],
    k: RowCols<'a>,
    i: usize,
}

impl Iterator for CsrRow<'_> {
    type Item = (f32, usize);
    #[inline(always)]
    fn next(&mut self) -> Option<(f32, usize)> {
        let v = *self.v.get(self.i)?;
        let k = self.k.get(self.i);
        self.i += 1;
        Some((v, k))
    }
}

impl RowSource for CsrMatrix {
    type Row<'a> = CsrRow<'a>;

    #[inline(always)]
    fn row_iter(&self, r: usize) -> CsrRow<'_> {
        let (v, k) = self.row_parts(r);
        CsrRow { v, k, i: 0 }
    }

    fn dot(&self, isa: Isa, r: usize, x: &[f32]) -> f32 {
        let (v, k) = self.row_parts(r);
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx2
            && crate::isa::features().avx2_fma
            && !crate::isa::features().fast_gathers
            && self.storage_bytes() <= crate::isa::cache_resident_bytes()
        {
            assert!(x.len() >= self.cols);
            // SAFETY: AVX2 and FMA are available (checked above); every column index is below
            // `cols` (validated at construction) and `x` holds at least `cols` elements.
            return unsafe {
                match k {
                    RowCols::Narrow(k) => super::x86::csr_dot_pick(v, k, x),
                    RowCols::Wide(k) => super::x86::csr_dot_pick(v, k, x),
                }
            };
        }
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx512 && crate::isa::features().avx512 && self.cols <= i32::MAX as usize {
            assert!(x.len() >= self.cols);
            // SAFETY: AVX-512 F/BW/VL are available; indices are below `cols <= i32::MAX` and
            // `x` holds at least `cols` elements.
            return unsafe {
                match k {
                    RowCols::Narrow(k) => super::x86::csr_dot_avx512(v, k, x),
                    RowCols::Wide(k) => super::x86::csr_dot_avx512(v, k, x),
                }
            };
        }
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx2 && crate::isa::features().avx2_fma && self.cols <= i32::MAX as usize {
            assert!(x.len() >= self.cols);
            // SAFETY: AVX2 and FMA are available (checked above); every column index is below
            // `cols` (validated at construction) and `x` holds at least `cols` elements.
            return unsafe {
                match k {
                    RowCols::Narrow(k) => super::x86::csr_dot_avx2(v, k, x),
                    RowCols::Wide(k) => super::x86::csr_dot_avx2(v, k, x),
                }
            };
        }
        let _ = isa;
        v.iter().enumerate().map(|(i, v)| v * x[k.get(i)]).sum()
    }
}

impl sealed::Sealed for CsrMatrix {}

impl SparseMatrix for CsrMatrix {
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
        let mut d = vec![0.0; self.rows * self.cols];
        for r in 0..self.rows {
            let (v, k) = self.row(r);
            for (v, k) in v.iter().zip(k) {
                d[r * self.cols + k] = *v;
            }
        }
        d
    }
    fn storage_bytes(&self) -> usize {
        4 * (self.row_ptr.len() + self.values.len()) + self.col_idx.bytes()
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
        rows_spmm(self, self.cols, isa, r0, r1, b, n, bias, act, c);
    }
}
