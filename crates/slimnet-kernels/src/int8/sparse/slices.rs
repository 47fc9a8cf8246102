//! The batch-1 layout of the permute kernel: a [`QCsrMatrix`] cut into groups of 16 rows and
//! windows of 128 columns, each group's non-zeros in a window stored as steps of 64 bytes,
//! four non-zeros per row and step.
//!
//! A step of group `g` in window `b` holds, in dword lane `l` (bytes `4 l..4 l + 4`), four
//! non-zeros of row `16 g + l` with columns in `128 b..128 b + 128`: their positions in the
//! window (`col % 128`) and their values; a row with fewer non-zeros there than the step has
//! lanes is padded with value 0 at position 0. The kernel loads the window of the input
//! (two 64-byte vectors), picks every lane's input with one two-table byte permute
//! (`vpermt2b`), and multiplies and adds it into the 16 row sums with one `vpdpbusd`. No
//! gathers, and no branch that depends on where the non-zeros are.
//!
//! The window's step count is the largest count of any of the 16 rows divided by 4, rounded
//! up, so padding takes some of the slots: at 10% density about a third, which makes a step
//! slot (two bytes) cost about as much memory as a CSR non-zero (three bytes).

use super::matrix::QCsrMatrix;

/// Rows per group: the 16 dword lanes of a vector.
pub(crate) const GROUP: usize = 16;
/// Columns per window: the two 64-byte tables of `vpermt2b`.
pub(crate) const WINDOW: usize = 128;

/// One step: 64 window positions and the 64 values they multiply.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Step {
    /// Column within the window (`col % 128`), per byte lane.
    pub pos: [u8; 64],
    /// The value, per byte lane (0 for padding).
    pub val: [i8; 64],
}

/// The layout (see the module docs).
#[derive(Clone, Default)]
pub(crate) struct Slices {
    /// Group `g`'s steps are `steps[group_ptr[g]..group_ptr[g + 1]]`.
    pub group_ptr: Vec<u32>,
    /// The window of every step.
    pub window: Vec<u16>,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Slices {
    /// Cuts `w` into the layout.
    pub(crate) fn new(w: &QCsrMatrix) -> Self {
        let (rows, cols) = (w.rows(), w.cols());
        let (rp, ci, vals) = (w.row_ptr(), w.cols_u16(), w.values());
        let windows = cols.div_ceil(WINDOW);
        let mut s = Slices {
            group_ptr: vec![0],
            ..Slices::default()
        };
        for r0 in (0..rows).step_by(GROUP) {
            let group = r0..(r0 + GROUP).min(rows);
            // per row of the group: its next non-zero
            let mut at: Vec<usize> = group.clone().map(|r| rp[r] as usize).collect();
            for b in 0..windows {
                let end = (b + 1) * WINDOW;
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
                for q in 0..most.div_ceil(4) {
                    let mut step = Step {
                        pos: [0; 64],
                        val: [0; 64],
                    };
                    for (l, &(lo, n)) in spans.iter().enumerate() {
                        for t in (4 * q..n.min(4 * q + 4)).map(|i| i - 4 * q) {
                            step.pos[4 * l + t] = (ci[lo + 4 * q + t] as usize % WINDOW) as u8;
                            step.val[4 * l + t] = vals[lo + 4 * q + t];
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

/// The layout inside a [`QCsrMatrix`], made on first use: not part of its value, so left out
/// of comparisons and debug output.
#[derive(Clone, Default)]
pub(crate) struct LazySlices(std::sync::OnceLock<Slices>);

impl LazySlices {
    /// The layout of `w` (which must be the matrix holding `self`).
    pub(crate) fn get(&self, w: &QCsrMatrix) -> &Slices {
        self.0.get_or_init(|| Slices::new(w))
    }
}

impl PartialEq for LazySlices {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for LazySlices {
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

    /// The batch-1 layout holds every non-zero once, in its row's lane and its window, in column
    /// order, with as many steps per window as the fullest row of the group needs.
    #[test]
    fn window_slices_hold_every_non_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(26);
        for (rows, cols, density) in [(37, 300, 0.1), (16, 128, 0.5), (5, 1000, 0.02), (0, 7, 0.5)]
        {
            let w = random_i8(&mut rng, rows, cols, density);
            let m = csr(&w, rows, cols, vec![1.0; rows]);
            let s = Slices::new(&m);
            assert_eq!(s.group_ptr.len(), rows.div_ceil(GROUP) + 1);
            let mut back = vec![0i8; rows * cols];
            for g in 0..rows.div_ceil(GROUP) {
                let (lo, hi) = (s.group_ptr[g] as usize, s.group_ptr[g + 1] as usize);
                let mut windows = s.window[lo..hi].to_vec();
                windows.dedup();
                assert!(windows.windows(2).all(|p| p[0] < p[1]), "windows in order");
                for b in windows {
                    let steps: Vec<usize> = (lo..hi).filter(|&i| s.window[i] == b).collect();
                    let mut most = 0;
                    for l in 0..GROUP.min(rows - GROUP * g) {
                        let r = GROUP * g + l;
                        let cols_in = (128 * b as usize..(128 * b as usize + WINDOW).min(cols))
                            .filter(|&c| w[r * cols + c] != 0)
                            .count();
                        most = most.max(cols_in);
                        let mut prev = None;
                        for (q, &i) in steps.iter().enumerate() {
                            for t in 0..4 {
                                let (p, v) = (s.steps[i].pos[4 * l + t], s.steps[i].val[4 * l + t]);
                                if 4 * q + t < cols_in {
                                    let c = WINDOW * b as usize + p as usize;
                                    assert!(prev < Some(c), "column order");
                                    prev = Some(c);
                                    back[r * cols + c] = v;
                                } else {
                                    assert_eq!((p, v), (0, 0), "padding");
                                }
                            }
                        }
                    }
                    assert_eq!(steps.len(), most.div_ceil(4));
                }
            }
            assert_eq!(back, w, "{rows}x{cols}");
        }
    }
}
