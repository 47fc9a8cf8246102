//! x86-64 direct depthwise convolution for stride 1, dilation 1, 2-D kernels (AVX-512): the
//! input plane is copied into a zero-padded buffer (so every tap is a plain unaligned load),
//! 16 outputs of a row per register, one FMA per tap. The 1-D kernels are in
//! [`depthwise_line_x86`](super::depthwise_line_x86).

use std::arch::x86_64::*;

use crate::{Activation, ConvGeometry};

/// One output plane `o` `[oh, ow]` of channel weights `wk` `[kh, kw]` over input plane `x`
/// `[h, w]`, with bias and activation. `buf` is scratch.
///
/// # Safety
/// AVX-512F must be available; `g` must have stride 1 and dilation 1, `x` must hold
/// `in_h * in_w` and `o` `out_h * out_w` elements, and `wk` `kernel_h * kernel_w`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn plane_s1_avx512(
    g: &ConvGeometry,
    x: &[f32],
    wk: &[f32],
    bias: f32,
    act: Activation,
    o: &mut [f32],
    buf: &mut Vec<f32>,
) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let (ph, pw) = (g.padding.0, g.padding.1);
    // padded plane: ph zero rows above and below; each row pw zeros, the input row, then zeros
    // up to a whole extra register
    let wp = w + 2 * pw + 16;
    let hp = h + 2 * ph;
    if buf.len() < hp * wp {
        buf.resize(hp * wp, 0.0);
    }
    // every element of the hp x wp window is written: border zeros, then the rows
    buf[..ph * wp].fill(0.0);
    buf[(ph + h) * wp..hp * wp].fill(0.0);
    for (iy, src) in x.chunks_exact(w).enumerate().take(h) {
        let row = &mut buf[(ph + iy) * wp..(ph + iy + 1) * wp];
        row[..pw].fill(0.0);
        row[pw..pw + w].copy_from_slice(src);
        row[pw + w..].fill(0.0);
    }
    let bp = buf.as_ptr();
    // a band of output rows across the whole width at a time, so that the band's input rows
    // stay in the level-1 cache while its column blocks are computed (column strips down the
    // plane first: 3.24 against 2.70 ms for 16 channels 9x9 at 256x256)
    let cols = |ox0: usize| (ow - ox0).min(16);
    let band = |f: &mut dyn FnMut(usize)| {
        for ox0 in (0..ow).step_by(16) {
            f(ox0);
        }
    };
    let mut oy = 0;
    if (kh, kw) == (3, 3) {
        let wv: [[__m512; 3]; 3] =
            std::array::from_fn(|ki| std::array::from_fn(|kj| _mm512_set1_ps(wk[ki * 3 + kj])));
        while oy + 8 <= oh {
            band(&mut |ox0| rows3x3::<8>(bp, wp, &wv, oy, ox0, bias, act, cols(ox0), ow, o));
            oy += 8;
        }
    } else {
        let tall = |oy: usize, ox0: usize, o: &mut [f32]| {
            let (b, c) = (bias, cols(ox0));
            match kh {
                5 => tall_rows::<8, 5>(bp, wp, kw, wk, oy, ox0, b, act, c, ow, o),
                7 => tall_rows::<8, 7>(bp, wp, kw, wk, oy, ox0, b, act, c, ow, o),
                9 => tall_rows::<8, 9>(bp, wp, kw, wk, oy, ox0, b, act, c, ow, o),
                _ => rows::<8>(bp, wp, kh, kw, wk, oy, ox0, b, act, c, ow, o),
            }
        };
        while oy + 8 <= oh {
            band(&mut |ox0| tall(oy, ox0, o));
            oy += 8;
        }
    }
    while oy < oh {
        band(&mut |ox0| rows::<1>(bp, wp, kh, kw, wk, oy, ox0, bias, act, cols(ox0), ow, o));
        oy += 1;
    }
}

/// `RB` consecutive output rows from `oy`, 16 columns from `ox0` (`cols` of them stored), for a
/// kernel of `KH` rows: kernel column by kernel column, the column's `KH` weights broadcast
/// once, and each input vector loaded once for every output row it belongs to (the loops over
/// rows unroll; loading each tap's input apart was bound by the loads, which straddle cache
/// lines: 2.70 against 1.44-1.58 ms for 16 channels 9x9 at 256x256).
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn tall_rows<const RB: usize, const KH: usize>(
    bp: *const f32,
    wp: usize,
    kw: usize,
    wk: &[f32],
    oy: usize,
    ox0: usize,
    bias: f32,
    act: Activation,
    cols: usize,
    ow: usize,
    o: &mut [f32],
) {
    let mut acc = [_mm512_set1_ps(bias); RB];
    for kj in 0..kw {
        let wv: [__m512; KH] = std::array::from_fn(|ki| _mm512_set1_ps(wk[ki * kw + kj]));
        // padded row oy + r; the highest lane read is below wp as in `rows`
        let col = bp.add(oy * wp + ox0 + kj);
        for r in 0..RB + KH - 1 {
            let v = _mm512_loadu_ps(col.add(r * wp));
            for (q, a) in acc.iter_mut().enumerate() {
                // output row oy + q uses this row with tap ki = r - q
                if r >= q && r - q < KH {
                    *a = _mm512_fmadd_ps(wv[r - q], v, *a);
                }
            }
        }
    }
    store(&acc, act, oy, ox0, cols, ow, o);
}

/// `RB` consecutive output rows from `oy`, 16 columns from `ox0` (`cols` of them stored), over
/// the padded plane `bp` of row length `wp`: tap by tap, one broadcast weight and `RB`
/// independent accumulators, so that the fused multiply-adds do not wait on each other. Any
/// kernel height; [`tall_rows`] is faster for the heights it is compiled for.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn rows<const RB: usize>(
    bp: *const f32,
    wp: usize,
    kh: usize,
    kw: usize,
    wk: &[f32],
    oy: usize,
    ox0: usize,
    bias: f32,
    act: Activation,
    cols: usize,
    ow: usize,
    o: &mut [f32],
) {
    let mut acc = [_mm512_set1_ps(bias); RB];
    for ki in 0..kh {
        // padded row oy + q + ki feeds output row oy + q; buffer column of output ox and tap kj
        // is ox + kj, and the highest lane read, ox0 + 15 + kw - 1, stays below wp because
        // ow = w + 2 pw - kw + 1
        let row = bp.add((oy + ki) * wp + ox0);
        for kj in 0..kw {
            let wv = _mm512_set1_ps(wk[ki * kw + kj]);
            for (q, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(row.add(q * wp + kj)), *a);
            }
        }
    }
    store(&acc, act, oy, ox0, cols, ow, o);
}

/// Stores `RB` rows of 16 sums from column `ox0` (`cols` of them) with the activation.
#[inline(always)]
unsafe fn store<const RB: usize>(
    acc: &[__m512; RB],
    act: Activation,
    oy: usize,
    ox0: usize,
    cols: usize,
    ow: usize,
    o: &mut [f32],
) {
    let zero = _mm512_setzero_ps();
    for (q, a) in acc.iter().enumerate() {
        let r = match act {
            Activation::Identity => *a,
            Activation::Relu => _mm512_max_ps(*a, zero),
            Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(*a, zero), _mm512_set1_ps(6.0)),
        };
        let dst = o.as_mut_ptr().add((oy + q) * ow + ox0);
        if cols == 16 {
            _mm512_storeu_ps(dst, r);
        } else {
            let mut tmp = [0.0f32; 16];
            _mm512_storeu_ps(tmp.as_mut_ptr(), r);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols);
        }
    }
}

/// [`rows`] for a 3x3 kernel with the weights already broadcast, so every loop unrolls; each
/// loaded input vector feeds every output row it belongs to.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn rows3x3<const RB: usize>(
    bp: *const f32,
    wp: usize,
    wv: &[[__m512; 3]; 3],
    oy: usize,
    ox0: usize,
    bias: f32,
    act: Activation,
    cols: usize,
    ow: usize,
    o: &mut [f32],
) {
    let mut acc = [_mm512_set1_ps(bias); RB];
    for r in 0..RB + 2 {
        // padded row oy + r; the highest lane read is below wp as in `rows`
        let row = bp.add((oy + r) * wp + ox0);
        let v = [
            _mm512_loadu_ps(row),
            _mm512_loadu_ps(row.add(1)),
            _mm512_loadu_ps(row.add(2)),
        ];
        for (q, a) in acc.iter_mut().enumerate() {
            // output row oy + q uses this row with tap ki = r - q
            if r >= q && r - q < 3 {
                let w = &wv[r - q];
                *a = _mm512_fmadd_ps(w[0], v[0], *a);
                *a = _mm512_fmadd_ps(w[1], v[1], *a);
                *a = _mm512_fmadd_ps(w[2], v[2], *a);
            }
        }
    }
    store(&acc, act, oy, ox0, cols, ow, o);
}
