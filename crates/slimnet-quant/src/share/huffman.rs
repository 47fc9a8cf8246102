//! Canonical Huffman coding of byte symbols, stored as one code length per symbol plus an
//! MSB-first bit stream.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::{QuantError, Result};

/// Longest code length produced.
pub const MAX_CODE_LEN: u8 = 24;

/// Code lengths (0 for absent symbols) of a Huffman code for symbol frequencies, limited to
/// [`MAX_CODE_LEN`] bits (frequencies are halved until the limit holds). A lone symbol gets
/// length 1.
pub fn code_lengths(freqs: &[u64]) -> Vec<u8> {
    let mut f: Vec<u64> = freqs.to_vec();
    loop {
        let l = unlimited_lengths(&f);
        if l.iter().all(|&x| x <= MAX_CODE_LEN) {
            return l;
        }
        for v in f.iter_mut().filter(|v| **v > 0) {
            *v = (*v / 2).max(1);
        }
    }
}

fn unlimited_lengths(f: &[u64]) -> Vec<u8> {
    let mut lens = vec![0u8; f.len()];
    let used: Vec<usize> = (0..f.len()).filter(|&i| f[i] > 0).collect();
    match used.len() {
        0 => return lens,
        1 => {
            lens[used[0]] = 1;
            return lens;
        }
        _ => {}
    }
    // nodes: leaves 0..n, internal nodes after; parent links give depths
    let mut parent: Vec<usize> = vec![usize::MAX; used.len()];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = used
        .iter()
        .enumerate()
        .map(|(k, &i)| Reverse((f[i], k)))
        .collect();
    while heap.len() > 1 {
        let Reverse((fa, a)) = heap.pop().expect("two nodes");
        let Reverse((fb, b)) = heap.pop().expect("two nodes");
        let id = parent.len();
        parent.push(usize::MAX);
        parent[a] = id;
        parent[b] = id;
        heap.push(Reverse((fa + fb, id)));
    }
    for (k, &i) in used.iter().enumerate() {
        let (mut d, mut n) = (0u32, k);
        while parent[n] != usize::MAX {
            n = parent[n];
            d += 1;
        }
        lens[i] = d.min(255) as u8;
    }
    lens
}

/// Canonical codes from lengths: `(code, length)` per symbol.
fn canonical(lens: &[u8]) -> Vec<(u32, u8)> {
    let mut order: Vec<usize> = (0..lens.len()).filter(|&i| lens[i] > 0).collect();
    order.sort_by_key(|&i| (lens[i], i));
    let mut codes = vec![(0u32, 0u8); lens.len()];
    let (mut code, mut prev) = (0u32, 0u8);
    for &i in &order {
        code <<= lens[i] - prev;
        prev = lens[i];
        codes[i] = (code, lens[i]);
        code += 1;
    }
    codes
}

/// Encodes symbols with the canonical code of `lens` into an MSB-first bit stream.
///
/// # Errors
/// A symbol without a code.
///
/// ```
/// use slimnet_quant::share::huffman::{code_lengths, decode, encode};
/// let data = [0u8, 0, 0, 0, 1, 1, 2, 3];
/// let mut freq = vec![0u64; 4];
/// data.iter().for_each(|&s| freq[s as usize] += 1);
/// let lens = code_lengths(&freq);
/// assert_eq!(lens, vec![1, 2, 3, 3]);
/// let bits = encode(&data, &lens)?;
/// assert_eq!(bits.len(), 2); // 14 bits
/// assert_eq!(decode(&bits, &lens, data.len())?, data);
/// # Ok::<(), slimnet_quant::QuantError>(())
/// ```
pub fn encode(symbols: &[u8], lens: &[u8]) -> Result<Vec<u8>> {
    let codes = canonical(lens);
    let mut out = Vec::new();
    let (mut acc, mut n) = (0u64, 0u32);
    for &s in symbols {
        let (code, len) = codes.get(s as usize).copied().unwrap_or((0, 0));
        if len == 0 {
            return Err(QuantError::invalid(
                "",
                format!("symbol {s} has no Huffman code"),
            ));
        }
        acc = (acc << len) | code as u64;
        n += len as u32;
        while n >= 8 {
            out.push((acc >> (n - 8)) as u8);
            n -= 8;
        }
        acc &= (1u64 << n) - 1;
    }
    if n > 0 {
        out.push((acc << (8 - n)) as u8);
    }
    Ok(out)
}

/// Decodes `n` symbols.
///
/// # Errors
/// Lengths that do not form a prefix code, a stream that ends early or holds a bit pattern
/// that is no code.
pub fn decode(bytes: &[u8], lens: &[u8], n: usize) -> Result<Vec<u8>> {
    let bad = |r: &str| QuantError::invalid("", format!("Huffman stream: {r}"));
    let max = lens.iter().copied().max().unwrap_or(0) as usize;
    if max > MAX_CODE_LEN as usize || lens.len() > 256 {
        return Err(bad("code lengths out of range"));
    }
    let mut count = vec![0u32; max + 1];
    for &l in lens.iter().filter(|&&l| l > 0) {
        count[l as usize] += 1;
    }
    // Kraft: the code must not be over-subscribed
    let mut left = 1i64;
    for &c in count.iter().skip(1) {
        left = left * 2 - c as i64;
        if left < 0 {
            return Err(bad("code lengths are over-subscribed"));
        }
    }
    let mut sorted: Vec<usize> = (0..lens.len()).filter(|&i| lens[i] > 0).collect();
    sorted.sort_by_key(|&i| (lens[i], i));
    let mut out = Vec::with_capacity(n);
    let mut pos = 0usize;
    let total_bits = bytes.len() * 8;
    while out.len() < n {
        let (mut code, mut first, mut index) = (0i64, 0i64, 0i64);
        let mut found = None;
        for &c in count.iter().skip(1) {
            if pos >= total_bits {
                return Err(bad("ends early"));
            }
            let bit = (bytes[pos / 8] >> (7 - pos % 8)) & 1;
            pos += 1;
            code |= bit as i64;
            let c = c as i64;
            if code - first < c {
                found = Some(sorted[(index + code - first) as usize]);
                break;
            }
            index += c;
            first = (first + c) << 1;
            code <<= 1;
        }
        match found {
            Some(s) => out.push(s as u8),
            None => return Err(bad("a bit pattern is no code")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_on_skewed_and_flat_data() {
        for seed in 0..4u64 {
            let data: Vec<u8> = (0..5000u64)
                .map(|i| {
                    let h = (i.wrapping_mul(6_364_136_223_846_793_005) ^ seed) >> 40;
                    if seed % 2 == 0 {
                        (h % 32) as u8
                    } else {
                        (h as u32).trailing_zeros().min(20) as u8
                    }
                })
                .collect();
            let mut f = vec![0u64; 256];
            data.iter().for_each(|&s| f[s as usize] += 1);
            let lens = code_lengths(&f);
            let bits = encode(&data, &lens).unwrap();
            assert_eq!(decode(&bits, &lens, data.len()).unwrap(), data);
            // never worse than the fixed-length code by more than a byte
            let fixed = (data.len() * 8usize.min(256usize.ilog2() as usize)).div_ceil(8);
            assert!(bits.len() <= fixed + 1);
        }
    }

    #[test]
    fn limits_lengths_and_rejects_bad_streams() {
        // Fibonacci frequencies make a maximally deep tree
        let mut f = vec![0u64; 40];
        let (mut a, mut b) = (1u64, 1u64);
        for v in f.iter_mut() {
            *v = a;
            (a, b) = (b, a + b);
        }
        let lens = code_lengths(&f);
        assert!(lens.iter().all(|&l| (1..=MAX_CODE_LEN).contains(&l)));
        let data: Vec<u8> = (0..40).collect();
        let bits = encode(&data, &lens).unwrap();
        assert_eq!(decode(&bits, &lens, 40).unwrap(), data);
        assert!(decode(&bits[..bits.len() - 3], &lens, 40).is_err());
        assert!(decode(&[0], &[1, 1, 1], 1).is_err()); // over-subscribed
        assert!(encode(&[5], &[1, 1]).is_err());
        let single = code_lengths(&[0, 7, 0]);
        assert_eq!(single, vec![0, 1, 0]);
        assert_eq!(
            decode(&encode(&[1, 1, 1], &single).unwrap(), &single, 3).unwrap(),
            vec![1, 1, 1]
        );
    }
}
