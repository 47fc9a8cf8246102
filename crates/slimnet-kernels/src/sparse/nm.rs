//! N:M structured sparsity (e.g. 2:4).

use super::csr::check_dense;
use super::driver::{rows_spmm, RowSource};
use super::{sealed, SparseMatrix};
use crate::error::{check_len, KernelError, Result};
use crate::isa::Isa;
use crate::Activation;

/// A `[rows, cols]` f32 matrix with at most `n` non-zeros in every group of `m` consecutive
/// columns of a row (N:M sparsity, e.g. 2:4), stored as exactly `n` values per group.
///
/// `values` and `indices` are row-major `[rows, cols / m * n]`; `indices[i]` is the position
/// (`0..m`) of `values[i]` inside its group, strictly increasing within a group. Groups with
/// fewer than `n` non-zeros hold explicit zeros. `cols` must be a multiple of `m`.
#[derive(Debug, Clone, PartialEq)]
pub struct NmMatrix {
    rows: usize,
    cols: usize,
    n: usize,
    m: usize,
    values: Vec<f32>,
    indices: Vec<u8>,
}

fn invalid(what: &'static str, reason: String) -> KernelError {
    KernelError::Invalid { what, reason }
}

fn check_nm(cols: usize, n: usize, m: usize) -> Result<()> {
    if n == 0 || m == 0 || n > m || m > 255 {
        return Err(invalid(
            "n:m pattern",
            format!("{n}:{m} (need 1 <= n <= m <= 255)"),
        ));
    }
    if !cols.is_multiple_of(m) {
        return Err(invalid(
            "n:m shape",
            format!("{cols} columns are not a multiple of {m}"),
        ));
    }
    Ok(())
}

impl NmMatrix {
    /// Builds from a dense row-major `[rows, cols]` matrix whose kept entries (`mask` true, or
    /// non-zero without a mask) already follow the `n:m` pattern.
    ///
    /// # Errors
    /// Wrong lengths, a bad pattern, or a group with more than `n` kept entries.
    pub fn from_dense(
        dense: &[f32],
        rows: usize,
        cols: usize,
        (n, m): (usize, usize),
        mask: Option<&[bool]>,
    ) -> Result<Self> {
        check_dense(dense, rows, cols, mask)?;
        check_nm(cols, n, m)?;
        let keep = |i: usize| mask.map_or(dense[i] != 0.0, |mk| mk[i]);
        Self::build(dense, rows, cols, n, m, |start, pos| {
            let kept: Vec<usize> = (0..m).filter(|&p| keep(start + p)).collect();
            if kept.len() > n {
                return Err(invalid(
                    "n:m pattern",
                    format!(
                        "group at flat index {start} keeps {} > {n} entries",
                        kept.len()
                    ),
                ));
            }
            pos.extend(kept);
            Ok(())
        })
    }

    /// Prunes a dense row-major `[rows, cols]` matrix to `n:m` by keeping the `n` entries of
    /// largest magnitude in every group (ties go to the lower column).
    ///
    /// # Errors
    /// Wrong lengths or a bad pattern.
    pub fn prune_from_dense(
        dense: &[f32],
        rows: usize,
        cols: usize,
        (n, m): (usize, usize),
    ) -> Result<Self> {
        check_dense(dense, rows, cols, None)?;
        check_nm(cols, n, m)?;
        Self::build(dense, rows, cols, n, m, |start, pos| {
            let mut order: Vec<usize> = (0..m).collect();
            order.sort_by(|&a, &b| dense[start + b].abs().total_cmp(&dense[start + a].abs()));
            pos.extend(order.into_iter().take(n));
            Ok(())
        })
    }

    /// Shared builder: `pick(group_start, positions)` appends up to `n` kept positions.
    fn build(
        dense: &[f32],
        rows: usize,
        cols: usize,
        n: usize,
        m: usize,
        mut pick: impl FnMut(usize, &mut Vec<usize>) -> Result<()>,
    ) -> Result<Self> {
        let groups = rows * (cols / m);
        let mut values = Vec::with_capacity(groups * n);
        let mut indices = Vec::with_capacity(groups * n);
        let mut pos = Vec::with_capacity(m);
        for g in 0..groups {
            let start = g * m;
            pos.clear();
            pick(start, &mut pos)?;
            let kept = pos.len();
            // pad with the lowest unused positions (their values become explicit zeros)
            for p in 0..m {
                if pos.len() == n {
                    break;
                }
                if !pos[..kept].contains(&p) {
                    pos.push(p);
                }
            }
            let mut slots: Vec<(usize, bool)> = pos
                .iter()
                .enumerate()
                .map(|(i, &p)| (p, i < kept))
                .collect();
            slots.sort_unstable();
            for (p, real) in slots {
                values.push(if real { dense[start + p] } else { 0.0 });
                indices.push(p as u8);
            }
        }
        Ok(Self {
            rows,
            cols,
            n,
            m,
            values,
            indices,
        })
    }

    /// Builds from raw arrays, validating them (as when loading a file that may be corrupt).
    ///
    /// # Errors
    /// A bad pattern or shape, arrays of the wrong length, or positions that are not `< m` and
    /// strictly increasing within each group.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        (n, m): (usize, usize),
        values: Vec<f32>,
        indices: Vec<u8>,
    ) -> Result<Self> {
        check_nm(cols, n, m)?;
        let len = rows
            .checked_mul(cols / m * n)
            .ok_or_else(|| invalid("n:m shape", "size overflows".into()))?;
        check_len("n:m values", len, values.len())?;
        check_len("n:m indices", len, indices.len())?;
        for (g, grp) in indices.chunks(n).enumerate() {
            let ok = grp.iter().all(|&p| (p as usize) < m) && grp.windows(2).all(|w| w[0] < w[1]);
            if !ok {
                return Err(invalid(
                    "n:m indices",
                    format!("group {g}: positions {grp:?} not increasing below {m}"),
                ));
            }
        }
        Ok(Self {
            rows,
            cols,
            n,
            m,
            values,
            indices,
        })
    }

    /// The pattern `(n, m)`.
    pub fn pattern(&self) -> (usize, usize) {
        (self.n, self.m)
    }

    /// Stored values, row-major `[rows, cols / m * n]`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Position (`0..m`) of every stored value inside its group.
    pub fn indices(&self) -> &[u8] {
        &self.indices
    }

    fn row_slices(&self, r: usize) -> (&[f32], &[u8]) {
        let per = self.cols / self.m * self.n;
        (
            &self.values[r * per..(r + 1) * per],
            &self.indices[r * per..(r + 1) * per],
        )
    }
}

/// One N:M row as `(value, column)` pairs.
#[derive(Clone)]
pub(crate) struct NmRow<'a> {
    v: std::slice::Iter<'a, f32>,
    p: std::slice::Iter<'a, u8>,
    slot: usize,
    base: usize,
    n: usize,
    m: usize,
}

impl Iterator for NmRow<'_> {
    type Item = (f32, usize);
    #[inline(always)]
    fn next(&mut self) -> Option<(f32, usize)> {
        let v = *self.v.next()?;
        let k = self.base + *self.p.next()? as usize;
        self.slot += 1;
        if self.slot == self.n {
            self.slot = 0;
            self.base += self.m;
        }
        Some((v, k))
    }
}

impl RowSource for NmMatrix {
    type Row<'a> = NmRow<'a>;

    #[inline(always)]
    fn row_iter(&self, r: usize) -> NmRow<'_> {
        let (v, p) = self.row_slices(r);
        NmRow {
            v: v.iter(),
            p: p.iter(),
            slot: 0,
            base: 0,
            n: self.n,
            m: self.m,
        }
    }

    fn dot(&self, isa: Isa, r: usize, x: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if self.n == 2 && self.m == 4 && isa >= Isa::Avx2 && crate::isa::features().avx2_fma {
            let (v, p) = self.row_slices(r);
            assert!(x.len() >= self.cols && 2 * v.len() == self.cols);
            // SAFETY: AVX2/FMA are available; positions are below 4 (validated), so every
            // lane read lies in `x[..cols]`, and `cols == 2 * v.len()`.
            return unsafe { super::x86::nm24_dot_avx2(v, p, x) };
        }
        let _ = isa;
        self.row_iter(r).map(|(v, k)| v * x[k]).sum()
    }
}

impl sealed::Sealed for NmMatrix {}

impl SparseMatrix for NmMatrix {
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
            for (v, k) in self.row_iter(r) {
                d[r * self.cols + k] = v;
            }
        }
        d
    }
    fn storage_bytes(&self) -> usize {
        4 * self.values.len() + self.indices.len()
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
