//! The int8 CSR product in i32: variant choice, threads over row ranges, the scalar reference.

use super::matrix::QCsrMatrix;
use super::slices::{PermuteStep, ShuffleStep, StepFormat, WideStep};
use crate::isa::Isa;
use crate::threads;

/// Bytes past the `[cols, n]` operand of a product with `n > 1` that the SIMD kernels may read
/// (their last column tile loads whole vectors; the lanes past `n` are dropped).
pub(crate) const SLACK: usize = 64;

/// Products smaller than this many multiply-adds run on one thread.
const MIN_PARALLEL_WORK: usize = 1 << 15;

/// A kernel variant of the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Portable reference.
    Scalar,
    /// AVX2: byte shuffles over the shuffle layout at batch 1; pairs of non-zeros through
    /// `vpmaddwd` otherwise.
    Avx2,
    /// AVX-512 F/BW/VL without VNNI: the AVX2 kernels.
    Avx512,
    /// AVX-512 with VNNI: at batch 1, byte permutes over the window slices where the CPU has
    /// VBMI (else the AVX2 shuffles); quads of non-zeros through `vpdpbusd` otherwise.
    Vnni,
}

impl Variant {
    /// The best variant of level `isa` or below that this CPU runs.
    pub(crate) fn pick(isa: Isa) -> Self {
        let (isa, f) = (isa.or_supported(), crate::isa::features());
        if !cfg!(target_arch = "x86_64") {
            Variant::Scalar
        } else if isa >= Isa::Avx512 && f.avx512 {
            if f.avx512_vnni {
                Variant::Vnni
            } else {
                Variant::Avx512
            }
        } else if isa >= Isa::Avx2 && f.avx2_fma {
            Variant::Avx2
        } else {
            Variant::Scalar
        }
    }

    /// Linear layers with fewer rows than this run one input row at a time (the batch-1
    /// kernel), rather than over the transposed input.
    ///
    /// On the 4096x4096 layer at 10% density (one thread, Zen 4), the permute kernel takes
    /// 70 us a row, while a pass of column tiles takes 1.0-2.2 ms for 2 to 64 rows; at the AVX2
    /// level, the shuffle kernel takes 175 us a row, the column tiles 1.37 ms for 2 rows and
    /// 1.52 ms for 8.
    pub(crate) fn per_item_below(self) -> usize {
        if !cfg!(target_arch = "x86_64") || self == Variant::Scalar {
            2
        } else if self == Variant::Vnni && crate::isa::features().avx512_vbmi {
            32
        } else {
            8
        }
    }

    /// The level of the requantization kernels that go with this variant.
    pub(crate) fn isa(self) -> Isa {
        match self {
            Variant::Scalar => Isa::Scalar,
            Variant::Avx2 => Isa::Avx2,
            Variant::Avx512 | Variant::Vnni => Isa::Avx512,
        }
    }

    /// Every variant this CPU runs, the reference first.
    #[cfg(test)]
    pub(crate) fn all() -> Vec<Self> {
        let f = crate::isa::features();
        let x86 = cfg!(target_arch = "x86_64");
        [
            (Variant::Scalar, true),
            (Variant::Avx2, x86 && f.avx2_fma),
            (Variant::Avx512, x86 && f.avx512),
            (Variant::Vnni, x86 && f.avx512_vnni),
        ]
        .into_iter()
        .filter_map(|(v, ok)| ok.then_some(v))
        .collect()
    }
}

/// `acc[r, j] = sum_k w[r, k] * (x[k * n + j] - za)`: `x` is `[cols, n]` (followed by [`SLACK`]
/// readable bytes when `n > 1`), `acc` is `[rows, n]`. Rows are split across the configured
/// threads by their share of the non-zeros; the result does not depend on the split.
///
/// # Panics
/// When a buffer is too short.
pub(crate) fn product(v: Variant, w: &QCsrMatrix, x: &[u8], n: usize, za: u8, acc: &mut [i32]) {
    let (rows, cols) = (w.rows(), w.cols());
    assert!(acc.len() >= rows * n);
    if rows == 0 || n == 0 {
        return;
    }
    if n == 1 {
        assert!(x.len() >= cols);
        if walk_wins(v, w, x, za) {
            let parallel = w.nnz() >= MIN_PARALLEL_WORK;
            super::csc::spmv_walk(w, x, za, parallel, acc);
            return;
        }
        if v == Variant::Scalar {
            run_split(w, 1, 1, acc, |r0, r1, c| spmv_scalar(w, x, za, r0, r1, c));
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // the window kernels read whole windows past the last column
            let permute = v == Variant::Vnni && crate::isa::features().avx512_vbmi;
            crate::scratch::with(&crate::scratch::U8_B, |xp| {
                let padded = cols + super::x86::WINDOW_SLACK;
                if permute {
                    let xp = crate::scratch::sized_aligned(xp, padded);
                    xp[..cols].copy_from_slice(&x[..cols]);
                    let xp = &*xp;
                    run_split(w, 1, PermuteStep::GROUP, acc, |r0, r1, c| {
                        super::x86::spmv_slices(w, xp, za, r0, r1, c)
                    });
                } else if w.is_narrow() {
                    let xp = crate::scratch::sized_aligned(xp, padded);
                    xp[..cols].copy_from_slice(&x[..cols]);
                    let xp = &*xp;
                    run_split(w, 1, WideStep::GROUP, acc, |r0, r1, c| {
                        super::x86::spmv_shuffle(w, xp, None, za, r0, r1, c)
                    });
                } else {
                    let xp = crate::scratch::sized_aligned(xp, 2 * padded);
                    let (low, high) = xp.split_at_mut(padded);
                    for ((l, h), &v) in low.iter_mut().zip(high.iter_mut()).zip(&x[..cols]) {
                        (*l, *h) = (v & 127, v >> 7);
                    }
                    let (low, high) = (&*low, &*high);
                    run_split(w, 1, ShuffleStep::GROUP, acc, |r0, r1, c| {
                        super::x86::spmv_shuffle(w, low, Some(high), za, r0, r1, c)
                    });
                }
            });
            return;
        }
    }
    assert!(x.len() >= cols * n + SLACK);
    run_split(w, n, 1, acc, |r0, r1, c| {
        if v == Variant::Scalar {
            spmm_scalar(w, x, n, za, r0, r1, c)
        } else {
            simd(v, w, x, n, za, r0, r1, c)
        }
    });
}

/// Costs of the batch-1 kernels in hundredths of a nanosecond, measured on one thread (Zen 4,
/// `benches/int8_small.rs` and 500x800 to 4096x4096 weights at 2-10% density): the column walk
/// per stored value of a column it reads and per input, a step of the VBMI kernel's layout and
/// of the AVX2 one's (8-bit and narrow values), and a stored value of the scalar rows.
const WALK_VALUE: usize = 45;
const WALK_INPUT: usize = 30;
const SLICE_STEP: usize = 150;
const SHUFFLE_STEP: usize = 118;
/// A step of the AVX2 layout on a narrow weight (32-column windows, about 20 non-zeros a step
/// at 10% density): the character CNN's fc1 (4096 inputs, 10%) took 31 us for 21,000 steps
/// on an Intel Xeon.
const WIDE_STEP: usize = 147;
const ROW_VALUE: usize = 68;

/// Whether the batch-1 product of `x` is cheaper as the column walk that skips the inputs at
/// the zero point (`csc`), estimating the values it reads as the stored values times the
/// fraction of other inputs.
fn walk_wins(v: Variant, w: &QCsrMatrix, x: &[u8], za: u8) -> bool {
    let (rows, cols) = (w.rows(), w.cols());
    if rows > super::csc::MAX_ROWS || cols == 0 {
        return false;
    }
    let live = x[..cols].iter().filter(|&&v| v != za).count();
    let walk = w.nnz() * live / cols * WALK_VALUE + cols * WALK_INPUT;
    let other = match v {
        Variant::Scalar => w.nnz() * ROW_VALUE,
        #[cfg(target_arch = "x86_64")]
        Variant::Vnni if crate::isa::features().avx512_vbmi => w.slices().steps.len() * SLICE_STEP,
        #[cfg(target_arch = "x86_64")]
        _ if w.is_narrow() => w.wide_slices().steps.len() * WIDE_STEP,
        _ => w.shuffle_slices().steps.len() * SHUFFLE_STEP,
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("no SIMD variants off x86-64"),
    };
    walk < other
}

/// A SIMD kernel over rows `r0..r1` of the product with `n > 1` columns.
#[allow(clippy::too_many_arguments)]
fn simd(
    v: Variant,
    w: &QCsrMatrix,
    x: &[u8],
    n: usize,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    super::x86::spmm(v == Variant::Vnni, w, x, n, za, r0, r1, c);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (v, w, x, n, za, r0, r1, c);
        unreachable!("no SIMD variants off x86-64");
    }
}

/// Cuts the rows into one range per thread with about equal non-zeros (plus one per row, for
/// the rows' fixed costs), starting at multiples of `align`, and runs
/// `f(r0, r1, acc rows r0..r1)` on each.
fn run_split(
    w: &QCsrMatrix,
    n: usize,
    align: usize,
    acc: &mut [i32],
    f: impl Fn(usize, usize, &mut [i32]) + Sync,
) {
    let rows = w.rows();
    let nt = threads::num_threads();
    let parts = if nt > 1 && w.nnz().saturating_mul(n) >= MIN_PARALLEL_WORK {
        nt.min(rows)
    } else {
        1
    };
    let rp = w.row_ptr();
    // cost of rows 0..i
    let cost = |i: usize| rp[i] as usize + i;
    let mut ranges = Vec::with_capacity(parts);
    let mut rest = &mut acc[..rows * n];
    let mut r0 = 0;
    for p in 1..=parts {
        let target = cost(rows) * p / parts;
        // the first row boundary at or past the target
        let (mut lo, mut hi) = (r0, rows);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if cost(mid) < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let r1 = if p == parts { rows } else { lo / align * align };
        let (head, tail) = std::mem::take(&mut rest).split_at_mut((r1 - r0) * n);
        ranges.push((r0, r1, head));
        rest = tail;
        r0 = r1;
    }
    threads::run_parts(ranges, |(r0, r1, c)| {
        if r0 < r1 {
            f(r0, r1, c)
        }
    });
}

/// Scalar batch-1 rows: `c[r - r0] = sum_i v_i * x[k_i] - za * row_sum[r]`.
fn spmv_scalar(w: &QCsrMatrix, x: &[u8], za: u8, r0: usize, r1: usize, c: &mut [i32]) {
    let (rp, k, v) = (w.row_ptr(), w.cols_u16(), w.values());
    for (r, o) in (r0..r1).zip(c.iter_mut()) {
        let (lo, hi) = (rp[r] as usize, rp[r + 1] as usize);
        let s: i32 = (k[lo..hi].iter().zip(&v[lo..hi]))
            .map(|(&k, &v)| v as i32 * x[k as usize] as i32)
            .sum();
        *o = s - za as i32 * w.row_sums()[r];
    }
}

/// Scalar rows of the product with `n` columns (the reference for `n > 1`).
fn spmm_scalar(w: &QCsrMatrix, x: &[u8], n: usize, za: u8, r0: usize, r1: usize, c: &mut [i32]) {
    let (rp, k, v) = (w.row_ptr(), w.cols_u16(), w.values());
    for (r, o) in (r0..r1).zip(c.chunks_exact_mut(n)) {
        let corr = za as i32 * w.row_sums()[r];
        o.fill(-corr);
        for i in rp[r] as usize..rp[r + 1] as usize {
            let xr = &x[k[i] as usize * n..][..n];
            for (o, &xv) in o.iter_mut().zip(xr) {
                *o += v[i] as i32 * xv as i32;
            }
        }
    }
}

/// `out[k * rows + r] = x[r * cols + k]`.
pub(crate) fn transpose_u8(x: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        super::x86::transpose_u8(x, rows, cols, out);
    }
    #[cfg(not(target_arch = "x86_64"))]
    for k0 in (0..cols).step_by(16) {
        let k1 = (k0 + 16).min(cols);
        for r in 0..rows {
            for (k, &v) in (k0..k1).zip(&x[r * cols + k0..r * cols + k1]) {
                out[k * rows + r] = v;
            }
        }
    }
}
