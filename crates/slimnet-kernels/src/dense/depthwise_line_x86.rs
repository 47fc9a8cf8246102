//! x86-64 direct depthwise convolution for stride 1, dilation 1, 1-D kernels (`kh x 1` and
//! `1 x kw`, the middle of a CP rewrite; AVX-512 or AVX2), without copying the input. A
//! vertical kernel's interior output rows are one flat run of FMAs over whole input rows; a
//! horizontal kernel with "same" width runs flat over the plane and recomputes the border
//! columns. Both are tested against the scalar reference on ragged shapes.

use std::arch::x86_64::*;

use crate::{Activation, ConvGeometry};

/// The largest kernel length the 1-D paths below take (longer kernels use the 2-D paths).
pub(crate) const MAX_LINE_TAPS: usize = 16;

/// A one-dimensional depthwise kernel the direct line paths handle: stride 1, dilation 1, at
/// most [`MAX_LINE_TAPS`] taps, and no padding across the kernel's unit dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// `kh x 1`, no column padding: output rows are weighted sums of whole input rows.
    Vertical,
    /// `1 x kw`, no row padding: each output row is a 1-D convolution of its input row.
    Horizontal,
}

impl Line {
    /// The line shape of `g`, if it has one.
    pub(crate) fn of(g: &ConvGeometry) -> Option<Line> {
        if g.stride != (1, 1) || g.dilation != (1, 1) {
            return None;
        }
        if g.kernel_w == 1 && g.padding.1 == 0 && g.kernel_h <= MAX_LINE_TAPS {
            Some(Line::Vertical)
        } else if g.kernel_h == 1 && g.padding.0 == 0 && g.kernel_w <= MAX_LINE_TAPS {
            Some(Line::Horizontal)
        } else {
            None
        }
    }
}

/// Up to [`MAX_LINE_TAPS`] (source pointer, weight) pairs of one output run.
struct Taps {
    src: [*const f32; MAX_LINE_TAPS],
    w: [f32; MAX_LINE_TAPS],
    n: usize,
}

impl Taps {
    fn new() -> Self {
        Self {
            src: [std::ptr::null(); MAX_LINE_TAPS],
            w: [0.0; MAX_LINE_TAPS],
            n: 0,
        }
    }

    fn push(&mut self, src: *const f32, w: f32) {
        self.src[self.n] = src;
        self.w[self.n] = w;
        self.n += 1;
    }
}

/// A SIMD level for [`line_plane`]: computes `dst[i] = act(bias + Σ_t w_t · src_t[i])` for
/// `i < n`, the taps accumulated in order by fused multiply-adds.
trait RowTaps {
    /// # Safety
    /// The CPU must support the level; `dst` must be valid for `n` writes and every tap source
    /// for `n` reads.
    unsafe fn run(dst: *mut f32, n: usize, taps: &Taps, bias: f32, act: Activation);

    /// The border columns `cols` of every row of a horizontal kernel's output plane `o`
    /// (`rows x ow`) from the input plane `x` (`rows x w`), summing only the taps inside the
    /// row.
    ///
    /// # Safety
    /// The CPU must support the level.
    unsafe fn edges(x: &[f32], o: &mut [f32], cols: std::ops::Range<usize>, e: &Edges<'_>) {
        for y in 0..e.rows {
            let src = &x[y * e.w..(y + 1) * e.w];
            let dst = &mut o[y * e.ow..(y + 1) * e.ow];
            for ox in cols.clone() {
                dst[ox] = edge_value(src, e.wk, e.kw, e.pw, ox, e.bias, e.act);
            }
        }
    }
}

/// The shape and weights of one horizontal plane's border columns ([`RowTaps::edges`]).
struct Edges<'a> {
    rows: usize,
    w: usize,
    ow: usize,
    wk: &'a [f32],
    kw: usize,
    pw: usize,
    bias: f32,
    act: Activation,
}

struct Avx512;
struct Avx2;

impl RowTaps for Avx512 {
    unsafe fn run(dst: *mut f32, n: usize, taps: &Taps, bias: f32, act: Activation) {
        // SAFETY: forwarded contract.
        unsafe { row_taps_avx512(dst, n, taps, bias, act) }
    }

    unsafe fn edges(x: &[f32], o: &mut [f32], cols: std::ops::Range<usize>, e: &Edges<'_>) {
        // SAFETY: forwarded contract.
        unsafe { edges_avx512(x, o, cols, e) }
    }
}

/// [`RowTaps::edges`] for 16 rows at a time: each tap of a border column is gathered down the
/// rows and the sums scattered back (scalar code spent a third of a 56x56 layer here).
#[target_feature(enable = "avx512f")]
unsafe fn edges_avx512(x: &[f32], o: &mut [f32], cols: std::ops::Range<usize>, e: &Edges<'_>) {
    let (rows, w, ow) = (e.rows, e.w, e.ow);
    assert!(
        x.len() >= rows * w && o.len() >= rows * ow && x.len().max(o.len()) <= i32::MAX as usize
    );
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
    for ox in cols {
        // taps kj with 0 <= ox + kj - pw < w
        let k0 = e.pw.saturating_sub(ox);
        let k1 = (w + e.pw).saturating_sub(ox).min(e.kw);
        let mut y0 = 0;
        while y0 < rows {
            let m: __mmask16 = if rows - y0 >= 16 {
                0xFFFF
            } else {
                ((1u32 << (rows - y0)) - 1) as __mmask16
            };
            let ys = _mm512_add_epi32(_mm512_set1_epi32(y0 as i32), lanes);
            let row0 = _mm512_mullo_epi32(ys, _mm512_set1_epi32(w as i32));
            let mut acc = _mm512_set1_ps(e.bias);
            for kj in k0..k1 {
                let at = _mm512_add_epi32(row0, _mm512_set1_epi32((ox + kj - e.pw) as i32));
                // SAFETY: lanes in `m` address row y < rows, column ox + kj - pw < w: inside
                // `x` (asserted); masked-off lanes are not read.
                let v = _mm512_mask_i32gather_ps::<4>(zero, m, at, x.as_ptr());
                acc = _mm512_fmadd_ps(_mm512_set1_ps(e.wk[kj]), v, acc);
            }
            let acc = match e.act {
                Activation::Identity => acc,
                Activation::Relu => _mm512_max_ps(acc, zero),
                Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(acc, zero), six),
            };
            let at = _mm512_add_epi32(
                _mm512_mullo_epi32(ys, _mm512_set1_epi32(ow as i32)),
                _mm512_set1_epi32(ox as i32),
            );
            // SAFETY: lanes in `m` address row y < rows, column ox < ow of `o` (asserted).
            _mm512_mask_i32scatter_ps::<4>(o.as_mut_ptr(), m, at, acc);
            y0 += 16;
        }
    }
}

impl RowTaps for Avx2 {
    unsafe fn run(dst: *mut f32, n: usize, taps: &Taps, bias: f32, act: Activation) {
        // SAFETY: forwarded contract.
        unsafe { row_taps_avx2(dst, n, taps, bias, act) }
    }
}

#[inline(always)]
fn act_scalar(v: f32, act: Activation) -> f32 {
    match act {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::Relu6 => v.clamp(0.0, 6.0),
    }
}

/// Dispatches to a version with the tap count fixed at compile time (weights held in registers,
/// the tap loop unrolled) for the common lengths.
#[target_feature(enable = "avx512f")]
unsafe fn row_taps_avx512(dst: *mut f32, n: usize, taps: &Taps, bias: f32, act: Activation) {
    // SAFETY (all arms): forwarded contract.
    unsafe {
        match taps.n {
            1 => taps_avx512::<1>(dst, n, taps, bias, act),
            2 => taps_avx512::<2>(dst, n, taps, bias, act),
            3 => taps_avx512::<3>(dst, n, taps, bias, act),
            4 => taps_avx512::<4>(dst, n, taps, bias, act),
            5 => taps_avx512::<5>(dst, n, taps, bias, act),
            7 => taps_avx512::<7>(dst, n, taps, bias, act),
            _ => taps_avx512_any(dst, n, taps, bias, act),
        }
    }
}

// one index walks the weight and source arrays in step
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
unsafe fn taps_avx512<const T: usize>(
    dst: *mut f32,
    n: usize,
    taps: &Taps,
    bias: f32,
    act: Activation,
) {
    debug_assert_eq!(taps.n, T);
    let wv: [__m512; T] = std::array::from_fn(|t| _mm512_set1_ps(taps.w[t]));
    let src: [*const f32; T] = std::array::from_fn(|t| taps.src[t]);
    let (zero, six, b) = (
        _mm512_setzero_ps(),
        _mm512_set1_ps(6.0),
        _mm512_set1_ps(bias),
    );
    let fin = |a: __m512| match act {
        Activation::Identity => a,
        Activation::Relu => _mm512_max_ps(a, zero),
        Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(a, zero), six),
    };
    let mut i = 0;
    while i + 16 <= n {
        let mut acc = b;
        for t in 0..T {
            // SAFETY: i + 16 <= n and every source holds n readable values.
            acc = _mm512_fmadd_ps(wv[t], unsafe { _mm512_loadu_ps(src[t].add(i)) }, acc);
        }
        // SAFETY: dst holds n writable values.
        unsafe { _mm512_storeu_ps(dst.add(i), fin(acc)) };
        i += 16;
    }
    if i < n {
        let m: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
        let mut acc = b;
        for t in 0..T {
            // SAFETY: only the n - i < 16 remaining lanes are read (masked load).
            acc = _mm512_fmadd_ps(
                wv[t],
                unsafe { _mm512_maskz_loadu_ps(m, src[t].add(i)) },
                acc,
            );
        }
        // SAFETY: only the n - i remaining lanes are written.
        unsafe { _mm512_mask_storeu_ps(dst.add(i), m, fin(acc)) };
    }
}

// one index walks the weight and source arrays in step
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
unsafe fn taps_avx512_any(dst: *mut f32, n: usize, taps: &Taps, bias: f32, act: Activation) {
    let wv: [__m512; MAX_LINE_TAPS] = std::array::from_fn(|t| _mm512_set1_ps(taps.w[t]));
    let (zero, six, b) = (
        _mm512_setzero_ps(),
        _mm512_set1_ps(6.0),
        _mm512_set1_ps(bias),
    );
    let fin = |a: __m512| match act {
        Activation::Identity => a,
        Activation::Relu => _mm512_max_ps(a, zero),
        Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(a, zero), six),
    };
    let mut i = 0;
    while i + 16 <= n {
        let mut acc = b;
        for t in 0..taps.n {
            // SAFETY: i + 16 <= n and every source holds n readable values.
            acc = _mm512_fmadd_ps(wv[t], unsafe { _mm512_loadu_ps(taps.src[t].add(i)) }, acc);
        }
        // SAFETY: dst holds n writable values.
        unsafe { _mm512_storeu_ps(dst.add(i), fin(acc)) };
        i += 16;
    }
    if i < n {
        let m: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
        let mut acc = b;
        for t in 0..taps.n {
            // SAFETY: the mask covers only the n - i < 16 lanes left; masked-off lanes are not
            // read, so nothing past the source's end is touched.
            acc = _mm512_fmadd_ps(
                wv[t],
                unsafe { _mm512_maskz_loadu_ps(m, taps.src[t].add(i)) },
                acc,
            );
        }
        // SAFETY: as above, only the n - i remaining lanes are written.
        unsafe { _mm512_mask_storeu_ps(dst.add(i), m, fin(acc)) };
    }
}

/// As [`row_taps_avx512`].
#[target_feature(enable = "avx2,fma")]
unsafe fn row_taps_avx2(dst: *mut f32, n: usize, taps: &Taps, bias: f32, act: Activation) {
    // SAFETY (all arms): forwarded contract.
    unsafe {
        match taps.n {
            1 => taps_avx2::<1>(dst, n, taps, bias, act),
            2 => taps_avx2::<2>(dst, n, taps, bias, act),
            3 => taps_avx2::<3>(dst, n, taps, bias, act),
            4 => taps_avx2::<4>(dst, n, taps, bias, act),
            5 => taps_avx2::<5>(dst, n, taps, bias, act),
            7 => taps_avx2::<7>(dst, n, taps, bias, act),
            _ => taps_avx2_any(dst, n, taps, bias, act),
        }
    }
}

// one index walks the weight and source arrays in step
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn taps_avx2<const T: usize>(
    dst: *mut f32,
    n: usize,
    taps: &Taps,
    bias: f32,
    act: Activation,
) {
    debug_assert_eq!(taps.n, T);
    let wv: [__m256; T] = std::array::from_fn(|t| _mm256_set1_ps(taps.w[t]));
    let src: [*const f32; T] = std::array::from_fn(|t| taps.src[t]);
    let (zero, six, b) = (
        _mm256_setzero_ps(),
        _mm256_set1_ps(6.0),
        _mm256_set1_ps(bias),
    );
    let fin = |a: __m256| match act {
        Activation::Identity => a,
        Activation::Relu => _mm256_max_ps(a, zero),
        Activation::Relu6 => _mm256_min_ps(_mm256_max_ps(a, zero), six),
    };
    let mut i = 0;
    while i + 8 <= n {
        let mut acc = b;
        for t in 0..T {
            // SAFETY: i + 8 <= n and every source holds n readable values.
            acc = _mm256_fmadd_ps(wv[t], unsafe { _mm256_loadu_ps(src[t].add(i)) }, acc);
        }
        // SAFETY: dst holds n writable values.
        unsafe { _mm256_storeu_ps(dst.add(i), fin(acc)) };
        i += 8;
    }
    while i < n {
        let mut acc = bias;
        for t in 0..T {
            // SAFETY: i < n.
            acc = taps.w[t].mul_add(unsafe { *src[t].add(i) }, acc);
        }
        // SAFETY: i < n.
        unsafe { *dst.add(i) = act_scalar(acc, act) };
        i += 1;
    }
}

// one index walks the weight and source arrays in step
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn taps_avx2_any(dst: *mut f32, n: usize, taps: &Taps, bias: f32, act: Activation) {
    let wv: [__m256; MAX_LINE_TAPS] = std::array::from_fn(|t| _mm256_set1_ps(taps.w[t]));
    let (zero, six, b) = (
        _mm256_setzero_ps(),
        _mm256_set1_ps(6.0),
        _mm256_set1_ps(bias),
    );
    let fin = |a: __m256| match act {
        Activation::Identity => a,
        Activation::Relu => _mm256_max_ps(a, zero),
        Activation::Relu6 => _mm256_min_ps(_mm256_max_ps(a, zero), six),
    };
    let mut i = 0;
    while i + 8 <= n {
        let mut acc = b;
        for t in 0..taps.n {
            // SAFETY: i + 8 <= n and every source holds n readable values.
            acc = _mm256_fmadd_ps(wv[t], unsafe { _mm256_loadu_ps(taps.src[t].add(i)) }, acc);
        }
        // SAFETY: dst holds n writable values.
        unsafe { _mm256_storeu_ps(dst.add(i), fin(acc)) };
        i += 8;
    }
    while i < n {
        let mut acc = bias;
        for t in 0..taps.n {
            // SAFETY: i < n.
            acc = taps.w[t].mul_add(unsafe { *taps.src[t].add(i) }, acc);
        }
        // SAFETY: i < n.
        unsafe { *dst.add(i) = act_scalar(acc, act) };
        i += 1;
    }
}

/// One output plane of a [`Line`] kernel at the SIMD level `R`.
///
/// Vertical: the output rows whose taps all fall inside the input form one flat run (every tap
/// source is the input shifted by whole rows); the few border rows get the taps that exist.
/// Horizontal: per row, the interior columns are one run and the border columns (padding) are
/// summed one by one over their valid taps.
///
/// # Safety
/// The CPU must support `R`; `g` must be [`Line::of`] `line`, `x` one input plane
/// (`in_h * in_w`), `wk` one channel's weights and `o` one output plane (`out_h * out_w`).
#[inline(always)]
unsafe fn line_plane<R: RowTaps>(
    g: &ConvGeometry,
    line: Line,
    x: &[f32],
    wk: &[f32],
    bias: f32,
    act: Activation,
    o: &mut [f32],
) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    assert!(x.len() >= h * w && o.len() >= oh * ow);
    match line {
        Line::Vertical => {
            let (kh, ph) = (g.kernel_h, g.padding.0);
            assert!(wk.len() >= kh && ow == w);
            // output row oy reads input rows oy - ph + ki; all exist for oy in [ph, h + ph - kh + 1)
            let lo = ph.min(oh);
            let hi = (h + ph + 1).saturating_sub(kh).clamp(lo, oh);
            let mut run = |oy0: usize, rows: usize| {
                let mut taps = Taps::new();
                for (ki, &wv) in wk[..kh].iter().enumerate() {
                    let iy = oy0 + ki;
                    // every row of the run reads input rows iy - ph .. iy - ph + rows: take the
                    // tap only when all of them exist (the caller splits runs so that either all
                    // or none do)
                    if iy >= ph && iy - ph + rows <= h {
                        taps.push(x[(iy - ph) * w..].as_ptr(), wv);
                    }
                }
                // SAFETY: each tap source starts at an input row with `rows` whole rows after it
                // inside the plane (checked above), and the destination is `rows` output rows.
                unsafe { R::run(o[oy0 * ow..].as_mut_ptr(), rows * ow, &taps, bias, act) };
            };
            for oy in 0..lo {
                run(oy, 1);
            }
            if hi > lo {
                run(lo, hi - lo);
            }
            for oy in hi..oh {
                run(oy, 1);
            }
        }
        Line::Horizontal => {
            let (kw, pw) = (g.kernel_w, g.padding.1);
            assert!(wk.len() >= kw && oh == h);
            // output column ox reads ox - pw + kj; all exist for ox in [pw, w + pw - kw + 1)
            let lo = pw.min(ow);
            let hi = (w + pw + 1).saturating_sub(kw).clamp(lo, ow);
            if ow == w && hi > lo && h > 1 {
                // rows of equal length: one flat run over the plane from the first row's
                // interior to the last row's; the columns it gets wrong (a tap wrapping into the
                // neighbouring row) are exactly the border columns, recomputed below
                let n = (h - 1) * w + hi - lo;
                let mut taps = Taps::new();
                for (kj, &wv) in wk[..kw].iter().enumerate() {
                    taps.push(x[lo + kj - pw..].as_ptr(), wv);
                }
                // SAFETY: tap kj reads x[lo - pw + kj .. lo - pw + kj + n]; its end,
                // (h - 1) w + hi - pw + kj <= h w because hi - pw + kw - 1 <= w. The
                // destination o[lo .. lo + n] ends at (h - 1) w + hi <= h w.
                unsafe { R::run(o[lo..].as_mut_ptr(), n, &taps, bias, act) };
                let e = Edges {
                    rows: oh,
                    w,
                    ow,
                    wk,
                    kw,
                    pw,
                    bias,
                    act,
                };
                // SAFETY: the level is supported (this function's contract).
                unsafe {
                    R::edges(x, o, 0..lo, &e);
                    R::edges(x, o, hi..ow, &e);
                }
                return;
            }
            for y in 0..oh {
                let src = &x[y * w..(y + 1) * w];
                let dst = &mut o[y * ow..(y + 1) * ow];
                for ox in (0..lo).chain(hi..ow) {
                    dst[ox] = edge_value(src, wk, kw, pw, ox, bias, act);
                }
                if hi > lo {
                    let mut taps = Taps::new();
                    for (kj, &wv) in wk[..kw].iter().enumerate() {
                        taps.push(src[lo + kj - pw..].as_ptr(), wv);
                    }
                    // SAFETY: tap kj reads src[lo - pw + kj .. hi - pw + kj], inside the row
                    // because hi - pw + kw - 1 <= w; dst[lo..hi] is inside the output row.
                    unsafe { R::run(dst[lo..].as_mut_ptr(), hi - lo, &taps, bias, act) };
                }
            }
        }
    }
}

/// Output column `ox` of a horizontal line kernel over the input row `src`, summing only the taps
/// that fall inside the row.
#[inline(always)]
fn edge_value(
    src: &[f32],
    wk: &[f32],
    kw: usize,
    pw: usize,
    ox: usize,
    bias: f32,
    act: Activation,
) -> f32 {
    // taps kj with 0 <= ox + kj - pw < len
    let k0 = pw.saturating_sub(ox);
    let k1 = (src.len() + pw).saturating_sub(ox).min(kw);
    let mut acc = bias;
    for kj in k0..k1 {
        acc += wk[kj] * src[ox + kj - pw];
    }
    act_scalar(acc, act)
}

/// [`line_plane`] with AVX-512.
///
/// # Safety
/// AVX-512F must be available; otherwise as [`line_plane`].
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn line_plane_avx512(
    g: &ConvGeometry,
    line: Line,
    x: &[f32],
    wk: &[f32],
    bias: f32,
    act: Activation,
    o: &mut [f32],
) {
    // SAFETY: forwarded contract; AVX-512F is available.
    unsafe { line_plane::<Avx512>(g, line, x, wk, bias, act, o) }
}

/// [`line_plane`] with AVX2 and FMA.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`line_plane`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn line_plane_avx2(
    g: &ConvGeometry,
    line: Line,
    x: &[f32],
    wk: &[f32],
    bias: f32,
    act: Activation,
    o: &mut [f32],
) {
    // SAFETY: forwarded contract; AVX2 and FMA are available.
    unsafe { line_plane::<Avx2>(g, line, x, wk, bias, act, o) }
}
