//! An AVX-512 f32 GEMM: `6 x K` panels of `A`, `K x 64` panels of `B` (both read in place
//! when their layout allows, packed otherwise), a `6 x 64` register tile (24 zmm
//! accumulators, four loads and six broadcasts per step), masked edges.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::gemm::MatRef;
use crate::threads::{self, SendPtr};
use crate::ConvGeometry;

const MR: usize = 6;
const NR: usize = 64;
/// zmm registers across a tile row.
const NV: usize = NR / 16;
const KC: usize = 128;

/// `c[0..R, 0..cols] (=|+=) alpha * A_panel * B_panel` for one `R x 16V` tile (`R <= MR`,
/// `V <= NV`; the last row panel of a matrix whose rows are not a multiple of [`MR`] runs with
/// its own `R`, and the last column tile with just the vectors its columns need, so few
/// multiply-adds are spent on padding).
///
/// `a` is `R x kc` with strides `(a_rs, a_cs)` (packed: `(1, MR)`), `b` is `kc` rows of `NR`
/// with row stride `ldb`; `start` chooses `beta * c` (or nothing when `beta == 0`) as the
/// starting value instead of `c`.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const V: usize>(
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    masks: [__mmask16; NV],
    alpha: f32,
    start: Option<f32>,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let rows: [*const f32; R] = std::array::from_fn(|r| a.add(r * a_rs));
    for p in 0..kc {
        let bp = b.add(p * ldb);
        let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(bp.add(16 * v)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*rows[r].add(p * a_cs));
            for (x, b) in acc.iter_mut().zip(&bv) {
                *x = _mm512_fmadd_ps(av, *b, *x);
            }
        }
    }
    let al = _mm512_set1_ps(alpha);
    for (r, acc) in acc.iter().enumerate() {
        for (h, x) in acc.iter().enumerate() {
            let cp = c.add(r * ldc + 16 * h);
            let m = masks[h];
            if m == 0 {
                continue;
            }
            let v = match start {
                Some(0.0) => _mm512_mul_ps(al, *x),
                Some(beta) => _mm512_fmadd_ps(
                    al,
                    *x,
                    _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, cp)),
                ),
                None => _mm512_fmadd_ps(al, *x, _mm512_maskz_loadu_ps(m, cp)),
            };
            _mm512_mask_storeu_ps(cp, m, v);
        }
    }
}

/// Packs rows `i0..i0+MR` (zero-padded past `a.rows()`), inner range `p0..p0+kc`, as
/// `[kc][MR]`.
fn pack_a(a: &MatRef<'_>, i0: usize, p0: usize, kc: usize, out: &mut [f32]) {
    for p in 0..kc {
        for r in 0..MR {
            let i = i0 + r;
            out[p * MR + r] = if i < a.rows() { a.at(i, p0 + p) } else { 0.0 };
        }
    }
}

/// Packs columns `j0..j0+NR` (zero-padded past `b.cols()`), inner range `p0..p0+kc`, as
/// `[kc][NR]`.
fn pack_b(b: &MatRef<'_>, j0: usize, p0: usize, kc: usize, out: &mut [f32]) {
    let w = NR.min(b.cols() - j0);
    for p in 0..kc {
        let dst = &mut out[p * NR..(p + 1) * NR];
        if let Some(row) = b.row_slice(p0 + p, j0, w) {
            dst[..w].copy_from_slice(row);
        } else {
            for (j, d) in dst[..w].iter_mut().enumerate() {
                *d = b.at(p0 + p, j0 + j);
            }
        }
        dst[w..].fill(0.0);
    }
}

/// Columns `j_lo..j_hi` of `C = alpha * A * B + beta * C` (`c` row-major with stride `ldc`,
/// pointing at column 0).
///
/// # Safety
/// AVX-512F must be available; `c` must address `a.rows()` rows of `ldc >= b.cols()` elements
/// and only columns `j_lo..j_hi` of it may be touched by this call.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn gemm_cols(
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    j_lo: usize,
    j_hi: usize,
) {
    let (m, k) = (a.rows(), a.cols());
    let mpan = m.div_ceil(MR);
    let mut ap = vec![0.0f32; mpan * MR * KC.min(k)];
    let mut bp = vec![0.0f32; NR * KC.min(k)];
    let mut p0 = 0;
    while p0 < k {
        let kc = KC.min(k - p0);
        // full panels of a row-major A are read in place; others are packed
        let in_place = a.cs() == 1;
        for ip in 0..mpan {
            if !in_place || (ip + 1) * MR > m {
                pack_a(
                    a,
                    ip * MR,
                    p0,
                    kc,
                    &mut ap[ip * MR * kc..(ip + 1) * MR * kc],
                );
            }
        }
        let start = (p0 == 0).then_some(beta);
        let mut j = j_lo;
        while j < j_hi {
            let w = NR.min(j_hi - j);
            // a full-width tile of a row-major B is read in place; others are packed
            // (in place: rows p0..p0+kc, columns j..j+NR all exist, so every read is inside
            // the view's slice)
            let (bptr, ldb) = if w == NR && b.cs() == 1 {
                (b.ptr_at(p0, j), b.rs())
            } else {
                pack_b(b, j, p0, kc, &mut bp);
                (bp.as_ptr(), NR)
            };
            let masks: [__mmask16; NV] = std::array::from_fn(|v| {
                let left = w.saturating_sub(16 * v);
                if left >= 16 {
                    0xFFFF
                } else {
                    ((1u32 << left) - 1) as __mmask16
                }
            });
            for ip in 0..mpan {
                let rows = MR.min(m - ip * MR);
                // (in place: rows ip*MR..ip*MR+MR and columns p0..p0+kc all exist)
                let (apan, a_rs, a_cs) = if in_place && (ip + 1) * MR <= m {
                    (a.ptr_at(ip * MR, p0), a.rs(), 1)
                } else {
                    (ap.as_ptr().add(ip * MR * kc), 1, MR)
                };
                let cp = c.add(ip * MR * ldc + j);
                macro_rules! tile_of {
                    ($r:literal) => {
                        match w.div_ceil(16) {
                            4 => tile::<$r, 4>(
                                kc, apan, a_rs, a_cs, bptr, ldb, cp, ldc, masks, alpha, start,
                            ),
                            3 => tile::<$r, 3>(
                                kc, apan, a_rs, a_cs, bptr, ldb, cp, ldc, masks, alpha, start,
                            ),
                            2 => tile::<$r, 2>(
                                kc, apan, a_rs, a_cs, bptr, ldb, cp, ldc, masks, alpha, start,
                            ),
                            _ => tile::<$r, 1>(
                                kc, apan, a_rs, a_cs, bptr, ldb, cp, ldc, masks, alpha, start,
                            ),
                        }
                    };
                }
                match rows {
                    6 => tile_of!(6),
                    5 => tile_of!(5),
                    4 => tile_of!(4),
                    3 => tile_of!(3),
                    2 => tile_of!(2),
                    _ => tile_of!(1),
                }
            }
            j += w;
        }
        p0 += kc;
    }
}

/// `C = alpha * A * B + beta * C` with the AVX-512 kernel, columns split across `n_threads`.
///
/// # Safety
/// AVX-512F must be available; `c.len() == a.rows() * b.cols()` and `a.cols() == b.rows()`
/// (checked by the safe caller).
pub(crate) unsafe fn sgemm_avx512(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    n_threads: usize,
) {
    let n = b.cols();
    let ptr = SendPtr(c.as_mut_ptr());
    let tiles = n.div_ceil(NR);
    let parts = if n_threads > 1 {
        n_threads.min(tiles)
    } else {
        1
    };
    if parts <= 1 {
        gemm_cols(alpha, &a, &b, beta, ptr.0, n, 0, n);
        return;
    }
    let per = tiles.div_ceil(parts) * NR;
    threads::with_pool(|| {
        (0..parts).into_par_iter().for_each(|t| {
            let (lo, hi) = (t * per, ((t + 1) * per).min(n));
            if lo < hi {
                let p = ptr;
                // SAFETY: AVX-512F is available (caller); each task writes its own columns.
                unsafe { gemm_cols(alpha, &a, &b, beta, p.0, n, lo, hi) };
            }
        })
    });
}

/// Output columns per block of [`conv_blocked_avx512`]: the block's im2col panel
/// (`C * kh * kw` rows) then stays in L2.
const CONV_BLOCK_COLS: usize = 256;

/// Whether [`conv_blocked_avx512`] applies: AVX-512, the own GEMM backend, one group, a
/// spatial kernel and a plane worth splitting. Layers with fewer than 8 output channels too:
/// their whole-image im2col panel is the largest of all relative to the output (a style
/// network's last layer, 16 to 3 channels 9x9 at 256x256, unfolds 340 MB), and blocks of rows
/// measured faster at every size tried (`16 -> 3` 3x3 at 64x64 0.21 -> 0.17 ms, at 256x256
/// 10.7 -> 2.2 ms; `8 -> 4` at 128x128 0.59 -> 0.34 ms; the 9x9 layer 158 -> 23 ms).
pub(crate) fn conv_blocked_fits(g: &ConvGeometry) -> bool {
    crate::isa::features().avx512
        && super::gemm::gemm_backend() == super::gemm::Backend::Own
        && g.groups == 1
        && g.out_h() * g.out_w() >= 2 * CONV_BLOCK_COLS
}

/// One image of a convolution (no bias or activation): blocks of whole output rows are unfolded
/// (`im2col_rows`) into an L2-sized panel and multiplied straight into their columns of `out`
/// `[O, oh * ow]`; with threads, blocks run in parallel (each unfolds its own panel).
///
/// # Panics
/// When the buffers do not match the geometry (checked by the safe caller).
pub(crate) fn conv_blocked_avx512(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    out: &mut [f32],
    n_threads: usize,
) {
    assert!(crate::isa::features().avx512);
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = oh * ow;
    let kk = g.in_channels * g.kernel_h * g.kernel_w;
    assert!(out.len() >= g.out_channels * plane && weight.len() >= g.out_channels * kk);
    let a = MatRef::row_major(&weight[..g.out_channels * kk], g.out_channels, kk)
        .expect("weight length checked");
    let rpb = (CONV_BLOCK_COLS / ow).max(1);
    let blocks: Vec<(usize, usize)> = (0..oh)
        .step_by(rpb)
        .map(|y0| (y0, (y0 + rpb).min(oh)))
        .collect();
    let ptr = SendPtr(out.as_mut_ptr());
    let run = |&(y0, y1): &(usize, usize)| {
        let nb = (y1 - y0) * ow;
        crate::scratch::with(&crate::scratch::F32_B, |col| {
            let col = crate::scratch::sized_aligned(col, kk * nb);
            super::im2col::im2col_rows(g, x, y0, y1, col);
            let b = MatRef::row_major(col, kk, nb).expect("panel length");
            let p = ptr;
            // SAFETY: AVX-512F is available (asserted); `p` points at `out`, which holds
            // `O * plane` elements; this block writes only its columns `y0 * ow..y1 * ow` of
            // every row (row stride `plane`), disjoint from other blocks.
            unsafe { gemm_cols(1.0, &a, &b, 0.0, p.0.add(y0 * ow), plane, 0, nb) };
        })
    };
    if n_threads > 1 && blocks.len() > 1 {
        threads::with_pool(|| blocks.par_iter().for_each(run));
    } else {
        blocks.iter().for_each(run);
    }
}
