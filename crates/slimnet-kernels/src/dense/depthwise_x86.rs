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
    // padded row: pw zeros, the input row, then zeros up to a whole extra register
    let wp = w + 2 * pw + 16;
    if buf.len() < h * wp {
        buf.resize(h * wp, 0.0);
    }
    // every element of the h x wp window is written: border zeros, then the row
    for (iy, src) in x.chunks_exact(w).enumerate().take(h) {
        let row = &mut buf[iy * wp..(iy + 1) * wp];
        row[..pw].fill(0.0);
        row[pw..pw + w].copy_from_slice(src);
        row[pw + w..].fill(0.0);
    }
    let bp = buf.as_ptr();
    let mut ox0 = 0;
    while ox0 < ow {
        let cols = (ow - ox0).min(16);
        let mut oy = 0;
        if (kh, kw) == (3, 3) {
            let wv: [[__m512; 3]; 3] =
                std::array::from_fn(|ki| std::array::from_fn(|kj| _mm512_set1_ps(wk[ki * 3 + kj])));
            while oy + 4 <= oh {
                rows3x3::<4>(bp, wp, h, ph, &wv, oy, ox0, bias, act, cols, ow, o);
                oy += 4;
            }
        }
        while oy + 4 <= oh {
            rows::<4>(bp, wp, h, ph, kh, kw, wk, oy, ox0, bias, act, cols, ow, o);
            oy += 4;
        }
        while oy < oh {
            rows::<1>(bp, wp, h, ph, kh, kw, wk, oy, ox0, bias, act, cols, ow, o);
            oy += 1;
        }
        ox0 += cols;
    }
}

/// `RB` consecutive output rows from `oy`, 16 columns from `ox0` (`cols` of them stored): each
/// loaded input vector feeds every output row it belongs to.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn rows<const RB: usize>(
    bp: *const f32,
    wp: usize,
    h: usize,
    ph: usize,
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
    for r in 0..RB + kh - 1 {
        // padded input row oy + r, i.e. input row oy + r - ph
        let iy = oy + r;
        if iy < ph || iy >= h + ph {
            continue;
        }
        // buffer column of output ox and tap kj is ox + kj; the highest lane read,
        // ox0 + 15 + kw - 1, stays below wp because ow = w + 2 pw - kw + 1
        let row = bp.add((iy - ph) * wp + ox0);
        for kj in 0..kw {
            let v = _mm512_loadu_ps(row.add(kj));
            for (q, a) in acc.iter_mut().enumerate() {
                // output row oy + q uses this input row with tap ki = r - q
                if r >= q && r - q < kh {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(wk[(r - q) * kw + kj]), v, *a);
                }
            }
        }
    }
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

/// [`rows`] for a 3x3 kernel with the weights already broadcast, so every loop unrolls.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn rows3x3<const RB: usize>(
    bp: *const f32,
    wp: usize,
    h: usize,
    ph: usize,
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
    let mut r = 0;
    while r < RB + 2 {
        let iy = oy + r;
        if iy >= ph && iy < h + ph {
            // same bounds as in `rows`: the highest lane read is below wp
            let row = bp.add((iy - ph) * wp + ox0);
            let v = [
                _mm512_loadu_ps(row),
                _mm512_loadu_ps(row.add(1)),
                _mm512_loadu_ps(row.add(2)),
            ];
            for (q, a) in acc.iter_mut().enumerate() {
                if r >= q && r - q < 3 {
                    let w = &wv[r - q];
                    *a = _mm512_fmadd_ps(w[0], v[0], *a);
                    *a = _mm512_fmadd_ps(w[1], v[1], *a);
                    *a = _mm512_fmadd_ps(w[2], v[2], *a);
                }
            }
        }
        r += 1;
    }
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
