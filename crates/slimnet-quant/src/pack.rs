//! Packed storage of sub-8-bit codes: `bits`-bit unsigned codes, least significant bits first,
//! `ceil(n * bits / 8)` bytes for `n` codes.

use crate::error::{QuantError, Result};

/// Checks a bit width against `1..=8`.
fn check_bits(bits: u32) -> Result<()> {
    if (1..=8).contains(&bits) {
        Ok(())
    } else {
        Err(QuantError::BitWidth {
            layer: String::new(),
            bits,
            min: 1,
            max: 8,
        })
    }
}

/// Number of bytes that hold `n` codes of `bits` bits.
pub fn packed_len(n: usize, bits: u32) -> usize {
    n.saturating_mul(bits as usize).div_ceil(8)
}

/// Packs codes of `bits` bits (each `< 2^bits`) into bytes, least significant bits first.
///
/// # Errors
/// A bit width outside `1..=8`, or a code that does not fit in `bits` bits.
///
/// ```
/// use slimnet_quant::pack::{pack_bits, unpack_bits};
/// let codes = [1u8, 7, 0, 5, 3];
/// let bytes = pack_bits(&codes, 3)?;
/// assert_eq!(bytes.len(), 2); // 15 bits
/// assert_eq!(unpack_bits(&bytes, 3, 5)?, codes);
/// # Ok::<(), slimnet_quant::QuantError>(())
/// ```
pub fn pack_bits(codes: &[u8], bits: u32) -> Result<Vec<u8>> {
    check_bits(bits)?;
    if bits == 8 {
        return Ok(codes.to_vec());
    }
    let max = (1u32 << bits) - 1;
    let mut out = vec![0u8; packed_len(codes.len(), bits)];
    let mut pos = 0usize;
    for (i, &c) in codes.iter().enumerate() {
        if c as u32 > max {
            return Err(QuantError::invalid(
                "",
                format!("code {c} at {i} does not fit in {bits} bits"),
            ));
        }
        let (byte, off) = (pos / 8, pos % 8);
        let v = (c as u32) << off;
        out[byte] |= v as u8;
        if off + bits as usize > 8 {
            out[byte + 1] |= (v >> 8) as u8;
        }
        pos += bits as usize;
    }
    Ok(out)
}

/// Unpacks `n` codes of `bits` bits.
///
/// # Errors
/// A bit width outside `1..=8`, or `bytes` not exactly [`packed_len`]`(n, bits)` long.
pub fn unpack_bits(bytes: &[u8], bits: u32, n: usize) -> Result<Vec<u8>> {
    check_bits(bits)?;
    if bytes.len() != packed_len(n, bits) {
        return Err(QuantError::invalid(
            "",
            format!(
                "{} packed bytes for {n} codes of {bits} bits (expected {})",
                bytes.len(),
                packed_len(n, bits)
            ),
        ));
    }
    if bits == 8 {
        return Ok(bytes.to_vec());
    }
    let mask = (1u32 << bits) - 1;
    let mut out = Vec::with_capacity(n);
    let mut pos = 0usize;
    for _ in 0..n {
        let (byte, off) = (pos / 8, pos % 8);
        let mut v = bytes[byte] as u32 >> off;
        if off + bits as usize > 8 {
            v |= (bytes[byte + 1] as u32) << (8 - off);
        }
        out.push((v & mask) as u8);
        pos += bits as usize;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_width() {
        for bits in 1..=8u32 {
            for n in [0usize, 1, 7, 8, 9, 63, 1000] {
                let codes: Vec<u8> = (0..n)
                    .map(|i| ((i * 2_654_435_761) >> 7) as u8 & ((1u16 << bits) - 1) as u8)
                    .collect();
                let p = pack_bits(&codes, bits).unwrap();
                assert_eq!(p.len(), packed_len(n, bits));
                assert_eq!(
                    unpack_bits(&p, bits, n).unwrap(),
                    codes,
                    "bits {bits} n {n}"
                );
            }
        }
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(matches!(
            pack_bits(&[1], 9),
            Err(QuantError::BitWidth { bits: 9, .. })
        ));
        assert!(pack_bits(&[1], 0).is_err());
        assert!(pack_bits(&[4], 2).is_err());
        assert!(unpack_bits(&[0, 0, 0], 3, 3).is_err());
    }
}
