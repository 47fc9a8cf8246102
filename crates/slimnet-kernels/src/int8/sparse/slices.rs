//! The batch-1 layouts of the byte-shuffle kernels: a [`QCsrMatrix`] cut into groups of rows
//! (one accumulator lane each) and windows of columns (one shuffle table), each group's
//! non-zeros in a window stored as steps that hold the same number of non-zeros of every row
//! of the group. A step stores, per slot, the non-zero's position in the window (`col %
//! WINDOW`) and its value; a row with fewer non-zeros in the window than its slots is padded
//! with value 0 at position 0. The kernel loads the window of the input, picks every slot's
//! input with byte shuffles and multiplies and adds it into the group's row sums: no gathers,
//! and no branch that depends on where the non-zeros are. A window's step count is the largest
//! count of any row of the group divided by the slots a row has, rounded up.
//!
//! Two step encodings ([`StepFormat`]):
//!
//! - [`PermuteStep`] (AVX-512 VBMI + VNNI): 16 rows, windows of 128 columns (the two 64-byte
//!   tables of `vpermt2b`), four non-zeros per row: 64 position bytes and 64 values, one
//!   `vpdpbusd`. At 10% density padding takes about a third of the slots.
//! - [`ShuffleStep`] (AVX2): 8 rows, windows of 16 columns (the 16-byte table of `vpshufb`),
//!   four non-zeros per row: 32 positions packed two to a byte and 32 values. At 10% density
//!   about a third of the slots hold a non-zero, so a step costs about as much memory per
//!   non-zero as a CSR entry.

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

/// A window layout of a matrix (see the module docs).
#[derive(Clone)]
pub(crate) struct Slices<S> {
    /// Group `g`'s steps are `steps[group_ptr[g]..group_ptr[g + 1]]`.
    pub group_ptr: Vec<u32>,
    /// The window of every step.
    pub window: Vec<u16>,
    /// The steps.
    pub steps: Vec<S>,
}

impl<S: StepFormat> Slices<S> {
    /// Cuts `w` into the layout.
    pub(crate) fn new(w: &QCsrMatrix) -> Self {
        let (rows, cols) = (w.rows(), w.cols());
        let (rp, ci, vals) = (w.row_ptr(), w.cols_u16(), w.values());
        let windows = cols.div_ceil(S::WINDOW);
        let mut s = Slices {
            group_ptr: vec![0],
            window: Vec::new(),
            steps: Vec::new(),
        };
        for r0 in (0..rows).step_by(S::GROUP) {
            let group = r0..(r0 + S::GROUP).min(rows);
            // per row of the group: its next non-zero
            let mut at: Vec<usize> = group.clone().map(|r| rp[r] as usize).collect();
            for b in 0..windows {
                let end = (b + 1) * S::WINDOW;
                // per row: its non-zeros in this window
                let spans: Vec<(usize, usize)> = (group.clone().zip(at.iter_mut()))
                    .map(|(r, a)| {
                        let (lo, hi) = (*a, rp[r + 1] as usize);
                        let n = ci[lo..hi]
                            .iter()
                            .take_while(|&&c| (c as usize) < end)
                            .count();
                        *a = lo + n;
                        (lo, n)
                    })
                    .collect();
                let most = spans.iter().map(|s| s.1).max().unwrap_or(0);
                for q in 0..most.div_ceil(S::PER_ROW) {
                    let mut step = S::EMPTY;
                    let first = S::PER_ROW * q;
                    for (l, &(lo, n)) in spans.iter().enumerate() {
                        for i in first..n.min(first + S::PER_ROW) {
                            let pos = (ci[lo + i] as usize % S::WINDOW) as u8;
                            step.put(l, i - first, pos, vals[lo + i]);
                        }
                    }
                    s.steps.push(step);
                    s.window.push(b as u16);
                }
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
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::super::tests::{csr, random_i8};
    use super::*;

    /// Every layout holds every non-zero once, in its row's lane and its window, in column
    /// order, with as many steps per window as the fullest row of the group needs.
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
                let mut windows = s.window[lo..hi].to_vec();
                windows.dedup();
                assert!(windows.windows(2).all(|p| p[0] < p[1]), "windows in order");
                for b in windows {
                    let b = b as usize;
                    let steps: Vec<usize> =
                        (lo..hi).filter(|&i| s.window[i] as usize == b).collect();
                    let mut most = 0;
                    for l in 0..group.min(rows - group * g) {
                        let r = group * g + l;
                        let cols_in = (window * b..(window * b + window).min(cols))
                            .filter(|&c| w[r * cols + c] != 0)
                            .count();
                        most = most.max(cols_in);
                        let mut prev = None;
                        for (q, &i) in steps.iter().enumerate() {
                            for t in 0..per_row {
                                let (p, v) = s.steps[i].get(l, t);
                                if per_row * q + t < cols_in {
                                    let c = window * b + p as usize;
                                    assert!(prev < Some(c), "column order");
                                    prev = Some(c);
                                    back[r * cols + c] = v;
                                } else {
                                    assert_eq!((p, v), (0, 0), "padding");
                                }
                            }
                        }
                    }
                    assert_eq!(steps.len(), most.div_ceil(per_row));
                }
            }
            assert_eq!(back, w, "{rows}x{cols}");
        }
    }

    #[test]
    fn permute_slices_hold_every_non_zero() {
        slices_hold_every_non_zero::<PermuteStep>();
    }

    #[test]
    fn shuffle_slices_hold_every_non_zero() {
        slices_hold_every_non_zero::<ShuffleStep>();
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
