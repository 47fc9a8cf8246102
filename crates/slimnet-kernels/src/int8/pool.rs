//! Max pooling of u8 codes over 2x2 windows with stride 2: a max of codes is the code of the
//! max, so an int8 network pools without converting.

use crate::error::{check_len, KernelError, Result};

/// `out[p, y, x] = max(x[p, 2y..2y+2, 2x..2x+2])` for each of `planes` planes of `h x w`
/// codes (row-major, contiguous); the output planes are `h / 2 x w / 2` (a last odd row or
/// column is dropped, as a 2x2 window with stride 2 and no padding does).
///
/// # Errors
/// When `x` is not `planes * h * w` long or `out` not `planes * (h / 2) * (w / 2)`.
///
/// ```
/// use slimnet_kernels::int8::max_pool_2x2_u8;
/// // one plane of 2 x 4 codes
/// let x = [1, 9, 3, 4, 5, 6, 7, 8];
/// let mut out = [0u8; 2];
/// max_pool_2x2_u8(&x, 1, 2, 4, &mut out)?;
/// assert_eq!(out, [9, 8]);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
pub fn max_pool_2x2_u8(x: &[u8], planes: usize, h: usize, w: usize, out: &mut [u8]) -> Result<()> {
    let (oh, ow) = (h / 2, w / 2);
    let size = |a: usize, b: usize, c: usize| {
        a.checked_mul(b)
            .and_then(|v| v.checked_mul(c))
            .ok_or(KernelError::Invalid {
                what: "max pool shape",
                reason: format!("{a} x {b} x {c} overflows"),
            })
    };
    check_len("max pool input", size(planes, h, w)?, x.len())?;
    check_len("max pool output", size(planes, oh, ow)?, out.len())?;
    if oh == 0 || ow == 0 {
        return Ok(());
    }
    for (plane, o) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for (oy, o) in o.chunks_exact_mut(ow).enumerate() {
            let r0 = &plane[2 * oy * w..][..2 * ow];
            let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
            row(r0, r1, o);
        }
    }
    Ok(())
}

/// One output row from its two input rows (`2 * o.len()` codes each).
#[inline]
fn row(r0: &[u8], r1: &[u8], o: &mut [u8]) {
    // SAFETY: SSE2 is part of the x86-64 baseline; `row_sse2` reads `2 * o.len()` codes of
    // each row (their lengths, checked by the slicing above) and writes `o`.
    #[cfg(target_arch = "x86_64")]
    let done = unsafe { row_sse2(r0, r1, o) };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for (j, d) in o.iter_mut().enumerate().skip(done) {
        *d = r0[2 * j]
            .max(r0[2 * j + 1])
            .max(r1[2 * j])
            .max(r1[2 * j + 1]);
    }
}

/// The outputs of a row 16, 8 and 4 at a time: the larger of the two rows' bytes, then of each
/// byte pair (the high byte of each 16-bit lane shifted onto the low one), packed. Returns how
/// many outputs it wrote (the rest, fewer than 4, are left to the caller).
///
/// # Safety
/// `r0` and `r1` must hold at least `2 * o.len()` codes.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn row_sse2(r0: &[u8], r1: &[u8], o: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    debug_assert!(r0.len() >= 2 * o.len() && r1.len() >= 2 * o.len());
    let (a, b, d) = (r0.as_ptr(), r1.as_ptr(), o.as_mut_ptr());
    let low = _mm_set1_epi16(0x00FF);
    // the max of each byte pair in the low byte of its 16-bit lane, the high byte cleared
    let pairs = |m: __m128i| _mm_and_si128(_mm_max_epu8(m, _mm_srli_epi16::<8>(m)), low);
    let n = o.len();
    let mut j = 0;
    while j + 16 <= n {
        let m0 = _mm_max_epu8(
            _mm_loadu_si128(a.add(2 * j) as *const __m128i),
            _mm_loadu_si128(b.add(2 * j) as *const __m128i),
        );
        let m1 = _mm_max_epu8(
            _mm_loadu_si128(a.add(2 * j + 16) as *const __m128i),
            _mm_loadu_si128(b.add(2 * j + 16) as *const __m128i),
        );
        let v = _mm_packus_epi16(pairs(m0), pairs(m1));
        _mm_storeu_si128(d.add(j) as *mut __m128i, v);
        j += 16;
    }
    if j + 8 <= n {
        let m = _mm_max_epu8(
            _mm_loadu_si128(a.add(2 * j) as *const __m128i),
            _mm_loadu_si128(b.add(2 * j) as *const __m128i),
        );
        let v = _mm_packus_epi16(pairs(m), _mm_setzero_si128());
        _mm_storel_epi64(d.add(j) as *mut __m128i, v);
        j += 8;
    }
    if j + 4 <= n {
        let m = _mm_max_epu8(
            _mm_loadl_epi64(a.add(2 * j) as *const __m128i),
            _mm_loadl_epi64(b.add(2 * j) as *const __m128i),
        );
        let v = _mm_packus_epi16(pairs(m), _mm_setzero_si128());
        let four = (_mm_cvtsi128_si32(v) as u32).to_le_bytes();
        std::ptr::copy_nonoverlapping(four.as_ptr(), d.add(j), 4);
        j += 4;
    }
    j
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Every plane shape from 1 x 1 to 9 x 41 (outputs per row 0 to 20: the 16-, 8- and 4-wide
    /// paths and the scalar tail, and odd sizes that drop a row or column), against the
    /// definition.
    #[test]
    fn matches_the_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for h in 1..10 {
            for w in 1..42 {
                let planes = 3;
                let x: Vec<u8> = (0..planes * h * w).map(|_| rng.random()).collect();
                let (oh, ow) = (h / 2, w / 2);
                let mut out = vec![0u8; planes * oh * ow];
                max_pool_2x2_u8(&x, planes, h, w, &mut out).unwrap();
                for p in 0..planes {
                    for y in 0..oh {
                        for c in 0..ow {
                            let at = |i: usize, j: usize| x[(p * h + 2 * y + i) * w + 2 * c + j];
                            let want = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                            assert_eq!(out[(p * oh + y) * ow + c], want, "{h}x{w} ({y}, {c})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_wrong_lengths() {
        let mut out = [0u8; 4];
        assert!(max_pool_2x2_u8(&[0; 15], 1, 4, 4, &mut out).is_err());
        assert!(max_pool_2x2_u8(&[0; 16], 1, 4, 4, &mut out[..3]).is_err());
        assert!(max_pool_2x2_u8(&[], usize::MAX, 2, 2, &mut out).is_err());
    }
}
