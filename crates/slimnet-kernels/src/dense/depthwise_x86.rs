//! x86-64 direct depthwise convolution for stride 1, dilation 1, 2-D kernels (AVX-512 and AVX2):
//! the input plane is copied into a zero-padded buffer (so every tap is a plain unaligned load),
//! a row of outputs per register, one FMA per tap. The same code serves both levels through
//! [`Simd`]. The 1-D kernels are in [`depthwise_line_x86`](super::depthwise_line_x86).

use std::arch::x86_64::*;

use crate::{Activation, ConvGeometry};

/// Output rows computed together (independent accumulators, each loaded input feeding several).
const BAND: usize = 8;

/// The vector operations the kernels below use, at one instruction-set level. Every method is
/// inlined into a caller compiled for that level.
pub(crate) trait Simd {
    /// Values per register.
    const LANES: usize;
    /// A register of `LANES` values.
    type V: Copy;
    /// Every lane `v`.
    unsafe fn splat(v: f32) -> Self::V;
    /// `LANES` values from `p`, unaligned.
    unsafe fn load(p: *const f32) -> Self::V;
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The activation, lane by lane.
    unsafe fn act(v: Self::V, act: Activation) -> Self::V;
    /// `LANES` values to `p`, unaligned.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// [`tall_rows`] compiled for this level as a function of its own (inlined into the
    /// plane's loop, its loops stayed rolled and its weights spilled: 1.44 -> 3.46 ms for 16
    /// channels 9x9 at 256x256 on AVX-512).
    unsafe fn tall<const RB: usize, const KH: usize>(
        p: &Padded,
        kw: usize,
        wk: &[f32],
        oy: usize,
        ox0: usize,
        o: &mut [f32],
    );
    /// [`rows3x3`] compiled for this level as a function of its own.
    unsafe fn rows3x3<const RB: usize>(
        p: &Padded,
        wv: &[[Self::V; 3]; 3],
        oy: usize,
        ox0: usize,
        o: &mut [f32],
    );
    /// [`rows`] compiled for this level as a function of its own.
    unsafe fn rows<const RB: usize>(
        p: &Padded,
        kh: usize,
        kw: usize,
        wk: &[f32],
        oy: usize,
        ox0: usize,
        o: &mut [f32],
    );
}

/// The block functions of [`Simd`] for one level: each a function compiled with the level's
/// target features around the generic body.
macro_rules! blocks {
    ($level:ty, $features:literal) => {
        #[target_feature(enable = $features)]
        unsafe fn tall<const RB: usize, const KH: usize>(
            p: &Padded,
            kw: usize,
            wk: &[f32],
            oy: usize,
            ox0: usize,
            o: &mut [f32],
        ) {
            tall_rows::<$level, RB, KH>(p, kw, wk, oy, ox0, o)
        }
        #[target_feature(enable = $features)]
        unsafe fn rows3x3<const RB: usize>(
            p: &Padded,
            wv: &[[<$level as Simd>::V; 3]; 3],
            oy: usize,
            ox0: usize,
            o: &mut [f32],
        ) {
            rows3x3::<$level, RB>(p, wv, oy, ox0, o)
        }
        #[target_feature(enable = $features)]
        unsafe fn rows<const RB: usize>(
            p: &Padded,
            kh: usize,
            kw: usize,
            wk: &[f32],
            oy: usize,
            ox0: usize,
            o: &mut [f32],
        ) {
            rows::<$level, RB>(p, kh, kw, wk, oy, ox0, o)
        }
    };
}

/// AVX-512: 16 lanes, 32 registers.
pub(crate) struct Avx512;

impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn act(v: __m512, act: Activation) -> __m512 {
        let zero = _mm512_setzero_ps();
        match act {
            Activation::Identity => v,
            Activation::Relu => _mm512_max_ps(v, zero),
            Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(v, zero), _mm512_set1_ps(6.0)),
        }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    blocks!(Avx512, "avx512f");
}

/// AVX2 with FMA: 8 lanes, 16 registers (the blocks' weights that do not fit are read as
/// memory operands: four rows per band instead of eight measured 4.38 against 2.42 ms for 16
/// channels 9x9 at 256x256, 1.33 against 1.16 ms for 32 channels 3x3).
pub(crate) struct Avx2;

impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn act(v: __m256, act: Activation) -> __m256 {
        let zero = _mm256_setzero_ps();
        match act {
            Activation::Identity => v,
            Activation::Relu => _mm256_max_ps(v, zero),
            Activation::Relu6 => _mm256_min_ps(_mm256_max_ps(v, zero), _mm256_set1_ps(6.0)),
        }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    blocks!(Avx2, "avx2,fma");
}

/// One output plane `o` `[oh, ow]` of channel weights `wk` `[kh, kw]` over input plane `x`
/// `[h, w]`, with bias and activation, on AVX-512. `buf` is scratch.
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
    plane_s1::<Avx512>(g, x, wk, bias, act, o, buf)
}

/// [`plane_s1_avx512`] on AVX2.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`plane_s1_avx512`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn plane_s1_avx2(
    g: &ConvGeometry,
    x: &[f32],
    wk: &[f32],
    bias: f32,
    act: Activation,
    o: &mut [f32],
    buf: &mut Vec<f32>,
) {
    plane_s1::<Avx2>(g, x, wk, bias, act, o, buf)
}

/// The plane at level `S`: the padded copy, then bands of output rows.
#[inline(always)]
unsafe fn plane_s1<S: Simd>(
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
    let wp = w + 2 * pw + S::LANES;
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
    let p = Padded {
        bp: buf.as_ptr(),
        wp,
        ow,
        bias,
        act,
    };
    // a band of output rows across the whole width at a time, so that the band's input rows
    // stay in the level-1 cache while its column blocks are computed (column strips down the
    // plane first: 3.24 against 2.70 ms for 16 channels 9x9 at 256x256 on AVX-512). Plain
    // loops, no closures: a closure is not compiled for the vector level, so the intrinsics in
    // it would become calls.
    let mut oy = 0;
    if (kh, kw) == (3, 3) {
        let mut wv = [[S::splat(0.0); 3]; 3];
        for (ki, row) in wv.iter_mut().enumerate() {
            for (kj, v) in row.iter_mut().enumerate() {
                *v = S::splat(wk[ki * 3 + kj]);
            }
        }
        while oy + BAND <= oh {
            for ox0 in (0..ow).step_by(S::LANES) {
                S::rows3x3::<BAND>(&p, &wv, oy, ox0, o);
            }
            oy += BAND;
        }
    } else {
        while oy + BAND <= oh {
            for ox0 in (0..ow).step_by(S::LANES) {
                match kh {
                    5 => S::tall::<BAND, 5>(&p, kw, wk, oy, ox0, o),
                    7 => S::tall::<BAND, 7>(&p, kw, wk, oy, ox0, o),
                    9 => S::tall::<BAND, 9>(&p, kw, wk, oy, ox0, o),
                    _ => S::rows::<BAND>(&p, kh, kw, wk, oy, ox0, o),
                }
            }
            oy += BAND;
        }
    }
    while oy < oh {
        for ox0 in (0..ow).step_by(S::LANES) {
            S::rows::<1>(&p, kh, kw, wk, oy, ox0, o);
        }
        oy += 1;
    }
}

/// The zero-padded input plane and what every block of outputs needs with it.
pub(crate) struct Padded {
    /// The padded plane.
    bp: *const f32,
    /// Its row length: the padded input row plus one register of zeros, so the highest lane
    /// read for the last output column block (`ox0 + LANES - 1 + kw - 1`) stays in the row
    /// because `ow = w + 2 pw - kw + 1`.
    wp: usize,
    ow: usize,
    bias: f32,
    act: Activation,
}

impl Padded {
    /// The padded input at row `r`, column `c`.
    #[inline(always)]
    unsafe fn at(&self, r: usize, c: usize) -> *const f32 {
        self.bp.add(r * self.wp + c)
    }

    /// Stores `RB` rows of sums from output row `oy`, column `ox0` (as many columns as remain,
    /// at most one register), with the activation.
    #[inline(always)]
    unsafe fn store<S: Simd, const RB: usize>(
        &self,
        acc: &[S::V; RB],
        oy: usize,
        ox0: usize,
        o: &mut [f32],
    ) {
        let cols = (self.ow - ox0).min(S::LANES);
        for (q, a) in acc.iter().enumerate() {
            let r = S::act(*a, self.act);
            let dst = o.as_mut_ptr().add((oy + q) * self.ow + ox0);
            if cols == S::LANES {
                S::store(dst, r);
            } else {
                let mut tmp = [0.0f32; 16];
                S::store(tmp.as_mut_ptr(), r);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols);
            }
        }
    }
}

/// `RB` consecutive output rows from `oy`, one register of columns from `ox0`: tap by tap, one
/// broadcast weight and `RB` independent accumulators, so that the fused multiply-adds do not
/// wait on each other. Any kernel height; [`tall_rows`] is faster for the heights it is
/// compiled for.
#[inline(always)]
unsafe fn rows<S: Simd, const RB: usize>(
    p: &Padded,
    kh: usize,
    kw: usize,
    wk: &[f32],
    oy: usize,
    ox0: usize,
    o: &mut [f32],
) {
    let mut acc = [S::splat(p.bias); RB];
    for ki in 0..kh {
        // padded row oy + q + ki feeds output row oy + q; the padded column of output ox and
        // tap kj is ox + kj
        for kj in 0..kw {
            let wv = S::splat(wk[ki * kw + kj]);
            for (q, a) in acc.iter_mut().enumerate() {
                *a = S::fma(wv, S::load(p.at(oy + q + ki, ox0 + kj)), *a);
            }
        }
    }
    p.store::<S, RB>(&acc, oy, ox0, o);
}

/// [`rows`] for a kernel of `KH` rows: kernel column by kernel column, the column's `KH`
/// weights broadcast once, and each input vector loaded once for every output row it belongs
/// to (the loops over rows unroll; loading each tap's input apart was bound by the loads, which
/// straddle cache lines: 2.70 against 1.44-1.58 ms for 16 channels 9x9 at 256x256 on
/// AVX-512).
#[inline(always)]
unsafe fn tall_rows<S: Simd, const RB: usize, const KH: usize>(
    p: &Padded,
    kw: usize,
    wk: &[f32],
    oy: usize,
    ox0: usize,
    o: &mut [f32],
) {
    let mut acc = [S::splat(p.bias); RB];
    for kj in 0..kw {
        // a loop, not `array::from_fn`: its closure would not be compiled for the vector level
        let mut wv = [S::splat(0.0); KH];
        for (ki, w) in wv.iter_mut().enumerate() {
            *w = S::splat(wk[ki * kw + kj]);
        }
        for r in 0..RB + KH - 1 {
            let v = S::load(p.at(oy + r, ox0 + kj));
            for (q, a) in acc.iter_mut().enumerate() {
                // output row oy + q uses padded row oy + r with tap ki = r - q
                if r >= q && r - q < KH {
                    *a = S::fma(wv[r - q], v, *a);
                }
            }
        }
    }
    p.store::<S, RB>(&acc, oy, ox0, o);
}

/// [`rows`] for a 3x3 kernel with the weights already broadcast, so every loop unrolls; each
/// loaded input vector feeds every output row it belongs to.
#[inline(always)]
unsafe fn rows3x3<S: Simd, const RB: usize>(
    p: &Padded,
    wv: &[[S::V; 3]; 3],
    oy: usize,
    ox0: usize,
    o: &mut [f32],
) {
    let mut acc = [S::splat(p.bias); RB];
    for r in 0..RB + 2 {
        let row = p.at(oy + r, ox0);
        let v = [S::load(row), S::load(row.add(1)), S::load(row.add(2))];
        for (q, a) in acc.iter_mut().enumerate() {
            // output row oy + q uses padded row oy + r with tap ki = r - q
            if r >= q && r - q < 3 {
                let w = &wv[r - q];
                *a = S::fma(w[0], v[0], *a);
                *a = S::fma(w[1], v[1], *a);
                *a = S::fma(w[2], v[2], *a);
            }
        }
    }
    p.store::<S, RB>(&acc, oy, ox0, o);
}
