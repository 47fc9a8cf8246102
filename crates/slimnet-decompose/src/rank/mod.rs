//! Rank selection: fixed ranks, energy and error thresholds, parameter and MAC budgets, and
//! VBMF (empirical variational Bayesian matrix factorization, Nakajima et al. 2013, as used for
//! CNN kernels by Kim et al. 2016).
//!
//! ```
//! use slimnet_decompose::rank::{select_rank, RankPolicy};
//! let s = [10.0, 5.0, 1.0, 0.1];
//! // 99.5% of the energy (sum of squares) needs three values
//! assert_eq!(select_rank(&s, &RankPolicy::Energy(0.995), &|r| (r, r), (4, 4))?, 3);
//! // at most half the parameters, where rank r costs r
//! assert_eq!(select_rank(&s, &RankPolicy::ParamRatio(0.5), &|r| (r, r), (4, 4))?, 2);
//! # Ok::<(), slimnet_decompose::DecomposeError>(())
//! ```

mod vbmf;

pub use vbmf::{evbmf, Vbmf};

use crate::error::{DecomposeError, Result};

/// How to choose a rank.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RankPolicy {
    /// This rank (for Tucker-2, both channel modes).
    Fixed(usize),
    /// The smallest rank keeping this fraction (in `(0, 1]`) of the squared singular values.
    Energy(f64),
    /// The smallest rank whose relative Frobenius error is at most this (in `[0, 1)`).
    ErrorBudget(f64),
    /// The largest rank whose replacement keeps at most this fraction of the parameters.
    ParamRatio(f64),
    /// The largest rank whose replacement keeps at most this fraction of the MACs.
    MacRatio(f64),
    /// The rank EVBMF estimates from the singular values (noise variance estimated too).
    Vbmf,
}

/// Chooses a rank from descending singular values `s` of an `m x n` matrix.
/// `cost(r)` gives the (parameters, MACs) of the rank-`r` replacement; `original` those of the
/// layer it replaces (used by the budget policies).
///
/// # Errors
/// [`DecomposeError::Rank`] for a fixed rank of 0 or above `s.len()`; [`DecomposeError::Invalid`] for a threshold
/// outside its range or a budget that even rank 1 exceeds.
pub fn select_rank(
    s: &[f64],
    policy: &RankPolicy,
    cost: &dyn Fn(usize) -> (usize, usize),
    original: (usize, usize),
) -> Result<usize> {
    let max = s.len();
    let total: f64 = s.iter().map(|v| v * v).sum();
    let tail_ok = |r: usize, keep: &dyn Fn(f64) -> bool| -> bool {
        let kept: f64 = s[..r].iter().map(|v| v * v).sum();
        keep(kept)
    };
    match *policy {
        RankPolicy::Fixed(r) => {
            crate::error::check_rank(r, max, || format!("a matrix with {max} singular values"))?;
            Ok(r)
        }
        RankPolicy::Energy(e) => {
            if !(e > 0.0 && e <= 1.0) {
                return Err(DecomposeError::invalid(format!(
                    "energy threshold {e} is not in (0, 1]"
                )));
            }
            Ok((1..=max)
                .find(|&r| total == 0.0 || tail_ok(r, &|k| k >= e * total * (1.0 - 1e-12)))
                .unwrap_or(max))
        }
        RankPolicy::ErrorBudget(eps) => {
            if !(0.0..1.0).contains(&eps) {
                return Err(DecomposeError::invalid(format!(
                    "error budget {eps} is not in [0, 1)"
                )));
            }
            Ok((1..=max)
                .find(|&r| {
                    total == 0.0 || tail_ok(r, &|k| ((total - k).max(0.0) / total).sqrt() <= eps)
                })
                .unwrap_or(max))
        }
        RankPolicy::ParamRatio(q) | RankPolicy::MacRatio(q) => {
            let params = matches!(policy, RankPolicy::ParamRatio(_));
            let what = if params { "parameter" } else { "MAC" };
            if q.is_nan() || q <= 0.0 {
                return Err(DecomposeError::invalid(format!(
                    "{what} ratio {q} must be positive"
                )));
            }
            let limit = q * if params { original.0 } else { original.1 } as f64;
            let pick = |r: usize| {
                let c = cost(r);
                (if params { c.0 } else { c.1 }) as f64
            };
            let best = (1..=max).take_while(|&r| pick(r) <= limit).last();
            best.ok_or_else(|| {
                DecomposeError::invalid(format!(
                    "a {what} budget of {q} x {} cannot be met: rank 1 costs {}",
                    if params { original.0 } else { original.1 },
                    pick(1)
                ))
            })
        }
        RankPolicy::Vbmf => Ok(evbmf(s, max, max)?.rank.max(1)),
    }
}
