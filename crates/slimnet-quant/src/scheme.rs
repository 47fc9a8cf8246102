//! Quantization schemes for weights: affine or symmetric, per tensor or per output channel,
//! 2 to 8 bits, and the quantized weights they produce.
//!
//! Every scheme stores unsigned codes `u` in `0..2^bits` with an integer zero point, so that
//! `w ≈ (u - zero_point) * scale`. A symmetric scheme uses the zero point `2^(bits-1)` and codes
//! `1..2^bits` (the signed range `-(2^(bits-1) - 1)..=2^(bits-1) - 1`), so real zero — and thus
//! every masked (pruned) weight — is represented exactly in both kinds of scheme.

use serde::{Deserialize, Serialize};
use slimnet_core::Tensor;

use crate::error::{QuantError, Result};

/// Smallest supported weight bit width.
pub const MIN_BITS: u32 = 2;
/// Largest supported weight bit width.
pub const MAX_BITS: u32 = 8;

/// Whether one scale covers the tensor or each output channel (first axis) has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Granularity {
    /// One scale and zero point for the whole tensor.
    PerTensor,
    /// One scale and zero point per slice along axis 0 (output channel).
    PerChannel,
}

/// A weight quantization scheme.
///
/// ```
/// use slimnet_quant::scheme::QScheme;
/// let s = QScheme::symmetric(4)?;
/// assert_eq!((s.qmin(), s.qmax()), (-7, 7));
/// assert!(QScheme::symmetric(9).is_err());
/// # Ok::<(), slimnet_quant::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QScheme {
    /// Bits per weight, `2..=8`.
    pub bits: u32,
    /// Symmetric (zero point in the middle, range `±max|w|`) or affine (range `[min, max]`).
    pub symmetric: bool,
    /// Per tensor or per output channel.
    pub granularity: Granularity,
}

impl Default for QScheme {
    /// 8-bit symmetric per-channel: what the int8 kernels take.
    fn default() -> Self {
        Self {
            bits: 8,
            symmetric: true,
            granularity: Granularity::PerChannel,
        }
    }
}

fn check_bits(bits: u32) -> Result<()> {
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(QuantError::BitWidth {
            layer: String::new(),
            bits,
            min: MIN_BITS,
            max: MAX_BITS,
        })
    }
}

impl QScheme {
    /// Symmetric per-channel with `bits` bits.
    ///
    /// # Errors
    /// `bits` outside `2..=8`.
    pub fn symmetric(bits: u32) -> Result<Self> {
        check_bits(bits)?;
        Ok(Self {
            bits,
            ..Self::default()
        })
    }

    /// Affine per-channel with `bits` bits.
    ///
    /// # Errors
    /// `bits` outside `2..=8`.
    pub fn affine(bits: u32) -> Result<Self> {
        check_bits(bits)?;
        Ok(Self {
            bits,
            symmetric: false,
            granularity: Granularity::PerChannel,
        })
    }

    /// The same scheme with one scale for the whole tensor.
    pub fn per_tensor(mut self) -> Self {
        self.granularity = Granularity::PerTensor;
        self
    }

    /// Checks the bit width.
    ///
    /// # Errors
    /// `bits` outside `2..=8` (the fields are public, so a scheme may be built by hand).
    pub fn validate(&self) -> Result<()> {
        check_bits(self.bits)
    }

    /// Smallest signed level `u - zero_point` of a symmetric scheme (`-(2^(b-1) - 1)`), or 0.
    pub fn qmin(&self) -> i32 {
        if self.symmetric {
            -self.qmax()
        } else {
            0
        }
    }

    /// Largest signed level of a symmetric scheme (`2^(b-1) - 1`), or the largest code.
    /// A width outside `2..=8` (a scheme edited by hand; [`validate`](Self::validate) rejects
    /// it, and every quantizer calls that first) is read as the nearest valid width here.
    pub fn qmax(&self) -> i32 {
        let bits = self.valid_bits();
        if self.symmetric {
            (1 << (bits - 1)) - 1
        } else {
            (1 << bits) - 1
        }
    }

    /// `bits` clamped into `MIN_BITS..=MAX_BITS`, so the getters never shift out of range.
    fn valid_bits(&self) -> u32 {
        self.bits.clamp(MIN_BITS, MAX_BITS)
    }

    /// Scale and zero point covering `[lo, hi]` (widened to include 0). A zero range gets
    /// scale 1, so constant-zero channels stay exactly zero. A width outside `2..=8` is read
    /// as in [`qmax`](Self::qmax).
    pub fn params_for(&self, lo: f32, hi: f32) -> (f32, i32) {
        if self.symmetric {
            let m = lo.abs().max(hi.abs());
            let s = if m > 0.0 { m / self.qmax() as f32 } else { 1.0 };
            (s, 1 << (self.valid_bits() - 1))
        } else {
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let levels = self.qmax() as f32;
            let s = if hi > lo { (hi - lo) / levels } else { 1.0 };
            let zp = (-lo / s).round().clamp(0.0, levels) as i32;
            (s, zp)
        }
    }
}

/// Weights quantized with a [`QScheme`]: unsigned codes, scales and zero points.
#[derive(Debug, Clone, PartialEq)]
pub struct QWeights {
    /// The scheme used.
    pub scheme: QScheme,
    /// Shape of the weight.
    pub shape: Vec<usize>,
    /// One code per weight, row-major, each `< 2^bits`.
    pub codes: Vec<u8>,
    /// One scale per group (1 or the number of output channels).
    pub scales: Vec<f32>,
    /// One zero point per group.
    pub zero_points: Vec<i32>,
}

impl QWeights {
    /// Elements per group.
    fn group_len(&self) -> usize {
        self.codes.len() / self.scales.len().max(1)
    }

    /// The dequantized weights `(u - zero_point) * scale`.
    pub fn dequantize(&self) -> Tensor {
        let per = self.group_len().max(1);
        let data: Vec<f32> = self
            .codes
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let g = i / per;
                (u as i32 - self.zero_points[g]) as f32 * self.scales[g]
            })
            .collect();
        Tensor::from_shape_vec(self.shape.clone(), data).expect("codes fill the shape")
    }

    /// The signed levels `u - zero_point` as i8 (8-bit symmetric weights are the int8
    /// kernels' input).
    pub fn levels_i8(&self) -> Vec<i8> {
        let per = self.group_len().max(1);
        self.codes
            .iter()
            .enumerate()
            .map(|(i, &u)| (u as i32 - self.zero_points[i / per]).clamp(-128, 127) as i8)
            .collect()
    }
}

/// Quantizes `w` with `scheme` (`round` half away from zero, then clamp to the code range).
///
/// # Errors
/// A bit width out of range, an empty or non-finite weight (named by its index).
///
/// ```
/// use slimnet_core::tensor;
/// use slimnet_quant::scheme::{quantize, QScheme};
/// let w = tensor::from_vec(&[2, 2], vec![0.5, -1.0, 0.0, 0.25])?;
/// let q = quantize(&w, QScheme::symmetric(8)?)?;
/// assert_eq!(q.levels_i8(), vec![64, -127, 0, 127]);
/// let back = q.dequantize();
/// assert!((back[[0, 0]] - 0.5).abs() <= 0.5 / 127.0);
/// assert_eq!(back[[1, 0]], 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn quantize(w: &Tensor, scheme: QScheme) -> Result<QWeights> {
    scheme.validate()?;
    if w.is_empty() {
        return Err(QuantError::invalid("", "cannot quantize an empty weight"));
    }
    if let Some((i, v)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(QuantError::invalid(
            "",
            format!("weight element {i} is {v}; weights must be finite"),
        ));
    }
    let data: Vec<f32> = w.iter().copied().collect();
    let groups = match scheme.granularity {
        Granularity::PerTensor => 1,
        Granularity::PerChannel => w.shape()[0].max(1),
    };
    let per = data.len() / groups;
    let levels = (1i32 << scheme.bits) - 1;
    let mut codes = Vec::with_capacity(data.len());
    let (mut scales, mut zps) = (Vec::with_capacity(groups), Vec::with_capacity(groups));
    for chunk in data.chunks(per.max(1)).take(groups) {
        let lo = chunk.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = chunk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (s, zp) = scheme.params_for(lo, hi);
        let (cmin, cmax) = if scheme.symmetric {
            (zp + scheme.qmin(), zp + scheme.qmax())
        } else {
            (0, levels)
        };
        codes.extend(
            chunk
                .iter()
                .map(|v| ((v / s).round() as i32 + zp).clamp(cmin, cmax) as u8),
        );
        scales.push(s);
        zps.push(zp);
    }
    Ok(QWeights {
        scheme,
        shape: w.shape().to_vec(),
        codes,
        scales,
        zero_points: zps,
    })
}

/// Quantizes and dequantizes `w` (the weights a quantized layer really computes with).
///
/// # Errors
/// As [`quantize`].
pub fn fake_quantize(w: &Tensor, scheme: QScheme) -> Result<Tensor> {
    Ok(quantize(w, scheme)?.dequantize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::tensor;

    #[test]
    fn error_is_bounded_by_half_a_step() {
        let w = tensor::normal(&[8, 3, 3, 3], 0.0, 0.5, &mut tensor::rng(3));
        for bits in MIN_BITS..=MAX_BITS {
            for scheme in [
                QScheme::symmetric(bits).unwrap(),
                QScheme::affine(bits).unwrap(),
                QScheme::symmetric(bits).unwrap().per_tensor(),
                QScheme::affine(bits).unwrap().per_tensor(),
            ] {
                let q = quantize(&w, scheme).unwrap();
                assert!(q.codes.iter().all(|&c| (c as u32) < 1 << bits));
                let back = q.dequantize();
                let per = w.len() / q.scales.len();
                for (i, (a, b)) in w.iter().zip(back.iter()).enumerate() {
                    let s = q.scales[i / per];
                    assert!((a - b).abs() <= s * 0.5 + 1e-6, "{scheme:?} {a} {b} {s}");
                }
            }
        }
    }

    #[test]
    fn zero_and_masked_weights_stay_exactly_zero() {
        let w = tensor::from_vec(&[3, 2], vec![0.0, 0.0, 0.3, 0.0, -2.0, 1.0]).unwrap();
        for s in [QScheme::symmetric(3).unwrap(), QScheme::affine(3).unwrap()] {
            let back = fake_quantize(&w, s).unwrap();
            assert_eq!(back[[0, 0]], 0.0);
            assert_eq!(back[[0, 1]], 0.0);
            assert_eq!(back[[1, 1]], 0.0);
        }
        // a constant-zero channel gets scale 1 (documented), not a division by zero
        let q = quantize(&w, QScheme::affine(4).unwrap()).unwrap();
        assert_eq!(q.scales[0], 1.0);
    }

    #[test]
    fn bad_input() {
        assert!(matches!(
            QScheme::affine(1),
            Err(QuantError::BitWidth { bits: 1, .. })
        ));
        let s = QScheme {
            bits: 12,
            ..QScheme::default()
        };
        let w = tensor::zeros(&[2, 2]);
        assert!(quantize(&w, s).is_err());
        let nan = tensor::from_vec(&[1, 2], vec![1.0, f32::NAN]).unwrap();
        let e = quantize(&nan, QScheme::default()).unwrap_err();
        assert!(e.to_string().contains("element 1 is NaN"), "{e}");
        assert!(quantize(&tensor::zeros(&[0, 2]), QScheme::default()).is_err());
    }

    #[test]
    fn matches_kernel_weight_quantization() {
        let w = tensor::normal(&[4, 10], 0.0, 1.0, &mut tensor::rng(9));
        let q = quantize(&w, QScheme::default()).unwrap();
        let (k, ks) =
            slimnet_kernels::int8::quantize_weights_per_channel(w.as_slice().unwrap(), 4).unwrap();
        assert_eq!(q.levels_i8(), k);
        assert_eq!(q.scales, ks);
    }
}
