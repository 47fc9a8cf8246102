//! The batch-1 layouts of the byte-shuffle kernels: a [`QCsrMatrix`] cut into groups of rows
//! (one accumulator lane each) and, per group, steps over a window of columns (one shuffle
//! table) that slides along the rows. A step stores its window's first column and, per slot,
//! a non-zero's position in the window (`col - start`) and its value; a row with fewer
//! non-zeros in the window than its slots is padded with value 0 at position 0. The kernel
//! loads the window of the input, picks every slot's input with byte shuffles and multiplies
//! and adds it into the group's row sums: no gathers, and no branch that depends on where the
//! non-zeros are. Each step's window starts at the leftmost non-zero the group has left
//! ([`Slices::new`]).
//!
//! Two step encodings ([`StepFormat`]):
//!
//! - [`PermuteStep`] (AVX-512 VBMI + VNNI): 16 rows, windows of 128 columns (the two 64-byte
//!   tables of `vpermt2b`), four non-zeros per row: 64 position bytes and 64 values, one
//!   `vpdpbusd`. At 10% density padding takes about a sixth of the slots.
//! - [`ShuffleStep`] (AVX2): 8 rows, windows of 16 columns (the 16-byte table of `vpshufb`),
//!   four non-zeros per row: 32 positions packed two to a byte and 32 values. At 10% density
//!   about two fifths of the slots hold a non-zero, so a step costs about as much memory per
//!   non-zero as a CSR entry.
//! - [`WideStep`] (AVX2, narrow weights only): the same groups and slots over 32-column windows
//!   (two shuffles a step): fuller steps, about 2.8 bytes a non-zero at 10% density.

use std::sync::OnceLock;

use super::matrix::QCsrMatrix;

/// How one step of a window layout stores its slots.
pub(crate) trait StepFormat: Copy + Send + Sync {
    /// Rows per group.
    const GROUP: usize;
    /// Columns per window.
    const WINDOW: usize;
    /// Slots per row and step.
    const PER_ROW: usize;
    /// A step of padding (position 0, value 0 in every slot).
    const EMPTY: Self;
    /// Stores slot `t` of the group's row `lane`.
    fn put(&mut self, lane: usize, t: usize, pos: u8, val: i8);
    /// Slot `t` of the group's row `lane`, as [`StepFormat::put`] stored it.
    #[cfg(test)]
    fn get(&self, lane: usize, t: usize) -> (u8, i8);
}

/// A step of the permute kernel: in dword lane `l` (bytes `4 l..4 l + 4`), four non-zeros of
/// row `16 g + l`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct PermuteStep {
    /// Column within the window, per byte lane.
    pub pos: [u8; 64],
    /// The value, per byte lane.
    pub val: [i8; 64],
}

impl StepFormat for PermuteStep {
    const GROUP: usize = 16;
    const WINDOW: usize = 128;
    const PER_ROW: usize = 4;
    const EMPTY: Self = PermuteStep {
        pos: [0; 64],
        val: [0; 64],
    };

    fn put(&mut self, lane: usize, t: usize, pos: u8, val: i8) {
        self.pos[4 * lane + t] = pos;
        self.val[4 * lane + t] = val;
    }

    #[cfg(test)]
    fn get(&self, lane: usize, t: usize) -> (u8, i8) {
        (self.pos[4 * lane + t], self.val[4 * lane + t])
    }
}

/// A step of the AVX2 shuffle kernel. Row `4 h + d` of the group (`h` the 128-bit half of the
/// accumulator, `d` its dword) owns the byte slots `4 d..4 d + 4` of half `h`: the bytes that
/// `vpmaddubsw` and then `vpmaddwd` add into dword `d`.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(crate) struct ShuffleStep {
    /// Byte `m`: the position of slot `m` of half 0 in its low nibble, of half 1 in its high one.
    pub pos: [u8; 16],
    /// Byte `16 h + m`: the value of slot `m` of half `h`.
    pub val: [i8; 32],
}

impl ShuffleStep {
    /// The half and byte slot of the group's row `lane`'s slot `t`.
    fn slot(lane: usize, t: usize) -> (usize, usize) {
        (lane / 4, 4 * (lane % 4) + t)
    }
}

impl StepFormat for ShuffleStep {
    const GROUP: usize = 8;
    const WINDOW: usize = 16;
    const PER_ROW: usize = 4;
    const EMPTY: Self = ShuffleStep {
        pos: [0; 16],
        val: [0; 32],
    };

    fn put(&mut self, lane: usize, t: usize, pos: u8, val: i8) {
        let (h, m) = Self::slot(lane, t);
        self.pos[m] = (self.pos[m] & !(0xF << (4 * h))) | (pos & 0xF) << (4 * h);
        self.val[16 * h + m] = val;
    }

    #[cfg(test)]
    fn get(&self, lane: usize, t: usize) -> (u8, i8) {
        let (h, m) = Self::slot(lane, t);
        ((self.pos[m] >> (4 * h)) & 0xF, self.val[16 * h + m])
    }
}

/// A step of the AVX2 kernel on narrow weights: the slots of [`ShuffleStep`], over a 32-column
/// window. A position below 16 is stored as is, one from 16 up as `0x80 | (pos - 16)`: a byte
/// shuffle of the window's first 16 columns by the stored byte picks the first kind and zeroes
/// the second (bit 7 set), one of its last 16 columns by the byte with bit 7 flipped does the
/// opposite, and an or joins them. Twice the window of [`ShuffleStep`] fills about 70% of the
/// slots at 10% density (against two fifths), at 64 bytes a step.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub(crate) struct WideStep {
    /// Byte `16 h + m`: the position code of slot `m` of half `h`.
    pub pos: [u8; 32],
    /// Byte `16 h + m`: the value of slot `m` of half `h`.
    pub val: [i8; 32],
}

impl StepFormat for WideStep {
    const GROUP: usize = 8;
    const WINDOW: usize = 32;
    const PER_ROW: usize = 4;
    const EMPTY: Self = WideStep {
        pos: [0; 32],
        val: [0; 32],
    };

    fn put(&mut self, lane: usize, t: usize, pos: u8, val: i8) {
        let (h, m) = ShuffleStep::slot(lane, t);
        self.pos[16 * h + m] = if pos < 16 { pos } else { 0x80 | (pos - 16) };
        self.val[16 * h + m] = val;
    }

    #[cfg(test)]
    fn get(&self, lane: usize, t: usize) -> (u8, i8) {
        let (h, m) = ShuffleStep::slot(lane, t);
        let code = self.pos[16 * h + m];
        let pos = if code & 0x80 == 0 {
            code
        } else {
            16 + (code & 0x7F)
        };
        (pos, self.val[16 * h + m])
    }
}

/// A window layout of a matrix (see the module docs).
#[derive(Clone)]
pub(crate) struct Slices<S> {
    /// Group `g`'s steps are `steps[group_ptr[g]..group_ptr[g + 1]]`.
    pub group_ptr: Vec<u32>,
    /// The first column of every step's window (any column below `cols`, not a multiple of
    /// the window).
    pub start: Vec<u16>,
    /// The steps.
    pub steps: Vec<S>,
}

impl<S: StepFormat> Slices<S> {
    /// Cuts `w` into the layout: per group, each step's window starts at the leftmost
    /// non-zero the group has left, and every row fills its slots with its next non-zeros
    /// inside the window.
    ///
    /// Sliding the window to where the rows are, rather than cutting the columns into fixed
    /// windows, pads less: with fixed windows a window's steps are as many as its fullest row
    /// needs, and the other rows pad (38% of the permute slots at 10% density); a sliding
    /// window lets a row that is ahead wait while the others catch up, and a row that is
    /// behind fill its slots (14-17% padding on 1024 x 4096 and 3755 x 1024 at 10%).
    pub(crate) fn new(w: &QCsrMatrix) -> Self {
        let rows = w.rows();
        let (rp, ci, vals) = (w.row_ptr(), w.cols_u16(), w.values());
        let mut s = Slices {
            group_ptr: vec![0],
            start: Vec::new(),
            steps: Vec::new(),
        };
        for r0 in (0..rows).step_by(S::GROUP) {
            let group = r0..(r0 + S::GROUP).min(rows);
            // per row of the group: its next non-zero and its end
            let mut at: Vec<usize> = group.clone().map(|r| rp[r] as usize).collect();
            let end: Vec<usize> = group.clone().map(|r| rp[r + 1] as usize).collect();
            while let Some(first) = (at.iter().zip(&end))
                .filter(|(a, e)| a < e)
                .map(|(&a, _)| ci[a] as usize)
                .min()
            {
                let mut step = S::EMPTY;
                for (l, (a, &e)) in at.iter_mut().zip(&end).enumerate() {
                    for t in 0..S::PER_ROW {
                        if *a == e || ci[*a] as usize >= first + S::WINDOW {
                            break;
                        }
                        step.put(l, t, (ci[*a] as usize - first) as u8, vals[*a]);
                        *a += 1;
                    }
                }
                s.steps.push(step);
                // a column index, below `MAX_INNER = 2^16`
                s.start.push(first as u16);
            }
            // every step holds a non-zero, so there are at most `nnz <= u32::MAX` of them
            s.group_ptr.push(s.steps.len() as u32);
        }
        s
    }
}

/// A layout inside a [`QCsrMatrix`], made on first use: not part of its value, so left out of
/// comparisons and debug output.
pub(crate) struct LazySlices<S>(OnceLock<Slices<S>>);

impl<S: StepFormat> LazySlices<S> {
    /// The layout of `w` (which must be the matrix holding `self`).
    pub(crate) fn get(&self, w: &QCsrMatrix) -> &Slices<S> {
        self.0.get_or_init(|| Slices::new(w))
    }
}

impl<S> Default for LazySlices<S> {
    fn default() -> Self {
        LazySlices(OnceLock::new())
    }
}

impl<S: Clone> Clone for LazySlices<S> {
    fn clone(&self) -> Self {
        LazySlices(self.0.clone())
    }
}

impl<S> PartialEq for LazySlices<S> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<S> std::fmt::Debug for LazySlices<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::tests::{csr, random_i8};
    use super::*;

    /// Every layout holds every non-zero once, in its row's lane, inside its step's window, in
    /// column order; every step holds a non-zero and starts at the group's leftmost non-zero
    /// left; padding slots are position 0, value 0.
    fn slices_hold_every_non_zero<S: StepFormat>() {
        let (group, window, per_row) = (S::GROUP, S::WINDOW, S::PER_ROW);
        let mut rng = ChaCha8Rng::seed_from_u64(26);
        for (rows, cols, density) in [(37, 300, 0.1), (16, 128, 0.5), (5, 1000, 0.02), (0, 7, 0.5)]
        {
            let w = random_i8(&mut rng, rows, cols, density);
            let m = csr(&w, rows, cols, vec![1.0; rows]);
            let s = Slices::<S>::new(&m);
            assert_eq!(s.group_ptr.len(), rows.div_ceil(group) + 1);
            let mut back = vec![0i8; rows * cols];
            for g in 0..rows.div_ceil(group) {
                let (lo, hi) = (s.group_ptr[g] as usize, s.group_ptr[g + 1] as usize);
                let lanes = group.min(rows - group * g);
                // per lane: the columns of its row's non-zeros not yet met, in order
                let mut left: Vec<Vec<usize>> = (0..lanes)
                    .map(|l| {
                        let r = group * g + l;
                        (0..cols).filter(|&c| w[r * cols + c] != 0).rev().collect()
                    })
                    .collect();
                for i in lo..hi {
                    let start = s.start[i] as usize;
                    let leftmost = left.iter().filter_map(|c| c.last()).min();
                    assert_eq!(
                        leftmost,
                        Some(&start),
                        "window at the leftmost non-zero left"
                    );
                    let mut held = 0;
                    for (l, next) in left.iter_mut().enumerate() {
                        let r = group * g + l;
                        for t in 0..per_row {
                            let (p, v) = s.steps[i].get(l, t);
                            match next.last() {
                                Some(&c) if c < start + window => {
                                    assert_eq!(start + p as usize, c, "row {r}: next non-zero");
                                    back[r * cols + c] = v;
                                    next.pop();
                                    held += 1;
                                }
                                _ => assert_eq!((p, v), (0, 0), "padding"),
                            }
                        }
                    }
                    assert!(held > 0, "a step of padding only");
                }
                assert!(
                    left.iter().all(Vec::is_empty),
                    "group {g}: non-zeros left out"
                );
                for l in lanes..group {
                    assert!((lo..hi).all(|i| (0..per_row).all(|t| s.steps[i].get(l, t) == (0, 0))));
                }
            }
            assert_eq!(back, w, "{rows}x{cols}");
        }
    }

    /// The sliding window pads the permute layout of a 10%-dense layer in less than a fifth
    /// of its slots (windows cut at multiples of 128 padded 38% of them).
    #[test]
    fn permute_slices_pad_little_at_ten_percent() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (rows, cols) = (256, 2048);
        // (`random_i8` makes its first row dense, which no other row's padding could hide)
        let w: Vec<i8> = (0..rows * cols)
            .map(|_| rng.random_bool(0.1) as i8)
            .collect();
        let m = csr(&w, rows, cols, vec![1.0; rows]);
        let s = Slices::<PermuteStep>::new(&m);
        let slots = s.steps.len() * PermuteStep::GROUP * PermuteStep::PER_ROW;
        let fill = m.nnz() as f64 / slots as f64;
        assert!(fill > 0.8, "{} of the slots hold a non-zero", fill);
    }

    #[test]
    fn permute_slices_hold_every_non_zero() {
        slices_hold_every_non_zero::<PermuteStep>();
    }

    #[test]
    fn shuffle_slices_hold_every_non_zero() {
        slices_hold_every_non_zero::<ShuffleStep>();
    }

    #[test]
    fn wide_slices_hold_every_non_zero() {
        slices_hold_every_non_zero::<WideStep>();
    }

    /// The 32-column windows of the wide layout fill more than three fifths of its slots at 10%
    /// density (62%), and take a sixth fewer bytes a non-zero than the 16-column shuffle
    /// layout (3.3 against 3.9).
    #[test]
    fn wide_slices_are_fuller_than_shuffle_slices() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let (rows, cols) = (256, 2048);
        let w: Vec<i8> = (0..rows * cols)
            .map(|_| rng.random_bool(0.1) as i8)
            .collect();
        let m = csr(&w, rows, cols, vec![1.0; rows]);
        let (wide, narrow) = (Slices::<WideStep>::new(&m), Slices::<ShuffleStep>::new(&m));
        let fill = m.nnz() as f64 / (wide.steps.len() * 32) as f64;
        assert!(fill > 0.6, "{fill} of the slots hold a non-zero");
        let bytes = |steps: usize, size: usize| (steps * (size + 2)) as f64 / m.nnz() as f64;
        let (b_wide, b_narrow) = (
            bytes(wide.steps.len(), std::mem::size_of::<WideStep>()),
            bytes(narrow.steps.len(), 48),
        );
        assert!(
            b_wide < 0.87 * b_narrow,
            "{b_wide} against {b_narrow} bytes a non-zero"
        );
    }

    /// The slots of the shuffle step are distinct bytes of its encoding.
    #[test]
    fn shuffle_slots_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for lane in 0..ShuffleStep::GROUP {
            for t in 0..ShuffleStep::PER_ROW {
                let (h, m) = ShuffleStep::slot(lane, t);
                assert!(seen.insert((h, m)), "lane {lane} slot {t}");
                assert!(m < 16 && seen.iter().filter(|s| s.1 == m).count() <= 2);
            }
        }
        assert_eq!(seen.len(), 32);
    }
}
