//! x86-64 AMX int8 kernel: `tdpbuud` (u8 x u8 -> i32) on 16-row tiles.
//!
//! A tile product multiplies a 16 x 64-byte tile of one operand (a row per output channel)
//! by a tile of 16 rows of 16 columns x 4 bytes of the other, which is the layout of the
//! activation panel ([`pack_a`](super::gemm::pack_a)) already. The instruction that takes
//! i8 in that second place (`tdpbusd`) would want the *activations* signed, so instead the
//! weights are shifted into u8 (`w + 128`) and both sides are unsigned:
//!
//! `T[r, j] = sum_k (w[r, k] + 128) a[k, j] = sum_k w[r, k] a[k, j] + 128 S_a[j]`,
//!
//! where `S_a[j]` is the sum of column `j` of the panel. The wanted
//! `sum_k w[r, k] (a[k, j] - za)` is then `T[r, j] - 128 S_a[j] - za S_w[r]`, all exact in
//! wrapping i32 arithmetic as long as `T` itself fits: `255 * 255 * k < 2^31`, so
//! k <= [`AMX_MAX_INNER`]. Tile instructions are written with `asm!`, since Rust has no
//! stable intrinsics for them; the tile registers are invisible to the compiler, which never
//! uses them, so state carried from one `asm!` block to the next is safe.

use std::arch::asm;
use std::arch::x86_64::*;

use super::gemm::{QMatrix, NT};
use crate::ConvGeometry;

/// Output channels per block: two 16-row weight tiles.
pub(crate) const BLOCK_ROWS: usize = 32;
/// Bytes of the inner dimension per tile row.
const TILE_K: usize = 64;
/// Largest inner dimension of the AMX product (`255 * 255 * k` must fit an i32).
pub(crate) const AMX_MAX_INNER: usize = i32::MAX as usize / (255 * 255);
/// Bytes past a packed panel's end that the kernel may read (and multiply by zero weights):
/// the last step over the inner dimension loads 16 quad rows of the widest tile.
pub(crate) const PANEL_SLACK: usize = 16 * NT * 4;

/// The `ldtilecfg` operand: palette 1, every tile used as 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    fn full_tiles() -> Self {
        Self::with_step(TILE_K)
    }

    /// Output tiles (`tmm0..tmm3`) of 16 x 16 i32; weight tiles (`tmm4`, `tmm5`) of 16 rows of
    /// `k` bytes; operand tiles (`tmm6`, `tmm7`) of `k / 4` rows of 64 bytes: one step of `k`
    /// (16, 32 or 64) of the inner dimension.
    fn with_step(k: usize) -> Self {
        debug_assert!(matches!(k, 16 | 32 | 64));
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [64; 16],
            rows: [16; 16],
        };
        c.colsb[8..].fill(0);
        c.rows[8..].fill(0);
        c.colsb[4] = k as u16;
        c.colsb[5] = k as u16;
        c.rows[6] = (k / 4) as u8;
        c.rows[7] = (k / 4) as u8;
        c
    }
}

/// The weights as the kernel reads them: `[rows rounded up to 32][cols rounded up to 64]` u8
/// holding `w + 128`, with zeros in the padding (so padded rows and columns add nothing).
pub(crate) fn pack_weights(w: &QMatrix) -> Vec<u8> {
    let (rows, cols) = (w.rows(), w.cols());
    let kpad = cols.div_ceil(TILE_K) * TILE_K;
    let mut out = vec![0u8; rows.div_ceil(BLOCK_ROWS) * BLOCK_ROWS * kpad];
    for (dst, src) in out
        .chunks_exact_mut(kpad)
        .zip(w.values().chunks_exact(cols.max(1)))
    {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = (*s as i32 + 128) as u8;
        }
    }
    out
}

/// 32 x 32 i32, the four output tiles of one block.
#[repr(C, align(64))]
struct BlockOut([[i32; 32]; 32]);

/// Rows `r0..r1` (`r0` a multiple of [`BLOCK_ROWS`]) of `W x (A - za)` into `c` (`[r1 - r0, n]`),
/// from the packed weights `wp` of [`pack_weights`] and a panel packed as `pack_a` packs it
/// (`npad` padded columns, `n` real ones).
///
/// # Safety
/// The CPU must support AMX-INT8 and AVX-512 VNNI with the tile state granted (see
/// `Isa::Amx`); `w.cols() <= AMX_MAX_INNER`; `wp` is `pack_weights(w)`; `ap` holds the panel
/// plus [`PANEL_SLACK`] bytes; `c` holds `(r1 - r0) * n` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn gemm_amx(
    w: &QMatrix,
    wp: &[u8],
    ap: &[u8],
    npad: usize,
    n: usize,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
) {
    debug_assert!(r0.is_multiple_of(BLOCK_ROWS) && w.cols() <= AMX_MAX_INNER);
    let k4 = w.cols().div_ceil(4);
    let kpad = w.cols().div_ceil(TILE_K) * TILE_K;
    let steps = kpad / TILE_K;
    debug_assert!(wp.len() >= r1.div_ceil(BLOCK_ROWS) * BLOCK_ROWS * kpad);
    debug_assert!(ap.len() >= k4 * npad * 4 + PANEL_SLACK && c.len() >= (r1 - r0) * n);
    let cfg = TileConfig::full_tiles();
    asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly));
    let mut buf = BlockOut([[0; 32]; 32]);
    let mut colsum = [0i32; NT];
    let mut j0 = 0;
    while j0 < n {
        let wt = NT.min(npad - j0);
        let width = (n - j0).min(wt);
        let tile = ap.as_ptr().add(j0 * k4 * 4);
        column_sums(tile, k4, wt, &mut colsum);
        let mut rb = r0;
        while rb < r1 {
            let rows = (r1 - rb).min(BLOCK_ROWS);
            let a = wp.as_ptr().add(rb * kpad);
            let mut jb = 0;
            while jb < width {
                let two = jb + 32 <= wt;
                block(a, kpad, tile.add(jb * 4), wt * 4, steps, two, &mut buf);
                let cols = (width - jb).min(if two { 32 } else { 16 });
                for (r, row) in buf.0.iter().enumerate().take(rows) {
                    let corr = _mm512_set1_epi32(za as i32 * w.row_sums()[rb + r]);
                    let dst = c.as_mut_ptr().add((rb - r0 + r) * n + j0 + jb);
                    for q in 0..cols.div_ceil(16) {
                        let left = (cols - 16 * q).min(16);
                        let m: __mmask16 = if left == 16 { !0 } else { (1 << left) - 1 };
                        let t = _mm512_load_si512(row.as_ptr().add(16 * q) as *const _);
                        let s = _mm512_loadu_si512(colsum.as_ptr().add(jb + 16 * q) as *const _);
                        let v =
                            _mm512_sub_epi32(_mm512_sub_epi32(t, _mm512_slli_epi32::<7>(s)), corr);
                        _mm512_mask_storeu_epi32(dst.add(16 * q) as *mut _, m, v);
                    }
                }
                jb += 32;
            }
            rb += BLOCK_ROWS;
        }
        j0 += wt;
    }
    asm!("tilerelease", options(nostack, nomem));
}

/// `sums[j] = sum over the k4 quad rows of panel tile column j` for the `wt` columns of a tile
/// laid out `[k4][wt][4]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn column_sums(tile: *const u8, k4: usize, wt: usize, sums: &mut [i32; NT]) {
    let ones = _mm512_set1_epi8(1);
    for g in 0..wt / 16 {
        let mut acc = _mm512_setzero_si512();
        for kq in 0..k4 {
            let v = _mm512_loadu_si512(tile.add((kq * wt + 16 * g) * 4) as *const _);
            acc = _mm512_dpbusd_epi32(acc, v, ones);
        }
        _mm512_storeu_si512(sums.as_mut_ptr().add(16 * g) as *mut _, acc);
    }
}

/// One block: 32 weight rows from `a` (row stride `kpad`) times 32 (or, when `!two`, 16)
/// panel columns from `b` (quad-row stride `bstride`), over `steps` steps of 64 bytes of k,
/// stored into `out` (the unused half is left as it was).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn block(
    a: *const u8,
    kpad: usize,
    b: *const u8,
    bstride: usize,
    steps: usize,
    two: bool,
    out: &mut BlockOut,
) {
    zero_block();
    for s in 0..steps {
        let a0 = a.add(s * TILE_K);
        step(
            a0,
            a0.add(16 * kpad),
            kpad,
            b.add(16 * s * bstride),
            bstride,
            two,
        );
    }
    store_block(out);
}

/// Clears the four output tiles.
#[inline]
unsafe fn zero_block() {
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem)
    );
}

/// One 64-byte step of k: output tiles `tmm0..tmm3` (rows 0-15 x columns 0-15, rows 0-15 x
/// columns 16-31, rows 16-31 x 0-15, rows 16-31 x 16-31) gain the products of the weight
/// tiles at `a0` and `a1` (16 rows each, row stride `sa`) with the operand tiles at `b0`
/// and, when `two`, `b0 + 64` (16 quad rows each, row stride `sb`).
#[inline]
unsafe fn step(a0: *const u8, a1: *const u8, sa: usize, b0: *const u8, sb: usize, two: bool) {
    if two {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbuud tmm0, tmm4, tmm6",
            "tdpbuud tmm1, tmm4, tmm7",
            "tdpbuud tmm2, tmm5, tmm6",
            "tdpbuud tmm3, tmm5, tmm7",
            a0 = in(reg) a0,
            a1 = in(reg) a1,
            sa = in(reg) sa,
            b0 = in(reg) b0,
            b1 = in(reg) b0.add(64),
            sb = in(reg) sb,
            options(nostack, readonly)
        );
    } else {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbuud tmm0, tmm4, tmm6",
            "tdpbuud tmm2, tmm5, tmm6",
            a0 = in(reg) a0,
            a1 = in(reg) a1,
            sa = in(reg) sa,
            b0 = in(reg) b0,
            sb = in(reg) sb,
            options(nostack, readonly)
        );
    }
}

/// Stores the four output tiles into `out` (row stride 128 bytes).
#[inline]
unsafe fn store_block(out: &mut BlockOut) {
    let o = out.0.as_mut_ptr() as *mut u8;
    asm!(
        "tilestored [{c0} + {s}*1], tmm0",
        "tilestored [{c1} + {s}*1], tmm1",
        "tilestored [{c2} + {s}*1], tmm2",
        "tilestored [{c3} + {s}*1], tmm3",
        c0 = in(reg) o,
        c1 = in(reg) o.add(64),
        c2 = in(reg) o.add(16 * 128),
        c3 = in(reg) o.add(16 * 128 + 64),
        s = in(reg) 128usize,
        options(nostack)
    );
}

/// Whether [`conv_direct`] handles this convolution: stride 1, dilation 1, one group, input
/// channels a multiple of 16 (one step of the inner dimension is 16, 32 or 64 channels of one
/// kernel tap), at least 16 output channels, and an inner dimension in range.
pub(crate) fn direct_fits(g: &ConvGeometry) -> bool {
    g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.groups == 1
        && g.in_channels.is_multiple_of(16)
        && g.out_channels >= 16
        && g.in_channels * g.kernel_h * g.kernel_w <= AMX_MAX_INNER
}

/// The weights in the tap-major order of [`conv_direct`]: `[rows rounded up to 32][taps * C]`
/// u8 with element `(o, tap * C + c)` holding `w[o, c * taps + tap] + 128` (zero rows below).
pub(crate) fn pack_weights_tap_major(w: &QMatrix, taps: usize) -> Vec<u8> {
    let (rows, kk) = (w.rows(), w.cols());
    let c = kk / taps;
    let mut out = vec![0u8; rows.div_ceil(BLOCK_ROWS) * BLOCK_ROWS * kk];
    for (dst, src) in out.chunks_exact_mut(kk).zip(w.values().chunks_exact(kk)) {
        for (ch, taps_of_ch) in src.chunks_exact(taps).enumerate() {
            for (t, v) in taps_of_ch.iter().enumerate() {
                dst[t * c + ch] = (*v as i32 + 128) as u8;
            }
        }
    }
    out
}

/// int8 convolution of one image `[C, H, W]` into `acc [O, oh * ow]` (i32, zero point
/// applied) without im2col: the image is padded and interleaved into channel quads
/// ([`Quads`](super::direct::Quads)), so that for every kernel tap, 16 consecutive output
/// pixels of 4, 8 or 16 channel quads (a step of 16, 32 or 64 channels) form one tile, loaded
/// straight from the image with the quad plane as row stride. Output pixels are computed on
/// the padded width; the `kw - 1` columns per row that wrap into the next row are computed and
/// dropped.
///
/// Needs `direct_fits(g)` and `Isa::Amx` supported; `wd` is `pack_weights_tap_major(w, taps)`.
pub(crate) fn conv_direct(
    g: &ConvGeometry,
    image: &[u8],
    za: u8,
    w: &QMatrix,
    wd: &[u8],
    acc: &mut [i32],
) {
    assert!(direct_fits(g) && crate::isa::Isa::Amx.is_supported());
    let c = g.in_channels;
    let (oh, ow) = (g.out_h(), g.out_w());
    assert!(image.len() >= g.input_len() && acc.len() >= g.out_channels * oh * ow);
    assert!(wd.len() >= g.out_channels.div_ceil(BLOCK_ROWS) * BLOCK_ROWS * w.cols());
    // the quad planes hold the 32 pixels the last column block reads past the padded image
    let quads = super::direct::Quads::new(g);
    let (pl, wp, c4) = (quads.pl, quads.wp, quads.c4);
    // virtual output columns j = oy * wp + ox, ox < wp
    let ncols = (oh - 1) * wp + ow;
    let offs = quads.tap_offsets(g);
    crate::scratch::with(&crate::scratch::U8_B, |xb| {
        let xb = crate::scratch::sized(xb, quads.len());
        quads.fill(g, image, za, xb);
        // column sums of the virtual im2col matrix: per pixel over channels, then over taps
        let mut pix = vec![0i32; pl];
        // SAFETY: AVX-512 VNNI comes with `Isa::Amx` (asserted above); `xb` holds `c4` planes
        // of `pl` pixels and `pix` holds `pl` values.
        unsafe { pixel_sums(xb, c4, pl, &mut pix) };
        let ncols_pad = ncols.div_ceil(32) * 32;
        let mut colsum = vec![0i32; ncols_pad];
        for o in &offs {
            for (s, p) in colsum.iter_mut().zip(&pix[*o..]) {
                *s += p;
            }
        }
        let plane = oh * ow;
        let geo = DirectGeo {
            pl,
            c,
            kk: w.cols(),
            wp,
            ow,
            ncols,
            plane,
        };
        super::gemm::par_rows(g.out_channels, plane, BLOCK_ROWS, acc, |r0, r1, cc| {
            // SAFETY: as asserted above: AMX is usable, `wd` has the padded rows, `xb` the
            // quad planes with their slack (every tile row read lies inside its plane), and
            // `cc` holds rows `r0..r1` (r0 a multiple of 32) of the `[O, oh * ow]` output.
            unsafe { direct_rows(w, wd, xb, &offs, &colsum, &geo, za, r0, r1, cc) }
        });
    });
}

/// Shape of one direct convolution as the kernel needs it.
struct DirectGeo {
    /// Pixels per quad plane.
    pl: usize,
    /// Input channels.
    c: usize,
    /// Inner dimension, `taps * c`.
    kk: usize,
    /// Padded width.
    wp: usize,
    /// Output width.
    ow: usize,
    /// Virtual columns, `(oh - 1) * wp + ow`.
    ncols: usize,
    /// Output pixels, `oh * ow`.
    plane: usize,
}

/// `pix[p] = sum over quad planes of the 4 bytes of pixel p`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn pixel_sums(xb: &[u8], c4: usize, pl: usize, pix: &mut [i32]) {
    let ones = _mm512_set1_epi8(1);
    let mut p = 0;
    while p + 16 <= pl {
        let mut acc = _mm512_setzero_si512();
        for q in 0..c4 {
            let v = _mm512_loadu_si512(xb.as_ptr().add((q * pl + p) * 4) as *const _);
            acc = _mm512_dpbusd_epi32(acc, v, ones);
        }
        _mm512_storeu_si512(pix.as_mut_ptr().add(p) as *mut _, acc);
        p += 16;
    }
    for (p, s) in pix.iter_mut().enumerate().skip(p) {
        *s = (0..c4)
            .map(|q| {
                xb[(q * pl + p) * 4..][..4]
                    .iter()
                    .map(|&b| b as i32)
                    .sum::<i32>()
            })
            .sum();
    }
}

/// Rows `r0..r1` of the direct convolution (see [`conv_direct`]).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn direct_rows(
    w: &QMatrix,
    wd: &[u8],
    xb: &[u8],
    offs: &[usize],
    colsum: &[i32],
    geo: &DirectGeo,
    za: u8,
    r0: usize,
    r1: usize,
    acc: &mut [i32],
) {
    let plane = geo.plane;
    // the largest step of 16, 32 or 64 channels that divides the channels
    let kstep = [TILE_K, 32, 16]
        .into_iter()
        .find(|k| geo.c.is_multiple_of(*k))
        .expect("direct_fits: channels a multiple of 16");
    let cfg = TileConfig::with_step(kstep);
    asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly));
    let mut buf = BlockOut([[0; 32]; 32]);
    // (first lane, end lane, output pixel of the first lane) of each run of kept columns
    let mut runs: Vec<(usize, usize, usize)> = Vec::with_capacity(32);
    let bstride = geo.pl * 4;
    let mut rb = r0;
    while rb < r1 {
        let rows = (r1 - rb).min(BLOCK_ROWS);
        let a = wd.as_ptr().add(rb * geo.kk);
        let mut jb = 0;
        while jb < geo.ncols {
            let two = jb + 16 < geo.ncols;
            zero_block();
            for (t, off) in offs.iter().enumerate() {
                for cb in 0..geo.c / kstep {
                    let a0 = a.add(t * geo.c + cb * kstep);
                    let b0 = xb.as_ptr().add((cb * kstep / 4 * geo.pl + jb + off) * 4);
                    step(a0, a0.add(16 * geo.kk), geo.kk, b0, bstride, two);
                }
            }
            store_block(&mut buf);
            runs.clear();
            let mut l = 0;
            while l < 32 && jb + l < geo.ncols {
                let j = jb + l;
                let (oy, ox) = (j / geo.wp, j % geo.wp);
                if ox >= geo.ow {
                    l += geo.wp - ox;
                    continue;
                }
                let e = (l + geo.ow - ox).min(32).min(geo.ncols - jb);
                runs.push((l, e, oy * geo.ow + ox));
                l = e;
            }
            for (r, row) in buf.0.iter().enumerate().take(rows) {
                let corr = _mm512_set1_epi32(za as i32 * w.row_sums()[rb + r]);
                let dst = acc.as_mut_ptr().add((rb - r0 + r) * plane);
                for q in 0..2 {
                    let t = _mm512_load_si512(row.as_ptr().add(16 * q) as *const _);
                    let s = _mm512_loadu_si512(colsum.as_ptr().add(jb + 16 * q) as *const _);
                    let v = _mm512_sub_epi32(_mm512_sub_epi32(t, _mm512_slli_epi32::<7>(s)), corr);
                    for &(s, e, p) in &runs {
                        let (lo, hi) = (s.max(16 * q), e.min(16 * q + 16));
                        if lo >= hi {
                            continue;
                        }
                        let m = (((1u32 << (hi - lo)) - 1) << (lo - 16 * q)) as __mmask16;
                        // lane i of `v` is column 16q + i, output pixel p + (16q + i - s); only
                        // the lanes of this run are stored
                        let base = dst.wrapping_add(p + 16 * q).wrapping_sub(s);
                        _mm512_mask_storeu_epi32(base as *mut _, m, v);
                    }
                }
            }
            jb += 32;
        }
        rb += BLOCK_ROWS;
    }
    asm!("tilerelease", options(nostack, nomem));
}
