//! The AVX2 product of the convolution on i16 pairs (for the levels without VNNI).
//!
//! `vpmaddubsw` would take u8 x i8 directly but saturates its i16 sums; widened to i16,
//! `vpmaddwd` is exact. Widening once, while packing, rather than in the product's inner loop
//! (as `x86::gemm_avx2` does for the panels every kernel shares): the unfolded rows are packed
//! as pairs of consecutive inner indices widened to i16 (`[tile][k / 2][16][2]`, 16 columns a
//! tile), the weights as i16 pairs too (`[rows / 6][k / 2][6][2]`, made once per weight), so
//! that one `vpmaddwd` of a panel vector with a broadcast weight pair adds the two products of
//! 8 columns into their 8 sums: no widening and no horizontal adds in the loop. A register
//! tile is 6 output channels x 16 columns (12 accumulators, 2 panel vectors, 1 weight pair).

use std::arch::x86_64::*;

use crate::int8::gemm::QMatrix;

/// Output channels per register tile.
pub(crate) const ROWS: usize = 6;
/// Columns per tile.
const COLS: usize = 16;

/// The weights of `w` as i16 pairs, `[rows / ROWS (rounded up)][k / 2 (rounded up)][ROWS][2]`,
/// zero past the rows and the inner dimension.
pub(crate) fn pack_weights(w: &QMatrix) -> Vec<i16> {
    let (rows, k) = (w.rows(), w.cols());
    let k2 = k.div_ceil(2);
    let mut out = vec![0i16; rows.div_ceil(ROWS) * k2 * ROWS * 2];
    for (r, row) in w.values().chunks_exact(k.max(1)).enumerate().take(rows) {
        let (b, rr) = (r / ROWS, r % ROWS);
        for (kk, &v) in row.iter().enumerate() {
            out[((b * k2 + kk / 2) * ROWS + rr) * 2 + kk % 2] = v as i16;
        }
    }
    out
}

/// Packs the unfolded rows `col` (`k` rows of `n` u8 columns) as i16 pairs into `out`
/// (`[n / 16 (rounded up)][k / 2 (rounded up)][16][2]`, zero past `n` and `k`).
///
/// # Safety
/// AVX2 must be available; `col` must hold `k * n` bytes and `out` the panel.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn pack_panel(col: *const u8, k: usize, n: usize, out: *mut i16) {
    let k2 = k.div_ceil(2);
    for t in 0..n.div_ceil(COLS) {
        let (j0, valid) = (t * COLS, (n - t * COLS).min(COLS));
        let row = |kk: usize| -> __m128i {
            if kk >= k {
                return _mm_setzero_si128();
            }
            let p = col.add(kk * n + j0);
            if valid == COLS {
                _mm_loadu_si128(p as *const __m128i)
            } else {
                let mut buf = [0u8; COLS];
                std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), valid);
                _mm_loadu_si128(buf.as_ptr() as *const __m128i)
            }
        };
        for q in 0..k2 {
            let (a, b) = (row(2 * q), row(2 * q + 1));
            let dst = out.add((t * k2 + q) * COLS * 2) as *mut __m256i;
            _mm256_storeu_si256(dst, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a, b)));
            _mm256_storeu_si256(dst.add(1), _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(a, b)));
        }
    }
}

/// Rows `r0..r1` (`r0` a multiple of [`ROWS`]) of the product of the weight pairs `wp` (made by
/// [`pack_weights`] for a weight with `k` inner steps) with the panel `ap` ([`pack_panel`],
/// `n` columns), minus `corr[r]`: `c[(r - r0) * n + j]`.
///
/// # Safety
/// AVX2 must be available; `wp` and `ap` must be the layouts described for these sizes,
/// `corr` hold `r1` entries and `c` `(r1 - r0) * n` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn gemm(
    wp: &[i16],
    ap: &[i16],
    k: usize,
    n: usize,
    corr: &[i32],
    r0: usize,
    r1: usize,
    c: *mut i32,
) {
    let k2 = k.div_ceil(2);
    for t in 0..n.div_ceil(COLS) {
        let (j0, valid) = (t * COLS, (n - t * COLS).min(COLS));
        let a = ap.as_ptr().add(t * k2 * COLS * 2);
        for rb in (r0..r1).step_by(ROWS) {
            let w = wp.as_ptr().add(rb / ROWS * k2 * ROWS * 2);
            let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
            for q in 0..k2 {
                let av = [
                    _mm256_loadu_si256(a.add(q * COLS * 2) as *const __m256i),
                    _mm256_loadu_si256(a.add(q * COLS * 2 + 16) as *const __m256i),
                ];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let pair = (w.add((q * ROWS + r) * 2) as *const i32).read_unaligned();
                    let wv = _mm256_set1_epi32(pair);
                    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av[0], wv));
                    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av[1], wv));
                }
            }
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            for (r, acc) in acc.iter().enumerate().take((r1 - rb).min(ROWS)) {
                let cz = _mm256_set1_epi32(corr[rb + r]);
                let dst = c.add((rb + r - r0) * n + j0);
                for (h, v) in acc.iter().enumerate() {
                    let v = _mm256_sub_epi32(*v, cz);
                    let left = valid.saturating_sub(8 * h).min(8);
                    if left == 8 {
                        _mm256_storeu_si256(dst.add(8 * h) as *mut __m256i, v);
                    } else if left > 0 {
                        let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(left as i32), idx);
                        _mm256_maskstore_epi32(dst.add(8 * h), m, v);
                    }
                }
            }
        }
    }
}
