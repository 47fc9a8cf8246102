//! Quantization parameters, weight quantization and fixed-point requantization.

use std::sync::{Arc, Mutex};

use crate::error::{KernelError, Result};

/// Affine u8 quantization of activations: `q = clamp(round(x / scale) + zero_point, 0, 255)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    /// Real value of one step.
    pub scale: f32,
    /// The u8 code of real zero.
    pub zero_point: u8,
}

impl QuantParams {
    /// Parameters covering `[min, max]` (widened to include 0).
    ///
    /// ```
    /// use slimnet_kernels::int8::QuantParams;
    /// let p = QuantParams::from_range(-1.0, 3.0);
    /// assert_eq!(p.zero_point, 64);
    /// assert_eq!(p.quantize(3.0), 255);
    /// ```
    pub fn from_range(min: f32, max: f32) -> Self {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
        Self {
            scale,
            zero_point: zp,
        }
    }

    /// Quantizes one value (round half away from zero, then clamp).
    pub fn quantize(&self, x: f32) -> u8 {
        ((x / self.scale).round() + self.zero_point as f32).clamp(0.0, 255.0) as u8
    }

    /// The real value of a code.
    pub fn dequantize(&self, q: u8) -> f32 {
        (q as i32 - self.zero_point as i32) as f32 * self.scale
    }
}

/// Symmetric per-channel quantization of a weight whose first dimension is the output
/// channel: `channels` rows of `w.len() / channels` values each. Returns the i8 values (in
/// `-127..=127`) and one scale per channel (`max |w| / 127`, or 1 for an all-zero channel).
///
/// # Errors
/// When `channels` is 0 or does not divide `w.len()`, or a weight is not finite.
///
/// ```
/// use slimnet_kernels::int8::quantize_weights_per_channel;
/// let (q, s) = quantize_weights_per_channel(&[0.5, -1.0, 2.0, 1.0], 2)?;
/// assert_eq!(q, vec![64, -127, 127, 64]);
/// assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0]);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
pub fn quantize_weights_per_channel(w: &[f32], channels: usize) -> Result<(Vec<i8>, Vec<f32>)> {
    quantize_weights_per_channel_bits(w, channels, 8)
}

/// Largest magnitude of a weight level that the AVX2 kernels multiply with `vpmaddubsw`
/// exactly: two products of a u8 input and levels within `±NARROW_MAX` add up to at most
/// `2 * 255 * 64 = 32640`, inside i16. Weights quantized to 7 bits or fewer
/// ([`quantize_weights_per_channel_bits`]) are narrow; 8-bit ones are not in general.
pub const NARROW_MAX: i8 = 64;

/// Whether every level is within `±`[`NARROW_MAX`].
pub(crate) fn all_narrow(values: &[i8]) -> bool {
    values.iter().all(|v| v.unsigned_abs() <= NARROW_MAX as u8)
}

/// The largest level of symmetric `bits`-bit weights, `2^(bits - 1) - 1`.
///
/// # Errors
/// `bits` outside `2..=8`.
pub(crate) fn symmetric_max(bits: u32) -> Result<f32> {
    if !(2..=8).contains(&bits) {
        return Err(KernelError::Invalid {
            what: "weight bits",
            reason: format!("{bits} is not in 2..=8"),
        });
    }
    Ok(((1i32 << (bits - 1)) - 1) as f32)
}

/// [`quantize_weights_per_channel`] with `bits` bits (`2..=8`): levels in
/// `-(2^(bits-1) - 1)..=2^(bits-1) - 1`, scale `max |w| / (2^(bits-1) - 1)`. The levels are
/// still stored as i8 and run on the same kernels; at 7 bits or fewer they are narrow
/// ([`NARROW_MAX`]), which the AVX2 kernels multiply in fewer instructions (as ONNX Runtime's
/// `reduce_range` does for CPUs without VNNI).
///
/// # Errors
/// As [`quantize_weights_per_channel`], and `bits` outside `2..=8`.
///
/// ```
/// use slimnet_kernels::int8::quantize_weights_per_channel_bits;
/// let (q, s) = quantize_weights_per_channel_bits(&[0.25, -1.0, 2.0, 0.5], 2, 7)?;
/// assert_eq!(q, vec![16, -63, 63, 16]);
/// assert_eq!(s, vec![1.0 / 63.0, 2.0 / 63.0]);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
pub fn quantize_weights_per_channel_bits(
    w: &[f32],
    channels: usize,
    bits: u32,
) -> Result<(Vec<i8>, Vec<f32>)> {
    let top = symmetric_max(bits)?;
    if channels == 0 || !w.len().is_multiple_of(channels) {
        return Err(KernelError::Invalid {
            what: "weight channels",
            reason: format!("{channels} channels do not divide {} weights", w.len()),
        });
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::Invalid {
            what: "weight value",
            reason: format!("weight {i} is {}", w[i]),
        });
    }
    let per = w.len() / channels;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for row in w.chunks(per.max(1)).take(channels) {
        let m = row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let s = if m > 0.0 { m / top } else { 1.0 };
        scales.push(s);
        q.extend(row.iter().map(|v| (v / s).round().clamp(-top, top) as i8));
    }
    Ok((q, scales))
}

/// A real multiplier `M` in fixed point: `M ≈ multiplier * 2^-shift`, with `multiplier` in
/// `[2^30, 2^31)` and `shift` in `1..=62`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Requant {
    /// The Q31 mantissa.
    pub multiplier: i32,
    /// The right shift.
    pub shift: u32,
}

impl Requant {
    /// The fixed-point form of a positive real scale (typically `s_in * s_w / s_out`).
    ///
    /// # Errors
    /// When `real` is not finite, not positive, or outside `[2^-31, 2^30)`.
    ///
    /// ```
    /// use slimnet_kernels::int8::Requant;
    /// let r = Requant::from_scale(0.25)?;
    /// assert_eq!((r.multiplier, r.shift), (1 << 30, 32));
    /// assert_eq!(r.apply(10), 3); // 2.5 rounds half up
    /// assert_eq!(r.apply(-10), -2);
    /// # Ok::<(), slimnet_kernels::KernelError>(())
    /// ```
    pub fn from_scale(real: f64) -> Result<Self> {
        match Self::parts(real) {
            (multiplier, shift, true) => Ok(Self { multiplier, shift }),
            _ => Err(KernelError::Invalid {
                what: "requantization scale",
                reason: format!("{real} is not in [2^-31, 2^30)"),
            }),
        }
    }

    /// [`from_scale`](Self::from_scale) without branches: the multiplier, the shift and whether
    /// `real` is in range (the first two mean nothing when it is not).
    #[inline(always)]
    fn parts(real: f64) -> (i32, u32, bool) {
        // real = q * 2^e with q in [0.5, 1), read off the bits (a normal f64: anything
        // smaller is far below 2^-31 and rejected by the shift check); q * 2^31, rounded half
        // up, is the 53-bit significand shifted right by 22 — no log, no division, a few
        // nanoseconds per channel, so it can run on every call
        let bits = real.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let significand = (1u64 << 52) | (bits & ((1u64 << 52) - 1));
        let m = (significand + (1 << 21)) >> 22;
        // m == 2^31 (the significand rounded up to the next power of two): halve it
        let carry = (m >> 31) as u32;
        let shift = 31 - (biased - 1022 + carry as i32);
        let ok = real > 0.0 && real < f64::INFINITY && biased != 0 && (1..=62).contains(&shift);
        ((m >> carry) as i32, shift as u32, ok)
    }

    /// The multipliers `s_in * scales[c] / s_out` of every channel, as
    /// [`from_scale`](Self::from_scale) makes them one by one (the same bits), in a loop the
    /// compiler vectorizes.
    ///
    /// # Errors
    /// As [`from_scale`](Self::from_scale), for the first channel out of range.
    pub(crate) fn from_scales(s_in: f32, s_out: f32, scales: &[f32]) -> Result<Vec<Self>> {
        let mut out = vec![
            Self {
                multiplier: 0,
                shift: 1
            };
            scales.len()
        ];
        if many_parts(s_in, s_out, scales, &mut out).is_err() {
            // report the first bad one as `from_scale` does
            for s in scales {
                Self::from_scale(s_in as f64 * *s as f64 / s_out as f64)?;
            }
        }
        Ok(out)
    }

    /// `round(acc * M)`, rounding halves up, saturated to i32.
    #[inline]
    pub fn apply(self, acc: i32) -> i32 {
        let p = acc as i64 * self.multiplier as i64;
        let r = (p + (1i64 << (self.shift - 1))) >> self.shift;
        r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }

    /// The real value this multiplier stands for.
    pub fn to_f64(self) -> f64 {
        self.multiplier as f64 / 2f64.powi(self.shift as i32)
    }
}

/// The multipliers of a weight's channels for the last pair of activation scales it was used
/// with, kept so that a layer called again with the same scales (the usual case) skips the
/// f64 divisions (0.5 us for 500 channels). Not part of the weight's value: left out of
/// comparisons and debug output, and a clone starts empty.
#[derive(Default)]
pub(crate) struct Multipliers(Mutex<Option<Cached>>);

/// The bits of the input and output scales, and the multipliers made for them.
type Cached = (u32, u32, Arc<[Requant]>);

impl Multipliers {
    /// The multipliers `s_in * scales[c] / s_out`, as [`Requant::from_scales`] makes them.
    ///
    /// # Errors
    /// As [`Requant::from_scales`].
    pub(crate) fn get(&self, s_in: f32, s_out: f32, scales: &[f32]) -> Result<Arc<[Requant]>> {
        let key = (s_in.to_bits(), s_out.to_bits());
        if let Ok(g) = self.0.lock() {
            if let Some((a, b, m)) = &*g {
                if (*a, *b) == key && m.len() == scales.len() {
                    return Ok(m.clone());
                }
            }
        }
        let m: Arc<[Requant]> = Requant::from_scales(s_in, s_out, scales)?.into();
        if let Ok(mut g) = self.0.lock() {
            *g = Some((key.0, key.1, m.clone()));
        }
        Ok(m)
    }
}

impl Clone for Multipliers {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Multipliers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Multipliers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

crate::isa::vectorized! {
    /// The body of [`Requant::from_scales`]: an error when any channel is out of range.
    fn many_parts(s_in: f32, s_out: f32, scales: &[f32], out: &mut [Requant]) {
        let mut ok = true;
        for (o, s) in out.iter_mut().zip(scales) {
            let (multiplier, shift, good) = Requant::parts(s_in as f64 * *s as f64 / s_out as f64);
            *o = Requant { multiplier, shift };
            ok &= good;
        }
        if ok {
            Ok(())
        } else {
            Err(KernelError::Invalid {
                what: "requantization scale",
                reason: "out of range".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requant_matches_real_scale() {
        for real in [
            1e-6,
            0.000_123,
            0.0049,
            0.37,
            0.5,
            0.999_999_9,
            1.0,
            3.7,
            1000.0,
        ] {
            let r = Requant::from_scale(real).unwrap();
            assert!((r.to_f64() - real).abs() <= real * 1e-9, "{real}");
            assert!(r.multiplier >= 1 << 30);
            for acc in [-100_000, -7, 0, 1, 13, 99_999] {
                let want = (acc as f64 * real + 0.5).floor();
                let got = r.apply(acc) as f64;
                assert!((got - want).abs() <= 1.0, "{real} {acc}: {got} vs {want}");
            }
        }
        assert!(Requant::from_scale(0.0).is_err());
        assert!(Requant::from_scale(f64::NAN).is_err());
        assert!(Requant::from_scale(1e12).is_err());
        assert_eq!(Requant::from_scale(1.0).unwrap().apply(i32::MAX), i32::MAX);
    }

    /// The bit-reading form gives exactly what the textbook one (log2, divide, round) gives.
    #[test]
    fn multipliers_match_the_log_formula() {
        fn reference(real: f64) -> Option<(i32, u32)> {
            let mut e = real.log2().floor() as i32 + 1;
            let mut q = real / 2f64.powi(e);
            if q >= 1.0 {
                q /= 2.0;
                e += 1;
            } else if q < 0.5 {
                q *= 2.0;
                e -= 1;
            }
            let mut m = (q * (1u64 << 31) as f64).round() as i64;
            if m == 1 << 31 {
                m /= 2;
                e += 1;
            }
            let shift = 31 - e;
            (1..=62)
                .contains(&shift)
                .then_some((m as i32, shift as u32))
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // scales from 2^-40 to 2^40, and exact powers of two and their neighbours
            let real = if i % 10 == 0 {
                f64::powi(2.0, (i as i32 % 70) - 35) * (1.0 + (i % 3) as f64 * f64::EPSILON)
            } else {
                f64::powf(2.0, (x % 80_000) as f64 / 1000.0 - 40.0)
            };
            let got = Requant::from_scale(real)
                .ok()
                .map(|r| (r.multiplier, r.shift));
            assert_eq!(got, reference(real), "{real}");
        }
    }

    #[test]
    fn weight_quantization_is_symmetric_and_bounded() {
        let w = [0.1f32, -0.3, 0.2, 0.0, 0.0, 0.0];
        let (q, s) = quantize_weights_per_channel(&w, 2).unwrap();
        assert_eq!(q[1], -127);
        assert_eq!(&q[3..], &[0, 0, 0]);
        assert_eq!(s[1], 1.0);
        assert!(quantize_weights_per_channel(&w, 4).is_err());
        assert!(quantize_weights_per_channel(&[f32::NAN], 1).is_err());
    }
}
