//! Deterministic mutations, aware of safetensors headers and of numbers in text.

/// A small seeded generator (SplitMix64): the same seed gives the same inputs everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Numbers that break sizes: zero, one, powers of two around type limits, a large padding.
const NUMBERS: [&str; 22] = [
    "0",
    "1",
    "2",
    "3",
    "7",
    "8",
    "255",
    "256",
    "1000",
    "20000",
    "65535",
    "65536",
    "1048576",
    "1048577",
    "16777216",
    "2147483648",
    "4294967295",
    "4294967296",
    "99999999999",
    "18446744073709551615",
    "-1",
    "1e308",
];

const BYTES: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, b'9', b'"', b'{'];

/// A mutation of `base` (`other` is another seed to splice from), at most `max_len` long:
/// one to four edits, half of the time inside a safetensors header with its length fixed up.
pub fn mutate(rng: &mut Rng, base: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
    let header = safetensors_header(base);
    let mut out = match header {
        Some(h) if !rng.one_in(3) => {
            let mut text = base[8..8 + h].to_vec();
            for _ in 0..1 + rng.below(3) {
                edit(rng, &mut text, other, true);
            }
            let mut v = (text.len() as u64).to_le_bytes().to_vec();
            v.extend_from_slice(&text);
            v.extend_from_slice(&base[8 + h..]);
            if rng.one_in(4) {
                edit(rng, &mut v, other, false);
            }
            v
        }
        _ => {
            let mut v = base.to_vec();
            for _ in 0..1 + rng.below(4) {
                edit(rng, &mut v, other, false);
            }
            v
        }
    };
    out.truncate(max_len);
    out
}

/// The length of a safetensors header, when `b` starts with one.
fn safetensors_header(b: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    (b.get(8) == Some(&b'{') && 8 + n <= b.len()).then_some(n)
}

/// One edit of `v`; `text` prefers edits of numbers and quoted names.
fn edit(rng: &mut Rng, v: &mut Vec<u8>, other: &[u8], text: bool) {
    let len = v.len();
    let choice = if text { rng.below(10) } else { rng.below(8) };
    match choice {
        _ if len == 0 => v.push(rng.next_u64() as u8),
        0 => {
            let i = rng.below(len);
            v[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(len);
            v[i] = BYTES[rng.below(BYTES.len())];
        }
        2 => v.truncate(rng.below(len)),
        3 => {
            let i = rng.below(len);
            let n = (1 + rng.below(16)).min(len - i);
            v.drain(i..i + n);
        }
        4 => {
            // splice a chunk of the other seed (or of this one)
            let src = if rng.one_in(2) || other.is_empty() {
                v.clone()
            } else {
                other.to_vec()
            };
            let a = rng.below(src.len().max(1));
            let n = (1 + rng.below(64)).min(src.len() - a.min(src.len()));
            let at = rng.below(len + 1);
            let chunk = src[a..a + n].to_vec();
            v.splice(at..at, chunk);
        }
        5 => {
            // a little-endian word of an extreme value
            let i = rng.below(len);
            let w = [0u64, 1, u32::MAX as u64, u64::MAX, 1 << 31, 0x7fc0_0000][rng.below(6)];
            for (k, b) in w
                .to_le_bytes()
                .iter()
                .enumerate()
                .take(4 + 4 * rng.below(2))
            {
                if i + k < len {
                    v[i + k] = *b;
                }
            }
        }
        6 | 8 | 9 => replace_number(rng, v),
        _ => swap_strings(rng, v),
    }
}

/// Replaces a run of ASCII digits with one of [`NUMBERS`].
fn replace_number(rng: &mut Rng, v: &mut Vec<u8>) {
    let runs: Vec<(usize, usize)> = digit_runs(v);
    if runs.is_empty() {
        return;
    }
    let (a, b) = runs[rng.below(runs.len())];
    let n = NUMBERS[rng.below(NUMBERS.len())].as_bytes().to_vec();
    v.splice(a..b, n);
}

fn digit_runs(v: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < v.len() {
        if v[i].is_ascii_digit() {
            let a = i;
            while i < v.len() && v[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((a, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// Copies one quoted string over another (a kind over another kind, a tensor name over a
/// node name, ...).
fn swap_strings(rng: &mut Rng, v: &mut Vec<u8>) {
    let mut quotes = Vec::new();
    let mut start = None;
    for (i, &c) in v.iter().enumerate() {
        if c == b'"' {
            match start.take() {
                Some(a) => quotes.push((a, i + 1)),
                None => start = Some(i),
            }
        }
    }
    if quotes.len() < 2 {
        return;
    }
    let (a0, a1) = quotes[rng.below(quotes.len())];
    let (b0, b1) = quotes[rng.below(quotes.len())];
    let src = v[a0..a1].to_vec();
    v.splice(b0..b1, src);
}
