//! [`QCsrMatrix`]: int8 weights in compressed sparse row form.

use std::borrow::Cow;

use super::csc::{Csc, LazyCsc};
use super::slices::{LazySlices, PermuteStep, ShuffleStep, Slices, WideStep};
use crate::error::{check_len, KernelError, Result};
use crate::int8::MAX_INNER;

// Column indices are stored in two bytes: every column of an int8 weight fits.
const _: () = assert!(MAX_INNER <= 1 << 16);

fn invalid(what: &'static str, reason: String) -> KernelError {
    KernelError::Invalid { what, reason }
}

/// A `[rows, cols]` weight in compressed sparse row form with i8 values, symmetric per row.
///
/// Row `r` holds `values[row_ptr[r]..row_ptr[r + 1]]` at the columns `col_idx[..]` of the same
/// range, strictly increasing; stored value `q` stands for `q * scales[r]`, and values are in
/// `-127..=127` (as [`quantize_weights_per_channel`](super::super::quantize_weights_per_channel)
/// makes them). `cols` is at most [`MAX_INNER`], so the column indices are kept in two bytes
/// (three bytes a non-zero with its value); [`col_idx`](Self::col_idx) widens them to `u32`.
///
/// The per-row sums of the stored values apply the activation zero point:
/// `sum_k w[k] * (x[k] - zp) = sum_k w[k] * x[k] - zp * row_sum`.
///
/// On x86-64 with AVX2, the first product with one input column builds a second copy of the
/// weight in the window layout of the batch-1 kernel (with AVX-512 VBMI and VNNI, groups of 16
/// rows, steps of four non-zeros a row in 128-column windows; otherwise groups of 8 rows and
/// 16-column windows, or 32-column ones for narrow values: about the size of the CSR arrays at
/// 10% density,
/// and 30 ms for a 4096x4096 weight at that density), kept for the matrix's lifetime and left
/// out of comparisons. So is the column-major copy (three bytes a non-zero) made by the first
/// batch-1 product that skips the inputs at the zero point, and the requantization
/// multipliers of the last pair of activation scales used.
#[derive(Debug, Clone, PartialEq)]
pub struct QCsrMatrix {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u16>,
    values: Vec<i8>,
    scales: Vec<f32>,
    row_sums: Vec<i32>,
    /// The other kernels' layouts, each made on its first use (boxed: four of them).
    layouts: Box<Layouts>,
    /// Requantization multipliers of the last activation scales (derived from `scales`).
    mults: crate::int8::quant::Multipliers,
    /// Whether every value is within `±NARROW_MAX` (derived from `values`).
    narrow: bool,
}

/// The layouts of a [`QCsrMatrix`] that kernels make on first use (each compares equal, so they
/// stay out of the matrix's value).
#[derive(Debug, Clone, PartialEq, Default)]
struct Layouts {
    /// The batch-1 layout of the permute kernel.
    slices: LazySlices<PermuteStep>,
    /// The batch-1 layout of the AVX2 shuffle kernel.
    shuffle: LazySlices<ShuffleStep>,
    /// The batch-1 layout of the AVX2 kernel on narrow values.
    wide: LazySlices<WideStep>,
    /// The column-major copy of the zero-point-skipping walk.
    csc: LazyCsc,
}

impl QCsrMatrix {
    /// Keeps the entries of a dense row-major `[rows, cols]` f32 weight where `keep` is true
    /// (without `keep`, the non-zero entries), and quantizes each row symmetrically over its
    /// kept values: scale `max |w| / 127` (1 for a row with nothing kept or only zeros), values
    /// `round(w / scale)` clamped to `-127..=127`. Kept entries that round to 0 stay stored.
    ///
    /// # Errors
    /// When `dense` or `keep` is not `rows * cols` long (or that product overflows), when
    /// `cols > MAX_INNER`, when a weight (kept or not) is not finite, or when there are more
    /// than `u32::MAX` kept entries.
    ///
    /// ```
    /// use slimnet_kernels::int8::QCsrMatrix;
    /// let w = QCsrMatrix::from_dense(2, 3, &[0.0, 0.5, -1.0, 0.0, 0.0, 0.0], None)?;
    /// assert_eq!((w.nnz(), w.row_ptr()), (2, &[0, 2, 2][..]));
    /// assert_eq!((w.values(), &*w.col_idx()), (&[64i8, -127][..], &[1u32, 2][..]));
    /// assert_eq!(w.scales(), &[1.0 / 127.0, 1.0]);
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    pub fn from_dense(
        rows: usize,
        cols: usize,
        dense: &[f32],
        keep: Option<&[bool]>,
    ) -> Result<Self> {
        Self::from_dense_bits(rows, cols, dense, keep, 8)
    }

    /// [`from_dense`](Self::from_dense) with `bits`-bit values (`2..=8`): scale
    /// `max |w| / (2^(bits-1) - 1)`. At 7 bits or fewer the values are narrow
    /// ([`is_narrow`](Self::is_narrow)), which the AVX2 batch-1 kernel multiplies in half the
    /// steps.
    ///
    /// # Errors
    /// As [`from_dense`](Self::from_dense), and `bits` outside `2..=8`.
    ///
    /// ```
    /// use slimnet_kernels::int8::QCsrMatrix;
    /// let w = QCsrMatrix::from_dense_bits(1, 3, &[0.0, 0.25, -1.0], None, 7)?;
    /// assert_eq!(w.values(), &[16i8, -63][..]);
    /// assert!(w.is_narrow());
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    pub fn from_dense_bits(
        rows: usize,
        cols: usize,
        dense: &[f32],
        keep: Option<&[bool]>,
        bits: u32,
    ) -> Result<Self> {
        let top = crate::int8::quant::symmetric_max(bits)?;
        check_cols(cols)?;
        let total = rows
            .checked_mul(cols)
            .ok_or_else(|| invalid("int8 sparse shape", format!("{rows}x{cols} overflows")))?;
        check_len("int8 sparse dense weight", total, dense.len())?;
        if let Some(m) = keep {
            check_len("int8 sparse keep mask", total, m.len())?;
        }
        if let Some(i) = dense.iter().position(|v| !v.is_finite()) {
            return Err(invalid(
                "weight value",
                format!("weight {i} is {}", dense[i]),
            ));
        }
        let kept = |i: usize| keep.map_or(dense[i] != 0.0, |m| m[i]);
        // with no columns, nothing but `rows` itself bounds the per-row arrays
        let (mut row_ptr, mut scales) = (Vec::new(), Vec::new());
        let reserved = rows.checked_add(1).is_some_and(|p| {
            row_ptr.try_reserve_exact(p).is_ok() && scales.try_reserve_exact(rows).is_ok()
        });
        if !reserved {
            return Err(invalid(
                "int8 sparse shape",
                format!("{rows} rows do not fit"),
            ));
        }
        row_ptr.push(0u32);
        let (mut col_idx, mut values) = (Vec::new(), Vec::new());
        for r in 0..rows {
            let base = r * cols;
            let m = (base..base + cols)
                .filter(|&i| kept(i))
                .fold(0.0f32, |a, i| a.max(dense[i].abs()));
            let s = if m > 0.0 { m / top } else { 1.0 };
            scales.push(s);
            for c in 0..cols {
                if kept(base + c) {
                    col_idx.push(c as u16);
                    values.push((dense[base + c] / s).round().clamp(-top, top) as i8);
                }
            }
            let nnz = u32::try_from(values.len()).map_err(|_| {
                invalid("int8 sparse nnz", "more than u32::MAX kept entries".into())
            })?;
            row_ptr.push(nnz);
        }
        Ok(Self::assemble(rows, cols, row_ptr, col_idx, values, scales))
    }

    /// Builds from raw arrays (as read from a model file), validating every one of them first.
    ///
    /// # Errors
    /// When `cols > MAX_INNER`; when `row_ptr` does not have `rows + 1` entries starting at 0,
    /// non-decreasing and ending at `values.len()`; when `col_idx` and `values` differ in
    /// length; when a row's column indices are not strictly increasing and below `cols`; when
    /// a value is -128; when `scales` does not have `rows` entries, all finite and positive.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        row_ptr: Vec<u32>,
        col_idx: Vec<u32>,
        values: Vec<i8>,
        scales: Vec<f32>,
    ) -> Result<Self> {
        check_cols(cols)?;
        let ptrs = rows
            .checked_add(1)
            .ok_or_else(|| invalid("int8 csr shape", format!("{rows} rows overflow")))?;
        check_len("int8 csr row_ptr", ptrs, row_ptr.len())?;
        check_len("int8 csr col_idx", values.len(), col_idx.len())?;
        check_len("int8 csr scales", rows, scales.len())?;
        if row_ptr[0] != 0 {
            return Err(invalid(
                "int8 csr row_ptr",
                format!("starts at {}", row_ptr[0]),
            ));
        }
        if row_ptr[rows] as usize != values.len() {
            let end = row_ptr[rows];
            let reason = format!("ends at {end}, but there are {} values", values.len());
            return Err(invalid("int8 csr row_ptr", reason));
        }
        for (r, p) in row_ptr.windows(2).enumerate() {
            let (lo, hi) = (p[0] as usize, p[1] as usize);
            if lo > hi || hi > values.len() {
                let reason = format!("row {r} spans {lo}..{hi} of {} values", values.len());
                return Err(invalid("int8 csr row_ptr", reason));
            }
            let row = &col_idx[lo..hi];
            if let Some(i) =
                (0..row.len()).find(|&i| row[i] as usize >= cols || (i > 0 && row[i - 1] >= row[i]))
            {
                let reason = format!(
                    "row {r}: column {} is not below {cols} or does not increase",
                    row[i]
                );
                return Err(invalid("int8 csr col_idx", reason));
            }
        }
        if let Some(i) = values.iter().position(|&v| v == i8::MIN) {
            let reason = format!("value {i} is -128, outside the symmetric range -127..=127");
            return Err(invalid("int8 csr value", reason));
        }
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            let reason = format!("{s} is not finite and positive");
            return Err(invalid("int8 csr scale", reason));
        }
        // every index is below `cols <= 2^16` (checked above)
        let col_idx = col_idx.into_iter().map(|c| c as u16).collect();
        Ok(Self::assemble(rows, cols, row_ptr, col_idx, values, scales))
    }

    /// The matrix from validated arrays, with its row sums.
    fn assemble(
        rows: usize,
        cols: usize,
        row_ptr: Vec<u32>,
        col_idx: Vec<u16>,
        values: Vec<i8>,
        scales: Vec<f32>,
    ) -> Self {
        let row_sums = row_ptr
            .windows(2)
            .map(|p| {
                values[p[0] as usize..p[1] as usize]
                    .iter()
                    .map(|&v| v as i32)
                    .sum()
            })
            .collect();
        Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            narrow: crate::int8::quant::all_narrow(&values),
            values,
            scales,
            row_sums,
            layouts: Box::default(),
            mults: Default::default(),
        }
    }

    /// Number of rows (output features or channels).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (input features, or `in_channels * kh * kw`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Row pointers, `rows + 1` entries.
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// The column of every stored value, widened to `u32` (stored in two bytes).
    pub fn col_idx(&self) -> Cow<'_, [u32]> {
        Cow::Owned(self.col_idx.iter().map(|&c| c as u32).collect())
    }

    /// Stored i8 values, row after row.
    pub fn values(&self) -> &[i8] {
        &self.values
    }

    /// Per-row scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Per-row sums of the stored values (used to apply the activation zero point).
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }

    /// Whether every stored value is within `±`[`NARROW_MAX`](crate::int8::NARROW_MAX) (7-bit
    /// weights are).
    pub fn is_narrow(&self) -> bool {
        self.narrow
    }

    /// Fraction of stored values, `nnz / (rows * cols)` (0 for an empty shape).
    pub fn density(&self) -> f64 {
        let total = self.rows as f64 * self.cols as f64;
        if total == 0.0 {
            0.0
        } else {
            self.nnz() as f64 / total
        }
    }

    /// The cache of requantization multipliers.
    pub(crate) fn multipliers(&self) -> &crate::int8::quant::Multipliers {
        &self.mults
    }

    /// The column-major copy of the zero-point-skipping walk, made on first use.
    pub(crate) fn csc(&self) -> &Csc {
        self.layouts.csc.get(self)
    }

    /// The column indices as stored.
    pub(crate) fn cols_u16(&self) -> &[u16] {
        &self.col_idx
    }

    /// The layout of the batch-1 permute kernel, made on first use.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn slices(&self) -> &Slices<PermuteStep> {
        self.layouts.slices.get(self)
    }

    /// The layout of the batch-1 AVX2 shuffle kernel, made on first use.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn shuffle_slices(&self) -> &Slices<ShuffleStep> {
        self.layouts.shuffle.get(self)
    }

    /// The layout of the batch-1 AVX2 kernel on narrow values, made on first use.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn wide_slices(&self) -> &Slices<WideStep> {
        self.layouts.wide.get(self)
    }
}

fn check_cols(cols: usize) -> Result<()> {
    if cols > MAX_INNER {
        return Err(invalid(
            "int8 inner dimension",
            format!("{cols} > {MAX_INNER}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_dense_quantizes_kept_entries_per_row() {
        let d = [0.5f32, -0.25, 0.0, 2.0, 0.0, 0.0, -0.001, 0.0, 1.0];
        let m = QCsrMatrix::from_dense(3, 3, &d, None).unwrap();
        assert_eq!(m.row_ptr(), &[0, 2, 3, 5]);
        assert_eq!(&*m.col_idx(), &[0, 1, 0, 0, 2]);
        // a kept entry that rounds to zero stays stored
        assert_eq!(m.values(), &[127, -64, 127, 0, 127]);
        assert_eq!(m.scales(), &[0.5 / 127.0, 2.0 / 127.0, 1.0 / 127.0]);
        assert_eq!(m.row_sums(), &[63, 127, 127]);
        assert!((m.density() - 5.0 / 9.0).abs() < 1e-12);
        // with a mask: the dropped large entry does not set the scale, a kept zero is stored, a
        // row with nothing kept gets scale 1
        let keep = [true, false, true, false, false, false, false, true, true];
        let m = QCsrMatrix::from_dense(3, 3, &d, Some(&keep)).unwrap();
        assert_eq!(m.values(), &[127, 0, 0, 127]);
        assert_eq!(m.scales(), &[0.5 / 127.0, 1.0, 1.0 / 127.0]);
        // all kept: the values and scales of the dense quantizer
        let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 3.0).collect();
        let m = QCsrMatrix::from_dense(3, 4, &w, Some(&[true; 12])).unwrap();
        let (q, s) = crate::int8::quantize_weights_per_channel(&w, 3).unwrap();
        assert_eq!((m.values(), m.scales()), (&q[..], &s[..]));
        assert_eq!(
            QCsrMatrix::from_dense(0, 5, &[], None).unwrap().density(),
            0.0
        );
    }

    #[test]
    fn from_dense_rejects_bad_input() {
        assert!(QCsrMatrix::from_dense(1, 3, &[1.0, f32::NAN, 0.0], None).is_err());
        assert!(QCsrMatrix::from_dense(1, 2, &[1.0, f32::INFINITY], Some(&[true, false])).is_err());
        assert!(QCsrMatrix::from_dense(2, 3, &[1.0; 5], None).is_err());
        assert!(QCsrMatrix::from_dense(2, 3, &[1.0; 6], Some(&[true; 5])).is_err());
        assert!(QCsrMatrix::from_dense(usize::MAX, 2, &[], None).is_err());
        assert!(QCsrMatrix::from_dense(usize::MAX, 0, &[], None).is_err());
    }

    #[test]
    fn from_parts_rejects_malformed_input() {
        let ok = || {
            (
                vec![0u32, 2, 3],
                vec![0u32, 2, 1],
                vec![1i8, -2, 3],
                vec![0.5f32, 0.25],
            )
        };
        let (rp, ci, v, s) = ok();
        let m = QCsrMatrix::from_parts(2, 3, rp, ci, v, s).unwrap();
        assert_eq!(
            (m.rows(), m.cols(), m.nnz(), m.row_sums()),
            (2, 3, 3, &[-1, 3][..])
        );
        type Parts = (Vec<u32>, Vec<u32>, Vec<i8>, Vec<f32>);
        let cases: Vec<(&str, usize, Parts)> = vec![
            ("row_ptr too short", 2, (vec![0, 2], ok().1, ok().2, ok().3)),
            (
                "row_ptr too long",
                2,
                (vec![0, 2, 3, 3], ok().1, ok().2, ok().3),
            ),
            (
                "row_ptr not from 0",
                2,
                (vec![1, 2, 3], ok().1, ok().2, ok().3),
            ),
            (
                "row_ptr decreasing",
                2,
                (vec![0, 3, 2], ok().1, ok().2, ok().3),
            ),
            (
                "row_ptr past the values",
                2,
                (vec![0, 4, 3], ok().1, ok().2, ok().3),
            ),
            (
                "row_ptr short of the values",
                2,
                (vec![0, 1, 2], ok().1, ok().2, ok().3),
            ),
            (
                "row_ptr huge",
                2,
                (vec![0, u32::MAX, u32::MAX], ok().1, ok().2, ok().3),
            ),
            ("col_idx length", 2, (ok().0, vec![0, 2], ok().2, ok().3)),
            (
                "column out of range",
                2,
                (ok().0, vec![0, 3, 1], ok().2, ok().3),
            ),
            (
                "column repeated",
                2,
                (ok().0, vec![2, 2, 1], ok().2, ok().3),
            ),
            (
                "columns decreasing",
                2,
                (ok().0, vec![2, 0, 1], ok().2, ok().3),
            ),
            ("value -128", 2, (ok().0, ok().1, vec![1, -128, 3], ok().3)),
            ("scales length", 2, (ok().0, ok().1, ok().2, vec![0.5])),
            ("scale zero", 2, (ok().0, ok().1, ok().2, vec![0.5, 0.0])),
            (
                "scale negative",
                2,
                (ok().0, ok().1, ok().2, vec![-0.5, 1.0]),
            ),
            (
                "scale NaN",
                2,
                (ok().0, ok().1, ok().2, vec![0.5, f32::NAN]),
            ),
            (
                "scale infinite",
                2,
                (ok().0, ok().1, ok().2, vec![f32::INFINITY, 1.0]),
            ),
            ("rows overflow", usize::MAX, ok()),
        ];
        for (what, rows, (rp, ci, v, s)) in cases {
            assert!(
                QCsrMatrix::from_parts(rows, 3, rp, ci, v, s).is_err(),
                "{what}"
            );
        }
        let (rp, ci, v, s) = ok();
        assert!(QCsrMatrix::from_parts(2, MAX_INNER + 1, rp, ci, v, s).is_err());
        assert!(QCsrMatrix::from_parts(0, 3, vec![0], vec![], vec![], vec![]).is_ok());
    }
}
