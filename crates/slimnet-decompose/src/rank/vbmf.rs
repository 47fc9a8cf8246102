//! Empirical variational Bayesian matrix factorization (EVBMF) by its global analytic solution
//! (Nakajima, Sugiyama, Babacan and Tomioka 2013): estimates the noise variance from the
//! singular values alone and keeps the components above the resulting threshold.

use crate::error::{DecomposeError, Result};

/// The outcome of [`evbmf`].
#[derive(Debug, Clone, PartialEq)]
pub struct Vbmf {
    /// Estimated rank (components above the threshold).
    pub rank: usize,
    /// Estimated noise variance `σ²`.
    pub sigma2: f64,
    /// The singular-value threshold `sqrt(M σ² (1 + τ̄)(1 + α/τ̄))`.
    pub threshold: f64,
}

/// EVBMF on the singular values `s` (descending, all `min(m, n)` of them) of an `m x n`
/// matrix.
///
/// With `L = min(m, n)`, `M = max(m, n)` and `α = L/M`, the noise variance minimises
/// `Σ_h ψ(γ_h² / (M σ²))` with `ψ(x) = x - ln x + [x > x̄] (ln(τ+1) + α ln(τ/α+1) - τ)`,
/// `τ(x) = (x - 1 - α + sqrt((x - 1 - α)² - 4α)) / 2`, `x̄ = (1+τ̄)(1+α/τ̄)` and `τ̄ ≈ 2.5129 √α`,
/// searched between the analytic bounds of the paper; components with
/// `γ_h > sqrt(M σ² x̄)` are kept.
///
/// # Errors
/// Fewer singular values than `min(m, n)`, or non-finite or negative values.
pub fn evbmf(s: &[f64], m: usize, n: usize) -> Result<Vbmf> {
    let l = m.min(n);
    let big = m.max(n) as f64;
    if l == 0 || s.len() < l || s.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(DecomposeError::invalid(format!(
            "EVBMF needs the {l} finite non-negative singular values of a {m}x{n} matrix, got {}",
            s.len()
        )));
    }
    let s = &s[..l];
    let lf = l as f64;
    let alpha = lf / big;
    let tau_bar = 2.5129 * alpha.sqrt();
    let x_bar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar);
    let g2: Vec<f64> = s.iter().map(|v| v * v).collect();
    let total: f64 = g2.iter().sum();
    if total == 0.0 {
        return Ok(Vbmf {
            rank: 0,
            sigma2: 0.0,
            threshold: 0.0,
        });
    }
    // at most this many components can be kept (paper's bound on the rank)
    let h_bar = ((lf / (1.0 + alpha)).ceil() as usize)
        .saturating_sub(1)
        .min(l - 1);
    let upper = total / (lf * big);
    let tail: f64 = g2[h_bar..].iter().sum::<f64>() / (l - h_bar) as f64;
    let lower = (g2[h_bar] / (big * x_bar)).max(tail / big).min(upper);
    let objective = |sigma2: f64| -> f64 {
        g2.iter()
            .map(|&g| {
                let x = g / (big * sigma2);
                let mut psi = x - x.ln();
                if x > x_bar {
                    let d = x - 1.0 - alpha;
                    let tau = 0.5 * (d + (d * d - 4.0 * alpha).max(0.0).sqrt());
                    psi += (tau + 1.0).ln() + alpha * (tau / alpha + 1.0).ln() - tau;
                }
                psi
            })
            .sum()
    };
    // a log-spaced scan, then golden-section refinement around the best point
    let (lo, hi) = (lower.max(upper * 1e-12).ln(), upper.ln());
    let steps = 200;
    let at = |i: usize| (lo + (hi - lo) * i as f64 / steps as f64).exp();
    let best = (0..=steps)
        .min_by(|&a, &b| objective(at(a)).total_cmp(&objective(at(b))))
        .expect("non-empty scan");
    let (mut a, mut b) = (at(best.saturating_sub(1)), at((best + 1).min(steps)));
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..100 {
        let c = b - phi * (b - a);
        let d = a + phi * (b - a);
        if objective(c) < objective(d) {
            b = d;
        } else {
            a = c;
        }
    }
    let sigma2 = 0.5 * (a + b);
    let threshold = (big * sigma2 * x_bar).sqrt();
    let rank = s.iter().filter(|&&v| v > threshold).count();
    Ok(Vbmf {
        rank,
        sigma2,
        threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::tests::low_rank_matrix;

    #[test]
    fn recovers_rank_and_noise_of_a_noisy_low_rank_matrix() {
        for &(m, n, r, sigma) in &[
            (80usize, 60usize, 5usize, 0.1f32),
            (50, 120, 8, 0.05),
            (100, 100, 3, 0.2),
        ] {
            let signal = low_rank_matrix(m, n, r, 1);
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2);
            let noise = ndarray::Array2::from_shape_simple_fn((m, n), || {
                crate::util::gaussian(&mut rng) as f32
            });
            let a = &signal + &(noise * sigma);
            let s: Vec<f64> = crate::svd::svd(a.view())
                .unwrap()
                .s
                .iter()
                .map(|&v| v as f64)
                .collect();
            let v = evbmf(&s, m, n).unwrap();
            assert_eq!(v.rank, r, "{m}x{n}");
            let rel = (v.sigma2.sqrt() - sigma as f64).abs() / sigma as f64;
            assert!(rel < 0.15, "{m}x{n}: sigma {} vs {sigma}", v.sigma2.sqrt());
        }
    }

    #[test]
    fn bad_input() {
        assert!(evbmf(&[1.0, f64::NAN], 2, 3).is_err());
        assert!(evbmf(&[1.0], 2, 3).is_err());
        assert_eq!(evbmf(&[0.0, 0.0], 2, 2).unwrap().rank, 0);
    }
}
