//! x86-64 requantization of i32 accumulators to u8 with one multiplier per row, bit-exact with
//! `requant_one` (the arithmetic is explained at [`RowConsts`]).
//!
//! Per vector of 16 (AVX-512) or 8 (AVX2) accumulators: two `vpmuldq` (even and odd lanes),
//! add the rounding constant, take the quotients' 32 bits out of the 64-bit products, shift
//! them. With a shift of 32 to 53 (real scales from 2^-23 to 1/2, the usual ones) the
//! accumulators need no clamp ([`RowConsts::fast`]) and the quotients are the products' high
//! dwords; otherwise they are clamped first and shifted into place. Four vectors are then
//! narrowed at once by saturating packs to i16 (adding the zero point with saturation) and to
//! u8 (clamping to `[0, 255]`), with a byte maximum for `lo`.

use std::arch::x86_64::*;

use super::requant::RowConsts;
use super::Requant;

/// The broadcast constants of one row, AVX-512 (also used by the fused epilogue of the direct
/// convolution).
pub(crate) struct Wide {
    lo_a: __m512i,
    hi_a: __m512i,
    m: __m512i,
    c: __m512i,
    s1: __m128i,
    s1c: __m128i,
    s2: __m128i,
    zp16: __m512i,
    lo8: __m512i,
}

impl Wide {
    /// The constants of a row with `k`, zero point `zp` and lower clamp `lo`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) fn new(k: &RowConsts, zp: i32, lo: i32) -> Self {
        Self {
            lo_a: _mm512_set1_epi32(k.lo_a),
            hi_a: _mm512_set1_epi32(k.hi_a),
            m: _mm512_set1_epi64(k.m as i64),
            c: _mm512_set1_epi64(k.c),
            s1: _mm_cvtsi32_si128(k.s1 as i32),
            s1c: _mm_cvtsi32_si128(32 - k.s1 as i32),
            s2: _mm_cvtsi32_si128(k.s2 as i32),
            zp16: _mm512_set1_epi16(zp as i16),
            lo8: _mm512_set1_epi8(lo as u8 as i8),
        }
    }

    /// The quotients of the 16 accumulators at `p` (lanes outside `mask` are not read); `FAST`
    /// as [`RowConsts::fast`] says.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn quotient<const FAST: bool>(&self, p: *const i32, mask: __mmask16) -> __m512i {
        let a = _mm512_maskz_loadu_epi32(mask, p);
        // the odd accumulators in the even lanes, by a load one further
        let odd = _mm512_maskz_loadu_epi32(mask >> 1, p.wrapping_add(1));
        self.quotient_of::<FAST>(a, odd)
    }

    /// The quotients of the 16 accumulators `a`; `odd` holds `a`'s odd lanes in its even ones
    /// (read only when `FAST`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) fn quotient_of<const FAST: bool>(&self, a: __m512i, odd: __m512i) -> __m512i {
        if FAST {
            let even = _mm512_add_epi64(_mm512_mul_epi32(a, self.m), self.c);
            let odd = _mm512_add_epi64(_mm512_mul_epi32(odd, self.m), self.c);
            // the high dwords: lane 2i of `even`'s 64-bit lane i, lane 2i + 1 of `odd`'s
            let idx = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
            return _mm512_sra_epi32(_mm512_permutex2var_epi32(even, idx, odd), self.s2);
        }
        let s = _mm512_min_epi32(_mm512_max_epi32(a, self.lo_a), self.hi_a);
        let even = _mm512_add_epi64(_mm512_mul_epi32(s, self.m), self.c);
        let odd = _mm512_mul_epi32(_mm512_srli_epi64::<32>(s), self.m);
        let odd = _mm512_add_epi64(odd, self.c);
        let r = _mm512_mask_blend_epi32(
            0xAAAA,
            _mm512_srl_epi64(even, self.s1),
            _mm512_sll_epi64(odd, self.s1c),
        );
        _mm512_sra_epi32(r, self.s2)
    }

    /// 64 output bytes from four vectors of quotients, in order.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) fn bytes64(&self, q: [__m512i; 4]) -> __m512i {
        let w01 = _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[1]), self.zp16);
        let w23 = _mm512_adds_epi16(_mm512_packs_epi32(q[2], q[3]), self.zp16);
        let b = _mm512_max_epu8(_mm512_packus_epi16(w01, w23), self.lo8);
        // 128-bit lane l holds dwords [q0 l, q1 l, q2 l, q3 l]
        let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_epi32(idx, b)
    }

    /// One row of `len` accumulators at `acc` into `len` bytes at `out`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn row<const FAST: bool>(&self, acc: *const i32, len: usize, out: *mut u8) {
        let mut i = 0;
        while i + 64 <= len {
            let q = std::array::from_fn(|v| self.quotient::<FAST>(acc.add(i + 16 * v), !0));
            _mm512_storeu_si512(out.add(i) as *mut __m512i, self.bytes64(q));
            i += 64;
        }
        if i < len {
            let n = len - i;
            let q = std::array::from_fn(|v| {
                let left = n.saturating_sub(16 * v).min(16);
                let p = acc.wrapping_add(i + 16 * v);
                self.quotient::<FAST>(p, ((1u32 << left) - 1) as __mmask16)
            });
            let m = if n >= 64 { !0 } else { (1u64 << n) - 1 };
            _mm512_mask_storeu_epi8(out.add(i) as *mut i8, m, self.bytes64(q));
        }
    }
}

/// `out[i] = requant_one(acc[i], ..)` for `i < len`, AVX-512.
///
/// # Safety
/// AVX-512 F/BW/VL must be available; `acc` and `out` must hold `len` elements.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn row_avx512(
    acc: *const i32,
    len: usize,
    k: &RowConsts,
    zp: i32,
    lo: i32,
    out: *mut u8,
) {
    let w = Wide::new(k, zp, lo);
    if k.fast {
        w.row::<true>(acc, len, out)
    } else {
        w.row::<false>(acc, len, out)
    }
}

/// The broadcast constants of one row, AVX2 (also used by the fused epilogue of the AVX2
/// direct convolution).
pub(crate) struct Narrow {
    lo_a: __m256i,
    hi_a: __m256i,
    m: __m256i,
    c: __m256i,
    s1: __m128i,
    s1c: __m128i,
    s2: __m128i,
    zp16: __m256i,
    lo8: __m256i,
}

impl Narrow {
    /// The constants of a row with `k`, zero point `zp` and lower clamp `lo`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn new(k: &RowConsts, zp: i32, lo: i32) -> Self {
        Self {
            lo_a: _mm256_set1_epi32(k.lo_a),
            hi_a: _mm256_set1_epi32(k.hi_a),
            m: _mm256_set1_epi64x(k.m as i64),
            c: _mm256_set1_epi64x(k.c),
            s1: _mm_cvtsi32_si128(k.s1 as i32),
            s1c: _mm_cvtsi32_si128(32 - k.s1 as i32),
            s2: _mm_cvtsi32_si128(k.s2 as i32),
            zp16: _mm256_set1_epi16(zp as i16),
            lo8: _mm256_set1_epi8(lo as u8 as i8),
        }
    }

    /// The quotients of 8 accumulators (already loaded); `FAST` as [`RowConsts::fast`] says.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn quotient<const FAST: bool>(&self, a: __m256i) -> __m256i {
        if FAST {
            let even = _mm256_add_epi64(_mm256_mul_epi32(a, self.m), self.c);
            let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(a), self.m);
            let odd = _mm256_add_epi64(odd, self.c);
            let hi = _mm256_blend_epi32::<0xAA>(_mm256_srli_epi64::<32>(even), odd);
            return _mm256_sra_epi32(hi, self.s2);
        }
        let s = _mm256_min_epi32(_mm256_max_epi32(a, self.lo_a), self.hi_a);
        let even = _mm256_add_epi64(_mm256_mul_epi32(s, self.m), self.c);
        let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(s), self.m);
        let odd = _mm256_add_epi64(odd, self.c);
        let r = _mm256_blend_epi32::<0xAA>(
            _mm256_srl_epi64(even, self.s1),
            _mm256_sll_epi64(odd, self.s1c),
        );
        _mm256_sra_epi32(r, self.s2)
    }

    /// 32 output bytes from four vectors of quotients, in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn bytes32(&self, q: [__m256i; 4]) -> __m256i {
        let w01 = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), self.zp16);
        let w23 = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), self.zp16);
        let b = _mm256_max_epu8(_mm256_packus_epi16(w01, w23), self.lo8);
        // 128-bit lane l holds dwords [q0 l, q1 l, q2 l, q3 l]
        _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// 16 output bytes from two vectors of quotients, in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn bytes16(&self, q: [__m256i; 2]) -> __m128i {
        let w = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), self.zp16);
        let b = _mm256_max_epu8(_mm256_packus_epi16(w, w), self.lo8);
        // 128-bit lane l holds dwords [q0 l, q1 l, q0 l, q1 l]
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5));
        _mm256_castsi256_si128(b)
    }

    /// One row of `len` accumulators at `acc` into `len` bytes at `out`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn row<const FAST: bool>(&self, acc: *const i32, len: usize, out: *mut u8) {
        let mut i = 0;
        while i + 32 <= len {
            let q = std::array::from_fn(|v| {
                self.quotient::<FAST>(_mm256_loadu_si256(acc.add(i + 8 * v) as *const __m256i))
            });
            _mm256_storeu_si256(out.add(i) as *mut __m256i, self.bytes32(q));
            i += 32;
        }
        if i < len {
            // up to 31 more, through masked loads and a buffer
            let n = len - i;
            let q = std::array::from_fn(|v| {
                let left = n.saturating_sub(8 * v).min(8) as i32;
                let mask = _mm256_cmpgt_epi32(
                    _mm256_set1_epi32(left),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                );
                self.quotient::<FAST>(_mm256_maskload_epi32(acc.wrapping_add(i + 8 * v), mask))
            });
            let mut tmp = [0u8; 32];
            _mm256_storeu_si256(tmp.as_mut_ptr() as *mut __m256i, self.bytes32(q));
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), out.add(i), n);
        }
    }
}

/// `out[i] = requant_one(acc[i], ..)` for `i < len`, AVX2.
///
/// # Safety
/// AVX2 must be available; `acc` and `out` must hold `len` elements.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn row_avx2(
    acc: *const i32,
    len: usize,
    k: &RowConsts,
    zp: i32,
    lo: i32,
    out: *mut u8,
) {
    let w = Narrow::new(k, zp, lo);
    if k.fast {
        w.row::<true>(acc, len, out)
    } else {
        w.row::<false>(acc, len, out)
    }
}

/// `out[c] = requant_one(acc[c], bias[c], mult[c], zp, lo)` for `c < n`, eight channels a step
/// in 64-bit lanes, AVX-512: per lane, the clamped form of [`RowConsts`] (`acc + bias` clamped
/// to `±2^max(shift - 21, 0)` within i32, times `M`, plus the rounding bit, shifted by `shift`),
/// reading each [`Requant`] as one 64-bit word (the multiplier in its low half).
///
/// # Safety
/// AVX-512 F/BW/VL must be available; `acc`, `mult` and (when given) `bias` must hold `n`
/// elements and `out` `n` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn channels_avx512(
    acc: *const i32,
    bias: Option<*const i32>,
    mult: *const Requant,
    n: usize,
    zp: i32,
    lo: i32,
    out: *mut u8,
) {
    let zero = _mm512_setzero_si512();
    let one = _mm512_set1_epi64(1);
    let c21 = _mm512_set1_epi64(21);
    let (imin, imax) = (
        _mm512_set1_epi64(i32::MIN as i64),
        _mm512_set1_epi64(i32::MAX as i64),
    );
    let (zpv, lov, hiv) = (
        _mm512_set1_epi64(zp as i64),
        _mm512_set1_epi64(lo as i64),
        _mm512_set1_epi64(255),
    );
    let mut i = 0;
    while i < n {
        let len = (n - i).min(8);
        let m = ((1u32 << len) - 1) as __mmask8;
        let a = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(m, acc.add(i)));
        let b = match bias {
            Some(b) => _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(m, b.add(i))),
            None => zero,
        };
        // [multiplier, shift] per lane: `Requant` is `repr(C)`
        let r = _mm512_maskz_loadu_epi64(m, mult.add(i) as *const i64);
        let sh = _mm512_srli_epi64::<32>(r);
        let t = _mm512_sllv_epi64(one, _mm512_max_epi64(_mm512_sub_epi64(sh, c21), zero));
        let lo_s = _mm512_max_epi64(_mm512_sub_epi64(zero, t), imin);
        let hi_s = _mm512_min_epi64(t, imax);
        let s = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(a, b), lo_s), hi_s);
        let round = _mm512_sllv_epi64(one, _mm512_sub_epi64(sh, one));
        let q = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(s, r), round), sh);
        let v = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(q, zpv), lov), hiv);
        // through a general register: a narrowing store straight to memory is microcoded on
        // AMD Zen 4
        let bytes = (_mm_cvtsi128_si64(_mm512_cvtepi64_epi8(v)) as u64).to_le_bytes();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.add(i), len);
        i += len;
    }
}
