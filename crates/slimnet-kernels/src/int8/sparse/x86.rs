//! x86-64 kernels of the int8 CSR product, all exact in i32.
//!
//! - One input column, AVX-512 VBMI + VNNI: over the window slices of the weight (see
//!   `slices`), each step permutes its 64 inputs out of a 128-byte window of the input
//!   (`vpermt2b`) and adds their products with 16 rows' values into the 16 row sums
//!   (`vpdpbusd`).
//! - One input column, otherwise (AVX2): over the shuffle slices, groups of 8 rows and 16-column
//!   windows; each step shuffles its 32 inputs out of the window (`vpshufb`) and adds their
//!   products with the step's values into the 8 row sums (`vpmaddubsw`, then `vpmaddwd`). The
//!   input is split into its low 7 bits and its high bit so that no pair of products saturates
//!   16 bits, unless the weight is narrow (7-bit values), whose products with the whole input
//!   cannot saturate: then the steps span 32-column windows (two shuffles joined) and one
//!   multiply takes the whole input. Gathers (one per non-zero) took 3.7x as long on Zen 4 (641 against 175 us on the
//!   4096x4096 layer at 10% density).
//! - More columns (`x` is `[cols, n]`): column tiles outermost, so the tile's panel of `x`
//!   stays in cache across the rows. VNNI takes a row's non-zeros four at a time: four rows of
//!   `x` are interleaved into byte quads (two rounds of unpacks) and `vpdpbusd` multiplies them
//!   by the four values broadcast. AVX2 takes them two at a time, widened to i16 pairs, with
//!   `vpmaddwd`. The unpacks work inside 128-bit lanes; the tile's columns are put back in order
//!   once per row.

use std::arch::x86_64::*;

use super::matrix::QCsrMatrix;
use super::product::SLACK;
use super::slices::{PermuteStep, ShuffleStep, StepFormat, WideStep};

/// Bytes past `cols` of the input of the window kernels ([`spmv_slices`], [`spmv_shuffle`])
/// that they may read.
pub(crate) const WINDOW_SLACK: usize = 128;

/// Batch-1 rows `r0..r1` (`r0` a multiple of 16) (`c[r - r0] = sum_i v_i * x[k_i] - za * row_sum[r]`), on the permute
/// layout of `w` (made on first use) with byte permutes: AVX-512 VBMI and VNNI. `x` is the
/// input followed by [`WINDOW_SLACK`] readable bytes.
///
/// # Panics
/// When the CPU lacks the features, `x` is shorter than `cols + WINDOW_SLACK`, `r0` is not a
/// multiple of 16, the row range is not inside the matrix or `c` is shorter than it.
pub(crate) fn spmv_slices(w: &QCsrMatrix, x: &[u8], za: u8, r0: usize, r1: usize, c: &mut [i32]) {
    let f = crate::isa::features();
    assert!(f.avx512_vnni && f.avx512_vbmi);
    assert!(x.len() >= w.cols() + WINDOW_SLACK);
    spmv_windows(w.slices(), w, za, r0, r1, c, |start, steps| {
        // SAFETY: the features were checked above; every step's window starts below `cols`,
        // so its 128 bytes lie below `cols + 128`, inside `x`.
        unsafe { group_dot(start, steps, x.as_ptr()) }
    });
}

/// Batch-1 rows `r0..r1` (`r0` a multiple of 8) (`c[r - r0] = sum_i v_i * x[k_i] - za * row_sum[r]`), on the shuffle
/// layout of `w` (made on first use) with `vpshufb`: AVX2. With `high`, the input comes split
/// as `low = x & 127` and `high = x >> 7`, so that `vpmaddubsw` adds two products without
/// saturating (`|2 * 127 * 128| < 2^15`); without it, `low` is the input itself and the
/// weight must be narrow (`|2 * 255 * 64| < 2^15`). Each is followed by [`WINDOW_SLACK`]
/// readable bytes.
///
/// # Panics
/// When the CPU lacks AVX2, `high` is `None` and `w` is not narrow, `low` or `high` is shorter
/// than `cols + WINDOW_SLACK`, `r0` is not a multiple of 8, the row range is not inside the
/// matrix or `c` is shorter than it.
pub(crate) fn spmv_shuffle(
    w: &QCsrMatrix,
    low: &[u8],
    high: Option<&[u8]>,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
) {
    assert!(crate::isa::features().avx2_fma);
    assert!(low.len() >= w.cols() + WINDOW_SLACK);
    match high {
        Some(high) => {
            assert!(high.len() >= w.cols() + WINDOW_SLACK);
            spmv_windows(w.shuffle_slices(), w, za, r0, r1, c, |start, steps| {
                // SAFETY: AVX2 was checked above; every step's window starts below `cols`, so
                // its 16 bytes lie below `cols + 16`, inside `low` and `high`.
                unsafe { group_dot_avx2(start, steps, low.as_ptr(), high.as_ptr()) }
            })
        }
        None => {
            assert!(w.is_narrow(), "an 8-bit weight needs the input split");
            spmv_windows(w.wide_slices(), w, za, r0, r1, c, |start, steps| {
                // SAFETY: AVX2 and narrow values were checked above; every step's window starts
                // below `cols`, so its 32 bytes lie below `cols + 32`, inside `low`.
                unsafe { group_dot_narrow(start, steps, low.as_ptr()) }
            })
        }
    }
}

/// The group loop of the window kernels: `dot(starts, steps)` gives a group's row sums, from
/// which the zero-point correction is taken.
fn spmv_windows<S: StepFormat, const G: usize>(
    s: &super::slices::Slices<S>,
    w: &QCsrMatrix,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
    dot: impl Fn(&[u16], &[S]) -> [i32; G],
) {
    assert!(S::WINDOW <= WINDOW_SLACK && r0 <= r1 && r1 <= w.rows());
    assert!(r0.is_multiple_of(S::GROUP) && c.len() >= r1 - r0);
    for g in r0 / S::GROUP..r1.div_ceil(S::GROUP) {
        let (lo, hi) = (s.group_ptr[g] as usize, s.group_ptr[g + 1] as usize);
        let sums = dot(&s.start[lo..hi], &s.steps[lo..hi]);
        for (l, sum) in sums.iter().enumerate() {
            let r = S::GROUP * g + l;
            if r < r1 {
                c[r - r0] = sum - za as i32 * w.row_sums()[r];
            }
        }
    }
}

/// Folds steps `0..n` into two accumulators that take turns (two chains of dependent adds
/// instead of one), returning both.
#[inline(always)]
fn alternate<A: Copy>(n: usize, zero: A, step: impl Fn(usize, A) -> A) -> [A; 2] {
    let mut acc = [zero; 2];
    let mut i = 0;
    while i + 2 <= n {
        acc[0] = step(i, acc[0]);
        acc[1] = step(i + 1, acc[1]);
        i += 2;
    }
    if i < n {
        acc[0] = step(i, acc[0]);
    }
    acc
}

/// The 16 row sums of one group: per step, the window's 128 input bytes permuted into the
/// step's lanes, times its values.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn group_dot(start: &[u16], steps: &[PermuteStep], x: *const u8) -> [i32; 16] {
    let n = start.len().min(steps.len());
    let step = |i: usize, acc: __m512i| {
        let p = x.add(start[i] as usize);
        let t0 = _mm512_loadu_si512(p as *const __m512i);
        let t1 = _mm512_loadu_si512(p.add(64) as *const __m512i);
        let s = &steps[i];
        let pos = _mm512_load_si512(s.pos.as_ptr() as *const __m512i);
        let val = _mm512_load_si512(s.val.as_ptr() as *const __m512i);
        _mm512_dpbusd_epi32(acc, _mm512_permutex2var_epi8(t0, pos, t1), val)
    };
    let acc = alternate(n, _mm512_setzero_si512(), step);
    let mut out = [0i32; 16];
    _mm512_storeu_si512(
        out.as_mut_ptr() as *mut __m512i,
        _mm512_add_epi32(acc[0], acc[1]),
    );
    out
}

/// Steps of the shuffle kernel whose `vpmaddubsw` sums of the high bits stay in i16 before
/// they are widened: per accumulator, 32 steps of at most `2 * 128` each.
const HIGH_RUN: usize = 64;

/// The 8 row sums of one group: per step, the window's 16 low and 16 high input bytes in both
/// halves of a vector, shuffled into the step's 32 slots, times its values with `vpmaddubsw`;
/// the low sums are widened every step, the high ones (at most `2 * 128` a step) every
/// [`HIGH_RUN`] steps, and weighted by 128.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn group_dot_avx2(
    start: &[u16],
    steps: &[ShuffleStep],
    low: *const u8,
    high: *const u8,
) -> [i32; 8] {
    let n = start.len().min(steps.len());
    let shifts = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    let nibble = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let step = |i: usize, acc: &mut __m256i, acc_high: &mut __m256i| {
        let at = start[i] as usize;
        let tl = _mm256_broadcastsi128_si256(_mm_loadu_si128(low.add(at) as *const __m128i));
        let th = _mm256_broadcastsi128_si256(_mm_loadu_si128(high.add(at) as *const __m128i));
        let s = &steps[i];
        let packed = _mm256_broadcastsi128_si256(_mm_load_si128(s.pos.as_ptr() as *const __m128i));
        // half 0: the low nibbles; half 1: the high ones
        let pos = _mm256_and_si256(_mm256_srlv_epi32(packed, shifts), nibble);
        let val = _mm256_loadu_si256(s.val.as_ptr() as *const __m256i);
        let pl = _mm256_maddubs_epi16(_mm256_shuffle_epi8(tl, pos), val);
        let ph = _mm256_maddubs_epi16(_mm256_shuffle_epi8(th, pos), val);
        *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pl, ones));
        *acc_high = _mm256_add_epi16(*acc_high, ph);
    };
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut i = 0;
    while i < n {
        let end = (i + HIGH_RUN).min(n);
        let mut acc_high = [_mm256_setzero_si256(); 2];
        while i + 2 <= end {
            let (a, b) = acc.split_at_mut(1);
            let (ha, hb) = acc_high.split_at_mut(1);
            step(i, &mut a[0], &mut ha[0]);
            step(i + 1, &mut b[0], &mut hb[0]);
            i += 2;
        }
        if i < end {
            step(i, &mut acc[0], &mut acc_high[0]);
            i += 1;
        }
        // each at most HIGH_RUN / 2 * 256 in magnitude, so their sum fits in i16
        let h = _mm256_add_epi16(acc_high[0], acc_high[1]);
        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(h, _mm256_set1_epi16(128)));
    }
    let mut out = [0i32; 8];
    _mm256_storeu_si256(
        out.as_mut_ptr() as *mut __m256i,
        _mm256_add_epi32(acc[0], acc[1]),
    );
    out
}

/// The 8 row sums of one group on narrow values (all within `±64`) and the whole input, over
/// the 32-column windows of [`WideStep`]: per step, the window's two 16-byte halves in both
/// lanes of a vector, shuffled by the step's position codes and by the codes with bit 7 flipped
/// (each zeroes the slots of the other half), joined, and multiplied by the values with
/// `vpmaddubsw`, whose pair sums (at most `2 * 255 * 64`) fit in i16.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn group_dot_narrow(start: &[u16], steps: &[WideStep], x: *const u8) -> [i32; 8] {
    let n = start.len().min(steps.len());
    let flip = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi16(1);
    let step = |i: usize, acc: __m256i| {
        let p = x.add(start[i] as usize);
        let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(16) as *const __m128i));
        let s = &steps[i];
        let pos = _mm256_load_si256(s.pos.as_ptr() as *const __m256i);
        let val = _mm256_load_si256(s.val.as_ptr() as *const __m256i);
        let picked = _mm256_or_si256(
            _mm256_shuffle_epi8(lo, pos),
            _mm256_shuffle_epi8(hi, _mm256_xor_si256(pos, flip)),
        );
        let pairs = _mm256_maddubs_epi16(picked, val);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones))
    };
    let acc = alternate(n, _mm256_setzero_si256(), step);
    let mut out = [0i32; 8];
    _mm256_storeu_si256(
        out.as_mut_ptr() as *mut __m256i,
        _mm256_add_epi32(acc[0], acc[1]),
    );
    out
}

/// Rows `r0..r1` of the product with `n > 1` columns: `c[(r - r0) * n + j] =
/// sum_i v_i * x[k_i * n + j] - za * row_sum[r]`, with VNNI quads or (not `vnni`) AVX2 pairs.
///
/// # Panics
/// When the CPU lacks the features, `x` is shorter than `cols * n + SLACK`, the row range is
/// not inside the matrix or `c` is shorter than `(r1 - r0) * n`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spmm(
    vnni: bool,
    w: &QCsrMatrix,
    x: &[u8],
    n: usize,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
) {
    let f = crate::isa::features();
    assert!(if vnni { f.avx512_vnni } else { f.avx2_fma });
    assert!(x.len() >= w.cols() * n + SLACK && r0 <= r1 && r1 <= w.rows());
    assert!(c.len() >= (r1 - r0) * n);
    let mut j = 0;
    while j < n {
        let left = n - j;
        // VNNI: 64-column tiles while more than 32 columns are left, then 16-column ones
        let width = if vnni && left > 32 {
            left.min(64)
        } else {
            left.min(16)
        };
        for r in r0..r1 {
            let (lo, hi) = (w.row_ptr()[r] as usize, w.row_ptr()[r + 1] as usize);
            let (k, v) = (&w.cols_u16()[lo..hi], &w.values()[lo..hi]);
            let corr = za as i32 * w.row_sums()[r];
            let out = &mut c[(r - r0) * n + j..(r - r0 + 1) * n];
            // SAFETY: the features were checked above. Every index in `k` is below `cols` (an
            // invariant of `QCsrMatrix`), so a tile reads `x` from `k * n + j` up to
            // `(cols - 1) * n + j + 63 < cols * n + SLACK` (as `j < n`), inside `x`; `out`
            // holds `n - j >= width` entries and only `width` are written.
            unsafe {
                if !vnni {
                    tile16_avx2(k, v, x.as_ptr().add(j), n, width, corr, out);
                } else if width > 16 {
                    tile64_vnni(k, v, x.as_ptr().add(j), n, width, corr, out);
                } else {
                    tile16_vnni(k, v, x.as_ptr().add(j), n, width, corr, out);
                }
            }
        }
        j += width;
    }
}

/// Four non-zeros from `i` (past the row's end: value 0 at the row's last column): their
/// values as one i32 of bytes, and the offsets `k * n` of their rows of `x`.
#[inline(always)]
fn quad(k: &[u16], v: &[i8], i: usize, n: usize) -> (i32, [usize; 4]) {
    if i + 4 <= k.len() && i + 4 <= v.len() {
        let (b, kk) = (&v[i..i + 4], &k[i..i + 4]);
        let bytes = [b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8];
        return (
            i32::from_le_bytes(bytes),
            std::array::from_fn(|t| kk[t] as usize * n),
        );
    }
    let last = k.len() - 1;
    let val = |t: usize| v.get(i + t).map_or(0, |&v| v as u8);
    let bytes = [val(0), val(1), val(2), val(3)];
    let ks = std::array::from_fn(|t| k[(i + t).min(last)] as usize * n);
    (i32::from_le_bytes(bytes), ks)
}

/// The mask of the first `len` (at most 16) lanes.
#[inline(always)]
fn lanes(len: usize) -> __mmask16 {
    ((1u32 << len.min(16)) - 1) as __mmask16
}

/// One row over a 64-column tile (`width` of them kept) at `x`: quads of non-zeros, each four
/// 64-byte rows of `x` interleaved into byte quads for `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile64_vnni(
    k: &[u16],
    v: &[i8],
    x: *const u8,
    n: usize,
    width: usize,
    corr: i32,
    out: &mut [i32],
) {
    // acc[q], 128-bit lane l, dword e: column 16 l + 4 q + e
    let mut acc = [_mm512_setzero_si512(); 4];
    let mut i = 0;
    while i < k.len() {
        let (wq, ks) = quad(k, v, i, n);
        let w = _mm512_set1_epi32(wq);
        let a = ks.map(|o| _mm512_loadu_si512(x.add(o) as *const __m512i));
        let lo01 = _mm512_unpacklo_epi8(a[0], a[1]);
        let hi01 = _mm512_unpackhi_epi8(a[0], a[1]);
        let lo23 = _mm512_unpacklo_epi8(a[2], a[3]);
        let hi23 = _mm512_unpackhi_epi8(a[2], a[3]);
        acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_unpacklo_epi16(lo01, lo23), w);
        acc[1] = _mm512_dpbusd_epi32(acc[1], _mm512_unpackhi_epi16(lo01, lo23), w);
        acc[2] = _mm512_dpbusd_epi32(acc[2], _mm512_unpacklo_epi16(hi01, hi23), w);
        acc[3] = _mm512_dpbusd_epi32(acc[3], _mm512_unpackhi_epi16(hi01, hi23), w);
        i += 4;
    }
    // 4x4 transpose of 128-bit blocks: o[l] = [acc0.l, acc1.l, acc2.l, acc3.l]
    let t0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(acc[0], acc[1]);
    let t1 = _mm512_shuffle_i32x4::<0b01_00_01_00>(acc[2], acc[3]);
    let t2 = _mm512_shuffle_i32x4::<0b11_10_11_10>(acc[0], acc[1]);
    let t3 = _mm512_shuffle_i32x4::<0b11_10_11_10>(acc[2], acc[3]);
    let o = [
        _mm512_shuffle_i32x4::<0b10_00_10_00>(t0, t1),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(t0, t1),
        _mm512_shuffle_i32x4::<0b10_00_10_00>(t2, t3),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(t2, t3),
    ];
    let cz = _mm512_set1_epi32(corr);
    for (l, o) in o.iter().enumerate().take(width.div_ceil(16)) {
        let m = lanes(width - 16 * l);
        _mm512_mask_storeu_epi32(out.as_mut_ptr().add(16 * l), m, _mm512_sub_epi32(*o, cz));
    }
}

/// One row over a 16-column tile (`width` of them kept) at `x`, VNNI on 128-bit vectors.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile16_vnni(
    k: &[u16],
    v: &[i8],
    x: *const u8,
    n: usize,
    width: usize,
    corr: i32,
    out: &mut [i32],
) {
    // acc[q], dword e: column 4 q + e
    let mut acc = [_mm_setzero_si128(); 4];
    let mut i = 0;
    while i < k.len() {
        let (wq, ks) = quad(k, v, i, n);
        let w = _mm_set1_epi32(wq);
        let a = ks.map(|o| _mm_loadu_si128(x.add(o) as *const __m128i));
        let lo01 = _mm_unpacklo_epi8(a[0], a[1]);
        let hi01 = _mm_unpackhi_epi8(a[0], a[1]);
        let lo23 = _mm_unpacklo_epi8(a[2], a[3]);
        let hi23 = _mm_unpackhi_epi8(a[2], a[3]);
        acc[0] = _mm_dpbusd_epi32(acc[0], _mm_unpacklo_epi16(lo01, lo23), w);
        acc[1] = _mm_dpbusd_epi32(acc[1], _mm_unpackhi_epi16(lo01, lo23), w);
        acc[2] = _mm_dpbusd_epi32(acc[2], _mm_unpacklo_epi16(hi01, hi23), w);
        acc[3] = _mm_dpbusd_epi32(acc[3], _mm_unpackhi_epi16(hi01, hi23), w);
        i += 4;
    }
    let cz = _mm_set1_epi32(corr);
    for (q, a) in acc.iter().enumerate().take(width.div_ceil(4)) {
        let m = lanes((width - 4 * q).min(4)) as __mmask8;
        _mm_mask_storeu_epi32(out.as_mut_ptr().add(4 * q), m, _mm_sub_epi32(*a, cz));
    }
}

/// One row over a 16-column tile (`width` of them kept) at `x`, AVX2: pairs of non-zeros,
/// their rows of `x` widened to i16 and interleaved for `vpmaddwd`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile16_avx2(
    k: &[u16],
    v: &[i8],
    x: *const u8,
    n: usize,
    width: usize,
    corr: i32,
    out: &mut [i32],
) {
    // lo: columns 0-3 | 8-11, hi: columns 4-7 | 12-15
    let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let row =
        |k: u16| _mm256_cvtepu8_epi16(_mm_loadu_si128(x.add(k as usize * n) as *const __m128i));
    let mut i = 0;
    while i < k.len() {
        let (v1, a1) = match (v.get(i + 1), k.get(i + 1)) {
            (Some(&v1), Some(&k1)) => (v1, row(k1)),
            _ => (0, _mm256_setzero_si256()),
        };
        let pair = (v[i] as i16 as u16 as u32) | ((v1 as i16 as u16 as u32) << 16);
        let w = _mm256_set1_epi32(pair as i32);
        let a0 = row(k[i]);
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a0, a1), w));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a0, a1), w));
        i += 2;
    }
    let cz = _mm256_set1_epi32(corr);
    let o0 = _mm256_sub_epi32(_mm256_permute2x128_si256::<0x20>(lo, hi), cz);
    let o1 = _mm256_sub_epi32(_mm256_permute2x128_si256::<0x31>(lo, hi), cz);
    if width == 16 {
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, o0);
        _mm256_storeu_si256(out.as_mut_ptr().add(8) as *mut __m256i, o1);
    } else {
        let mut tmp = [0i32; 16];
        _mm256_storeu_si256(tmp.as_mut_ptr() as *mut __m256i, o0);
        _mm256_storeu_si256(tmp.as_mut_ptr().add(8) as *mut __m256i, o1);
        out[..width].copy_from_slice(&tmp[..width]);
    }
}

/// `out[k * rows + r] = x[r * cols + k]`: 16 x 16 blocks transposed in SSE2 registers (part of
/// the x86-64 baseline), the ragged edges one byte at a time.
///
/// # Panics
/// When `x` or `out` is shorter than `rows * cols`.
pub(crate) fn transpose_u8(x: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    assert!(x.len() >= rows * cols && out.len() >= rows * cols);
    let (r16, c16) = (rows / 16 * 16, cols / 16 * 16);
    for c0 in (0..c16).step_by(16) {
        for r0 in (0..r16).step_by(16) {
            // SAFETY: SSE2 is always available on x86-64; the block reads rows `r0..r0 + 16` of
            // `x` at columns `c0..c0 + 16` and writes rows `c0..c0 + 16` of `out` at columns
            // `r0..r0 + 16`, all inside `rows * cols` (`r0 + 16 <= rows`, `c0 + 16 <= cols`).
            unsafe {
                let src = x.as_ptr().add(r0 * cols + c0);
                block16(src, cols, out.as_mut_ptr().add(c0 * rows + r0), rows);
            }
        }
    }
    for r in r16..rows {
        for k in 0..cols {
            out[k * rows + r] = x[r * cols + k];
        }
    }
    for r in 0..r16 {
        for k in c16..cols {
            out[k * rows + r] = x[r * cols + k];
        }
    }
}

/// Transposes the 16 x 16 bytes at `src` (row stride `ls`) into `dst` (row stride `ld`): four
/// rounds of byte interleaves, each rotating the 8-bit (row, column) index left by one bit.
#[inline]
unsafe fn block16(src: *const u8, ls: usize, dst: *mut u8, ld: usize) {
    let mut a: [__m128i; 16] =
        std::array::from_fn(|i| _mm_loadu_si128(src.add(i * ls) as *const __m128i));
    for _ in 0..4 {
        a = std::array::from_fn(|i| {
            let (p, q) = (a[i / 2], a[i / 2 + 8]);
            if i % 2 == 0 {
                _mm_unpacklo_epi8(p, q)
            } else {
                _mm_unpackhi_epi8(p, q)
            }
        });
    }
    for (i, v) in a.iter().enumerate() {
        _mm_storeu_si128(dst.add(i * ld) as *mut __m128i, *v);
    }
}
