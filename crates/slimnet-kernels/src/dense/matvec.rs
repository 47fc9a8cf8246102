//! Small-batch linear layers as dot products over contiguous weight rows.
//!
//! At batch 1 a linear layer is a matrix-vector product bound by reading the weight once; a
//! GEMM with a transposed, one-row operand wastes most of that bandwidth. Here every output is
//! `dot(W[o, :], x[b, :])` over contiguous rows, with an AVX2/FMA variant chosen at run time.

use rayon::prelude::*;

use crate::isa::{features, Isa};
use crate::threads;

/// Largest batch that takes the dot-product path.
pub(crate) const MATVEC_MAX_BATCH: usize = 4;

/// Portable dot product with eight independent accumulators.
fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads 8 floats starting at `i`, and the loops keep `i + 8 <= n`
    // (`i + 32 <= n` in the unrolled loop), so all reads stay inside both slices.
    unsafe {
        while i + 32 <= n {
            for (k, a_k) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *a_k = _mm256_fmadd_ps(x, y, *a_k);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), s);
        let mut total = lanes.iter().sum::<f32>();
        while i < n {
            total += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        total
    }
}

fn dot(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2 && features().avx2_fma {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        return unsafe { dot_avx2(a, b) };
    }
    let _ = isa;
    dot_scalar(a, b)
}

/// `y[b, o] = dot(x[b, :], w[o, :])` for `b < batch`, `y` row-major `[batch, out]`.
///
/// Callers check lengths: `x` is `batch * in`, `w` is `out * in`, `y` is `batch * out`.
pub(crate) fn small_batch_linear(
    isa: Isa,
    batch: usize,
    inf: usize,
    outf: usize,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
) {
    let row = |o: usize| -> [f32; MATVEC_MAX_BATCH] {
        let wr = &w[o * inf..(o + 1) * inf];
        let mut r = [0.0f32; MATVEC_MAX_BATCH];
        for (b, v) in r.iter_mut().enumerate().take(batch) {
            *v = dot(isa, wr, &x[b * inf..(b + 1) * inf]);
        }
        r
    };
    let nt = threads::num_threads();
    let rows: Vec<[f32; MATVEC_MAX_BATCH]> = if nt > 1 && outf * inf >= 1 << 16 {
        threads::with_pool(|| (0..outf).into_par_iter().map(row).collect())
    } else {
        (0..outf).map(row).collect()
    };
    for (o, r) in rows.iter().enumerate() {
        for b in 0..batch {
            y[b * outf + o] = r[b];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_matches_a_naive_product_on_ragged_shapes() {
        for (batch, inf, outf) in [
            (1, 1, 1),
            (1, 7, 3),
            (2, 33, 5),
            (3, 100, 17),
            (4, 784, 300),
            (1, 4096, 9),
        ] {
            let x: Vec<f32> = (0..batch * inf)
                .map(|i| ((i * 37) % 19) as f32 / 19.0 - 0.5)
                .collect();
            let w: Vec<f32> = (0..outf * inf)
                .map(|i| ((i * 13) % 23) as f32 / 23.0 - 0.5)
                .collect();
            for isa in Isa::all_supported() {
                let mut y = vec![f32::NAN; batch * outf];
                small_batch_linear(isa, batch, inf, outf, &x, &w, &mut y);
                for b in 0..batch {
                    for o in 0..outf {
                        let want: f64 = (0..inf)
                            .map(|k| x[b * inf + k] as f64 * w[o * inf + k] as f64)
                            .sum();
                        let got = y[b * outf + o] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{isa:?} {batch}x{inf}x{outf}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
