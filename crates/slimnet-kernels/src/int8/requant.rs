//! The epilogue of every int8 kernel: i32 accumulators to requantized u8 or dequantized f32.
//!
//! The reference is [`requant_one`]: `clamp(zp + requant(acc + bias), lo, 255)` with saturating
//! i32 arithmetic. The vector kernels compute the same bits another way (see [`RowConsts`]):
//! the sum `acc + bias` is first clamped to a range outside of which the output is 0 or 255 anyway,
//! which keeps every product in i64 and every quotient in i32, so that 16 (AVX-512) or 8 (AVX2)
//! values take two 32 x 32 -> 64-bit multiplies and a few shifts, and the clamps to
//! `[lo, 255]` come from saturating packs.

use std::sync::Arc;

use super::quant::{Multipliers, QuantParams, Requant};
use super::QOutput;
use crate::error::Result;
use crate::isa::Isa;

/// The scalar requantization every variant must match:
/// `clamp(zp + requant(acc + bias), lo, 255)` with saturating i32 arithmetic.
#[inline]
pub(crate) fn requant_one(acc: i32, bias: i32, m: Requant, zp: i32, lo: i32) -> u8 {
    zp.saturating_add(m.apply(acc.saturating_add(bias)))
        .clamp(lo, 255) as u8
}

/// The constants of one output channel for the vector kernels.
///
/// With `T = 2^max(shift - 21, 0)`: `T * M / 2^shift >= 2^9` (as `M >= 2^30`), so whenever
/// `|acc + bias| >= T` the quotient is at least 512 in size and the output is 0 (or `lo`) or
/// 255 whatever the zero point. Clamping `acc + bias` (exactly, in i64) to
/// `[max(-T, i32::MIN), min(T, i32::MAX)]` therefore changes no output, and it is the
/// saturating sum when `T >= 2^31`. Then `|quotient| <= 1025` or `|sum| <= 1`, so the quotient
/// always fits an i32, and `(s * M + R) >> shift` is `s * M + bias * M + R` shifted, with `s` the
/// clamped accumulator: `s = clamp(acc, lo_a, hi_a)`, bounds moved by `-bias` and kept in i32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowConsts {
    /// Lower clamp of the accumulator.
    pub lo_a: i32,
    /// Upper clamp of the accumulator.
    pub hi_a: i32,
    /// The multiplier `M`.
    pub m: i32,
    /// `bias * M + 2^(shift - 1)`.
    pub c: i64,
    /// `min(shift, 32)`: the 64-bit product is shifted right by this much...
    pub s1: u32,
    /// ...then its low 32 bits arithmetically by this much (`shift - s1`).
    pub s2: u32,
    /// Whether the shift is in `32..=53`, where no clamp is needed: `|acc + bias| < 2^32` keeps
    /// `(acc + bias) * M + R` inside i64 (`M < 2^31`, `R <= 2^52`), the quotient is the
    /// product's high dword shifted by `s2`, and when the sum leaves the i32 range (the
    /// reference saturates it) the real scale, at least 2^-23, puts both quotients past 255 in
    /// size, so the outputs agree.
    pub fast: bool,
}

impl RowConsts {
    /// The constants of a channel with multiplier `m` and bias `bias`.
    pub(crate) fn new(m: Requant, bias: i32) -> Self {
        let t = 1i64 << m.shift.saturating_sub(21);
        let (lo, hi) = ((-t).max(i32::MIN as i64), t.min(i32::MAX as i64));
        let b = bias as i64;
        let bound = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        let s1 = m.shift.min(32);
        Self {
            lo_a: bound(lo - b),
            hi_a: bound(hi - b),
            m: m.multiplier,
            c: b * m.multiplier as i64 + (1i64 << (m.shift - 1)),
            s1,
            s2: m.shift - s1,
            fast: (32..=53).contains(&m.shift),
        }
    }

    /// The quotient for one accumulator, as the vector kernels compute it.
    #[cfg_attr(not(test), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn quotient(&self, acc: i32) -> i32 {
        if self.fast {
            let p = (acc as i64 * self.m as i64).wrapping_add(self.c);
            return ((p >> 32) as i32) >> self.s2;
        }
        let s = acc.clamp(self.lo_a, self.hi_a) as i64;
        // the low 32 bits of the first shift, then the second, as the vector kernels take them
        ((s * self.m as i64 + self.c) >> self.s1) as i32 >> self.s2
    }
}

/// [`requant_one`] over a row with one multiplier and bias, with the best variant up to `isa`.
pub(crate) fn requant_row(
    isa: Isa,
    acc: &[i32],
    bias: i32,
    m: Requant,
    zp: i32,
    lo: i32,
    out: &mut [u8],
) {
    let len = acc.len().min(out.len());
    #[cfg(target_arch = "x86_64")]
    {
        let f = crate::isa::features();
        let k = RowConsts::new(m, bias);
        if isa >= Isa::Avx512 && f.avx512 {
            // SAFETY: AVX-512 F/BW/VL are available; `acc` and `out` hold `len` elements.
            unsafe {
                super::requant_x86::row_avx512(acc.as_ptr(), len, &k, zp, lo, out.as_mut_ptr())
            };
            return;
        }
        if isa >= Isa::Avx2 && f.avx2_fma {
            // SAFETY: AVX2 is available; `acc` and `out` hold `len` elements.
            unsafe {
                super::requant_x86::row_avx2(acc.as_ptr(), len, &k, zp, lo, out.as_mut_ptr())
            };
            return;
        }
    }
    let _ = isa;
    for (o, a) in out[..len].iter_mut().zip(&acc[..len]) {
        *o = requant_one(*a, bias, m, zp, lo);
    }
}

/// One channel's output: the clamped i64 form of [`RowConsts`], element by element.
#[inline(always)]
fn requant_lane(acc: i32, bias: i32, m: Requant, zp: i32, lo: i32) -> u8 {
    let t = 1i64 << m.shift.saturating_sub(21);
    let s = (acc as i64 + bias as i64).clamp((-t).max(i32::MIN as i64), t.min(i32::MAX as i64));
    let q = (s * m.multiplier as i64 + (1i64 << (m.shift - 1))) >> m.shift;
    (q + zp as i64).clamp(lo as i64, 255) as u8
}

crate::isa::vectorized! {
    /// `out[c] = requant_one(acc[c], bias[c], mult[c], zp, lo)` for every channel (the batch-1
    /// output of a linear layer), in a loop the compiler vectorizes.
    fn requant_channels(acc: &[i32], bias: Option<&[i32]>, mult: &[Requant], zp: i32, lo: i32,
                        out: &mut [u8]) {
        let n = out.len().min(acc.len()).min(mult.len());
        match bias {
            Some(b) => {
                for (((o, a), b), m) in out[..n].iter_mut().zip(acc).zip(b).zip(mult) {
                    *o = requant_lane(*a, *b, *m, zp, lo);
                }
            }
            None => {
                for ((o, a), m) in out[..n].iter_mut().zip(acc).zip(mult) {
                    *o = requant_lane(*a, 0, *m, zp, lo);
                }
            }
        }
        Ok(())
    }
}

/// Per-channel requantization multipliers `s_in * s_w[c] / s_out` (none for an f32 output),
/// through the weight's cache.
///
/// # Errors
/// A scale out of the range of [`Requant::from_scale`].
pub(crate) fn multipliers(
    x: QuantParams,
    w_scales: &[f32],
    cache: &Multipliers,
    out: &QOutput<'_>,
) -> Result<Arc<[Requant]>> {
    match out {
        QOutput::U8 { params, .. } => cache.get(x.scale, params.scale, w_scales),
        QOutput::F32 { .. } => Ok(Arc::new([])),
    }
}

/// Where [`finish_rows`] finds and puts a channel's values: `rows` rows of `width` columns,
/// `stride` apart in the accumulators (`>= width`) and packed in the output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plane {
    /// Rows per channel.
    pub rows: usize,
    /// Columns kept per row.
    pub width: usize,
    /// Distance between rows in the accumulators.
    pub stride: usize,
}

impl Plane {
    /// `n` contiguous values per channel.
    pub(crate) fn flat(n: usize) -> Self {
        Self {
            rows: 1,
            width: n,
            stride: n,
        }
    }
}

/// Writes `acc [channels, n]` into `out` at `base`, element `(c, j)` at `c * n + j`, or at
/// `j * channels + c` when `transposed`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    isa: Isa,
    acc: &[i32],
    channels: usize,
    n: usize,
    x: QuantParams,
    w_scales: &[f32],
    mult: &[Requant],
    out: &mut QOutput<'_>,
    base: usize,
    transposed: bool,
) {
    if !transposed {
        let p = Plane::flat(n);
        return finish_rows(isa, acc, channels, p, x, w_scales, mult, out, base);
    }
    match out {
        QOutput::U8 {
            out,
            params,
            bias,
            relu,
        } => {
            let zp = params.zero_point as i32;
            let lo = if *relu { zp } else { 0 };
            if n == 1 {
                let dst = &mut out[base..base + channels];
                let acc = &acc[..channels];
                #[cfg(target_arch = "x86_64")]
                if isa >= Isa::Avx512 && crate::isa::features().avx512 {
                    assert!(mult.len() >= channels && bias.is_none_or(|b| b.len() >= channels));
                    let b = bias.map(|b| b.as_ptr());
                    // SAFETY: AVX-512 F/BW/VL are available; `acc`, `dst`, `mult` and the bias
                    // hold `channels` elements (checked above).
                    unsafe {
                        let (a, m, d) = (acc.as_ptr(), mult.as_ptr(), dst.as_mut_ptr());
                        super::requant_x86::channels_avx512(a, b, m, channels, zp, lo, d)
                    };
                    return;
                }
                requant_channels(acc, *bias, mult, zp, lo, dst).expect("infallible");
                return;
            }
            for c in 0..channels {
                let b = bias.map_or(0, |b| b[c]);
                for (j, a) in acc[c * n..(c + 1) * n].iter().enumerate() {
                    out[base + j * channels + c] = requant_one(*a, b, mult[c], zp, lo);
                }
            }
        }
        QOutput::F32 { out, bias } => {
            if n == 1 {
                let dst = &mut out[base..base + channels];
                let it = dst.iter_mut().zip(&acc[..channels]).zip(w_scales);
                match bias {
                    Some(b) => {
                        for (((o, a), s), b) in it.zip(*b) {
                            *o = *a as f32 * (x.scale * s) + b;
                        }
                    }
                    None => {
                        for ((o, a), s) in it {
                            *o = *a as f32 * (x.scale * s) + 0.0;
                        }
                    }
                }
                return;
            }
            for c in 0..channels {
                let s = x.scale * w_scales[c];
                let b = bias.map_or(0.0, |b| b[c]);
                for (j, a) in acc[c * n..(c + 1) * n].iter().enumerate() {
                    out[base + j * channels + c] = *a as f32 * s + b;
                }
            }
        }
    }
}

/// Writes `acc` laid out as `channels` planes `p` (each `p.rows * p.stride` long) into `out` at
/// `base`, element `(c, y, x)` at `c * rows * width + y * width + x`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_rows(
    isa: Isa,
    acc: &[i32],
    channels: usize,
    p: Plane,
    x: QuantParams,
    w_scales: &[f32],
    mult: &[Requant],
    out: &mut QOutput<'_>,
    base: usize,
) {
    let (rows, width, stride) = (p.rows, p.width, p.stride);
    let plane = rows * width;
    let src = |c: usize, y: usize| &acc[(c * rows + y) * stride..][..width];
    match out {
        QOutput::U8 {
            out,
            params,
            bias,
            relu,
        } => {
            let zp = params.zero_point as i32;
            let lo = if *relu { zp } else { 0 };
            for c in 0..channels {
                let b = bias.map_or(0, |b| b[c]);
                let dst = &mut out[base + c * plane..base + (c + 1) * plane];
                if stride == width {
                    requant_row(
                        isa,
                        &acc[c * plane..(c + 1) * plane],
                        b,
                        mult[c],
                        zp,
                        lo,
                        dst,
                    );
                    continue;
                }
                // the kept columns gathered, then the contiguous kernel
                crate::scratch::with(&crate::scratch::I32_B, |t| {
                    let t = crate::scratch::sized(t, plane);
                    compact_rows(&acc[c * rows * stride..], rows, width, stride, t);
                    requant_row(isa, t, b, mult[c], zp, lo, dst);
                });
            }
        }
        QOutput::F32 { out, bias } => {
            for c in 0..channels {
                let s = x.scale * w_scales[c];
                let b = bias.map_or(0.0, |b| b[c]);
                let dst = &mut out[base + c * plane..base + (c + 1) * plane];
                for (y, d) in dst.chunks_exact_mut(width.max(1)).enumerate().take(rows) {
                    for (o, a) in d.iter_mut().zip(src(c, y)) {
                        *o = *a as f32 * s + b;
                    }
                }
            }
        }
    }
}

/// `dst[y * width + x] = src[y * stride + x]` for `x < width`, rows `y < rows`, in 8-byte
/// copies (the last one of a row overlapping the one before) rather than a `memcpy` call per
/// short row.
fn compact_rows<T: Copy>(src: &[T], rows: usize, width: usize, stride: usize, dst: &mut [T]) {
    if width == 0 {
        return;
    }
    for (y, d) in dst.chunks_exact_mut(width).enumerate().take(rows) {
        let s = &src[y * stride..y * stride + width];
        if width < 8 {
            d.copy_from_slice(s);
            continue;
        }
        let mut x = 0;
        loop {
            let at = x.min(width - 8);
            d[at..at + 8].copy_from_slice(&s[at..at + 8]);
            if at + 8 == width {
                break;
            }
            x += 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clamped form of [`RowConsts`] gives [`requant_one`]'s bits on extreme accumulators,
    /// biases, zero points and every shift.
    #[test]
    fn row_consts_match_the_reference() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let special = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX];
        for shift in 1..=62u32 {
            for _ in 0..40 {
                let m = Requant {
                    multiplier: (1 << 30) + (next() % (1 << 30)) as i32,
                    shift,
                };
                let pick = |r: u64| {
                    if r.is_multiple_of(4) {
                        special[(r / 4 % 7) as usize]
                    } else {
                        (r >> 8) as i32 >> (r % 31)
                    }
                };
                let bias = pick(next());
                let zp = (next() % 256) as i32;
                let k = RowConsts::new(m, bias);
                for _ in 0..50 {
                    let acc = pick(next());
                    for lo in [0, zp] {
                        let want = requant_one(acc, bias, m, zp, lo);
                        let q = k.quotient(acc) as i64;
                        assert_eq!((q + zp as i64).clamp(lo as i64, 255) as u8, want);
                        assert_eq!(requant_lane(acc, bias, m, zp, lo), want);
                    }
                }
            }
        }
    }
}
