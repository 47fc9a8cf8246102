//! x86-64 int8 kernels: AVX-512 VNNI (`vpdpbusd`, exact u8 x i8 -> i32) and AVX2 (widen to
//! i16 then `vpmaddwd`, exact; `vpmaddubsw`, whose i16 sums saturate on 8-bit weights, only on
//! narrow ones, where it is exact).

use std::arch::x86_64::*;

use super::gemm::{QMatrix, MR, NT};

/// Stores `MR` rows of a `16 * R`-column VNNI tile minus the zero-point term.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_tile<const R: usize>(
    wb: *const i8,
    ap: *const u8,
    k4: usize,
    wt: usize,
    corr: &[i32; MR],
    rows: usize,
    cols: usize,
    n: usize,
    out: *mut i32,
) {
    let mut acc = [[_mm512_setzero_si512(); R]; MR];
    for kq in 0..k4 {
        let mut a = [_mm512_setzero_si512(); R];
        for (q, a) in a.iter_mut().enumerate() {
            *a = _mm512_loadu_si512(ap.add((kq * wt + 16 * q) * 4) as *const __m512i);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_epi32((wb.add((kq * MR + r) * 4) as *const i32).read_unaligned());
            for (x, a) in acc.iter_mut().zip(&a) {
                *x = _mm512_dpbusd_epi32(*x, *a, w);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        let cz = _mm512_set1_epi32(corr[r]);
        for (q, x) in acc.iter().enumerate() {
            let left = cols.saturating_sub(16 * q).min(16);
            let m: __mmask16 = if left == 16 {
                0xFFFF
            } else {
                (1u16 << left) - 1
            };
            _mm512_mask_storeu_epi32(
                out.add(r * n + 16 * q) as *mut _,
                m,
                _mm512_sub_epi32(*x, cz),
            );
        }
    }
}

/// Rows `r0..r1` (`r0` a multiple of `MR`) of the packed product, VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn gemm_vnni(
    w: &QMatrix,
    ap: &[u8],
    npad: usize,
    n: usize,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
) {
    let k4 = w.cols().div_ceil(4);
    let mut j = 0;
    while j < n {
        let width = (n - j).min(NT);
        let regs = width.div_ceil(16);
        let mut rb = r0;
        while rb < r1 {
            let rows = (r1 - rb).min(MR);
            let mut corr = [0i32; MR];
            for (i, v) in corr.iter_mut().enumerate().take(rows) {
                *v = za as i32 * w.row_sums()[rb + i];
            }
            let wb = w.packed_block(rb / MR).as_ptr();
            let a = ap.as_ptr().add(j * k4 * 4);
            let wt = NT.min(npad - j);
            let out = c.as_mut_ptr().add((rb - r0) * n + j);
            match regs {
                4 => vnni_tile::<4>(wb, a, k4, wt, &corr, rows, width, n, out),
                3 => vnni_tile::<3>(wb, a, k4, wt, &corr, rows, width, n, out),
                2 => vnni_tile::<2>(wb, a, k4, wt, &corr, rows, width, n, out),
                _ => vnni_tile::<1>(wb, a, k4, wt, &corr, rows, width, n, out),
            }
            rb += MR;
        }
        j += width;
    }
}

/// Stores `MR` rows of an 8-column AVX2 tile.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile(
    wb: *const i8,
    ap: *const u8,
    k4: usize,
    wt: usize,
    corr: &[i32; MR],
    rows: usize,
    cols: usize,
    n: usize,
    out: *mut i32,
) {
    // acc[r][h]: columns 4h..4h+4, two partial sums per column
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for kq in 0..k4 {
        let raw = _mm256_loadu_si256(ap.add(kq * wt * 4) as *const __m256i);
        let a = [
            _mm256_cvtepu8_epi16(_mm256_castsi256_si128(raw)),
            _mm256_cvtepu8_epi16(_mm256_extracti128_si256::<1>(raw)),
        ];
        for (r, acc) in acc.iter_mut().enumerate() {
            let q = (wb.add((kq * MR + r) * 4) as *const i32).read_unaligned();
            let w16 = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(q)));
            for (x, a) in acc.iter_mut().zip(&a) {
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(*a, w16));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        // [c0 c1 c4 c5 | c2 c3 c6 c7] -> c0..c7
        let s = _mm256_hadd_epi32(acc[0], acc[1]);
        let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(s);
        let s = _mm256_sub_epi32(s, _mm256_set1_epi32(corr[r]));
        let dst = out.add(r * n);
        if cols >= 8 {
            _mm256_storeu_si256(dst as *mut __m256i, s);
        } else {
            // a masked store: a `memcpy` call per tile row cost a fifth of a small layer
            let m = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(cols as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            _mm256_maskstore_epi32(dst, m, s);
        }
    }
}

/// Stores `MR` rows of a 16-column AVX2 tile of a narrow weight (every value within
/// `±NARROW_MAX`): `vpmaddubsw` multiplies the u8 quads by the weight quad and adds pairs, which
/// cannot saturate (`2 * 255 * 64 < 2^15`), `vpmaddwd` by ones adds the pairs into the column's
/// sum. No widening, and 32 products a multiply where the i16 tile does 16.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile_narrow(
    wb: *const i8,
    ap: *const u8,
    k4: usize,
    wt: usize,
    corr: &[i32; MR],
    rows: usize,
    cols: usize,
    n: usize,
    out: *mut i32,
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for kq in 0..k4 {
        let p = ap.add(kq * wt * 4);
        let a = [
            _mm256_loadu_si256(p as *const __m256i),
            _mm256_loadu_si256(p.add(32) as *const __m256i),
        ];
        for (r, acc) in acc.iter_mut().enumerate() {
            let q = (wb.add((kq * MR + r) * 4) as *const i32).read_unaligned();
            let w = _mm256_set1_epi32(q);
            for (x, a) in acc.iter_mut().zip(&a) {
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(_mm256_maddubs_epi16(*a, w), ones));
            }
        }
    }
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (r, acc) in acc.iter().enumerate().take(rows) {
        let cz = _mm256_set1_epi32(corr[r]);
        for (h, x) in acc.iter().enumerate() {
            let dst = out.add(r * n + 8 * h);
            let s = _mm256_sub_epi32(*x, cz);
            let left = cols.saturating_sub(8 * h).min(8);
            if left == 8 {
                _mm256_storeu_si256(dst as *mut __m256i, s);
            } else if left > 0 {
                let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(left as i32), idx);
                _mm256_maskstore_epi32(dst, m, s);
            }
        }
    }
}

/// Rows `r0..r1` (`r0` a multiple of `MR`) of the packed product, AVX2 (16-column tiles of
/// `vpmaddubsw` when the weight is narrow, else 8-column tiles on i16).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_avx2(
    w: &QMatrix,
    ap: &[u8],
    npad: usize,
    n: usize,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
) {
    let k4 = w.cols().div_ceil(4);
    let narrow = w.is_narrow();
    let step = if narrow { 16 } else { 8 };
    let mut j = 0;
    while j < n {
        // tiles of 16 columns stay inside a panel tile: those are multiples of `NPAD` = 16 wide
        let width = (n - j).min(step);
        let mut rb = r0;
        while rb < r1 {
            let rows = (r1 - rb).min(MR);
            let mut corr = [0i32; MR];
            for (i, v) in corr.iter_mut().enumerate().take(rows) {
                *v = za as i32 * w.row_sums()[rb + i];
            }
            let wb = w.packed_block(rb / MR).as_ptr();
            let out = c.as_mut_ptr().add((rb - r0) * n + j);
            let (j0, jj) = (j / NT * NT, j % NT);
            let (a, wt) = (ap.as_ptr().add(j0 * k4 * 4 + jj * 4), NT.min(npad - j0));
            if narrow {
                avx2_tile_narrow(wb, a, k4, wt, &corr, rows, width, n, out);
            } else {
                avx2_tile(wb, a, k4, wt, &corr, rows, width, n, out);
            }
            rb += MR;
        }
        j += width;
    }
}

/// Interleaves four equal-length byte rows into quads: `out[4 * j + t] = rows[t][j]`
/// (SSE2, part of the x86-64 baseline).
///
/// # Panics
/// When the rows differ in length or `out` is shorter than `4 * len`.
pub(crate) fn interleave4(rows: [&[u8]; 4], out: &mut [u8]) {
    let n = rows[0].len();
    assert!(rows.iter().all(|r| r.len() == n) && out.len() >= 4 * n);
    let mut j = 0;
    while j + 16 <= n {
        // SAFETY: SSE2 is always available on x86-64; the loads read 16 bytes at `j` from rows
        // of length `n >= j + 16`, the stores write 64 bytes at `4 * j` into `out`, which holds
        // at least `4 * n` bytes.
        unsafe {
            let r: [__m128i; 4] =
                std::array::from_fn(|t| _mm_loadu_si128(rows[t].as_ptr().add(j) as *const __m128i));
            let lo01 = _mm_unpacklo_epi8(r[0], r[1]);
            let hi01 = _mm_unpackhi_epi8(r[0], r[1]);
            let lo23 = _mm_unpacklo_epi8(r[2], r[3]);
            let hi23 = _mm_unpackhi_epi8(r[2], r[3]);
            let o = out.as_mut_ptr().add(4 * j) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(lo01, lo23));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(lo01, lo23));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(hi01, hi23));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(hi01, hi23));
        }
        j += 16;
    }
    for j in j..n {
        for t in 0..4 {
            out[4 * j + t] = rows[t][j];
        }
    }
}

/// `R` dot products `sum x[i] * w[r * stride + i]` (u8 x i8) over `x.len()` columns, sharing
/// the loads of `x`, VNNI: `R` weight rows stream from memory side by side.
///
/// # Safety
/// VNNI must be available; `w` must hold `(R - 1) * stride + x.len()` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn dot_rows_vnni<const R: usize>(
    x: &[u8],
    w: *const i8,
    stride: usize,
) -> [i32; R] {
    let len = x.len();
    let xp = x.as_ptr();
    let mut acc = [_mm512_setzero_si512(); R];
    let mut i = 0;
    while i + 64 <= len {
        let xv = _mm512_loadu_si512(xp.add(i) as *const __m512i);
        for (r, a) in acc.iter_mut().enumerate() {
            let wv = _mm512_loadu_si512(w.add(r * stride + i) as *const __m512i);
            *a = _mm512_dpbusd_epi32(*a, xv, wv);
        }
        i += 64;
    }
    if i < len {
        let m: __mmask64 = (1u64 << (len - i)) - 1;
        let xv = _mm512_maskz_loadu_epi8(m, xp.add(i) as *const i8);
        for (r, a) in acc.iter_mut().enumerate() {
            *a = _mm512_dpbusd_epi32(*a, xv, _mm512_maskz_loadu_epi8(m, w.add(r * stride + i)));
        }
    }
    acc.map(|a| _mm512_reduce_add_epi32(a))
}

/// [`dot_rows_vnni`] with AVX2, exact: `x` comes widened to i16 (`x16`, once per product), each
/// weight row is widened as it is loaded, and `vpmaddwd` adds pairs of exact i16 products.
///
/// # Safety
/// AVX2 must be available; `w` must hold `(R - 1) * stride + x16.len()` bytes.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_rows_avx2<const R: usize>(
    x16: &[i16],
    w: *const i8,
    stride: usize,
) -> [i32; R] {
    let len = x16.len();
    let xp = x16.as_ptr();
    let mut acc = [_mm256_setzero_si256(); R];
    let mut i = 0;
    while i + 16 <= len {
        let xv = _mm256_loadu_si256(xp.add(i) as *const __m256i);
        for (r, a) in acc.iter_mut().enumerate() {
            let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(r * stride + i) as *const __m128i));
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wv));
        }
        i += 16;
    }
    let mut out = [0i32; R];
    for (r, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(*a),
            _mm256_extracti128_si256::<1>(*a),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let mut t = _mm_cvtsi128_si32(s);
        for k in i..len {
            t += *xp.add(k) as i32 * *w.add(r * stride + k) as i32;
        }
        *o = t;
    }
    out
}

/// The `[k4][wt][4]` block of one packed tile (see `gemm::pack_a`): quads of four rows, each
/// row `rows[t]` read for `valid <= wt` columns (zeros after, and for a missing row), `wt` a
/// multiple of 16 up to 64.
pub(crate) struct TileRows<'a> {
    /// Start of each row's columns in the tile (4 * k4 of them; `None` for zero rows).
    pub rows: &'a [Option<*const u8>],
    /// Columns read per row.
    pub valid: usize,
    /// Columns per row in the tile.
    pub wt: usize,
}

/// Packs one tile, AVX-512: per quad, the four rows' 64 columns loaded (masked to `valid`),
/// their dwords spread so that 128-bit lane `l` holds columns `4l`, `16 + 4l`, `32 + 4l`,
/// `48 + 4l` (four each), and two rounds of in-lane unpacks leave columns `16v..16v + 16` in
/// output vector `v`.
///
/// # Safety
/// AVX-512 F/BW must be available; every row holds `valid` readable bytes, `out` holds
/// `rows.len() * wt` bytes, `rows.len()` is a multiple of 4.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn pack_tile_avx512(t: &TileRows<'_>, out: *mut u8) {
    let m: __mmask64 = if t.valid >= 64 {
        !0
    } else {
        (1u64 << t.valid) - 1
    };
    let spread = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let load = |r: &Option<*const u8>| match r {
        Some(p) => _mm512_permutexvar_epi32(spread, _mm512_maskz_loadu_epi8(m, *p as *const i8)),
        None => _mm512_setzero_si512(),
    };
    for (q, quad) in t.rows.chunks_exact(4).enumerate() {
        let r: [__m512i; 4] = std::array::from_fn(|i| load(&quad[i]));
        let lo01 = _mm512_unpacklo_epi8(r[0], r[1]);
        let hi01 = _mm512_unpackhi_epi8(r[0], r[1]);
        let lo23 = _mm512_unpacklo_epi8(r[2], r[3]);
        let hi23 = _mm512_unpackhi_epi8(r[2], r[3]);
        let o = [
            _mm512_unpacklo_epi16(lo01, lo23),
            _mm512_unpackhi_epi16(lo01, lo23),
            _mm512_unpacklo_epi16(hi01, hi23),
            _mm512_unpackhi_epi16(hi01, hi23),
        ];
        let dst = out.add(q * t.wt * 4) as *mut __m512i;
        // one store each (a loop over `o` becomes a `memcpy` call from the stack)
        _mm512_storeu_si512(dst, o[0]);
        if t.wt > 16 {
            _mm512_storeu_si512(dst.add(1), o[1]);
        }
        if t.wt > 32 {
            _mm512_storeu_si512(dst.add(2), o[2]);
        }
        if t.wt > 48 {
            _mm512_storeu_si512(dst.add(3), o[3]);
        }
    }
}

/// [`pack_tile_avx512`] with AVX2: 32 columns a step (128-bit lane `l` of the loaded rows holds
/// columns `4l`, `8 + 4l`, `16 + 4l`, `24 + 4l`); a step with fewer than 32 valid columns is read
/// through a zeroed buffer.
///
/// # Safety
/// AVX2 must be available; as [`pack_tile_avx512`] otherwise.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn pack_tile_avx2(t: &TileRows<'_>, out: *mut u8) {
    let spread = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for s in (0..t.wt).step_by(32) {
        let (cols, valid) = ((t.wt - s).min(32), t.valid.saturating_sub(s).min(32));
        let load = |r: &Option<*const u8>| {
            let v = match r {
                Some(p) if valid == 32 => _mm256_loadu_si256(p.add(s) as *const __m256i),
                Some(p) => {
                    let mut buf = [0u8; 32];
                    std::ptr::copy_nonoverlapping(p.add(s), buf.as_mut_ptr(), valid);
                    _mm256_loadu_si256(buf.as_ptr() as *const __m256i)
                }
                None => _mm256_setzero_si256(),
            };
            _mm256_permutevar8x32_epi32(v, spread)
        };
        for (q, quad) in t.rows.chunks_exact(4).enumerate() {
            let r: [__m256i; 4] = std::array::from_fn(|i| load(&quad[i]));
            let lo01 = _mm256_unpacklo_epi8(r[0], r[1]);
            let hi01 = _mm256_unpackhi_epi8(r[0], r[1]);
            let lo23 = _mm256_unpacklo_epi8(r[2], r[3]);
            let hi23 = _mm256_unpackhi_epi8(r[2], r[3]);
            let o = [
                _mm256_unpacklo_epi16(lo01, lo23),
                _mm256_unpackhi_epi16(lo01, lo23),
                _mm256_unpacklo_epi16(hi01, hi23),
                _mm256_unpackhi_epi16(hi01, hi23),
            ];
            let dst = out.add(q * t.wt * 4 + s * 4) as *mut __m256i;
            // one store each (a loop over `o` becomes a `memcpy` call from the stack)
            _mm256_storeu_si256(dst, o[0]);
            if cols > 8 {
                _mm256_storeu_si256(dst.add(1), o[1]);
            }
            if cols > 16 {
                _mm256_storeu_si256(dst.add(2), o[2]);
            }
            if cols > 24 {
                _mm256_storeu_si256(dst.add(3), o[3]);
            }
        }
    }
}
