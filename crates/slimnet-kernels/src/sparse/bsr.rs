//! Block sparse rows with small dense blocks.

use super::csr::check_dense;
use super::{sealed, SparseMatrix};
use crate::error::{check_len, KernelError, Result};
use crate::isa::Isa;
use crate::Activation;

/// A `[rows, cols]` f32 matrix stored as dense `br x bc` blocks (block sparse rows).
///
/// Block row `i` (rows `i*br..(i+1)*br`) holds blocks `block_row_ptr[i]..block_row_ptr[i+1]`;
/// block `j` sits at columns `block_col_idx[j]*bc..` and its `br*bc` values are
/// `values[j*br*bc..]`, row-major. `rows` and `cols` must be multiples of `br` and `bc`.
/// `8x1` and `4x1` blocks (a few output rows sharing one input column) are the fast shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct BsrMatrix {
    rows: usize,
    cols: usize,
    br: usize,
    bc: usize,
    block_row_ptr: Vec<u32>,
    block_col_idx: Vec<u32>,
    values: Vec<f32>,
}

fn invalid(what: &'static str, reason: String) -> KernelError {
    KernelError::Invalid { what, reason }
}

fn check_block_shape(rows: usize, cols: usize, br: usize, bc: usize) -> Result<()> {
    if br == 0 || bc == 0 || br > 64 || bc > 64 {
        return Err(invalid(
            "bsr block",
            format!("{br}x{bc} (each side 1..=64)"),
        ));
    }
    if !rows.is_multiple_of(br) || !cols.is_multiple_of(bc) {
        return Err(invalid(
            "bsr shape",
            format!("{rows}x{cols} is not a multiple of the {br}x{bc} block"),
        ));
    }
    Ok(())
}

impl BsrMatrix {
    /// Builds from a dense row-major `[rows, cols]` matrix: a block is stored when any of its
    /// entries is kept (`mask` true, or non-zero without a mask); masked-out entries inside a
    /// stored block become zeros.
    ///
    /// # Errors
    /// Wrong buffer lengths, a zero or larger-than-64 block side, or a shape that is not a
    /// multiple of the block.
    pub fn from_dense(
        dense: &[f32],
        rows: usize,
        cols: usize,
        block: (usize, usize),
        mask: Option<&[bool]>,
    ) -> Result<Self> {
        let (br, bc) = block;
        check_dense(dense, rows, cols, mask)?;
        check_block_shape(rows, cols, br, bc)?;
        let keep = |i: usize| mask.map_or(dense[i] != 0.0, |m| m[i]);
        let mut block_row_ptr = vec![0u32];
        let mut block_col_idx = Vec::new();
        let mut values = Vec::new();
        for bi in 0..rows / br {
            for bj in 0..cols / bc {
                let any =
                    (0..br).any(|r| (0..bc).any(|c| keep((bi * br + r) * cols + bj * bc + c)));
                if any {
                    block_col_idx.push(bj as u32);
                    for r in 0..br {
                        for c in 0..bc {
                            let i = (bi * br + r) * cols + bj * bc + c;
                            values.push(if keep(i) { dense[i] } else { 0.0 });
                        }
                    }
                }
            }
            let nb = u32::try_from(block_col_idx.len())
                .map_err(|_| invalid("bsr blocks", "more than u32::MAX blocks".into()))?;
            block_row_ptr.push(nb);
        }
        Ok(Self {
            rows,
            cols,
            br,
            bc,
            block_row_ptr,
            block_col_idx,
            values,
        })
    }

    /// Builds from raw arrays, validating them (as when loading a file that may be corrupt).
    ///
    /// # Errors
    /// A bad block shape; `block_row_ptr` without `rows / br + 1` entries starting at 0 and
    /// non-decreasing to the block count; block columns out of range or not strictly
    /// increasing within a block row; `values.len() != blocks * br * bc`.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        block: (usize, usize),
        block_row_ptr: Vec<u32>,
        block_col_idx: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        let (br, bc) = block;
        check_block_shape(rows, cols, br, bc)?;
        let nbr = rows / br;
        check_len("bsr block_row_ptr", nbr + 1, block_row_ptr.len())?;
        let nb = block_col_idx.len();
        check_len(
            "bsr values",
            nb.checked_mul(br * bc)
                .ok_or_else(|| invalid("bsr blocks", "count overflows".into()))?,
            values.len(),
        )?;
        if block_row_ptr[0] != 0 || block_row_ptr[nbr] as usize != nb {
            return Err(invalid(
                "bsr block_row_ptr",
                format!(
                    "must run from 0 to {nb}, runs from {} to {}",
                    block_row_ptr[0], block_row_ptr[nbr]
                ),
            ));
        }
        let nbc = cols / bc;
        for i in 0..nbr {
            let (lo, hi) = (block_row_ptr[i] as usize, block_row_ptr[i + 1] as usize);
            if lo > hi || hi > nb {
                return Err(invalid(
                    "bsr block_row_ptr",
                    format!("decreases at {i} or exceeds {nb} blocks"),
                ));
            }
            let mut prev: Option<u32> = None;
            for &c in &block_col_idx[lo..hi] {
                if c as usize >= nbc || prev.is_some_and(|p| p >= c) {
                    return Err(invalid(
                        "bsr block_col_idx",
                        format!("block row {i}: column {c} out of range or not increasing"),
                    ));
                }
                prev = Some(c);
            }
        }
        Ok(Self {
            rows,
            cols,
            br,
            bc,
            block_row_ptr,
            block_col_idx,
            values,
        })
    }

    /// Block shape `(br, bc)`.
    pub fn block(&self) -> (usize, usize) {
        (self.br, self.bc)
    }

    /// Block-row pointers, `rows / br + 1` entries.
    pub fn block_row_ptr(&self) -> &[u32] {
        &self.block_row_ptr
    }

    /// Block-column index (in units of `bc`) of every stored block.
    pub fn block_col_idx(&self) -> &[u32] {
        &self.block_col_idx
    }

    /// Block values, `br * bc` per block, each block row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Number of stored blocks.
    pub fn num_blocks(&self) -> usize {
        self.block_col_idx.len()
    }

    /// `c = act(W x + bias)` over block rows `b0..b1` for one vector `x`, with `BR == self.br`:
    /// each block row sums its blocks in a `BR`-wide accumulator.
    fn gemv_rows<const BR: usize>(
        &self,
        b0: usize,
        b1: usize,
        x: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    ) {
        debug_assert_eq!(self.br, BR);
        let bc = self.bc;
        for (bi, out) in (b0..b1).zip(c.chunks_exact_mut(BR)) {
            let (lo, hi) = (
                self.block_row_ptr[bi] as usize,
                self.block_row_ptr[bi + 1] as usize,
            );
            let mut acc = [0f32; BR];
            let blocks = self.values[lo * BR * bc..hi * BR * bc].chunks_exact(BR * bc);
            if bc == 1 {
                // two accumulators, so consecutive blocks do not wait on each other's adds
                let mut odd = [0f32; BR];
                let (vals, ks) = (&self.values[lo * BR..hi * BR], &self.block_col_idx[lo..hi]);
                let mut pairs = vals.chunks_exact(2 * BR).zip(ks.chunks_exact(2));
                for (w, k) in &mut pairs {
                    let (x0, x1) = (x[k[0] as usize], x[k[1] as usize]);
                    for r in 0..BR {
                        acc[r] += w[r] * x0;
                        odd[r] += w[BR + r] * x1;
                    }
                }
                if ks.len() % 2 == 1 {
                    let xk = x[ks[ks.len() - 1] as usize];
                    for (a, w) in acc.iter_mut().zip(&vals[vals.len() - BR..]) {
                        *a += w * xk;
                    }
                }
                for (a, o) in acc.iter_mut().zip(odd) {
                    *a += o;
                }
                for (r, (o, a)) in out.iter_mut().zip(acc).enumerate() {
                    *o = act.apply(a + bias.map_or(0.0, |b| b[bi * BR + r]));
                }
                continue;
            }
            for (block, &k) in blocks.zip(&self.block_col_idx[lo..hi]) {
                let xs = &x[k as usize * bc..(k as usize + 1) * bc];
                for (r, a) in acc.iter_mut().enumerate() {
                    let row = &block[r * bc..(r + 1) * bc];
                    *a += row.iter().zip(xs).map(|(w, x)| w * x).sum::<f32>();
                }
            }
            for (r, (o, a)) in out.iter_mut().zip(acc).enumerate() {
                *o = act.apply(a + bias.map_or(0.0, |b| b[bi * BR + r]));
            }
        }
    }

    /// Scalar reference over block rows `b0..b1` and columns `j0..n` of `c` (row stride `n`).
    #[allow(clippy::too_many_arguments)]
    fn rows_scalar(
        &self,
        b0: usize,
        b1: usize,
        b: &[f32],
        n: usize,
        j0: usize,
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    ) {
        let (br, bc) = (self.br, self.bc);
        if n == 1 && j0 == 0 {
            // one vector: the per-row slicing below would cost more than the arithmetic
            match br {
                1 => return self.gemv_rows::<1>(b0, b1, b, bias, act, c),
                2 => return self.gemv_rows::<2>(b0, b1, b, bias, act, c),
                4 => return self.gemv_rows::<4>(b0, b1, b, bias, act, c),
                8 => return self.gemv_rows::<8>(b0, b1, b, bias, act, c),
                _ => {}
            }
        }
        for bi in b0..b1 {
            let (lo, hi) = (
                self.block_row_ptr[bi] as usize,
                self.block_row_ptr[bi + 1] as usize,
            );
            for r in 0..br {
                let row = (bi - b0) * br + r;
                let o = &mut c[row * n + j0..(row + 1) * n];
                o.fill(0.0);
                for blk in lo..hi {
                    let k0 = self.block_col_idx[blk] as usize * bc;
                    for cc in 0..bc {
                        let v = self.values[(blk * br + r) * bc + cc];
                        let x = &b[(k0 + cc) * n + j0..(k0 + cc + 1) * n];
                        for (o, x) in o.iter_mut().zip(x) {
                            *o += v * x;
                        }
                    }
                }
                let bv = bias.map_or(0.0, |b| b[bi * br + r]);
                o.iter_mut().for_each(|o| *o = act.apply(*o + bv));
            }
        }
    }

    /// AVX2 path; returns the first column left for the scalar code.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn rows_avx2(
        &self,
        b0: usize,
        b1: usize,
        b: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    ) -> usize {
        use super::x86::{bsr8x1_gemv_row, bsr_rows_avx2, store8};
        let (p, k, v, bc) = (
            &self.block_row_ptr[..],
            &self.block_col_idx[..],
            &self.values[..],
            self.bc,
        );
        if n == 1 && self.br == 8 && bc == 1 {
            for bi in b0..b1 {
                let (lo, hi) = (p[bi] as usize, p[bi + 1] as usize);
                let o = &mut c[(bi - b0) * 8..(bi - b0 + 1) * 8];
                // SAFETY: AVX2/FMA checked by the caller; block columns are below `cols`
                // (validated) and `b` holds `cols` elements; `o` and the bias slice hold 8.
                unsafe {
                    let acc = bsr8x1_gemv_row(&v[lo * 8..hi * 8], &k[lo..hi], b);
                    store8(acc, bias.map(|b| &b[bi * 8..bi * 8 + 8]), act, o);
                }
            }
            return n;
        }
        let (bp, cp) = (b.as_ptr(), c.as_mut_ptr());
        macro_rules! go {
            ($br:literal, $r:literal, $j:expr) => {
                // SAFETY: AVX2/FMA checked by the caller; the block shape matches `$br`; every
                // column read is below `cols` and `b` holds `cols * n`; `c` holds the block
                // rows `b0..b1` with row stride `n`, and only columns below `n` are written.
                $j + unsafe {
                    bsr_rows_avx2::<$br, $r>(
                        p,
                        k,
                        v,
                        bc,
                        b0,
                        b1,
                        bp.add($j),
                        n,
                        n - $j,
                        bias,
                        act,
                        cp.add($j),
                    )
                }
            };
        }
        match self.br {
            1 => {
                let j = go!(1, 8, 0);
                go!(1, 1, j)
            }
            2 => {
                let j = go!(2, 4, 0);
                go!(2, 1, j)
            }
            4 => {
                let j = go!(4, 2, 0);
                go!(4, 1, j)
            }
            8 => go!(8, 1, 0),
            _ => 0,
        }
    }
}

impl sealed::Sealed for BsrMatrix {}

impl SparseMatrix for BsrMatrix {
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
        let (br, bc) = (self.br, self.bc);
        for bi in 0..self.rows / br {
            for blk in self.block_row_ptr[bi] as usize..self.block_row_ptr[bi + 1] as usize {
                let k0 = self.block_col_idx[blk] as usize * bc;
                for r in 0..br {
                    for cc in 0..bc {
                        d[(bi * br + r) * self.cols + k0 + cc] =
                            self.values[(blk * br + r) * bc + cc];
                    }
                }
            }
        }
        d
    }
    fn storage_bytes(&self) -> usize {
        4 * (self.block_row_ptr.len() + self.block_col_idx.len() + self.values.len())
    }
    fn row_align(&self) -> usize {
        self.br
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
        let br = self.br;
        assert!(
            r0.is_multiple_of(br)
                && (r1.is_multiple_of(br) || r1 == self.rows)
                && r0 <= r1
                && r1 <= self.rows
        );
        assert!(b.len() >= self.cols * n && c.len() >= (r1 - r0) * n);
        if let Some(bias) = bias {
            assert!(bias.len() >= r1);
        }
        let (b0, b1) = (r0 / br, r1 / br);
        #[allow(unused_mut)]
        let mut j0 = 0;
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx2 && crate::isa::features().avx2_fma {
            j0 = self.rows_avx2(b0, b1, b, n, bias, act, c);
        }
        let _ = isa;
        if j0 < n {
            self.rows_scalar(b0, b1, b, n, j0, bias, act, c);
        }
    }
}
