//! The VNNI product of the convolution with the requantization fused into the tile's epilogue.
//!
//! Column tiles are outermost: a tile of up to 64 columns (packed ahead, or gathered from the
//! padded image with VBMI when the tile is reached, into a buffer that stays in cache) meets
//! every row block of the weight in turn. A block of 4 output channels x 64 columns is
//! accumulated in registers (as `x86::gemm_vnni` does), then each channel's 64 values are
//! requantized to bytes and stored: no i32 accumulator goes through memory.
//!
//! A last 1 to 4 columns past a multiple of 16 would take a whole 16-lane vector of every
//! product; they are computed as dot products of weight rows with the unfolded columns instead
//! (64 inner steps per `vpdpbusd` rather than 4): on a ResNet 3x3 layer at 7x7 (49 columns),
//! a quarter of the work.

use std::arch::x86_64::*;

use crate::int8::gemm::{QMatrix, MR, NT};
use crate::int8::requant::RowConsts;
use crate::int8::requant_x86::{channels_avx512, Wide};
use crate::int8::{QOutput, Requant};

/// Columns past a multiple of 16 that the dot products take (at most).
pub(crate) const MAX_TAIL: usize = 4;

/// The requantization of the fused epilogue.
pub(crate) struct Epilogue<'a> {
    /// Per output channel; for the [`fast`](RowConsts::fast) ones the zero-point term is folded
    /// into the rounding constant (`c - za * row_sum * M`, wrapping: the sum it is added to
    /// fits, so the result is exact), for the others `corr` is subtracted from the
    /// accumulators first.
    pub(crate) consts: Vec<RowConsts>,
    /// `za * row_sum` per output channel.
    pub(crate) corr: Vec<i32>,
    /// The multipliers and biases (for the tail's per-channel requantization).
    mult: &'a [Requant],
    bias: Option<&'a [i32]>,
    /// Output zero point.
    pub(crate) zp: i32,
    /// Lower clamp (the zero point with ReLU, else 0).
    pub(crate) lo: i32,
}

impl<'a> Epilogue<'a> {
    /// The epilogue of `w` with input zero point `za`, multipliers `mult`, bias `bias`, output
    /// zero point `zp` and lower clamp `lo`.
    pub(crate) fn new(
        w: &QMatrix,
        za: u8,
        mult: &'a [Requant],
        bias: Option<&'a [i32]>,
        zp: i32,
        lo: i32,
    ) -> Self {
        let corr: Vec<i32> = w.row_sums().iter().map(|s| za as i32 * s).collect();
        let consts = (0..w.rows())
            .map(|c| {
                let mut k = RowConsts::new(mult[c], bias.map_or(0, |b| b[c]));
                if k.fast {
                    k.c = k.c.wrapping_sub(corr[c] as i64 * k.m as i64);
                }
                k
            })
            .collect();
        Self {
            consts,
            corr,
            mult,
            bias,
            zp,
            lo,
        }
    }
}

impl<'a> Epilogue<'a> {
    /// The epilogue of `w` (input zero point `za`, multipliers `mult`) writing the u8 output
    /// `out` (its zero point, bias and ReLU), and that output's bytes.
    ///
    /// # Panics
    /// When `out` is not a u8 output.
    pub(crate) fn of_u8<'o, 'b: 'a>(
        w: &QMatrix,
        za: u8,
        mult: &'a [Requant],
        out: &'o mut QOutput<'b>,
    ) -> (Self, &'o mut [u8]) {
        let QOutput::U8 {
            out,
            params,
            bias,
            relu,
        } = out
        else {
            panic!("the fused epilogues write u8 outputs");
        };
        let zp = params.zero_point as i32;
        let lo = if *relu { zp } else { 0 };
        (Self::new(w, za, mult, *bias, zp, lo), out)
    }

    /// The 64 output bytes of channel `c` from its four vectors of raw accumulators.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) fn bytes64(&self, c: usize, acc: &[__m512i; 4]) -> __m512i {
        // broadcasts from memory: loads, beside the arithmetic
        let wide = Wide::new(&self.consts[c], self.zp, self.lo);
        let q = if self.consts[c].fast {
            acc.map(|x| wide.quotient_of::<true>(x, _mm512_srli_epi64::<32>(x)))
        } else {
            let corr = _mm512_set1_epi32(self.corr[c]);
            acc.map(|x| {
                let x = _mm512_sub_epi32(x, corr);
                wide.quotient_of::<false>(x, x)
            })
        };
        wide.bytes64(q)
    }
}

/// Where the product finds its packed column tiles.
pub(crate) enum Panel<'a> {
    /// The whole panel, packed as `gemm::pack_a` packs it (`npad` columns).
    Packed {
        /// The panel.
        ap: &'a [u8],
        /// Its padded column count.
        npad: usize,
    },
    /// The padded image (followed by `WINDOW_SLACK` bytes), each tile gathered with VBMI when
    /// it is reached (see `window_x86::pack_tile_vbmi`).
    Window {
        /// The padded image.
        xp: &'a [u8],
        /// The unfolded rows' offsets in it.
        offs: &'a [usize],
        /// Output row width and padded row length.
        ow: usize,
        /// Padded row length.
        wp: usize,
    },
}

/// The raw accumulators of `MR` rows over `16 * R` columns of the packed tile at `ap` (width
/// `wt`, `k4` quads); the vectors past `R` are zero.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn accumulate<const R: usize>(
    wb: *const i8,
    ap: *const u8,
    k4: usize,
    wt: usize,
) -> [[__m512i; 4]; MR] {
    let mut acc = [[_mm512_setzero_si512(); 4]; MR];
    for kq in 0..k4 {
        let mut a = [_mm512_setzero_si512(); R];
        for (q, a) in a.iter_mut().enumerate() {
            *a = _mm512_loadu_si512(ap.add((kq * wt + 16 * q) * 4) as *const __m512i);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_epi32((wb.add((kq * MR + r) * 4) as *const i32).read_unaligned());
            for (x, a) in acc.iter_mut().zip(&a) {
                *x = _mm512_dpbusd_epi32(*x, *a, w);
            }
        }
    }
    acc
}

/// Requantizes the accumulators of rows `rb..` (up to `r1`) of one tile and stores the `width`
/// bytes of channel `c` at `out + (c - r0) * ld`.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn store_tile(
    acc: &[[__m512i; 4]; MR],
    epi: &Epilogue<'_>,
    (rb, r0, r1): (usize, usize, usize),
    width: usize,
    ld: usize,
    out: *mut u8,
) {
    let m = if width == 64 { !0 } else { (1u64 << width) - 1 };
    for (r, acc) in acc.iter().enumerate().take((r1 - rb).min(MR)) {
        let c = rb + r;
        let dst = out.add((c - r0) * ld) as *mut i8;
        _mm512_mask_storeu_epi8(dst, m, epi.bytes64(c, acc));
    }
}

/// Output rows `r0..r1` (`r0` a multiple of `MR`), columns `0..n` of the product of `w` with
/// the unfolding in `panel`, minus the zero-point term, requantized as `epi` says; channel
/// `c`'s column `j` goes to `out[(c - r0) * ld + j]`. `tile(j0, valid, wt)` returns the packed
/// tile of columns `j0..j0 + valid` (width `wt`).
///
/// # Safety
/// AVX-512 F/BW/VL and VNNI must be available; every tile `tile` returns must hold
/// `k4 * wt * 4` bytes, `r1 <= w.rows()`, `epi` be made for `w`, and `out` hold
/// `(r1 - r0 - 1) * ld + n` bytes.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tiles(
    w: &QMatrix,
    n: usize,
    npad: usize,
    (r0, r1): (usize, usize),
    epi: &Epilogue<'_>,
    ld: usize,
    out: *mut u8,
    mut tile: impl FnMut(usize, usize, usize) -> *const u8,
) {
    let k4 = w.cols().div_ceil(4);
    let mut j = 0;
    while j < n {
        let width = (n - j).min(NT);
        let wt = NT.min(npad - j);
        let a = tile(j, width, wt);
        for rb in (r0..r1).step_by(MR) {
            let wb = w.packed_block(rb / MR).as_ptr();
            let acc = match width.div_ceil(16) {
                4 => accumulate::<4>(wb, a, k4, wt),
                3 => accumulate::<3>(wb, a, k4, wt),
                2 => accumulate::<2>(wb, a, k4, wt),
                _ => accumulate::<1>(wb, a, k4, wt),
            };
            store_tile(&acc, epi, (rb, r0, r1), width, ld, out.add(j));
        }
        j += width;
    }
}

/// The fused product of output rows `r0..r1` (`r0` a multiple of `MR`) over the `plane`
/// columns of the unfolding in `panel`, into `out` (`[r1 - r0, plane]`): the columns up to
/// the last multiple of 16 (or all of them when more than [`MAX_TAIL`] are left) by the tiles,
/// the rest by dot products.
///
/// # Safety
/// AVX-512 F/BW/VL and VNNI must be available, and VBMI too for a [`Panel::Window`] (whose
/// windows fit, `window_x86::windows_fit`, and whose image is followed by `WINDOW_SLACK`
/// bytes); a [`Panel::Packed`] panel must hold `k4 * npad * 4` bytes with `npad >= plane`;
/// `r1 <= w.rows()`, `epi` made for `w`, and `out` `(r1 - r0) * plane` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn conv_vnni_u8(
    w: &QMatrix,
    panel: &Panel<'_>,
    plane: usize,
    (r0, r1): (usize, usize),
    epi: &Epilogue<'_>,
    out: &mut [u8],
) {
    assert!(out.len() >= (r1 - r0) * plane);
    let k4 = w.cols().div_ceil(4);
    let tail = if plane % 16 <= MAX_TAIL {
        plane % 16
    } else {
        0
    };
    let n = plane - tail;
    let npad = plane.div_ceil(16) * 16;
    let o = out.as_mut_ptr();
    match panel {
        Panel::Packed { ap, npad } => {
            assert!(ap.len() >= k4 * npad * 4);
            let ap = ap.as_ptr();
            tiles(w, n, *npad, (r0, r1), epi, plane, o, |j, _, _| {
                ap.add(j * k4 * 4)
            });
        }
        Panel::Window { xp, offs, ow, wp } => {
            crate::scratch::with(&crate::scratch::U8_D, |buf| {
                let buf = crate::scratch::sized_aligned(buf, k4 * NT * 4).as_mut_ptr();
                tiles(w, n, npad, (r0, r1), epi, plane, o, |j, valid, wt| {
                    // SAFETY: the caller guarantees VBMI and the windows; `buf` holds a
                    // tile of `k4` quads of up to 64 columns.
                    unsafe {
                        let t = (j, valid, wt);
                        super::window_x86::pack_tile_vbmi(xp.as_ptr(), offs, t, *ow, *wp, buf)
                    };
                    buf
                });
            });
        }
    }
    if tail > 0 {
        let cols: Vec<Vec<u8>> = (n..plane).map(|j| column(w.cols(), panel, j)).collect();
        dots_u8(w, &cols, (r0, r1), epi, plane, o.add(n));
    }
}

/// Unfolded column `j` (`k` bytes, zero after up to a multiple of 64).
fn column(k: usize, panel: &Panel<'_>, j: usize) -> Vec<u8> {
    let mut v = vec![0u8; k.div_ceil(64) * 64];
    match panel {
        Panel::Packed { ap, npad } => {
            // column j of quad q is at tile j / NT, [q][wt][4]
            let (j0, jj) = (j / NT * NT, j % NT);
            let wt = NT.min(npad - j0);
            let base = j0 * k.div_ceil(4) * 4;
            for (kk, b) in v.iter_mut().enumerate().take(k) {
                *b = ap[base + (kk / 4 * wt + jj) * 4 + kk % 4];
            }
        }
        Panel::Window { xp, offs, ow, wp } => {
            let src = j / ow * wp + j % ow;
            for (b, o) in v.iter_mut().zip(*offs) {
                *b = xp[o + src];
            }
        }
    }
    v
}

/// Rows `r0..r1` of `w` against the unfolded columns `cols` (each a multiple of 64 long, zero
/// past `w.cols()`), minus the zero-point term, requantized per channel; column `t`'s byte of
/// channel `c` goes to `out[(c - r0) * ld + t]`.
///
/// # Safety
/// AVX-512 F/BW/VL and VNNI must be available; at most [`MAX_TAIL`] columns; `r1 <= w.rows()`,
/// `epi` made for `w`, `out` holding `(r1 - r0 - 1) * ld + cols.len()` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dots_u8(
    w: &QMatrix,
    cols: &[Vec<u8>],
    (r0, r1): (usize, usize),
    epi: &Epilogue<'_>,
    ld: usize,
    out: *mut u8,
) {
    let (k, t) = (w.cols(), cols.len().min(MAX_TAIL));
    let rows = r1 - r0;
    // acc[t][r - r0]
    let mut acc = vec![vec![0i32; rows]; t];
    let mut r = r0;
    while r < r1 {
        let nr = (r1 - r).min(4);
        let mut s = [[_mm512_setzero_si512(); MAX_TAIL]; 4];
        let mut i = 0;
        while i < k {
            let m: __mmask64 = if k - i >= 64 {
                !0
            } else {
                (1u64 << (k - i)) - 1
            };
            for (q, s) in s.iter_mut().enumerate().take(nr) {
                let wr = w.values().as_ptr().add((r + q) * k + i);
                let wv = _mm512_maskz_loadu_epi8(m, wr);
                for (x, c) in s.iter_mut().zip(cols).take(t) {
                    let a = _mm512_loadu_si512(c.as_ptr().add(i) as *const __m512i);
                    *x = _mm512_dpbusd_epi32(*x, a, wv);
                }
            }
            i += 64;
        }
        for (q, s) in s.iter().enumerate().take(nr) {
            for (c, x) in s.iter().enumerate().take(t) {
                acc[c][r + q - r0] = _mm512_reduce_add_epi32(*x) - epi.corr[r + q];
            }
        }
        r += nr;
    }
    let bias = epi.bias.map(|b| b[r0..r1].as_ptr());
    let mut bytes = vec![0u8; rows];
    for (c, a) in acc.iter().enumerate() {
        let m = epi.mult[r0..r1].as_ptr();
        channels_avx512(
            a.as_ptr(),
            bias,
            m,
            rows,
            epi.zp,
            epi.lo,
            bytes.as_mut_ptr(),
        );
        for (rr, b) in bytes.iter().enumerate() {
            *out.add(rr * ld + c) = *b;
        }
    }
}
