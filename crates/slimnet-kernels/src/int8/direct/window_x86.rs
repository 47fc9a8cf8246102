//! The VBMI unfolding of the padded copy: a 64-column tile of an unfolded row lies in a
//! 128-byte window of the padded image (for rows narrow enough), so one two-table byte permute
//! (`vpermt2b`) with an index shared by every kernel tap gathers it, straight into the im2col
//! rows or into the packed panel of the product.

use std::arch::x86_64::*;

use crate::int8::gemm::NT;

/// Whether every 64-column tile of an unfolding of rows `ow` wide, `wp` apart in the padded
/// image, lies in a 128-byte window of it (`vpermt2b`'s two tables): a tile spans 64 columns
/// and at most `(ow + 62) / ow` row changes, each skipping `wp - ow` bytes.
pub(crate) fn windows_fit(ow: usize, wp: usize) -> bool {
    ow > 0 && 63 + (ow + 62) / ow * (wp - ow) < 128
}

/// The window of the tile of columns `j0..j0 + valid` of an unfolding of rows `ow` wide, `wp`
/// apart: its start relative to the tap's offset, and the window byte of each column (lanes
/// past `valid` unspecified). Column `p` reads `p / ow * wp + p % ow`; from `j0` on, that is
/// `l` plus `wp - ow` per row start passed.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn tile_window(j0: usize, valid: usize, ow: usize, wp: usize) -> (usize, __m512i) {
    const IOTA: [u8; 64] = {
        let mut a = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            a[i] = i as u8;
            i += 1;
        }
        a
    };
    // SAFETY: `IOTA` holds 64 bytes.
    let mut idx = unsafe { _mm512_loadu_si512(IOTA.as_ptr() as *const __m512i) };
    let skip = _mm512_set1_epi8((wp - ow) as u8 as i8);
    let mut start = (j0 / ow + 1) * ow;
    while start < j0 + valid {
        idx = _mm512_mask_add_epi8(idx, !0u64 << (start - j0), idx, skip);
        start += ow;
    }
    (j0 / ow * wp + j0 % ow, idx)
}

/// The valid-column mask of a tile `valid` wide.
#[inline]
fn lanes64(valid: usize) -> u64 {
    if valid >= 64 {
        !0
    } else {
        (1u64 << valid) - 1
    }
}

/// 64 unfolded columns from the 128-byte window at `p`, picked by `idx`, zero outside `mask`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn gather(p: *const u8, idx: __m512i, mask: u64) -> __m512i {
    let lo = _mm512_loadu_si512(p as *const __m512i);
    let hi = _mm512_loadu_si512(p.add(64) as *const __m512i);
    _mm512_maskz_permutex2var_epi8(mask, lo, idx, hi)
}

/// Unfolds the padded image at `xp` (rows `wp` apart) into `col` (`offs.len()` rows of
/// `n = oh * ow` columns), a 64-column tile of a row per byte permute.
///
/// # Safety
/// AVX-512 F/BW/VBMI must be available and [`windows_fit`] true; `xp` must have 128 readable
/// bytes from any position of the image (the tap offsets `offs` plus the output rows), and
/// `col` hold `offs.len() * n` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) unsafe fn unfold_vbmi(
    xp: *const u8,
    offs: &[usize],
    n: usize,
    ow: usize,
    wp: usize,
    col: *mut u8,
) {
    for j0 in (0..n).step_by(NT) {
        let valid = (n - j0).min(NT);
        let (base, idx) = tile_window(j0, valid, ow, wp);
        let m = lanes64(valid);
        for (k, &o) in offs.iter().enumerate() {
            let v = gather(xp.add(o + base), idx, m);
            _mm512_mask_storeu_epi8(col.add(k * n + j0) as *mut i8, m, v);
        }
    }
}

/// Packs the unfolding of the padded image at `xp` (as [`unfold_vbmi`] reads it, zero rows
/// after the last up to a multiple of 4) straight into the tile-major panel of
/// `gemm::pack_a` (`npad` columns), tile by tile as [`pack_tile_vbmi`] packs them.
///
/// # Safety
/// As [`unfold_vbmi`]; `out` must hold `offs.len().div_ceil(4) * 4 * npad` bytes and `npad`
/// be `n` rounded up to 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) unsafe fn pack_vbmi(
    xp: *const u8,
    offs: &[usize],
    n: usize,
    ow: usize,
    wp: usize,
    npad: usize,
    out: *mut u8,
) {
    let k4 = offs.len().div_ceil(4);
    for j0 in (0..npad).step_by(NT) {
        let wt = NT.min(npad - j0);
        let valid = n.saturating_sub(j0).min(NT);
        pack_tile_vbmi(xp, offs, (j0, valid, wt), ow, wp, out.add(j0 * k4 * 4));
    }
}

/// Packs one tile of the panel (columns `j0..j0 + valid`, `wt` wide with zeros after, `wt` a
/// multiple of 16 up to 64) into `out` as `[k4][wt][4]`: per quad of unfolded rows, each row's
/// window bytes permuted in the order `x86::pack_tile_avx512` spreads its loads (128-bit lane
/// `l` holding columns `4l`, `16 + 4l`, `32 + 4l`, `48 + 4l`), then two rounds of in-lane
/// unpacks.
///
/// # Safety
/// As [`unfold_vbmi`]; `out` must hold `offs.len().div_ceil(4) * 4 * wt` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) unsafe fn pack_tile_vbmi(
    xp: *const u8,
    offs: &[usize],
    (j0, valid, wt): (usize, usize, usize),
    ow: usize,
    wp: usize,
    out: *mut u8,
) {
    let k4 = offs.len().div_ceil(4);
    let spread = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let (base, idx) = tile_window(j0, valid, ow, wp);
    let idx = _mm512_permutexvar_epi32(spread, idx);
    // the valid columns in spread order
    let (_, cols) = tile_window(0, 64, 64, 64);
    let m = _mm512_cmplt_epu8_mask(
        _mm512_permutexvar_epi32(spread, cols),
        _mm512_set1_epi8(valid as u8 as i8),
    );
    for q in 0..k4 {
        let r: [__m512i; 4] = std::array::from_fn(|i| match offs.get(4 * q + i) {
            Some(&o) => gather(xp.add(o + base), idx, m),
            None => _mm512_setzero_si512(),
        });
        let lo01 = _mm512_unpacklo_epi8(r[0], r[1]);
        let hi01 = _mm512_unpackhi_epi8(r[0], r[1]);
        let lo23 = _mm512_unpacklo_epi8(r[2], r[3]);
        let hi23 = _mm512_unpackhi_epi8(r[2], r[3]);
        let dst = out.add(q * wt * 4) as *mut __m512i;
        // one store each (a loop over an array becomes a `memcpy` call from the stack)
        _mm512_storeu_si512(dst, _mm512_unpacklo_epi16(lo01, lo23));
        if wt > 16 {
            _mm512_storeu_si512(dst.add(1), _mm512_unpackhi_epi16(lo01, lo23));
        }
        if wt > 32 {
            _mm512_storeu_si512(dst.add(2), _mm512_unpacklo_epi16(hi01, hi23));
        }
        if wt > 48 {
            _mm512_storeu_si512(dst.add(3), _mm512_unpackhi_epi16(hi01, hi23));
        }
    }
}

/// Unfolds the padded image at `xp` (rows `wp` apart) into `col` (`offs.len()` rows of
/// `oh * ow` columns) by copies of whole output rows, eight bytes at a time (the last copy of a
/// row overlapping the one before; rows shorter than eight byte by byte): the portable
/// unfolding without its bounds checks, for the levels without VBMI.
///
/// # Safety
/// `xp` must hold every byte the rows read (`offs[k] + (oh - 1) * wp + ow` for every `k`),
/// and `col` `offs.len() * oh * ow` bytes.
pub(crate) unsafe fn unfold_rows(
    xp: *const u8,
    offs: &[usize],
    (oh, ow, wp): (usize, usize, usize),
    col: *mut u8,
) {
    let mut d = col;
    for &o in offs {
        for y in 0..oh {
            let s = xp.add(o + y * wp);
            if ow < 8 {
                std::ptr::copy_nonoverlapping(s, d, ow);
            } else {
                let mut x = 0;
                while x + 8 < ow {
                    (d.add(x) as *mut u64)
                        .write_unaligned((s.add(x) as *const u64).read_unaligned());
                    x += 8;
                }
                let last = ow - 8;
                (d.add(last) as *mut u64)
                    .write_unaligned((s.add(last) as *const u64).read_unaligned());
            }
            d = d.add(ow);
        }
    }
}
