//! The batch-1 product that skips the inputs equal to the zero point: a walk over the columns
//! of a compressed-sparse-column copy of the weight (as the f32 `sparse::csc` kernels do).
//!
//! `acc[r] = sum_k w[r, k] * (x[k] - za)`: an input at the zero point contributes nothing, so
//! only the columns of the other inputs are read, each adding `w * (x - za)` into the rows it
//! stores (one scattered update per stored value). After a ReLU and a max-pool about half the
//! inputs sit at the zero point; the row-major kernels read every stored value whatever the
//! input, so on sparse enough weights the walk wins by the fraction of inputs it skips.
//!
//! The copy is made on the first product that chooses the walk (see `product`) and kept.

use std::sync::OnceLock;

use super::matrix::QCsrMatrix;
use crate::threads;

/// Row indices are kept in two bytes: weights with more rows never take the walk.
pub(crate) const MAX_ROWS: usize = 1 << 16;

/// The column-major copy: column `c` holds `values[col_ptr[c]..col_ptr[c + 1]]` at the rows
/// `row_idx` of the same range, increasing.
#[derive(Clone, Default)]
pub(crate) struct Csc {
    col_ptr: Vec<u32>,
    row_idx: Vec<u16>,
    values: Vec<i8>,
}

impl Csc {
    /// The copy of `w` (a counting-sort transpose); `w` has at most [`MAX_ROWS`] rows.
    fn new(w: &QCsrMatrix) -> Self {
        assert!(w.rows() <= MAX_ROWS);
        let (rp, ci, v) = (w.row_ptr(), w.cols_u16(), w.values());
        let mut col_ptr = vec![0u32; w.cols() + 1];
        for &c in ci {
            col_ptr[c as usize + 1] += 1;
        }
        for c in 0..w.cols() {
            col_ptr[c + 1] += col_ptr[c];
        }
        let mut next = col_ptr.clone();
        let (mut row_idx, mut values) = (vec![0u16; v.len()], vec![0i8; v.len()]);
        for r in 0..w.rows() {
            for i in rp[r] as usize..rp[r + 1] as usize {
                let slot = &mut next[ci[i] as usize];
                row_idx[*slot as usize] = r as u16;
                values[*slot as usize] = v[i];
                *slot += 1;
            }
        }
        Self {
            col_ptr,
            row_idx,
            values,
        }
    }

    /// Adds the columns `c0..c1` of the inputs other than `za` into `acc` (indexed by the
    /// two-byte rows, so the scattered updates need no bounds checks).
    ///
    /// The inputs are scanned 64 at a time into a bit mask of those other than `za` (eight at
    /// a time, [`live_bytes`]), whose set bits are then visited in order: no branch per input
    /// on whether it is skipped.
    fn walk(&self, x: &[u8], za: u8, c0: usize, c1: usize, acc: &mut [i32; MAX_ROWS]) {
        let (cp, ri, vals) = (&self.col_ptr, &self.row_idx, &self.values);
        for (b, chunk) in x[c0..c1].chunks(64).enumerate() {
            let mut live = 0u64;
            for (q, bytes) in chunk.chunks(8).enumerate() {
                live |= (live_bytes(bytes, za) as u64) << (8 * q);
            }
            while live != 0 {
                let c = c0 + 64 * b + live.trailing_zeros() as usize;
                live &= live - 1;
                let v = x[c] as i32 - za as i32;
                let (lo, hi) = (cp[c] as usize, cp[c + 1] as usize);
                for (&r, &w) in ri[lo..hi].iter().zip(&vals[lo..hi]) {
                    acc[r as usize] += w as i32 * v;
                }
            }
        }
    }
}

/// Bit `i` set when `bytes[i] != za` (`bytes` at most 8 long), eight at a time in a `u64`: a
/// byte of `word ^ za...za` is non-zero exactly when its low seven bits carry into the top bit
/// when added to `0x7f`, or its top bit is set.
#[inline(always)]
fn live_bytes(bytes: &[u8], za: u8) -> u8 {
    let mut b = [za; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let t = u64::from_le_bytes(b) ^ (za as u64 * 0x0101_0101_0101_0101);
    let high = (t | ((t & LOW) + LOW)) & !LOW;
    // gather the eight top bits into one byte
    ((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// The copy inside a [`QCsrMatrix`], made on first use: not part of its value, so left out of
/// comparisons and debug output.
#[derive(Clone, Default)]
pub(crate) struct LazyCsc(OnceLock<Csc>);

impl LazyCsc {
    /// The copy of `w` (which must be the matrix holding `self`).
    pub(crate) fn get(&self, w: &QCsrMatrix) -> &Csc {
        self.0.get_or_init(|| Csc::new(w))
    }
}

impl PartialEq for LazyCsc {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for LazyCsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

/// `acc[r] = sum_k w[r, k] * (x[k] - za)` by the column walk, for a matrix of at most
/// [`MAX_ROWS`] rows; with more than one thread, the columns are split by their stored values
/// and each part adds into rows of its own, summed at the end (integers: the same result).
pub(crate) fn spmv_walk(w: &QCsrMatrix, x: &[u8], za: u8, parallel: bool, acc: &mut [i32]) {
    let (rows, cols) = (w.rows(), w.cols());
    let csc = w.csc();
    let nt = if parallel {
        threads::num_threads().min(cols).max(1)
    } else {
        1
    };
    // column ranges of about equal stored values
    let total = csc.col_ptr[cols] as usize;
    let mut bounds = vec![0usize];
    for p in 1..nt {
        let target = (total * p / nt) as u32;
        let c = csc.col_ptr.partition_point(|&v| v < target).min(cols);
        bounds.push(c.max(bounds[p - 1]));
    }
    bounds.push(cols);
    let mut parts: Vec<Vec<i32>> = (0..nt).map(|_| Vec::new()).collect();
    crate::scratch::with(&crate::scratch::I32_B, |first| {
        parts[0] = std::mem::take(first);
        let jobs: Vec<_> = parts.iter_mut().enumerate().collect();
        threads::run_parts(jobs, |(p, buf)| {
            let a = crate::scratch::sized(buf, MAX_ROWS);
            a[..rows].fill(0);
            let a: &mut [i32; MAX_ROWS] = a.try_into().expect("MAX_ROWS long");
            csc.walk(x, za, bounds[p], bounds[p + 1], a)
        });
        acc[..rows].copy_from_slice(&parts[0][..rows]);
        for part in &parts[1..] {
            for (a, p) in acc[..rows].iter_mut().zip(part) {
                *a += p;
            }
        }
        *first = std::mem::take(&mut parts[0]);
    });
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::ops::linear;
    use super::super::product::Variant;
    use super::super::tests::{csr, random_i8};
    use super::*;
    use crate::int8::{QOutput, QuantParams};

    /// The walk against the definition, with inputs all at the zero point, none at it, and
    /// half at it, on one and two threads; and the linear entry point (whichever kernel it
    /// chooses) at every variant, u8 and f32 outputs.
    #[test]
    fn zero_point_walk_matches_the_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        for (rows, cols, density) in [
            (1, 1, 1.0),
            (7, 3, 0.5),
            (500, 800, 0.05),
            (37, 130, 0.2),
            (300, 1000, 0.01),
            (65, 64, 0.9),
        ] {
            let w = random_i8(&mut rng, rows, cols, density);
            let m = csr(&w, rows, cols, vec![0.01; rows]);
            let za: u8 = rng.random();
            for at_zp in [1.0, 0.0, 0.5, 0.95] {
                let x: Vec<u8> = (0..cols)
                    .map(|_| {
                        if rng.random_bool(at_zp) {
                            za
                        } else {
                            // anything but the zero point
                            za.wrapping_add(rng.random_range(1..=255))
                        }
                    })
                    .collect();
                let want: Vec<i32> = (0..rows)
                    .map(|r| {
                        (0..cols)
                            .map(|k| w[r * cols + k] as i32 * (x[k] as i32 - za as i32))
                            .sum()
                    })
                    .collect();
                for nt in [1, 2] {
                    for parallel in [false, true] {
                        let mut acc = vec![7i32; rows];
                        threads::with(nt, || spmv_walk(&m, &x, za, parallel, &mut acc));
                        assert_eq!(acc, want, "{rows}x{cols} zp {at_zp} {nt} threads");
                    }
                    let xq = QuantParams {
                        scale: 0.02,
                        zero_point: za,
                    };
                    let oq = QuantParams {
                        scale: 0.7,
                        zero_point: 30,
                    };
                    let bias: Vec<i32> = (0..rows).map(|_| rng.random_range(-900..900)).collect();
                    let mult = crate::int8::Requant::from_scale(0.02 * 0.01 / 0.7).unwrap();
                    let want_u: Vec<u8> = (want.iter().zip(&bias))
                        .map(|(a, b)| crate::int8::requant::requant_one(*a, *b, mult, 30, 30))
                        .collect();
                    for v in Variant::all() {
                        let mut y = vec![0u8; rows];
                        let o = QOutput::U8 {
                            out: &mut y,
                            params: oq,
                            bias: Some(&bias),
                            relu: true,
                        };
                        threads::with(nt, || linear(v, &m, 1, &x, xq, o)).unwrap();
                        assert_eq!(y, want_u, "{v:?} {rows}x{cols} zp {at_zp} {nt} threads");
                        let mut f = vec![0f32; rows];
                        let o = QOutput::F32 {
                            out: &mut f,
                            bias: None,
                        };
                        threads::with(nt, || linear(v, &m, 1, &x, xq, o)).unwrap();
                        let want_f: Vec<f32> =
                            want.iter().map(|a| *a as f32 * (0.02f32 * 0.01)).collect();
                        assert_eq!(f, want_f, "{v:?} f32");
                    }
                }
            }
        }
    }

    #[test]
    fn live_bytes_marks_the_other_values() {
        for za in [0u8, 1, 127, 128, 200, 255] {
            for pattern in 0..256u32 {
                let bytes: Vec<u8> = (0..8)
                    .map(|i| {
                        if pattern >> i & 1 == 1 {
                            za.wrapping_add(1 + (i * 37 % 255) as u8)
                        } else {
                            za
                        }
                    })
                    .collect();
                assert_eq!(live_bytes(&bytes, za) as u32, pattern, "{za} {bytes:?}");
                assert_eq!(live_bytes(&bytes[..3], za) as u32, pattern & 7);
            }
        }
    }
}
