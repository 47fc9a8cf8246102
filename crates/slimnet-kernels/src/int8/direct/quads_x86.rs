//! The convolution straight from the image in channel quads, with the requantization fused
//! into the tile's epilogue, on AVX2 ([`conv_u8`]) and AVX-512 ([`conv_u8_zmm`]) registers, with
//! one of three products ([`Packed`]): `vpmaddubsw` on 7-bit weights, VNNI on any weights, and
//! the exact product of any weights on i16 pairs for the levels without VNNI.
//!
//! The image is padded and interleaved into channel quads ([`Quads`]), so that for every kernel
//! tap the four channels of 8 (AVX2) or 16 (AVX-512) consecutive output pixels are one register
//! at an offset of the tap, with no unfolding and no packing (for stride 2 the image is split
//! into its four phases, and a tap reads one of them). Output pixels are numbered on the padded
//! width (virtual column `j = y * wp + x`, `x < wp`): a run of a register's virtual columns
//! starts at an output pixel and may take the padded columns at the end of its row (computed
//! and dropped), but the next run starts at the next output pixel, so an 8x8 output is 8 runs
//! of 8, not the 10 of its padded rows. A tile is two AVX2 runs or four AVX-512 runs: a block
//! of 4 output channels x the tile's columns is accumulated in registers against the weights
//! packed once in the matching order ([`pack_weights`], [`pack_pairs`]), then each channel's
//! values are requantized to bytes, stored a run at a time on the virtual columns of a staging
//! row (no i32 accumulator goes through memory, and no store depends on where the output rows
//! break), and the output rows are moved out of the staging rows at the end.
//!
//! The exact product splits each register of quads into its even and its odd bytes (channels
//! `4q` and `4q + 2`, `4q + 1` and `4q + 3`, zero-extended to i16: an `and` and a shift, shared
//! by the tile's four rows) and multiplies each with the matching pair of i16 weights by
//! `vpmaddwd`: two products and two adds a row where the narrow product takes two products and
//! one add, and no saturation.

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

/// The weights of [`pack_weights`] as i16 pairs for the exact product: each quad
/// `[w0, w1, w2, w3]` becomes `[w0, w2, w1, w3]`, the pair that meets the quads' even bytes,
/// then the pair that meets their odd bytes.
pub(crate) fn pack_pairs(w: &QMatrix, taps: usize) -> Vec<i16> {
    pack_weights(w, taps)
        .chunks_exact(4)
        .flat_map(|q| [q[0], q[2], q[1], q[3]].map(i16::from))
        .collect()
}

/// The packed weights of a quad product, which also say how it multiplies.
#[derive(Clone, Copy)]
pub(crate) enum Packed<'a> {
    /// Narrow (7-bit) weights in [`pack_weights`]'s order: `vpmaddubsw` on the quads (exact on
    /// narrow weights), then `vpmaddwd` by ones, as `x86::avx2_tile_narrow` does.
    Narrow(&'a [i8]),
    /// Any weights in [`pack_weights`]'s order: VNNI's `vpdpbusd` (AVX-512 only).
    Vnni(&'a [i8]),
    /// Any weights as [`pack_pairs`] gives them: `vpmaddwd` on the quads' even and odd bytes.
    Pairs(&'a [i16]),
}

impl Packed<'_> {
    /// The weights' start and bytes per row and channel quad.
    fn base(&self) -> (*const u8, usize) {
        match self {
            Packed::Narrow(w) | Packed::Vnni(w) => (w.as_ptr() as *const u8, 4),
            Packed::Pairs(w) => (w.as_ptr() as *const u8, 8),
        }
    }

    /// Bytes held.
    fn len(&self) -> usize {
        match self {
            Packed::Narrow(w) | Packed::Vnni(w) => w.len(),
            Packed::Pairs(w) => 2 * w.len(),
        }
    }
}

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
    /// The runs of `oh` output rows of `ow` pixels on virtual rows `wp` long.
    fn new((wp, oh, ow): (usize, usize, usize)) -> Self {
        // the last output row needs only its `ow` pixels
        let ncols = if oh * ow == 0 { 0 } else { (oh - 1) * wp + ow };
        Self { wp, ow, ncols }
    }

    /// The starts of the runs of `len` virtual columns that cover every output pixel, in
    /// order: each at an output pixel, the next `len` columns later or, when that is a padded
    /// column, at the next row's first pixel.
    fn starts(&self, len: usize) -> impl Iterator<Item = usize> + '_ {
        // `x` is `j`'s column in its virtual row, kept without divisions
        let (mut j, mut x) = (0, 0);
        std::iter::from_fn(move || {
            if j >= self.ncols {
                return None;
            }
            let start = j;
            j += len;
            x += len;
            while x >= self.wp {
                x -= self.wp;
            }
            if x >= self.ow {
                j += self.wp - x;
                x = 0;
            }
            Some(start)
        })
    }

    /// [`starts`](Self::starts) grouped `N` to a tile (a last tile short of runs repeats its
    /// last one).
    fn tiles<const N: usize>(&self, len: usize) -> Vec<[usize; N]> {
        let starts: Vec<usize> = self.starts(len).collect();
        starts
            .chunks(N)
            .map(|c| std::array::from_fn(|i| c[i.min(c.len() - 1)]))
            .collect()
    }
}

/// The virtual columns the AVX2 (`zmm` false) or AVX-512 product computes for an output of
/// `(oh, ow)` pixels on virtual rows `wp` long, dropped ones included: whole tiles of runs.
pub(crate) fn tile_columns(shape: (usize, usize, usize), zmm: bool) -> usize {
    let (len, n) = if zmm { (RUN_ZMM, 4) } else { (RUN, 2) };
    Runs::new(shape).starts(len).count().div_ceil(n) * n * len
}

/// The product of output channels `r0..r1` over a quad image whose output has `(oh, ow)`
/// pixels on virtual rows `wp` long, into `out` (`[r1 - r0][oh * ow]`): `tile(runs, rb, row, ld)`
/// computes channels `rb..rb + MR` (up to `r1`) over the runs of `len` virtual columns starting
/// at `runs` and stores each channel's bytes at the runs' virtual columns of its staging row
/// (channel `rb`'s at `row`, the next ones `ld = ncols + len` apart); the output rows are then
/// moved out of the staging rows.
fn drive<const N: usize>(
    (wp, oh, ow): (usize, usize, usize),
    len: usize,
    (r0, r1): (usize, usize),
    out: &mut [u8],
    mut tile: impl FnMut([usize; N], usize, *mut u8, usize),
) {
    let plane = oh * ow;
    assert!(out.len() >= (r1 - r0) * plane);
    if plane == 0 {
        return;
    }
    let runs = Runs::new((wp, oh, ow));
    // a run's bytes may pass the last virtual column
    let ld = runs.ncols + len;
    crate::scratch::with(&crate::scratch::U8_D, |stage| {
        let stage = crate::scratch::sized(stage, (r1 - r0) * ld);
        let st = stage.as_mut_ptr();
        for t in runs.tiles::<N>(len) {
            for rb in (r0..r1).step_by(MR) {
                tile(t, rb, st.wrapping_add((rb - r0) * ld), ld);
            }
        }
        for (src, dst) in stage.chunks_exact(ld).zip(out.chunks_exact_mut(plane)) {
            if wp == ow {
                dst.copy_from_slice(&src[..plane]);
                continue;
            }
            for (y, d) in dst.chunks_exact_mut(ow).enumerate() {
                super::copy_run(&src[y * wp..y * wp + ow], d);
            }
        }
    });
}

/// Runs of 8 virtual columns (one AVX2 register of quads) of the AVX2 product.
const RUN: usize = 8;

/// Defines `$name::<PAIRS>(wb, xb, q, offs, j)`: the raw accumulators of `MR` rows over the
/// tile of the `$runs` runs at virtual columns `j` (one register each): per tap (pixel offset
/// `offs[t]`) and channel quad, a register of the quad plane a run against the block's weights
/// at `wb`, narrow ([`Packed::Narrow`]: `vpmaddubsw`, then `vpmaddwd` by ones) or i16 pairs
/// (`PAIRS`, [`Packed::Pairs`]: `vpmaddwd` on the quads' even and odd bytes). One body for the
/// AVX2 and the AVX-512 registers, whose intrinsics differ only in their names.
macro_rules! quad_accumulate {
    (
        $(#[$doc:meta])* $name:ident, $features:literal, $reg:ty, $runs:literal,
        $load:ident, $set1_32:ident, $set1_16:ident, $zero:ident,
        $and:ident, $srli16:ident, $madd:ident, $maddubs:ident, $add:ident
    ) => {
        $(#[$doc])*
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $name<const PAIRS: bool>(
            wb: *const u8,
            xb: *const u8,
            q: &Quads,
            offs: &[usize],
            j: [usize; $runs],
        ) -> [[$reg; $runs]; MR] {
            let ones = $set1_16(1);
            let even = $set1_16(0xff);
            let step = if PAIRS { 8 } else { 4 };
            let mut acc = [[$zero(); $runs]; MR];
            let mut wp = wb;
            for &o in offs {
                let mut p = j.map(|j| xb.add((j + o) * 4));
                for _ in 0..q.c4 {
                    let a = p.map(|p| $load(p as *const _));
                    let w32 = |at: usize| $set1_32((wp.add(at) as *const i32).read_unaligned());
                    if PAIRS {
                        let lo = a.map(|a| $and(a, even));
                        let hi = a.map(|a| $srli16::<8>(a));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let (wl, wh) = (w32(r * 8), w32(r * 8 + 4));
                            for ((x, lo), hi) in acc.iter_mut().zip(&lo).zip(&hi) {
                                let prod = $add($madd(*lo, wl), $madd(*hi, wh));
                                *x = $add(*x, prod);
                            }
                        }
                    } else {
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let w = w32(r * 4);
                            for (x, a) in acc.iter_mut().zip(&a) {
                                *x = $add(*x, $madd($maddubs(*a, w), ones));
                            }
                        }
                    }
                    wp = wp.add(MR * step);
                    p = p.map(|p| p.add(q.pl * 4));
                }
            }
            acc
        }
    };
}

quad_accumulate!(
    /// The accumulators of a tile of two runs of 8 columns on AVX2 registers.
    accumulate, "avx2,fma", __m256i, 2,
    _mm256_loadu_si256, _mm256_set1_epi32, _mm256_set1_epi16, _mm256_setzero_si256,
    _mm256_and_si256, _mm256_srli_epi16, _mm256_madd_epi16, _mm256_maddubs_epi16,
    _mm256_add_epi32
);

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
/// (laid out as `q` says) with the weights `w` (packed for `offs.len()` taps), requantized as
/// `epi` says, into `out` (`[r1 - r0][oh * ow]`), AVX2. `offs` are the taps' pixel offsets
/// ([`Quads::tap_offsets`]), `(oh, ow)` the output size.
///
/// # Safety
/// AVX2 must be available, `w` be [`Packed::Narrow`] packed from narrow weights or
/// [`Packed::Pairs`]; `xb` must hold `q.len()` bytes filled by [`Quads::fill`] for the geometry
/// that gave `q`, `offs` and `(oh, ow)`, `w` hold the packed weights of at least `r1` rows for
/// `offs.len()` taps, `epi` be made for those weights, and `out` hold `(r1 - r0) * oh * ow`
/// bytes.
///
/// # Panics
/// On [`Packed::Vnni`] weights.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn conv_u8(
    w: Packed<'_>,
    xb: &[u8],
    q: &Quads,
    offs: &[usize],
    (oh, ow): (usize, usize),
    epi: &Epilogue<'_>,
    (r0, r1): (usize, usize),
    out: &mut [u8],
) {
    assert!(xb.len() >= q.len());
    let (w0, step) = w.base();
    let block = offs.len() * q.c4 * MR * step;
    assert!(w.len() >= r1.div_ceil(MR) * block);
    let pairs = match w {
        Packed::Narrow(_) => false,
        Packed::Pairs(_) => true,
        Packed::Vnni(_) => panic!("the AVX2 quad product has no VNNI form"),
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
    drive::<2>((q.wp, oh, ow), RUN, (r0, r1), out, |j, rb, stage, ld| {
        // SAFETY: AVX2 is available (the caller's contract); the runs start at output pixels,
        // so with the slack of `q` every read stays in `xb`; `wb` is `rb`'s block of `w`, and
        // the staging rows hold `ld` bytes each for the rows of the block.
        unsafe {
            let wb = w0.add(rb / MR * block);
            let acc = if pairs {
                accumulate::<true>(wb, xb.as_ptr(), q, offs, j)
            } else {
                accumulate::<false>(wb, xb.as_ptr(), q, offs, j)
            };
            store_tile(&acc, &rows, (rb, r0), j, ld, stage);
        }
    });
}

/// Runs of 16 virtual columns (one AVX-512 register of quads) of the AVX-512 products.
const RUN_ZMM: usize = 16;

/// The raw accumulators of `MR` rows over the four runs at virtual columns `j` (16 each),
/// VNNI: per tap and channel quad, 64 bytes of the quad plane a run.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn accumulate_vnni(
    wb: *const u8,
    xb: *const u8,
    q: &Quads,
    offs: &[usize],
    j: [usize; 4],
) -> [[__m512i; 4]; MR] {
    let mut acc = [[_mm512_setzero_si512(); 4]; MR];
    let mut wp = wb;
    for &o in offs {
        let mut p = j.map(|j| xb.add((j + o) * 4));
        for _ in 0..q.c4 {
            let a = p.map(|p| _mm512_loadu_si512(p as *const __m512i));
            for (r, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_epi32((wp.add(r * 4) as *const i32).read_unaligned());
                for (x, a) in acc.iter_mut().zip(&a) {
                    *x = _mm512_dpbusd_epi32(*x, *a, w);
                }
            }
            wp = wp.add(MR * 4);
            p = p.map(|p| p.add(q.pl * 4));
        }
    }
    acc
}

quad_accumulate!(
    /// [`accumulate_vnni`] without VNNI: the tile of four runs of 16 columns on AVX-512
    /// registers, as [`accumulate`] does on AVX2 registers.
    accumulate_zmm, "avx512f,avx512bw,avx512vl", __m512i, 4,
    _mm512_loadu_si512, _mm512_set1_epi32, _mm512_set1_epi16, _mm512_setzero_si512,
    _mm512_and_si512, _mm512_srli_epi16, _mm512_madd_epi16, _mm512_maddubs_epi16,
    _mm512_add_epi32
);

/// Requantizes rows `rb..` (up to `r1`) of one AVX-512 tile and stores each run's 16 bytes at
/// its virtual column of the staged rows: channel `rb`'s starts at `out`, the next ones `ld`
/// apart.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn store_tile_zmm(
    acc: &[[__m512i; 4]; MR],
    epi: &Epilogue<'_>,
    (rb, r1): (usize, usize),
    j: [usize; 4],
    ld: usize,
    out: *mut u8,
) {
    for (r, acc) in acc.iter().enumerate().take((r1 - rb).min(MR)) {
        let bytes = epi.bytes64(rb + r, acc);
        let row = out.add(r * ld);
        // later runs first: a repeated last run is stored again, the same bytes
        _mm_storeu_si128(
            row.add(j[3]) as *mut __m128i,
            _mm512_extracti32x4_epi32::<3>(bytes),
        );
        _mm_storeu_si128(
            row.add(j[2]) as *mut __m128i,
            _mm512_extracti32x4_epi32::<2>(bytes),
        );
        _mm_storeu_si128(
            row.add(j[1]) as *mut __m128i,
            _mm512_extracti32x4_epi32::<1>(bytes),
        );
        _mm_storeu_si128(row.add(j[0]) as *mut __m128i, _mm512_castsi512_si128(bytes));
    }
}

/// [`conv_u8`] on AVX-512 registers, with any of the three products: four runs of 16 virtual
/// columns a tile, requantized as the fused epilogue of `fused_x86` does.
///
/// # Safety
/// AVX-512 F/BW/VL must be available, and VNNI for [`Packed::Vnni`] weights; as [`conv_u8`]
/// otherwise.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn conv_u8_zmm(
    w: Packed<'_>,
    xb: &[u8],
    q: &Quads,
    offs: &[usize],
    (oh, ow): (usize, usize),
    epi: &Epilogue<'_>,
    (r0, r1): (usize, usize),
    out: &mut [u8],
) {
    assert!(xb.len() >= q.len());
    let (w0, step) = w.base();
    let block = offs.len() * q.c4 * MR * step;
    assert!(w.len() >= r1.div_ceil(MR) * block);
    drive::<4>(
        (q.wp, oh, ow),
        RUN_ZMM,
        (r0, r1),
        out,
        |j, rb, stage, ld| {
            // SAFETY: AVX-512 (and VNNI for VNNI weights) is available (the caller's
            // contract); the runs start at output pixels, so with the slack of `q` every read
            // stays in `xb`; `wb` is `rb`'s block of `w`, and the staging rows hold `ld` bytes
            // each for the rows of the block.
            unsafe {
                let (wb, x) = (w0.add(rb / MR * block), xb.as_ptr());
                let acc = match w {
                    Packed::Vnni(_) => accumulate_vnni(wb, x, q, offs, j),
                    Packed::Narrow(_) => accumulate_zmm::<false>(wb, x, q, offs, j),
                    Packed::Pairs(_) => accumulate_zmm::<true>(wb, x, q, offs, j),
                };
                store_tile_zmm(&acc, epi, (rb, r1), j, ld, stage);
            }
        },
    );
}
