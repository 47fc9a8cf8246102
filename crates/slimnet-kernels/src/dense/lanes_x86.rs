//! Convolutions with small output planes (ResNet's 7x7 stage) on AVX-512, with output
//! channels along the vector lanes.
//!
//! The im2col GEMM puts output pixels along the lanes in tiles of 32; a 7x7 plane is 49
//! pixels, so a third of those lanes would be padding. Here the product is turned around:
//! `out[o, p] = sum_k wt[k, o] col[k, p]`, with the weight prepared once as `[O / 64][K][64]`
//! ([`pack_lanes`]), so a register tile is 6 pixels (broadcast from the im2col rows) by 64
//! output channels (four zmm loads), 24 accumulators for 10 loads per step. The tile is
//! written out transposed into `[O, plane]`. The pixels' im2col values are read through an
//! index map ([`Cols`]): from the input split into its stride phases, so nothing is unfolded
//! (ResNet-small's 64-channel 7x7 layers spent as long unfolding as multiplying), or from an
//! im2col copy for dilated kernels.
//!
//! The AVX2 variant reads the same layout a quarter block at a time: 6 pixels by 16 channels
//! (two ymm loads), 12 accumulators of the 16 registers. On ResNet's 512-channel 7x7 layer at
//! the AVX2 level it replaced the im2col GEMM of the `gemm` crate.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::im2col::Phases;
use crate::aligned::AlignedF32;
use crate::threads::{self, SendPtr};
use crate::{Activation, ConvGeometry};

/// Output channels per block: four zmm registers.
pub(crate) const LANES: usize = 64;
/// Pixels per register tile: 24 accumulators, four weight registers and broadcasts fit the
/// 32 zmm registers (seven pixels, 28 accumulators, made the compiler spill).
const PR: usize = 6;
/// Steps of the inner dimension per pass: a block's weights for one pass (`KC * 64` values,
/// 16 KiB) and the im2col rows it reads stay in L1 while every pixel tile runs over them. Of
/// 32, 64, 96, 128 and the whole inner dimension, 64 and 96 measured best on ResNet's
/// 512-channel 7x7 layer.
const KC: usize = 64;
/// [`KC`] of the AVX2 variant: of 16, 32, 48, 64, 96, 128 and 256, 16 and 32 measured best on
/// ResNet's 512-channel 7x7 layer (about 2.5 ms against 2.7-2.9 for 64 and above).
const KC_AVX2: usize = 32;

/// Whether [`conv_lanes`] is expected to beat the im2col GEMM: AVX-512 or AVX2, outputs of at
/// most 64 pixels (where 32-pixel GEMM tiles waste lanes), and at least 64 output channels.
pub(crate) fn lanes_fit(out_channels: usize, plane: usize) -> bool {
    crate::isa::features().avx2_fma && plane <= 64 && out_channels >= LANES
}

/// An `[O, K]` weight as `[O / 64 (rounded up)][K][64]`, zero in the padding channels.
pub(crate) fn pack_lanes(weight: &[f32], o: usize, k: usize) -> AlignedF32 {
    let blocks = o.div_ceil(LANES);
    let mut out = AlignedF32::zeroed(blocks * k * LANES);
    for (ch, row) in weight.chunks_exact(k).take(o).enumerate() {
        let (b, l) = (ch / LANES, ch % LANES);
        for (kk, v) in row.iter().enumerate() {
            out[(b * k + kk) * LANES + l] = *v;
        }
    }
    out
}

/// Where [`conv_lanes`] reads the im2col value of inner step `k` and output pixel `p`:
/// `src[koff[k] + pix[p]]`. An im2col matrix `[K, plane]` has `koff[k] = k * plane` and
/// `pix[p] = p` ([`Cols::matrix`]); an input split into stride phases
/// ([`super::im2col::Phases`]) has `koff[c * taps + t]` = channel `c`'s phases plus tap `t`'s
/// offset and `pix[y * ow + x] = y * wq + x` ([`Cols::phases`]), so nothing is unfolded.
pub(crate) struct Cols {
    koff: Vec<usize>,
    pix: Vec<usize>,
}

impl Cols {
    /// A row-major `[k, plane]` matrix.
    pub(crate) fn matrix(k: usize, plane: usize) -> Self {
        Cols {
            koff: (0..k).map(|kk| kk * plane).collect(),
            pix: (0..plane).collect(),
        }
    }

    /// The im2col values of `g` (dilation 1) read from one image split by `ph`.
    pub(crate) fn phases(g: &ConvGeometry, ph: &Phases) -> Self {
        let taps = ph.tap_offsets(g);
        let cl = ph.channel_len();
        let koff = (0..g.in_channels)
            .flat_map(|c| taps.iter().map(move |t| c * cl + t))
            .collect();
        let (oh, ow) = (g.out_h(), g.out_w());
        let pix = (0..oh)
            .flat_map(|y| (0..ow).map(move |x| y * ph.wq + x))
            .collect();
        Cols { koff, pix }
    }
}

/// `out [O, plane] = W col`, with `wt` the [`pack_lanes`] form of `W` (`[O, K]`) and `col`
/// the `[K, plane]` values read from `src` through `cols`, with the bias added and the
/// activation applied as the tile is written out; output channel blocks are shared among
/// `n_threads`.
///
/// # Panics
/// Without AVX2 and FMA, or when a buffer is too short.
pub(crate) fn conv_lanes(
    wt: &[f32],
    o: usize,
    src: &[f32],
    cols: &Cols,
    epilogue: (Option<&[f32]>, Activation),
    out: &mut [f32],
    n_threads: usize,
) {
    let (bias, act) = epilogue;
    assert!(bias.is_none_or(|b| b.len() >= o));
    let f = crate::isa::features();
    assert!(f.avx2_fma);
    let wide = f.avx512;
    let (k, plane) = (cols.koff.len(), cols.pix.len());
    let blocks = o.div_ceil(LANES);
    let reach =
        cols.koff.iter().max().copied().unwrap_or(0) + cols.pix.iter().max().copied().unwrap_or(0);
    assert!(
        wt.len() >= blocks * k * LANES
            && (k == 0 || plane == 0 || reach < src.len())
            && out.len() >= o * plane
    );
    let ptr = SendPtr(out.as_mut_ptr());
    let run = |b: usize| {
        let mut acc = AlignedF32::zeroed(plane * LANES);
        let wb = &wt[b * k * LANES..(b + 1) * k * LANES];
        // SAFETY: AVX2 and FMA are available (asserted), AVX-512F when `wide`; `wt` holds
        // block `b`'s `k * 64` values, every `src[koff[k] + pix[p]]` lies in `src` (asserted)
        // and `acc` holds `plane * 64`.
        unsafe {
            if wide {
                block(wb, src, cols, &mut acc)
            } else {
                block_avx2(wb, src, cols, &mut acc)
            }
        };
        let p = ptr;
        for l in 0..LANES.min(o - b * LANES) {
            let ch = b * LANES + l;
            // SAFETY: `p` points at `out`, `o * plane` values (asserted); row `ch < o` lies
            // inside it and only this block writes the rows of its channels.
            let dst = unsafe { std::slice::from_raw_parts_mut(p.0.add(ch * plane), plane) };
            let b = bias.map_or(0.0, |b| b[ch]);
            for (px, d) in dst.iter_mut().enumerate() {
                *d = act.apply(acc[px * LANES + l] + b);
            }
        }
    };
    if n_threads > 1 && blocks > 1 {
        threads::with_pool(|| (0..blocks).into_par_iter().for_each(run));
    } else {
        (0..blocks).for_each(run);
    }
}

/// One 64-channel block: `acc [plane][64] = sum_k col[k, p] * wt[k, :]`.
#[target_feature(enable = "avx512f")]
unsafe fn block(wt: &[f32], src: &[f32], cols: &Cols, acc: &mut [f32]) {
    let (k, plane) = (cols.koff.len(), cols.pix.len());
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let first = k0 == 0;
        let w = wt.as_ptr().add(k0 * LANES);
        let ko = &cols.koff[k0..k0 + kc];
        let mut p0 = 0;
        while p0 < plane {
            let a = acc.as_mut_ptr().add(p0 * LANES);
            let px = &cols.pix[p0..];
            let src = src.as_ptr();
            match plane - p0 {
                1 => tile::<1>(w, src, ko, px, a, first),
                2 => tile::<2>(w, src, ko, px, a, first),
                3 => tile::<3>(w, src, ko, px, a, first),
                4 => tile::<4>(w, src, ko, px, a, first),
                5 => tile::<5>(w, src, ko, px, a, first),
                _ => tile::<PR>(w, src, ko, px, a, first),
            }
            p0 += PR;
        }
        k0 += kc;
    }
}

/// `R` pixels x 64 channels over the steps of `ko`: `acc[r][:] (=|+=) sum_k src[ko[k] + px[r]]
/// w[k][:]`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    w: *const f32,
    src: *const f32,
    ko: &[usize],
    px: &[usize],
    acc: *mut f32,
    first: bool,
) {
    let px: [*const f32; R] = std::array::from_fn(|r| src.wrapping_add(px[r]));
    let mut x = [[_mm512_setzero_ps(); 4]; R];
    if !first {
        for (r, x) in x.iter_mut().enumerate() {
            for (q, x) in x.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(acc.add(r * LANES + 16 * q));
            }
        }
    }
    for (kk, &off) in ko.iter().enumerate() {
        let wp = w.add(kk * LANES);
        let b = [
            _mm512_loadu_ps(wp),
            _mm512_loadu_ps(wp.add(16)),
            _mm512_loadu_ps(wp.add(32)),
            _mm512_loadu_ps(wp.add(48)),
        ];
        for (x, p) in x.iter_mut().zip(&px) {
            let a = _mm512_set1_ps(*p.add(off));
            for (x, b) in x.iter_mut().zip(&b) {
                *x = _mm512_fmadd_ps(a, *b, *x);
            }
        }
    }
    for (r, x) in x.iter().enumerate() {
        for (q, x) in x.iter().enumerate() {
            _mm512_storeu_ps(acc.add(r * LANES + 16 * q), *x);
        }
    }
}

/// [`block`] with AVX2: per pass and pixel tile, the four 16-channel quarters of the block.
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(wt: &[f32], src: &[f32], cols: &Cols, acc: &mut [f32]) {
    let (k, plane) = (cols.koff.len(), cols.pix.len());
    let mut k0 = 0;
    while k0 < k {
        let kc = KC_AVX2.min(k - k0);
        let first = k0 == 0;
        let ko = &cols.koff[k0..k0 + kc];
        let src = src.as_ptr();
        let mut p0 = 0;
        while p0 < plane {
            let px = &cols.pix[p0..];
            for q in 0..LANES / 16 {
                let w = wt.as_ptr().add(k0 * LANES + 16 * q);
                let a = acc.as_mut_ptr().add(p0 * LANES + 16 * q);
                match plane - p0 {
                    1 => tile_avx2::<1>(w, src, ko, px, a, first),
                    2 => tile_avx2::<2>(w, src, ko, px, a, first),
                    3 => tile_avx2::<3>(w, src, ko, px, a, first),
                    4 => tile_avx2::<4>(w, src, ko, px, a, first),
                    5 => tile_avx2::<5>(w, src, ko, px, a, first),
                    _ => tile_avx2::<PR>(w, src, ko, px, a, first),
                }
            }
            p0 += PR;
        }
        k0 += kc;
    }
}

/// `R` pixels x 16 channels over the steps of `ko`: `acc[r][0..16] (=|+=) sum_k
/// src[ko[k] + px[r]] w[k][0..16]`, `w` and `acc` with rows of [`LANES`] values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(
    w: *const f32,
    src: *const f32,
    ko: &[usize],
    px: &[usize],
    acc: *mut f32,
    first: bool,
) {
    let px: [*const f32; R] = std::array::from_fn(|r| src.wrapping_add(px[r]));
    let mut x = [[_mm256_setzero_ps(); 2]; R];
    if !first {
        for (r, x) in x.iter_mut().enumerate() {
            for (q, x) in x.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(acc.add(r * LANES + 8 * q));
            }
        }
    }
    for (kk, &off) in ko.iter().enumerate() {
        let wp = w.add(kk * LANES);
        let b = [_mm256_loadu_ps(wp), _mm256_loadu_ps(wp.add(8))];
        for (x, p) in x.iter_mut().zip(&px) {
            let a = _mm256_broadcast_ss(&*p.add(off));
            for (x, b) in x.iter_mut().zip(&b) {
                *x = _mm256_fmadd_ps(a, *b, *x);
            }
        }
    }
    for (r, x) in x.iter().enumerate() {
        for (q, x) in x.iter().enumerate() {
            _mm256_storeu_ps(acc.add(r * LANES + 8 * q), *x);
        }
    }
}
