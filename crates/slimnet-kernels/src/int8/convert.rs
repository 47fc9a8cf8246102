//! Element-wise quantization and dequantization of u8 activation codes, compiled for the
//! widest vector unit the CPU has (the loops are branch-free, so the compiler vectorizes them
//! for each target).

use super::QuantParams;
use crate::error::{check_len, Result};
use crate::isa::vectorized;

/// One code from an f32 integer value: clamped into `[0, 255]` (NaN to 0), read off the low
/// mantissa byte after adding 2^23.
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
    /// Quantizes activations: `out[i]` is `p.quantize(x[i])` exactly
    /// (`clamp(round(x / scale) + zero_point, 0, 255)`, ties away from zero, NaN to 0), in
    /// vector registers.
    ///
    /// ```
    /// use slimnet_kernels::int8::{quantize_u8, QuantParams};
    /// let p = QuantParams { scale: 0.5, zero_point: 10 };
    /// let mut out = [0u8; 3];
    /// quantize_u8(&[1.25, -100.0, f32::NAN], p, &mut out)?;
    /// assert_eq!(out, [13, 0, 0]);
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    ///
    /// # Errors
    /// When `x` and `out` differ in length.
    pub fn quantize_u8(x: &[f32], p: QuantParams, out: &mut [u8]) {
        check_len("quantize output", x.len(), out.len())?;
        for (o, v) in out.iter_mut().zip(x) {
            *o = quantize_one(p, *v);
        }
        Ok(())
    }
}

vectorized! {
    /// The real values of codes: `(q - zero_point) * scale`, in vector registers.
    ///
    /// # Errors
    /// When `q` and `out` differ in length.
    pub fn dequantize_u8(q: &[u8], p: QuantParams, out: &mut [f32]) {
        check_len("dequantize output", q.len(), out.len())?;
        let (s, zp) = (p.scale, i32::from(p.zero_point));
        for (o, c) in out.iter_mut().zip(q) {
            *o = (i32::from(*c) - zp) as f32 * s;
        }
        Ok(())
    }
}

vectorized! {
    /// The sum of two code tensors, written as codes: `out[i]` is
    /// `po.quantize(pa.dequantize(a[i]) + pb.dequantize(b[i]))` exactly (the int8 residual
    /// addition of a quantized ResNet: each branch keeps its own quantization), in vector
    /// registers.
    ///
    /// ```
    /// use slimnet_kernels::int8::{add_u8, QuantParams};
    /// let (pa, pb) = (QuantParams { scale: 0.5, zero_point: 0 }, QuantParams { scale: 0.25, zero_point: 128 });
    /// let po = QuantParams { scale: 0.5, zero_point: 10 };
    /// let mut out = [0u8; 2];
    /// add_u8(&[4, 200], pa, &[132, 0], pb, po, &mut out)?; // 2 + 1 = 3; 100 - 32 = 68
    /// assert_eq!(out, [16, 146]);
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    ///
    /// # Errors
    /// When `a`, `b` and `out` differ in length.
    pub fn add_u8(a: &[u8], pa: QuantParams, b: &[u8], pb: QuantParams, po: QuantParams, out: &mut [u8]) {
        check_len("add input", a.len(), b.len())?;
        check_len("add output", a.len(), out.len())?;
        let (sa, za) = (pa.scale, i32::from(pa.zero_point));
        let (sb, zb) = (pb.scale, i32::from(pb.zero_point));
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            let v = (i32::from(*x) - za) as f32 * sa + (i32::from(*y) - zb) as f32 * sb;
            *o = quantize_one(po, v);
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
        let mut out = vec![0u8; xs.len()];
        let mut back = vec![0f32; xs.len()];
        for (scale, zero_point) in [(0.1, 0), (0.05, 128), (1.0, 37), (3e-5, 255)] {
            let p = QuantParams { scale, zero_point };
            quantize_u8(&xs, p, &mut out).unwrap();
            dequantize_u8(&out, p, &mut back).unwrap();
            for ((&x, &q), &r) in xs.iter().zip(&out).zip(&back) {
                assert_eq!(quantize_one(p, x), p.quantize(x), "{x} {p:?}");
                assert_eq!(q, p.quantize(x), "{x} {p:?}");
                assert_eq!(r, p.dequantize(q), "{q} {p:?}");
            }
        }
    }

    #[test]
    fn add_equals_dequantize_add_quantize() {
        let a: Vec<u8> = (0..=255).flat_map(|i| [i as u8; 7]).collect();
        let b: Vec<u8> = (0..a.len()).map(|i| (i * 37 % 256) as u8).collect();
        let pa = QuantParams {
            scale: 0.031,
            zero_point: 0,
        };
        let pb = QuantParams {
            scale: 0.012,
            zero_point: 131,
        };
        for po in [
            QuantParams {
                scale: 0.04,
                zero_point: 0,
            },
            QuantParams {
                scale: 0.02,
                zero_point: 90,
            },
        ] {
            let mut out = vec![0u8; a.len()];
            add_u8(&a, pa, &b, pb, po, &mut out).unwrap();
            for ((&x, &y), &q) in a.iter().zip(&b).zip(&out) {
                assert_eq!(
                    q,
                    po.quantize(pa.dequantize(x) + pb.dequantize(y)),
                    "{x} {y}"
                );
            }
        }
        assert!(add_u8(&a, pa, &b[1..], pb, pa, &mut vec![0u8; a.len()]).is_err());
    }

    #[test]
    fn lengths_are_checked() {
        let p = QuantParams {
            scale: 1.0,
            zero_point: 0,
        };
        assert!(quantize_u8(&[1.0], p, &mut []).is_err());
        assert!(dequantize_u8(&[], p, &mut [0.0]).is_err());
    }
}
