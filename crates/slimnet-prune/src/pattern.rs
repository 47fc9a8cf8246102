//! Turning scores into 0/1 masks: unstructured, block and N:M patterns.

use crate::error::{PruneError, Result};

/// The shape of what is removed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pattern {
    /// Single weights.
    #[default]
    Unstructured,
    /// Dense `rows x cols` blocks of the weight seen as `[out, in * kh * kw]` (e.g. `4x1`,
    /// which the block-sparse kernel runs fastest). The matrix must tile by the block.
    Block {
        /// Block height (output rows).
        rows: usize,
        /// Block width (input columns).
        cols: usize,
    },
    /// At most `n` kept weights in every `m` consecutive inputs of a row (2:4). The sparsity
    /// is fixed at `1 - n / m`.
    NM {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

/// One layer's scores, seen as a `[rows, cols]` matrix, with the mask it had before.
pub(crate) struct LayerScores {
    pub path: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major scores; `-inf` where the previous mask already prunes.
    pub scores: Vec<f32>,
}

impl LayerScores {
    pub(crate) fn already_pruned(&self) -> usize {
        self.scores
            .iter()
            .filter(|s| **s == f32::NEG_INFINITY)
            .count()
    }
}

/// Checks that a pattern fits a `[rows, cols]` weight.
pub(crate) fn check_fit(pattern: Pattern, path: &str, rows: usize, cols: usize) -> Result<()> {
    match pattern {
        Pattern::Unstructured => Ok(()),
        Pattern::Block { rows: br, cols: bc } => {
            if br == 0 || bc == 0 || !rows.is_multiple_of(br) || !cols.is_multiple_of(bc) {
                return Err(PruneError::unsupported(
                    path,
                    format!("a {rows}x{cols} weight does not tile by {br}x{bc} blocks"),
                ));
            }
            Ok(())
        }
        Pattern::NM { n, m } => {
            if n == 0 || n > m || m > 255 || !cols.is_multiple_of(m) {
                return Err(PruneError::unsupported(
                    path,
                    format!("{n}:{m} sparsity needs 1 <= n <= m <= 255 and {cols} inputs divisible by m"),
                ));
            }
            Ok(())
        }
    }
}

/// Block scores (mean of the block's element scores; `-inf` when every element is pruned),
/// as a `[rows / br, cols / bc]` matrix.
pub(crate) fn block_scores(l: &LayerScores, br: usize, bc: usize) -> LayerScores {
    let (nr, nc) = (l.rows / br, l.cols / bc);
    let mut scores = Vec::with_capacity(nr * nc);
    for bi in 0..nr {
        for bj in 0..nc {
            let mut sum = 0.0f32;
            let mut all_pruned = true;
            for r in bi * br..(bi + 1) * br {
                for c in bj * bc..(bj + 1) * bc {
                    let s = l.scores[r * l.cols + c];
                    if s != f32::NEG_INFINITY {
                        all_pruned = false;
                        sum += s;
                    }
                }
            }
            scores.push(if all_pruned {
                f32::NEG_INFINITY
            } else {
                sum / (br * bc) as f32
            });
        }
    }
    LayerScores {
        path: l.path.clone(),
        rows: nr,
        cols: nc,
        scores,
    }
}

/// Expands a block keep-mask back to elements.
pub(crate) fn expand_blocks(keep: &[bool], l: &LayerScores, br: usize, bc: usize) -> Vec<bool> {
    let nc = l.cols / bc;
    (0..l.rows * l.cols)
        .map(|i| keep[(i / l.cols / br) * nc + (i % l.cols) / bc])
        .collect()
}

/// Number of entries to prune out of `n` for a sparsity, never fewer than already pruned.
pub(crate) fn prune_count(sparsity: f32, n: usize, already: usize) -> usize {
    ((sparsity as f64 * n as f64).round() as usize).max(already)
}

/// Keep-masks for several layers pruned to one sparsity each (`per_layer`) or with one
/// threshold across all of them (global): the lowest scores go first, ties by position.
pub(crate) fn lowest_keep(
    layers: &[LayerScores],
    sparsity: f32,
    global: bool,
) -> Result<Vec<Vec<bool>>> {
    let mut keeps: Vec<Vec<bool>> = layers.iter().map(|l| vec![true; l.scores.len()]).collect();
    let groups: Vec<Vec<usize>> = if global {
        vec![(0..layers.len()).collect()]
    } else {
        (0..layers.len()).map(|i| vec![i]).collect()
    };
    for group in groups {
        let mut order: Vec<(u32, u32)> = Vec::new();
        for &li in &group {
            order.extend((0..layers[li].scores.len() as u32).map(|e| (li as u32, e)));
        }
        let already: usize = group.iter().map(|&li| layers[li].already_pruned()).sum();
        let k = prune_count(sparsity, order.len(), already);
        let score = |&(l, e): &(u32, u32)| layers[l as usize].scores[e as usize];
        if k < order.len() {
            order.select_nth_unstable_by(k, |a, b| score(a).total_cmp(&score(b)).then(a.cmp(b)));
        }
        for &(l, e) in &order[..k.min(order.len())] {
            keeps[l as usize][e as usize] = false;
        }
    }
    for (l, keep) in layers.iter().zip(&keeps) {
        if !keep.iter().any(|&k| k) {
            return Err(PruneError::EmptyLayer {
                layer: l.path.clone(),
                what: "weights",
                total: keep.len(),
            });
        }
    }
    Ok(keeps)
}

/// N:M keep-mask: the `n` highest scores of every group of `m` consecutive columns.
pub(crate) fn nm_keep(l: &LayerScores, n: usize, m: usize) -> Vec<bool> {
    let mut keep = vec![false; l.scores.len()];
    let mut idx: Vec<usize> = Vec::with_capacity(m);
    for start in (0..l.scores.len()).step_by(m) {
        idx.clear();
        idx.extend(start..start + m);
        idx.sort_by(|&a, &b| l.scores[b].total_cmp(&l.scores[a]).then(a.cmp(&b)));
        for &i in idx.iter().take(n) {
            if l.scores[i] != f32::NEG_INFINITY {
                keep[i] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(path: &str, rows: usize, cols: usize, scores: Vec<f32>) -> LayerScores {
        LayerScores {
            path: path.into(),
            rows,
            cols,
            scores,
        }
    }

    #[test]
    fn per_layer_and_global_thresholds() {
        let a = ls("a", 1, 4, vec![1.0, 2.0, 3.0, 4.0]);
        let b = ls("b", 1, 4, vec![10.0, 20.0, 30.0, 40.0]);
        let per = lowest_keep(&[a, b], 0.5, false).unwrap();
        assert_eq!(per[0], [false, false, true, true]);
        assert_eq!(per[1], [false, false, true, true]);
        let a = ls("a", 1, 4, vec![1.0, 2.0, 3.0, 4.0]);
        let b = ls("b", 1, 4, vec![10.0, 20.0, 30.0, 40.0]);
        let glob = lowest_keep(&[a, b], 0.375, true).unwrap();
        assert_eq!(glob[0], [false, false, false, true]);
        assert_eq!(glob[1], [true; 4]);
    }

    #[test]
    fn global_pass_that_empties_a_layer_fails_naming_it() {
        let a = ls("fc1", 1, 2, vec![1.0, 2.0]);
        let b = ls("fc2", 1, 4, vec![10.0, 20.0, 30.0, 40.0]);
        let e = lowest_keep(&[a, b], 0.4, true).unwrap_err();
        assert!(
            e.to_string().starts_with("fc1: pruning would remove all 2"),
            "{e}"
        );
    }

    #[test]
    fn masks_only_grow() {
        let a = ls(
            "a",
            1,
            4,
            vec![f32::NEG_INFINITY, f32::NEG_INFINITY, 3.0, 1.0],
        );
        let k = lowest_keep(&[a], 0.25, false).unwrap();
        assert_eq!(k[0], [false, false, true, true]);
    }

    #[test]
    fn nm_and_blocks() {
        let a = ls("a", 2, 4, vec![1.0, 4.0, 3.0, 2.0, -1.0, 0.0, 5.0, 5.0]);
        assert_eq!(
            nm_keep(&a, 2, 4),
            [false, true, true, false, false, false, true, true]
        );
        let b = block_scores(&a, 2, 1);
        assert_eq!(b.scores, vec![0.0, 2.0, 4.0, 3.5]);
        let keep = lowest_keep(&[b], 0.5, false).unwrap();
        let full = expand_blocks(&keep[0], &a, 2, 1);
        assert_eq!(full, [false, false, true, true, false, false, true, true]);
        assert!(check_fit(Pattern::NM { n: 2, m: 4 }, "x", 3, 6).is_err());
        assert!(check_fit(Pattern::Block { rows: 4, cols: 1 }, "x", 6, 6).is_err());
    }
}
