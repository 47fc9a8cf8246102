//! AVX2/FMA kernels for sparse f32 products.
//!
//! Every function here is `unsafe`: it needs AVX2 and FMA, and callers guarantee that every
//! column an iterator yields indexes a row inside `b`, and that `c` has room for the rows.

use std::arch::x86_64::*;

use super::driver::RowSource;
use crate::Activation;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn act8(v: __m256, act: Activation) -> __m256 {
    match act {
        Activation::Identity => v,
        Activation::Relu => _mm256_max_ps(v, _mm256_setzero_ps()),
        Activation::Relu6 => {
            _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(6.0))
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn tail_mask(width: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(width as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// One output row, `8 * R` columns: `out[0..8R] = act(sum v * b[k*n ..] + bias)`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, I: Iterator<Item = (f32, usize)>>(
    it: I,
    b: *const f32,
    n: usize,
    bias: f32,
    act: Activation,
    out: *mut f32,
) {
    let mut acc = [_mm256_setzero_ps(); R];
    for (v, k) in it {
        let vb = _mm256_set1_ps(v);
        let p = b.add(k * n);
        for (q, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p.add(8 * q)), *a);
        }
    }
    let bb = _mm256_set1_ps(bias);
    for (q, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.add(8 * q), act8(_mm256_add_ps(*a, bb), act));
    }
}

/// As [`tile`] with `R = 1` and only `width < 8` columns.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_masked<I: Iterator<Item = (f32, usize)>>(
    it: I,
    b: *const f32,
    n: usize,
    width: usize,
    bias: f32,
    act: Activation,
    out: *mut f32,
) {
    let m = tail_mask(width);
    let mut acc = _mm256_setzero_ps();
    for (v, k) in it {
        acc = _mm256_fmadd_ps(_mm256_set1_ps(v), _mm256_maskload_ps(b.add(k * n), m), acc);
    }
    let r = act8(_mm256_add_ps(acc, _mm256_set1_ps(bias)), act);
    _mm256_maskstore_ps(out, m, r);
}

const MAX_TILE: usize = 64;
/// Column-tile widths: 64, 32, 16, 8, then a masked remainder.
#[inline]
fn tile_width(left: usize) -> usize {
    match left {
        64.. if MAX_TILE >= 64 => 64,
        32.. => 32,
        16.. => 16,
        8.. => 8,
        w => w,
    }
}

/// Rows `r0..r1` of `act(W * b + bias)` for a row-list format; column tiles outermost so a
/// `[cols, 64]` panel of `b` stays in cache across rows.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rows_tiled_avx2<S: RowSource>(
    src: &S,
    r0: usize,
    r1: usize,
    b: *const f32,
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
    c: *mut f32,
) {
    let mut j = 0;
    while j < n {
        let w = tile_width(n - j);
        for r in r0..r1 {
            let bv = bias.map_or(0.0, |b| b[r]);
            let out = c.add((r - r0) * n + j);
            let it = src.row_iter(r);
            let bj = b.add(j);
            match w {
                64 => tile::<8, _>(it, bj, n, bv, act, out),
                32 => tile::<4, _>(it, bj, n, bv, act, out),
                16 => tile::<2, _>(it, bj, n, bv, act, out),
                8 => tile::<1, _>(it, bj, n, bv, act, out),
                _ => tile_masked(it, bj, n, w, bv, act, out),
            }
        }
        j += w;
    }
}

/// A column index type of the gather kernels: `u32`, or `u16` for narrow matrices.
pub(crate) trait ColIndex: Copy + Into<u32> {}
impl ColIndex for u16 {}
impl ColIndex for u32 {}

/// Eight column indices at `p` as i32 lanes (AVX2).
macro_rules! idx8 {
    ($p:expr, $t:ty) => {
        if std::mem::size_of::<$t>() == 2 {
            _mm256_cvtepu16_epi32(_mm_loadu_si128($p as *const __m128i))
        } else {
            _mm256_loadu_si256($p as *const __m256i)
        }
    };
}

/// Sixteen column indices at `p` as i32 lanes (AVX-512), the first `m` of them when masked.
macro_rules! idx16 {
    ($p:expr, $t:ty) => {
        if std::mem::size_of::<$t>() == 2 {
            _mm512_cvtepu16_epi32(_mm256_loadu_si256($p as *const __m256i))
        } else {
            _mm512_loadu_si512($p as *const __m512i)
        }
    };
    ($p:expr, $t:ty, $m:expr) => {
        if std::mem::size_of::<$t>() == 2 {
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16($m, $p as *const i16))
        } else {
            _mm512_maskz_loadu_epi32($m, $p as *const i32)
        }
    };
}

/// Eight elements `x[k[0..8]]` of `x`, by eight scalar loads.
///
/// # Safety
/// `k` must point at eight readable indices, each below `x`'s length.
#[inline(always)]
unsafe fn pick8<I: ColIndex>(x: *const f32, k: *const I) -> __m256 {
    // SAFETY: the caller's contract.
    let at = |j: usize| unsafe { *x.add((*k.add(j)).into() as usize) };
    _mm256_setr_ps(at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7))
}

/// `sum_i v[i] * x[k[i]]`, sixteen non-zeros a step, the elements of `x` picked by scalar
/// loads rather than gathered, for matrices that stay in cache between products.
///
/// On an AMD EPYC (Zen 4, 32 MB L3), at batch 1 on 4096 columns (a one-off comparison of the
/// two kernels; `sparse90_4096_b1` of `benches/peers/run.py` times the chosen one): at 10%
/// density (10 MB stored) 0.42 ms against 0.59 with 8-wide and 0.63 with 16-wide gathers; at 30% density on
/// 1,536 rows (11 MB) 0.55 against 0.95-0.99. Once the matrix streams from memory the gathers
/// win (4096 rows at 20% and 30% density, 20 and 30 MB: 1.86 against 1.35 ms, 2.19 against
/// 1.91), so [`CsrMatrix`](super::CsrMatrix) picks this kernel by the matrix's size, and only
/// on CPUs whose gathers are slow: on an Intel Xeon (AMX) the 16-wide gathers win at 10 MB too
/// (0.54-0.85 ms against 0.89-1.39, runs interleaved).
///
/// Needs every `k[i] < x.len()`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn csr_dot_pick<I: ColIndex>(v: &[f32], k: &[I], x: &[f32]) -> f32 {
    let len = v.len().min(k.len());
    let (vp, kp, xp) = (v.as_ptr(), k.as_ptr(), x.as_ptr());
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: `i + 16 <= len` (then `i + 8 <= len`) keeps the reads of `v` and `k` inside
    // them, and every index is below `x.len()` (the caller's contract).
    unsafe {
        while i + 16 <= len {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i)), pick8(xp, kp.add(i)), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i + 8)), pick8(xp, kp.add(i + 8)), a1);
            i += 16;
        }
        if i + 8 <= len {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i)), pick8(xp, kp.add(i)), a0);
            i += 8;
        }
        let mut s = hsum8(_mm256_add_ps(a0, a1));
        while i < len {
            s += *vp.add(i) * *xp.add((*kp.add(i)).into() as usize);
            i += 1;
        }
        s
    }
}

/// `sum_i v[i] * x[k[i]]` with 8-wide gathers.
///
/// Needs every `k[i] < x.len()` and `x.len() <= i32::MAX`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn csr_dot_avx2<I: ColIndex>(v: &[f32], k: &[I], x: &[f32]) -> f32 {
    let len = v.len().min(k.len());
    let (vp, kp, xp) = (v.as_ptr(), k.as_ptr(), x.as_ptr());
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= len {
        let i0 = idx8!(kp.add(i), I);
        let i1 = idx8!(kp.add(i + 8), I);
        let g0 = _mm256_i32gather_ps::<4>(xp, i0);
        let g1 = _mm256_i32gather_ps::<4>(xp, i1);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i)), g0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i + 8)), g1, a1);
        i += 16;
    }
    if i + 8 <= len {
        let i0 = idx8!(kp.add(i), I);
        a0 = _mm256_fmadd_ps(
            _mm256_loadu_ps(vp.add(i)),
            _mm256_i32gather_ps::<4>(xp, i0),
            a0,
        );
        i += 8;
    }
    let mut s = hsum8(_mm256_add_ps(a0, a1));
    while i < len {
        s += *vp.add(i) * *xp.add((*kp.add(i)).into() as usize);
        i += 1;
    }
    s
}

/// 2:4 row dot product: `vals` holds two values per group of four columns, `idx` their
/// positions (0..4) in the group; `x` holds `2 * vals.len()` elements.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn nm24_dot_avx2(vals: &[f32], idx: &[u8], x: &[f32]) -> f32 {
    let len = vals.len().min(idx.len());
    let (vp, ip, xp) = (vals.as_ptr(), idx.as_ptr(), x.as_ptr());
    // value j of a block of 8 (four groups) sits in group j / 2; groups 0-1 live in the first 8
    // inputs, groups 2-3 in the next 8, so the lane is 4 * ((j / 2) % 2) + idx
    let base = _mm256_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4);
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= len {
        let x0 = _mm256_loadu_ps(xp.add(2 * i));
        let x1 = _mm256_loadu_ps(xp.add(2 * i + 8));
        let x2 = _mm256_loadu_ps(xp.add(2 * i + 16));
        let x3 = _mm256_loadu_ps(xp.add(2 * i + 24));
        let p0 = _mm256_add_epi32(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(ip.add(i) as *const __m128i)),
            base,
        );
        let p1 = _mm256_add_epi32(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(ip.add(i + 8) as *const __m128i)),
            base,
        );
        let g0 = _mm256_blend_ps::<0xF0>(
            _mm256_permutevar8x32_ps(x0, p0),
            _mm256_permutevar8x32_ps(x1, p0),
        );
        let g1 = _mm256_blend_ps::<0xF0>(
            _mm256_permutevar8x32_ps(x2, p1),
            _mm256_permutevar8x32_ps(x3, p1),
        );
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i)), g0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i + 8)), g1, a1);
        i += 16;
    }
    let mut s = hsum8(_mm256_add_ps(a0, a1));
    while i < len {
        s += *vp.add(i) * *xp.add((i / 2) * 4 + *ip.add(i) as usize);
        i += 1;
    }
    s
}

/// One block row of a BSR matrix (`BR` rows), `8 * R` output columns.
///
/// `blocks` yields `(values, k0)`: a row-major `BR x bc` block at columns `k0..k0 + bc`.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn bsr_tile<const BR: usize, const R: usize>(
    vals: *const f32,
    cols: *const u32,
    nblocks: usize,
    bc: usize,
    b: *const f32,
    n: usize,
    bias: &[f32; BR],
    act: Activation,
    out: *mut f32,
) {
    let mut acc = [[_mm256_setzero_ps(); R]; BR];
    for blk in 0..nblocks {
        let v = vals.add(blk * BR * bc);
        let k0 = *cols.add(blk) as usize * bc;
        for cc in 0..bc {
            let p = b.add((k0 + cc) * n);
            let mut x = [_mm256_setzero_ps(); R];
            for (q, x) in x.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(p.add(8 * q));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let vb = _mm256_set1_ps(*v.add(r * bc + cc));
                for (a, x) in acc.iter_mut().zip(&x) {
                    *a = _mm256_fmadd_ps(vb, *x, *a);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let bb = _mm256_set1_ps(bias[r]);
        for (q, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(r * n + 8 * q), act8(_mm256_add_ps(*a, bb), act));
        }
    }
}

/// Block rows `br0..br1` of a BSR matrix with `BR`-row blocks, over the first
/// `width / (8 * R) * (8 * R)` columns (returned); `b` and `c` have row stride `ld`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn bsr_rows_avx2<const BR: usize, const R: usize>(
    block_ptr: &[u32],
    block_col: &[u32],
    values: &[f32],
    bc: usize,
    br0: usize,
    br1: usize,
    b: *const f32,
    ld: usize,
    width: usize,
    bias: Option<&[f32]>,
    act: Activation,
    c: *mut f32,
) -> usize {
    let w = 8 * R;
    let full = width / w * w;
    let mut j = 0;
    while j < full {
        for br in br0..br1 {
            let lo = block_ptr[br] as usize;
            let hi = block_ptr[br + 1] as usize;
            let mut bb = [0.0f32; BR];
            if let Some(bias) = bias {
                bb.copy_from_slice(&bias[br * BR..(br + 1) * BR]);
            }
            bsr_tile::<BR, R>(
                values.as_ptr().add(lo * BR * bc),
                block_col.as_ptr().add(lo),
                hi - lo,
                bc,
                b.add(j),
                ld,
                &bb,
                act,
                c.add((br - br0) * BR * ld + j),
            );
        }
        j += w;
    }
    full
}

/// `y[0..BR] = sum over blocks of block(BR x 1) * x[k]` for one block row of a `BR x 1` BSR
/// matrix (batch-1 product), BR = 8.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn bsr8x1_gemv_row(vals: &[f32], cols: &[u32], x: &[f32]) -> __m256 {
    let nb = cols.len().min(vals.len() / 8);
    let (vp, cp, xp) = (vals.as_ptr(), cols.as_ptr(), x.as_ptr());
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 2 <= nb {
        let x0 = _mm256_broadcast_ss(&*xp.add(*cp.add(i) as usize));
        let x1 = _mm256_broadcast_ss(&*xp.add(*cp.add(i + 1) as usize));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(8 * i)), x0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(8 * i + 8)), x1, a1);
        i += 2;
    }
    if i < nb {
        let x0 = _mm256_broadcast_ss(&*xp.add(*cp.add(i) as usize));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(8 * i)), x0, a0);
    }
    _mm256_add_ps(a0, a1)
}

/// Applies bias and activation to 8 row results and stores them.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn store8(v: __m256, bias: Option<&[f32]>, act: Activation, out: &mut [f32]) {
    let b = match bias {
        Some(b) => _mm256_loadu_ps(b.as_ptr()),
        None => _mm256_setzero_ps(),
    };
    _mm256_storeu_ps(out.as_mut_ptr(), act8(_mm256_add_ps(v, b), act));
}

/// How many non-zeros ahead the AVX-512 tile prefetches operand rows.
const PREFETCH: usize = 16;

#[inline]
#[target_feature(enable = "avx512f")]
fn act16(v: __m512, act: Activation) -> __m512 {
    match act {
        Activation::Identity => v,
        Activation::Relu => _mm512_max_ps(v, _mm512_setzero_ps()),
        Activation::Relu6 => {
            _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0))
        }
    }
}

/// One output row, `16 * R` columns (lanes beyond `mask` in the last register untouched).
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const R: usize, I: Iterator<Item = (f32, usize)> + Clone>(
    it: I,
    b: *const f32,
    n: usize,
    last: __mmask16,
    bias: f32,
    act: Activation,
    out: *mut f32,
) {
    // two accumulator sets (even and odd non-zeros) so consecutive FMAs do not wait on each
    // other's latency
    let mut acc = [[_mm512_setzero_ps(); R]; 2];
    let mut it = it;
    // prefetch the operand rows PREFETCH non-zeros ahead
    let mut ahead = it.clone().skip(PREFETCH);
    'outer: loop {
        for set in acc.iter_mut() {
            let Some((v, k)) = it.next() else {
                break 'outer;
            };
            if let Some((_, k2)) = ahead.next() {
                let p2 = b.add(k2 * n) as *const i8;
                for q in 0..R {
                    _mm_prefetch::<_MM_HINT_T0>(p2.add(64 * q));
                }
            }
            let vb = _mm512_set1_ps(v);
            let p = b.add(k * n);
            for (q, a) in set.iter_mut().enumerate() {
                let x = if q + 1 == R {
                    _mm512_maskz_loadu_ps(last, p.add(16 * q))
                } else {
                    _mm512_loadu_ps(p.add(16 * q))
                };
                *a = _mm512_fmadd_ps(vb, x, *a);
            }
        }
    }
    let bb = _mm512_set1_ps(bias);
    for (q, (a0, a1)) in acc[0].iter().zip(&acc[1]).enumerate() {
        let r = act16(_mm512_add_ps(_mm512_add_ps(*a0, *a1), bb), act);
        if q + 1 == R {
            _mm512_mask_storeu_ps(out.add(16 * q), last, r);
        } else {
            _mm512_storeu_ps(out.add(16 * q), r);
        }
    }
}

/// AVX-512 version of [`rows_tiled_avx2`]: tiles of up to 64 columns, masked remainder.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn rows_tiled_avx512<S: RowSource>(
    src: &S,
    r0: usize,
    r1: usize,
    b: *const f32,
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
    c: *mut f32,
) {
    let mut j = 0;
    while j < n {
        let w = (n - j).min(64);
        let regs = w.div_ceil(16);
        let rem = w - 16 * (regs - 1);
        let last: __mmask16 = if rem == 16 { 0xFFFF } else { (1u16 << rem) - 1 };
        for r in r0..r1 {
            let bv = bias.map_or(0.0, |b| b[r]);
            let out = c.add((r - r0) * n + j);
            let it = src.row_iter(r);
            let bj = b.add(j);
            match regs {
                4 => tile512::<4, _>(it, bj, n, last, bv, act, out),
                3 => tile512::<3, _>(it, bj, n, last, bv, act, out),
                2 => tile512::<2, _>(it, bj, n, last, bv, act, out),
                _ => tile512::<1, _>(it, bj, n, last, bv, act, out),
            }
        }
        j += w;
    }
}

/// `sum_i v[i] * x[k[i]]` with 16-wide gathers.
///
/// Needs every `k[i] < x.len()` and `x.len() <= i32::MAX`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn csr_dot_avx512<I: ColIndex>(v: &[f32], k: &[I], x: &[f32]) -> f32 {
    let len = v.len().min(k.len());
    let (vp, kp, xp) = (v.as_ptr(), k.as_ptr(), x.as_ptr());
    let mut a0 = _mm512_setzero_ps();
    let mut a1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= len {
        let i0 = idx16!(kp.add(i), I);
        let i1 = idx16!(kp.add(i + 16), I);
        let g0 = _mm512_i32gather_ps::<4>(i0, xp);
        let g1 = _mm512_i32gather_ps::<4>(i1, xp);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(i)), g0, a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(i + 16)), g1, a1);
        i += 32;
    }
    if i < len {
        let rem = (len - i).min(16);
        let m: __mmask16 = if rem == 16 { 0xFFFF } else { (1u16 << rem) - 1 };
        let i0 = idx16!(kp.add(i), I, m);
        let g0 = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, i0, xp);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, vp.add(i)), g0, a0);
        i += rem;
    }
    let mut s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    while i < len {
        s += *vp.add(i) * *xp.add((*kp.add(i)).into() as usize);
        i += 1;
    }
    s
}
