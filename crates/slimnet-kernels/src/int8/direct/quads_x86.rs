//! The AVX2 convolution of narrow (7-bit) weights straight from the image in channel quads,
//! with the requantization fused into the tile's epilogue.
//!
//! The image is padded and interleaved into channel quads ([`Quads`]), so that for every kernel
//! tap the four channels of 8 consecutive output pixels are 32 consecutive bytes (one AVX2
//! register), at an offset of the tap, with no unfolding and no packing (for stride 2 the
//! image is split into its four phases, and a tap reads one of them). Output pixels are
//! numbered on the padded width (virtual column `j = y * wp + x`, `x < wp`): a run of 8 virtual
//! columns starts at an output pixel and may take the padded columns at the end of its row
//! (computed and dropped), but the next run starts at the next output pixel, so an 8x8 output
//! is 8 runs, not the 10 of its padded rows. A tile is two runs: a block of 4 output channels
//! x 16 columns is accumulated in registers as `x86::avx2_tile_narrow` does (`vpmaddubsw` on
//! the quads, exact on narrow weights, then `vpmaddwd` by ones) against the weights packed once
//! in the matching order ([`pack_weights`]), then each channel's 16 values are requantized to
//! bytes, stored 8 a run on the virtual columns of a staging row (no i32 accumulator goes
//! through memory, and no store depends on where the output rows break), and the output rows
//! are moved out of the staging rows at the end.

use std::arch::x86_64::*;

use super::fused_x86::Epilogue;
use super::Quads;
use crate::int8::gemm::{QMatrix, MR};
use crate::int8::requant_x86::Narrow;

/// The weights of `w` (a convolution with `taps` kernel taps) in the order of the quad product:
/// `[rows / MR][taps][C / 4][MR][4]`, element `(r, tap, q, t)` holding weight `(r, channel
/// 4q + t, tap)`; zero for rows and channels past the ends.
pub(crate) fn pack_weights(w: &QMatrix, taps: usize) -> Vec<i8> {
    let (rows, kk) = (w.rows(), w.cols());
    let c = kk / taps;
    let c4 = c.div_ceil(4);
    let block = taps * c4 * MR * 4;
    let mut out = vec![0i8; rows.div_ceil(MR) * block];
    for (r, src) in w.values().chunks_exact(kk.max(1)).enumerate().take(rows) {
        for (ch, taps_of_ch) in src.chunks_exact(taps).enumerate() {
            for (t, v) in taps_of_ch.iter().enumerate() {
                let at = (r / MR) * block + ((t * c4 + ch / 4) * MR + r % MR) * 4 + ch % 4;
                out[at] = *v;
            }
        }
    }
    out
}

/// Virtual columns of a run.
const RUN: usize = 8;

/// Where the runs of a convolution fall among its virtual columns.
#[derive(Clone, Copy)]
struct Runs {
    /// Padded width.
    wp: usize,
    /// Output width.
    ow: usize,
    /// Virtual columns, `(oh - 1) * wp + ow`.
    ncols: usize,
}

impl Runs {
    /// The first output pixel at virtual column `j` or after (`ncols` when none is left).
    fn next(&self, j: usize) -> usize {
        let j = if j % self.wp >= self.ow {
            (j / self.wp + 1) * self.wp
        } else {
            j
        };
        j.min(self.ncols)
    }
}

/// The raw accumulators of `MR` rows over the 16 columns of the tile of the runs at virtual
/// columns `j` (8 each): per tap (pixel offset `offs[t]`) and channel quad, 32 bytes of the
/// quad plane a run.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate(
    wb: *const i8,
    xb: *const u8,
    q: &Quads,
    offs: &[usize],
    j: [usize; 2],
) -> [[__m256i; 2]; MR] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    let mut wp = wb;
    for &o in offs {
        let mut p = [xb.add((j[0] + o) * 4), xb.add((j[1] + o) * 4)];
        for _ in 0..q.c4 {
            let a = p.map(|p| _mm256_loadu_si256(p as *const __m256i));
            for (r, acc) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_epi32((wp.add(r * 4) as *const i32).read_unaligned());
                for (x, a) in acc.iter_mut().zip(&a) {
                    *x = _mm256_add_epi32(*x, _mm256_madd_epi16(_mm256_maddubs_epi16(*a, w), ones));
                }
            }
            wp = wp.add(MR * 4);
            p = p.map(|p| p.add(q.pl * 4));
        }
    }
    acc
}

/// The requantization of one output channel, broadcast once per call.
struct Row {
    n: Narrow,
    /// `za * row_sum`, subtracted first unless `fast` folded it into the rounding constant.
    corr: __m256i,
    fast: bool,
}

/// Requantizes rows `rb..` (up to `r1`) of one tile (`rows[c - r0]` for channel `c`) and
/// stores each run's 8 bytes at its virtual column of the staged rows: channel `rb`'s starts
/// at `out`, the next ones `ld` apart.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_tile(
    acc: &[[__m256i; 2]; MR],
    rows: &[Row],
    (rb, r0): (usize, usize),
    j: [usize; 2],
    ld: usize,
    mut out: *mut u8,
) {
    for (acc, row) in acc.iter().zip(&rows[rb - r0..]) {
        let q = if row.fast {
            acc.map(|x| row.n.quotient::<true>(x))
        } else {
            acc.map(|x| row.n.quotient::<false>(_mm256_sub_epi32(x, row.corr)))
        };
        let bytes = row.n.bytes16(q);
        // a lone last run is both halves (the same bytes)
        _mm_storeh_pd(out.add(j[1]) as *mut f64, _mm_castsi128_pd(bytes));
        _mm_storel_epi64(out.add(j[0]) as *mut __m128i, bytes);
        out = out.add(ld);
    }
}

/// Output channels `r0..r1` (`r0` a multiple of `MR`) of the convolution of the quad image `xb`
/// (laid out as `q` says) with the weights `wq` ([`pack_weights`] of `w`), requantized as `epi`
/// says, into `out` (`[r1 - r0][oh * ow]`). `offs` are the taps' pixel offsets
/// ([`Quads::tap_offsets`]), `(oh, ow)` the output size.
///
/// # Safety
/// AVX2 must be available; `xb` must hold `q.len()` bytes filled by [`Quads::fill`] for the
/// geometry that gave `q`, `offs` and `(oh, ow)`, `wq` the packed weights of `w` for
/// `offs.len()` taps, `epi` be made for `w`, `r1 <= w.rows()` and `out` hold
/// `(r1 - r0) * oh * ow` bytes.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn conv_u8(
    wq: &[i8],
    xb: &[u8],
    q: &Quads,
    offs: &[usize],
    (oh, ow): (usize, usize),
    epi: &Epilogue<'_>,
    (r0, r1): (usize, usize),
    out: &mut [u8],
) {
    let plane = oh * ow;
    assert!(out.len() >= (r1 - r0) * plane && xb.len() >= q.len());
    let block = offs.len() * q.c4 * MR * 4;
    assert!(wq.len() >= r1.div_ceil(MR) * block);
    if plane == 0 {
        return;
    }
    // virtual columns: the last output row needs only its `ow` pixels
    let runs = Runs {
        wp: q.wp,
        ow,
        ncols: (oh - 1) * q.wp + ow,
    };
    let rows: Vec<Row> = (r0..r1)
        .map(|c| {
            let k = &epi.consts[c];
            Row {
                n: Narrow::new(k, epi.zp, epi.lo),
                corr: _mm256_set1_epi32(epi.corr[c]),
                fast: k.fast,
            }
        })
        .collect();
    // the rows staged on the virtual columns (a run's 8 bytes may pass the last one), then
    // moved to the output rows
    let ld = runs.ncols + RUN;
    crate::scratch::with(&crate::scratch::U8_D, |stage| {
        let stage = crate::scratch::sized(stage, (r1 - r0) * ld);
        let st = stage.as_mut_ptr();
        let mut j = 0;
        while j < runs.ncols {
            // two runs a tile; a lone last run is computed twice
            let next = runs.next(j + RUN);
            let pair = if next < runs.ncols { next } else { j };
            for rb in (r0..r1).step_by(MR) {
                let wb = wq.as_ptr().add(rb / MR * block);
                let acc = accumulate(wb, xb.as_ptr(), q, offs, [j, pair]);
                store_tile(&acc, &rows, (rb, r0), [j, pair], ld, st.add((rb - r0) * ld));
            }
            j = runs.next(pair + RUN);
        }
        for (src, dst) in stage.chunks_exact(ld).zip(out.chunks_exact_mut(plane)) {
            if q.wp == ow {
                dst.copy_from_slice(&src[..plane]);
                continue;
            }
            for (y, d) in dst.chunks_exact_mut(ow).enumerate() {
                super::copy_run(&src[y * q.wp..y * q.wp + ow], d);
            }
        }
    });
}
