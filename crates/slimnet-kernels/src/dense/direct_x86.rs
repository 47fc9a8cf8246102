//! Direct f32 convolution on AVX-512 and AVX2 for dilation 1, without im2col.
//!
//! The input is copied once into a zero-padded plane per channel (`[C][Hp][Wp]`). Seen as a
//! matrix whose rows are channels, that copy holds every kernel tap's im2col rows at once:
//! tap `(i, j)` of output pixel `(y, x)` reads padded position `(y + i) * Wp + x + j`, so over
//! the "padded output columns" `p = y * Wp + x` the tap is the copy shifted by `i * Wp + j`.
//! A register tile of 12 output channels x 32 padded columns therefore runs over every tap and
//! channel straight from the copy (one row stride, one offset per tap), and nothing is
//! unfolded. The `kw - 1` columns a padded row has beyond the output width are computed and
//! dropped when the tile is stored.
//!
//! With strides the padded plane is split into its stride phases ([`Phases`]), in which every
//! tap is again one offset over padded output columns, so the same tile runs and
//! `(kw - 1) / sx` columns per row are dropped.
//!
//! The AVX2 variant runs the same walk with tiles of 6 output channels x 16 padded columns (12
//! accumulators of the 16 ymm registers) and masked stores built from the same runs.
//!
//! Low-rank rewrites are full of the layers this suits: 3x3 convolutions with a few tens of
//! channels (Tucker-2 cores, channel SVD's first layer), where Winograd's transforms cost more
//! than they save, and `k x 1` ones (3x1 kernels with 8 or more output rows go to Winograd
//! along the rows instead, [`super::winograd_line`]), whose im2col copies are as large as their
//! input times `k`.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::im2col::Phases;
use crate::threads::{self, SendPtr};
use crate::{Activation, ConvGeometry};

/// Output channels per register tile: 24 accumulators, two input vectors and a broadcast fit
/// the 32 zmm registers. (`prof_case`, 8 -> 12 rows: 32 to 32 channels at 56x56 0.445 -> 0.418
/// ms, 30 to 30 0.39 -> 0.375, 64 to 19 0.538 -> 0.52-0.54, 16 to 64 0.449 -> 0.436-0.445.)
const MR: usize = 12;
/// Padded output columns per register tile (two zmm registers).
const NR: usize = 32;
/// Output channels per register tile of the AVX2 variant: 12 accumulators (6 rows of two ymm
/// registers), two input vectors and a broadcast fit the 16 ymm registers.
const MR_AVX2: usize = 6;
/// Padded output columns per register tile of the AVX2 variant (two ymm registers).
const NR_AVX2: usize = 16;
/// Inner steps (taps x channels) per pass over a column tile: the tile's rows of the padded
/// input (`NR` values each, 32 KiB at most) stay in L1 while every channel panel runs over them.
/// (Passes of 48 to 4096 steps measured within 5% of each other on `k x 1` and 3x3 layers.)
const KC: usize = 256;

/// Whether [`conv_direct`] applies and is expected to beat im2col: AVX-512 or AVX2, one group,
/// dilation 1, a kernel with more than one row (`1 x k` kernels shift every tap sideways, so
/// most loads straddle two cache lines; im2col measured faster), at least 8 input and output
/// channels (fewer make tiles too short for their stores), and at most 1 in 8 columns computed
/// and thrown away (`(kw - 1) / sx` of every `ow + (kw - 1) / sx`).
///
/// Measured with `prof_case k<C>x<O>x<H>x<KH>x<KW>` (ms, im2col -> direct): 64 to 31 at 56x56,
/// 3x1: 0.392 -> 0.312; 3x3: 64 to 19 at 56x56 0.742 -> 0.564, 30 to 30 0.479 -> 0.399, 16 to
/// 16 at 14x14 0.013 -> 0.011; but 1x3, 31 to 64 at 56x56, 0.293 -> 0.320; 5x5, 20 to 50 at
/// 12x12 (a third of the columns thrown away) 0.070 -> 0.088; 3 to 64 channels 0.092 -> 0.124.
/// Stride 2, split into phases instead of unfolded (a loop of prepared calls, fastest of six
/// interleaved runs, im2col -> direct): 16 to 32 channels at 28x28 0.033 -> 0.024 ms; 32 to 64
/// at 14x14 0.025 -> 0.024 (a 7x7 output: the prepared lanes layout, tried first, ties); 64 to
/// 128 at 56x56 1.17 -> 1.07. The AVX2 variant, the same way: 3x3, 32 to 32 at 56x56 1.13 ->
/// 0.94, 64 to 19 1.54 -> 1.19, 32 to 32 at 14x14 0.072 -> 0.065, 16 to 16 at 28x28 0.061 ->
/// 0.064 (a tie); stride 2, 64 to 128 at 56x56 2.62 -> 2.28, 128 to 256 at 28x28 2.44 -> 2.64
/// (within the noise of those runs). `SLIMNET_CONV=im2col` turns it off.
pub(crate) fn direct_fits(g: &ConvGeometry) -> bool {
    let dropped = (g.kernel_w - 1) / g.stride.1;
    direct_applies(g)
        && !super::conv::plain_im2col_forced()
        && g.kernel_h > 1
        && g.in_channels >= 8
        && g.out_channels >= 8
        && 8 * dropped <= g.out_w() + dropped
}

/// Whether [`conv_direct`] can run at all: AVX-512 or AVX2 with FMA, one group, dilation 1.
pub(crate) fn direct_applies(g: &ConvGeometry) -> bool {
    let f = crate::isa::features();
    (f.avx512 || f.avx2_fma) && g.groups == 1 && g.dilation == (1, 1)
}

/// Output channels per weight panel at the level the kernel runs at.
fn panel_rows() -> usize {
    if crate::isa::features().avx512 {
        MR
    } else {
        MR_AVX2
    }
}

/// Whether the direct kernel is chosen over Winograd: it fits and the layer has at most 32
/// input or output channels (24 with AVX2), where Winograd's transforms cost more than its
/// multiplications save (`prof_case`, Winograd -> direct: 3x3 at 56x56, 30 to 30 channels
/// 0.471 -> 0.399 ms, 32 to 32 0.530 -> 0.441, 16 to 64 0.652 -> 0.450; but 48 to 48 at 28x28
/// 0.214 -> 0.290). The AVX2 tile does half the work per step, so Winograd keeps 32-channel
/// layers there (a loop of prepared calls, fastest of eight alternating runs, Winograd ->
/// direct: 32 to 32 at 56x56 1.02 -> 1.17 ms, 32 to 64 1.27 -> 1.75, 32 to 32 at 28x28 0.27 ->
/// 0.31; 24 to 24 at 56x56 0.75 -> 0.71, 16 to 32 0.75 -> 0.65, 16 to 16 at 28x28 0.12 ->
/// 0.09).
pub(crate) fn direct_preferred(g: &ConvGeometry) -> bool {
    let most = if crate::isa::features().avx512 {
        32
    } else {
        24
    };
    direct_fits(g) && g.in_channels.min(g.out_channels) <= most
}

/// The OIHW weights of `g` in the layout [`conv_direct`] reads at the running level
/// ([`pack_weights`]).
/// Packing a small layer's weights took about a quarter of its call (32 to 32 channels at
/// 14x14), so prepared weights keep this form.
pub(crate) fn pack_direct(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (o, c, taps) = (g.out_channels, g.in_channels, g.kernel_h * g.kernel_w);
    let mr = panel_rows();
    let mut ap = vec![0.0; o.div_ceil(mr) * taps * c * mr];
    pack_weights(weight, (o, c, taps), mr, &mut ap);
    ap
}

/// One image of a convolution into `out` `[O, oh * ow]`, with the weights `ap` packed by
/// [`pack_direct`] and the bias and activation applied as each tile is stored; with threads,
/// column tiles are shared among them.
///
/// # Panics
/// When [`direct_applies`] is false or a buffer does not match the geometry (checked by the
/// safe caller).
pub(crate) fn conv_direct(
    g: &ConvGeometry,
    x: &[f32],
    ap: &[f32],
    epilogue: (Option<&[f32]>, Activation),
    out: &mut [f32],
    n_threads: usize,
) {
    assert!(direct_applies(g));
    let (bias, act) = epilogue;
    let (c, h, w) = (g.in_channels, g.in_h, g.in_w);
    let (o, kh, kw) = (g.out_channels, g.kernel_h, g.kernel_w);
    let (oh, ow) = (g.out_h(), g.out_w());
    let mr = panel_rows();
    let packed = o.div_ceil(mr) * kh * kw * c * mr;
    assert!(x.len() >= c * h * w && ap.len() >= packed && out.len() >= o * oh * ow);
    assert!(bias.is_none_or(|b| b.len() >= o));
    // dilation 1: each stride phase of the padded input is exactly the rows and columns its
    // taps read
    let geo = Phases::of(g);
    let wp = geo.wq;
    let plane_p = geo.channel_len();
    // padded output columns; the last tile may read up to NR + kw past the last plane
    let n = oh * wp;
    let slack = NR + kw;
    crate::scratch::with_f32(c * plane_p + slack, |xp| {
        geo.split(x, g, xp);
        let offsets = geo.tap_offsets(g);
        let job = Job {
            ap,
            xp,
            offsets: &offsets,
            c,
            o,
            plane_p,
            wp,
            ow,
            n,
            bias,
            act,
        };
        let ptr = SendPtr(out.as_mut_ptr());
        let wide = mr == MR;
        let nr = if wide { NR } else { NR_AVX2 };
        let tiles = n.div_ceil(nr);
        let parts = if n_threads > 1 {
            n_threads.min(tiles)
        } else {
            1
        };
        let per = tiles.div_ceil(parts) * nr;
        let run = |t: usize| {
            let (lo, hi) = (t * per, ((t + 1) * per).min(n));
            let p = ptr;
            // SAFETY: AVX-512F is available when `wide`, AVX2 and FMA otherwise (asserted
            // through `direct_applies`); `p` points at `out` (`O * oh * ow` values, asserted)
            // and each part stores only the output pixels of its own padded columns `lo..hi`.
            unsafe {
                if wide {
                    job.columns(lo, hi, p.0)
                } else {
                    job.columns_avx2(lo, hi, p.0)
                }
            };
        };
        if parts > 1 {
            threads::with_pool(|| (0..parts).into_par_iter().for_each(run));
        } else {
            run(0);
        }
    })
}

/// OIHW weights as panels of `mr` output channels, `[O / mr][tap][C][mr]` (zero past `O`),
/// so the inner dimension runs tap-major, the order the tile walks the padded input in.
fn pack_weights(weight: &[f32], oct: (usize, usize, usize), mr: usize, ap: &mut [f32]) {
    let (o, c, taps) = oct;
    let k = taps * c;
    ap.fill(0.0);
    for oc in 0..o {
        let (pan, r) = (oc / mr, oc % mr);
        for ci in 0..c {
            for t in 0..taps {
                ap[(pan * k + t * c + ci) * mr + r] = weight[(oc * c + ci) * taps + t];
            }
        }
    }
}

/// The operands of one convolution, shared by the threads.
struct Job<'a> {
    /// Packed weights ([`pack_weights`]).
    ap: &'a [f32],
    /// Padded input plus slack ([`pad_input`]).
    xp: &'a [f32],
    /// Offset of each tap in the padded plane.
    offsets: &'a [usize],
    c: usize,
    o: usize,
    plane_p: usize,
    wp: usize,
    ow: usize,
    /// Padded output columns, `oh * wp`.
    n: usize,
    /// Added to each output channel as it is stored (`O` values).
    bias: Option<&'a [f32]>,
    /// Applied after the bias.
    act: Activation,
}

impl Job<'_> {
    /// Padded output columns `lo..hi` (`lo` a multiple of [`NR`]) of every output channel.
    ///
    /// # Safety
    /// AVX-512F must be available and `out` must hold `O * oh * ow` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn columns(&self, lo: usize, hi: usize, out: *mut f32) {
        let (c, taps) = (self.c, self.offsets.len());
        let k = taps * c;
        let mpan = self.o.div_ceil(MR);
        // channels per pass, so a pass covers about KC inner steps
        let cc = (KC / taps).clamp(1, c);
        let mut tile_acc = vec![[_mm512_setzero_ps(); 2 * MR]; mpan];
        let mut j = lo;
        while j < hi {
            let w = NR.min(hi - j);
            let masks = [lane_mask(w), lane_mask(w.saturating_sub(16))];
            // each panel's accumulators live in registers for one pass over `cc` channels and
            // wait in `tile_acc` between passes
            tile_acc.fill([_mm512_setzero_ps(); 2 * MR]);
            let mut c0 = 0;
            while c0 < c {
                let cn = cc.min(c - c0);
                for (pan, t_acc) in tile_acc.iter_mut().enumerate() {
                    let a = self.ap.as_ptr().add(pan * k * MR);
                    let b = self.xp.as_ptr().add(c0 * self.plane_p + j);
                    let cs = (c0, cn, c);
                    let (po, off) = (self.plane_p, self.offsets);
                    match MR.min(self.o - pan * MR) {
                        12 => tile::<12>(t_acc, a, b, cs, po, off),
                        11 => tile::<11>(t_acc, a, b, cs, po, off),
                        10 => tile::<10>(t_acc, a, b, cs, po, off),
                        9 => tile::<9>(t_acc, a, b, cs, po, off),
                        8 => tile::<8>(t_acc, a, b, cs, po, off),
                        7 => tile::<7>(t_acc, a, b, cs, po, off),
                        6 => tile::<6>(t_acc, a, b, cs, po, off),
                        5 => tile::<5>(t_acc, a, b, cs, po, off),
                        4 => tile::<4>(t_acc, a, b, cs, po, off),
                        3 => tile::<3>(t_acc, a, b, cs, po, off),
                        2 => tile::<2>(t_acc, a, b, cs, po, off),
                        _ => tile::<1>(t_acc, a, b, cs, po, off),
                    }
                }
                c0 += cn;
            }
            let (runs, nr) = self.runs(j, masks);
            for (pan, t_acc) in tile_acc.iter().enumerate() {
                let rows = MR.min(self.o - pan * MR);
                self.store(t_acc, rows, pan * MR, &runs[..nr], out);
            }
            j += w;
        }
    }

    /// [`Job::columns`] on AVX2: tiles of [`MR_AVX2`] channels by [`NR_AVX2`] columns.
    ///
    /// # Safety
    /// AVX2 and FMA must be available and `out` must hold `O * oh * ow` values.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns_avx2(&self, lo: usize, hi: usize, out: *mut f32) {
        let (c, taps) = (self.c, self.offsets.len());
        let k = taps * c;
        let mpan = self.o.div_ceil(MR_AVX2);
        let cc = (KC / taps).clamp(1, c);
        let mut tile_acc = vec![[_mm256_setzero_ps(); 2 * MR_AVX2]; mpan];
        let mut j = lo;
        while j < hi {
            let w = NR_AVX2.min(hi - j);
            tile_acc.fill([_mm256_setzero_ps(); 2 * MR_AVX2]);
            let mut c0 = 0;
            while c0 < c {
                let cn = cc.min(c - c0);
                for (pan, t_acc) in tile_acc.iter_mut().enumerate() {
                    let a = self.ap.as_ptr().add(pan * k * MR_AVX2);
                    let b = self.xp.as_ptr().add(c0 * self.plane_p + j);
                    let cs = (c0, cn, c);
                    let (po, off) = (self.plane_p, self.offsets);
                    match MR_AVX2.min(self.o - pan * MR_AVX2) {
                        6 => tile_avx2::<6>(t_acc, a, b, cs, po, off),
                        5 => tile_avx2::<5>(t_acc, a, b, cs, po, off),
                        4 => tile_avx2::<4>(t_acc, a, b, cs, po, off),
                        3 => tile_avx2::<3>(t_acc, a, b, cs, po, off),
                        2 => tile_avx2::<2>(t_acc, a, b, cs, po, off),
                        _ => tile_avx2::<1>(t_acc, a, b, cs, po, off),
                    }
                }
                c0 += cn;
            }
            // one 16-lane "half", as the AVX-512 tile's first
            let (runs, nr) = self.runs(j, [lane_mask(w), 0]);
            for (pan, t_acc) in tile_acc.iter().enumerate() {
                let rows = MR_AVX2.min(self.o - pan * MR_AVX2);
                self.store_avx2(t_acc, rows, pan * MR_AVX2, &runs[..nr], out);
            }
            j += w;
        }
    }

    /// [`Job::store`] for an AVX2 tile: each run's lanes of the two registers of a row, with
    /// masked stores where a run covers part of a register.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store_avx2(
        &self,
        acc: &[__m256; 2 * MR_AVX2],
        rows: usize,
        o0: usize,
        runs: &[(usize, __mmask16, isize)],
        out: *mut f32,
    ) {
        let plane = (self.n / self.wp) * self.ow;
        let (lo, hi) = self.act.bounds();
        let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for r in 0..rows {
            let ch = out.wrapping_add((o0 + r) * plane);
            let b = _mm256_set1_ps(self.bias.map_or(0.0, |b| b[o0 + r]));
            let v = [acc[2 * r], acc[2 * r + 1]]
                .map(|a| _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(a, b), lo), hi));
            for &(_, m, at) in runs {
                // the run's lanes, first..last (its mask bits are contiguous)
                let first = m.trailing_zeros() as i32;
                let last = 16 - m.leading_zeros() as i32;
                for (q, v) in v.iter().enumerate() {
                    // this register's lanes of the run: from..to
                    let (from, to) = (first - 8 * q as i32, last - 8 * q as i32);
                    if to <= 0 || from >= 8 {
                        continue;
                    }
                    let p = ch.wrapping_offset(at + 8 * q as isize);
                    if from <= 0 && to >= 8 {
                        _mm256_storeu_ps(p, *v);
                    } else {
                        let mask = _mm256_and_si256(
                            _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(from - 1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(to), lane),
                        );
                        _mm256_maskstore_ps(p, mask, *v);
                    }
                }
            }
        }
    }

    /// The runs of lanes of the tile at padded column `j` that land on one output row, as
    /// (half, mask, offset of lane 0 in an output plane); at most [`MAX_RUNS`]. The offset is
    /// that of the vector's first lane, which for a run starting mid-vector lies before the
    /// run (masked-off lanes are not written).
    fn runs(
        &self,
        j: usize,
        masks: [__mmask16; 2],
    ) -> ([(usize, __mmask16, isize); MAX_RUNS], usize) {
        let (wp, ow) = (self.wp, self.ow);
        let mut runs = [(0, 0, 0); MAX_RUNS];
        let mut n = 0;
        if wp == ow {
            // nothing is thrown away (`kw == 1`): padded columns are output pixels
            for (h, &hm) in masks.iter().enumerate() {
                if hm != 0 {
                    runs[n] = (h, hm, (j + 16 * h) as isize);
                    n += 1;
                }
            }
            return (runs, n);
        }
        let (mut y, mut x) = (j / wp, j % wp);
        for (h, &hm) in masks.iter().enumerate() {
            let mut lane = 0;
            while lane < 16 {
                if x >= ow {
                    // the thrown-away columns at the end of a padded row
                    let skip = (wp - x).min(16 - lane);
                    lane += skip;
                    x += skip;
                } else {
                    let len = (ow - x).min(16 - lane);
                    let m = hm & (lane_mask(len) << lane);
                    if m != 0 {
                        let at = (y * ow + x) as isize - lane as isize;
                        runs[n] = (h, m, at);
                        n += 1;
                    }
                    lane += len;
                    x += len;
                }
                if x == wp {
                    (y, x) = (y + 1, 0);
                }
            }
        }
        (runs, n)
    }

    /// Writes the output pixels of one tile (channels `o0..o0 + rows`), along `runs`, with the
    /// bias added and the activation applied.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(
        &self,
        acc: &[__m512; 2 * MR],
        rows: usize,
        o0: usize,
        runs: &[(usize, __mmask16, isize)],
        out: *mut f32,
    ) {
        let plane = (self.n / self.wp) * self.ow;
        let (lo, hi) = self.act.bounds();
        let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        for r in 0..rows {
            let ch = out.wrapping_add((o0 + r) * plane);
            let b = _mm512_set1_ps(self.bias.map_or(0.0, |b| b[o0 + r]));
            for &(h, m, at) in runs {
                let v = _mm512_add_ps(acc[2 * r + h], b);
                let v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
                _mm512_mask_storeu_ps(ch.wrapping_offset(at), m, v);
            }
        }
    }
}

/// Most runs a 32-column tile can split into: with columns thrown away (`kw > 1`) every row
/// break skips at least one lane, so a half holds at most 8 runs and a tile 16.
const MAX_RUNS: usize = 32;

/// The low `w` bits set (all 16 from `w >= 16`).
fn lane_mask(w: usize) -> __mmask16 {
    if w >= 16 {
        0xFFFF
    } else {
        ((1u32 << w) - 1) as __mmask16
    }
}

/// One `R x 32` tile (`R <= MR`) over channels `cs.0..cs.0 + cs.1` (of `cs.2`) and every tap,
/// added to `acc` (`2 r + h`: row `r`, half `h`): `a` is the panel `[tap][C][MR]`, `b` the
/// padded input of channel `cs.0` at the tile's first column.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    acc: &mut [__m512; 2 * MR],
    a: *const f32,
    b: *const f32,
    cs: (usize, usize, usize),
    ldb: usize,
    offsets: &[usize],
) {
    let (c0, cn, c) = cs;
    let mut x = [[_mm512_setzero_ps(); 2]; R];
    for (r, x) in x.iter_mut().enumerate() {
        *x = [acc[2 * r], acc[2 * r + 1]];
    }
    for (t, &off) in offsets.iter().enumerate() {
        let bt = b.add(off);
        let at = a.add((t * c + c0) * MR);
        for ci in 0..cn {
            let b0 = _mm512_loadu_ps(bt.add(ci * ldb));
            let b1 = _mm512_loadu_ps(bt.add(ci * ldb + 16));
            let ar = at.add(ci * MR);
            for (r, x) in x.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ar.add(r));
                x[0] = _mm512_fmadd_ps(av, b0, x[0]);
                x[1] = _mm512_fmadd_ps(av, b1, x[1]);
            }
        }
    }
    for (r, x) in x.iter().enumerate() {
        acc[2 * r] = x[0];
        acc[2 * r + 1] = x[1];
    }
}

/// [`tile`] on AVX2: one `R x 16` tile (`R <= MR_AVX2`), `a` the panel `[tap][C][MR_AVX2]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(
    acc: &mut [__m256; 2 * MR_AVX2],
    a: *const f32,
    b: *const f32,
    cs: (usize, usize, usize),
    ldb: usize,
    offsets: &[usize],
) {
    let (c0, cn, c) = cs;
    let mut x = [[_mm256_setzero_ps(); 2]; R];
    for (r, x) in x.iter_mut().enumerate() {
        *x = [acc[2 * r], acc[2 * r + 1]];
    }
    for (t, &off) in offsets.iter().enumerate() {
        let bt = b.add(off);
        let at = a.add((t * c + c0) * MR_AVX2);
        for ci in 0..cn {
            let b0 = _mm256_loadu_ps(bt.add(ci * ldb));
            let b1 = _mm256_loadu_ps(bt.add(ci * ldb + 8));
            let ar = at.add(ci * MR_AVX2);
            for (r, x) in x.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ar.add(r));
                x[0] = _mm256_fmadd_ps(av, b0, x[0]);
                x[1] = _mm256_fmadd_ps(av, b1, x[1]);
            }
        }
    }
    for (r, x) in x.iter().enumerate() {
        acc[2 * r] = x[0];
        acc[2 * r + 1] = x[1];
    }
}
