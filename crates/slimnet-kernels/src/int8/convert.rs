//! Element-wise conversions of u8 activation codes, compiled for the widest vector unit the
//! CPU has (the loops are branch-free, so the compiler vectorizes them for each target).
//!
//! Between graph nodes, codes travel as exact integers `0..=255` held in f32 (the core graph
//! moves f32 tensors); these functions move them in and out of that form.

use super::QuantParams;
use crate::error::{check_len, Result};
use crate::isa::vectorized;

/// One code from an f32: clamped into `[0, 255]` (NaN to 0), rounded to the nearest integer by
/// adding 2^23 (whose low mantissa byte is then the code).
// `max`/`min` rather than `clamp`: they map NaN to the bound, `clamp` keeps NaN
#[allow(clippy::manual_clamp)]
#[inline(always)]
fn code(v: f32) -> u8 {
    (v.max(0.0).min(255.0) + 8_388_608.0).to_bits() as u8
}

/// [`QuantParams::quantize`] without a libm call or an integer conversion, so that it
/// vectorizes: `clamp(round(x / scale) + zp, 0, 255)` with rounding half away from zero, NaN to
/// code 0. Equal to `p.quantize(x)` for every input (tested on ties and extremes).
#[allow(clippy::manual_clamp)] // NaN handling, as in `code`
#[inline(always)]
fn quantize_one(p: QuantParams, x: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0; // 2^23
                                    // beyond ±300 steps every value saturates; NaN becomes -300 (f32::max returns the other
                                    // operand), hence code 0
    let t = (x / p.scale).max(-300.0).min(300.0);
    let a = t.abs();
    let n = (a + MAGIC) - MAGIC; // round half to even, exact for a < 2^22
                                 // a tie rounded down to even goes up instead (a - n is exact by Sterbenz's lemma)
    let r = n + if a - n == 0.5 { 1.0 } else { 0.0 };
    let q = r.copysign(t) + p.zero_point as f32;
    code(q)
}

vectorized! {
    /// Codes held in f32 back to u8: each value rounded to the nearest integer and saturated
    /// into `0..=255`, NaN to 0.
    ///
    /// ```
    /// let mut out = [0u8; 4];
    /// slimnet_kernels::int8::codes_from_f32(&[3.0, -2.0, 300.0, f32::NAN], &mut out)?;
    /// assert_eq!(out, [3, 0, 255, 0]);
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    ///
    /// # Errors
    /// When `x` and `out` differ in length.
    pub fn codes_from_f32(x: &[f32], out: &mut [u8]) {
        check_len("codes output", x.len(), out.len())?;
        for (o, v) in out.iter_mut().zip(x) {
            *o = code(*v);
        }
        Ok(())
    }
}

vectorized! {
    /// u8 codes widened to f32.
    ///
    /// # Errors
    /// When `codes` and `out` differ in length.
    pub fn codes_to_f32(codes: &[u8], out: &mut [f32]) {
        check_len("codes output", codes.len(), out.len())?;
        for (o, c) in out.iter_mut().zip(codes) {
            *o = f32::from(*c);
        }
        Ok(())
    }
}

vectorized! {
    /// Quantizes f32 values to codes held in f32: `out[i]` is `p.quantize(x[i])` exactly.
    ///
    /// ```
    /// use slimnet_kernels::int8::{quantize_to_f32_codes, QuantParams};
    /// let p = QuantParams { scale: 0.5, zero_point: 10 };
    /// let mut out = [0f32; 3];
    /// quantize_to_f32_codes(p, &[1.25, -100.0, f32::NAN], &mut out)?;
    /// assert_eq!(out, [13.0, 0.0, 0.0]);
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    ///
    /// # Errors
    /// When `x` and `out` differ in length.
    pub fn quantize_to_f32_codes(p: QuantParams, x: &[f32], out: &mut [f32]) {
        check_len("quantize output", x.len(), out.len())?;
        for (o, v) in out.iter_mut().zip(x) {
            *o = f32::from(quantize_one(p, *v));
        }
        Ok(())
    }
}

vectorized! {
    /// The real values of codes held in f32 (read as [`codes_from_f32`] does).
    ///
    /// # Errors
    /// When `x` and `out` differ in length.
    pub fn dequantize_f32_codes(p: QuantParams, x: &[f32], out: &mut [f32]) {
        check_len("dequantize output", x.len(), out.len())?;
        let (s, zp) = (p.scale, i32::from(p.zero_point));
        for (o, v) in out.iter_mut().zip(x) {
            *o = (i32::from(code(*v)) - zp) as f32 * s;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (-20_000..20_000).map(|i| i as f32 * 0.0125).collect();
        xs.extend([
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            8_388_607.5,
            -8_388_609.0,
            f32::MIN_POSITIVE,
            -0.0,
        ]);
        xs
    }

    #[test]
    fn quantize_matches_the_definition_on_ties_and_extremes() {
        let xs = inputs();
        let mut out = vec![0f32; xs.len()];
        for (scale, zero_point) in [(0.1, 0), (0.05, 128), (1.0, 37), (3e-5, 255)] {
            let p = QuantParams { scale, zero_point };
            quantize_to_f32_codes(p, &xs, &mut out).unwrap();
            for (&x, &q) in xs.iter().zip(&out) {
                assert_eq!(quantize_one(p, x), p.quantize(x), "{x} {p:?}");
                assert_eq!(q, f32::from(p.quantize(x)), "{x} {p:?}");
            }
        }
    }

    #[test]
    fn codes_round_trip_and_saturate() {
        let xs = inputs();
        let mut codes = vec![0u8; xs.len()];
        codes_from_f32(&xs, &mut codes).unwrap();
        for (&x, &c) in xs.iter().zip(&codes) {
            let want = if x.is_nan() {
                0
            } else {
                x.round_ties_even().clamp(0.0, 255.0) as u8
            };
            assert_eq!(c, want, "{x}");
        }
        let all: Vec<u8> = (0..=255).collect();
        let mut wide = vec![0f32; 256];
        codes_to_f32(&all, &mut wide).unwrap();
        let mut back = vec![0u8; 256];
        codes_from_f32(&wide, &mut back).unwrap();
        assert_eq!(back, all);
        let p = QuantParams {
            scale: 0.25,
            zero_point: 100,
        };
        let mut real = vec![0f32; 256];
        dequantize_f32_codes(p, &wide, &mut real).unwrap();
        for (c, r) in all.iter().zip(&real) {
            assert_eq!(*r, p.dequantize(*c));
        }
    }

    #[test]
    fn lengths_are_checked() {
        assert!(codes_from_f32(&[1.0], &mut []).is_err());
        assert!(codes_to_f32(&[1], &mut [0.0; 2]).is_err());
        let p = QuantParams {
            scale: 1.0,
            zero_point: 0,
        };
        assert!(quantize_to_f32_codes(p, &[1.0], &mut []).is_err());
        assert!(dequantize_f32_codes(p, &[], &mut [0.0]).is_err());
    }
}
