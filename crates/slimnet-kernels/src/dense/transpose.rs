//! Out-of-place transposition of row-major f32 matrices, for kernels that run a product in the
//! orientation their fast path needs (batched linear layers, sparse products).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::error::{check_len2, Result};

/// Transposes a row-major `[rows, cols]` matrix into `dst` `[cols, rows]` (which is also the
/// matrix's column-major layout), in 8 x 8 register blocks where AVX2 is available.
///
/// ```
/// use slimnet_kernels::dense::transpose_into;
/// let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3
/// let mut t = [0.0; 6];
/// transpose_into(&a, 2, 3, &mut t)?;
/// assert_eq!(t, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
///
/// # Errors
/// When `src` or `dst` does not hold exactly `rows * cols` values.
pub fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) -> Result<()> {
    check_len2("transpose source", rows, cols, src.len())?;
    check_len2("transpose destination", rows, cols, dst.len())?;
    transpose(src, rows, cols, dst);
    Ok(())
}

/// Transposes a row-major `[rows, cols]` matrix into `dst` `[cols, rows]`.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    #[cfg(target_arch = "x86_64")]
    if crate::isa::features().avx2_fma {
        // SAFETY: AVX2 is available; both buffers hold `rows * cols` elements (asserted).
        let (rf, cf) = unsafe { transpose8_avx2(src, rows, cols, dst) };
        // ragged edges: rows rf.. (all columns), then columns cf.. of rows ..rf
        for i in rf..rows {
            for j in 0..cols {
                dst[j * rows + i] = src[i * cols + j];
            }
        }
        for i in 0..rf {
            for j in cf..cols {
                dst[j * rows + i] = src[i * cols + j];
            }
        }
        return;
    }
    transpose_scalar(src, rows, cols, dst)
}

/// Portable [`transpose`].
pub(crate) fn transpose_scalar(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 16;
    for i0 in (0..rows).step_by(T) {
        for j0 in (0..cols).step_by(T) {
            for i in i0..(i0 + T).min(rows) {
                for j in j0..(j0 + T).min(cols) {
                    dst[j * rows + i] = src[i * cols + j];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// Transposes the full 8x8 blocks of a row-major `[rows, cols]` matrix into `dst`
/// `[cols, rows]`; returns `(rows / 8 * 8, cols / 8 * 8)`, the part done (the caller does the
/// ragged edges).
///
/// Needs `src.len() >= rows * cols` and `dst.len() >= rows * cols`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn transpose8_avx2(
    src: &[f32],
    rows: usize,
    cols: usize,
    dst: &mut [f32],
) -> (usize, usize) {
    let (rf, cf) = (rows / 8 * 8, cols / 8 * 8);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for i0 in (0..rf).step_by(8) {
        for j0 in (0..cf).step_by(8) {
            let r: [__m256; 8] =
                std::array::from_fn(|q| _mm256_loadu_ps(sp.add((i0 + q) * cols + j0)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let o = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (q, v) in o.iter().enumerate() {
                _mm256_storeu_ps(dp.add((j0 + q) * rows + i0), *v);
            }
        }
    }
    (rf, cf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn transpose_matches_scalar() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        for (r, c) in [
            (1, 1),
            (8, 8),
            (64, 4096),
            (13, 29),
            (16, 7),
            (7, 16),
            (33, 65),
        ] {
            let x: Vec<f32> = (0..r * c).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut a = vec![0.0; r * c];
            let mut b = vec![1.0; r * c];
            transpose_scalar(&x, r, c, &mut a);
            transpose(&x, r, c, &mut b);
            assert_eq!(a, b, "{r}x{c}");
            assert_eq!(a[(c - 1) * r], x[c - 1]);
        }
    }
}
