//! Layer rewrites: a [`LowRank`] rule replaces `Linear` and `Conv2d` layers by chains of smaller
//! layers, optionally keeping a rewrite only when it measurably runs faster.
//!
//! | method | `Conv2d(I -> O, kh x kw)` becomes |
//! |---|---|
//! | [`ConvMethod::Spatial`] | `kh x 1` (I -> r), then `1 x kw` (r -> O) (Jaderberg et al. 2014, scheme 2) |
//! | [`ConvMethod::Channel`] | `kh x kw` (I -> r), then `1 x 1` (r -> O) (channel SVD) |
//! | [`ConvMethod::Tucker2`] | `1 x 1` (I -> r_in), `kh x kw` (r_in -> r_out), `1 x 1` (r_out -> O) |
//! | [`ConvMethod::Cp`] | `1 x 1` (I -> R), depthwise `kh x 1`, depthwise `1 x kw`, `1 x 1` (R -> O) (Lebedev et al. 2015) |
//!
//! `Linear(I -> O)` becomes `Linear(I -> r)` then `Linear(r -> O)` by truncated SVD, whatever the
//! convolution method. Stride, padding, dilation and bias carry over; the replacement is a chain
//! [`Graph`] of core layers, so models save and load without a new loader.
//!
//! ```
//! use slimnet_core::{models, rewrite::Selector, tensor};
//! use slimnet_decompose::rank::RankPolicy;
//! use slimnet_decompose::rewrite::{decompose, ConvMethod, LowRank};
//! let mut g = models::lenet5(&mut tensor::rng(0))?;
//! let rule = LowRank::new(ConvMethod::Tucker2, RankPolicy::ParamRatio(0.3));
//! let report = decompose(&mut g, &[1, 1, 28, 28], &Selector::Paths(vec!["conv2".into(), "fc1".into()]), &rule)?;
//! assert_eq!(report.layers.len(), 2);
//! assert!(report.layers.iter().all(|l| l.params.1 * 3 <= l.params.0 + 10));
//! println!("{report}");
//! # Ok::<(), slimnet_decompose::DecomposeError>(())
//! ```

mod chain;
mod methods;
mod report;
mod speed;

use slimnet_core::layers::{Conv2d, Linear};
use slimnet_core::rewrite::{Action, Rewriter, Selector};
use slimnet_core::{Graph, Layer};

pub use report::{DecomposeReport, LayerReport};
pub use speed::{time_layer, SpeedCheck};

use crate::cp::{CpConfig, LmConfig};
use crate::error::{DecomposeError, Result};
use crate::rank::RankPolicy;
use crate::tucker::TuckerConfig;

/// How a `Conv2d` is factorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConvMethod {
    /// `kh x 1` then `1 x kw` with `r` intermediate channels (Jaderberg et al. 2014, scheme 2),
    /// by the SVD of the kernel reshaped to `(I·kh) x (O·kw)`.
    Spatial,
    /// `kh x kw` with `r` filters then `1 x 1`, by the SVD of the kernel reshaped to `O x (I·kh·kw)`.
    Channel,
    /// `1 x 1`, `kh x kw` core, `1 x 1`, by Tucker-2 (HOOI) on the channel modes.
    Tucker2,
    /// `1 x 1`, depthwise `kh x 1`, depthwise `1 x kw`, `1 x 1`, by CP-ALS on the kernel.
    Cp,
}

impl ConvMethod {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ConvMethod::Spatial => "spatial-svd",
            ConvMethod::Channel => "channel-svd",
            ConvMethod::Tucker2 => "tucker2",
            ConvMethod::Cp => "cp",
        }
    }
}

/// The low-rank rewrite rule: `Conv2d` by a [`ConvMethod`], `Linear` by truncated SVD, ranks by
/// a [`RankPolicy`], optionally checked against measured speed. A rewrite whose rank (chosen
/// by a policy other than [`RankPolicy::Fixed`]) would not reduce the parameters is not made.
///
/// Apply it with [`decompose`], or call [`replacement`](Self::replacement) from a rule of your
/// own.
#[derive(Debug, Clone)]
pub struct LowRank {
    /// The convolution factorisation.
    pub conv: ConvMethod,
    /// The rank policy.
    pub rank: RankPolicy,
    /// Settings of CP-ALS (for [`ConvMethod::Cp`]).
    pub cp: CpConfig,
    /// When set, the CP-ALS fit is refined by Levenberg-Marquardt
    /// ([`cp_refine_lm`](crate::cp::cp_refine_lm)) with these settings (default none).
    pub cp_refine: Option<LmConfig>,
    /// Settings of HOOI (for [`ConvMethod::Tucker2`]).
    pub tucker: TuckerConfig,
    /// When set, time the original and the replacement and keep the replacement only if faster.
    pub speed_check: Option<SpeedCheck>,
    /// Convolution ranks chosen by a policy are rounded to a multiple of this (default 1: no
    /// rounding), so the chain's GEMMs fill whole register tiles (8 rows in slimnet-kernels'
    /// AVX-512 GEMM). Budget policies (`ParamRatio`, `MacRatio`) round down, so the budget still
    /// holds; `Energy`, `ErrorBudget` and `Vbmf` round up (capped at the largest rank), so the
    /// error only falls. Fixed ranks and ranks below the multiple are kept as they are.
    pub rank_multiple: usize,
}

impl LowRank {
    /// A rule with the default CP (at most 500 sweeps, tolerance `1e-5`, non-convergence
    /// reported rather than an error) and Tucker settings and no speed check.
    pub fn new(conv: ConvMethod, rank: RankPolicy) -> Self {
        Self {
            conv,
            rank,
            cp: CpConfig::default().with_tol(1e-5).with_strict(false),
            cp_refine: None,
            tucker: TuckerConfig::default(),
            speed_check: None,
            rank_multiple: 1,
        }
    }

    /// Sets the CP-ALS settings.
    pub fn with_cp(mut self, cp: CpConfig) -> Self {
        self.cp = cp;
        self
    }

    /// Refines CP-ALS fits by Levenberg-Marquardt with these settings (the report's note gives
    /// its iterations and the error before and after).
    pub fn with_cp_refine(mut self, lm: LmConfig) -> Self {
        self.cp_refine = Some(lm);
        self
    }

    /// Sets the HOOI settings.
    pub fn with_tucker(mut self, t: TuckerConfig) -> Self {
        self.tucker = t;
        self
    }

    /// Rounds policy-chosen convolution ranks to a multiple of `m` (see
    /// [`rank_multiple`](Self::rank_multiple)); 0 is taken as 1.
    pub fn with_rank_multiple(mut self, m: usize) -> Self {
        self.rank_multiple = m.max(1);
        self
    }

    /// Keeps a rewrite only when the check finds it faster.
    pub fn with_speed_check(mut self, check: SpeedCheck) -> Self {
        self.speed_check = Some(check);
        self
    }

    /// The replacement for one layer (or `None` to keep it), with its record.
    ///
    /// # Errors
    /// As [`decompose`]; the error carries no path (the caller adds it).
    pub fn replacement(
        &self,
        path: &str,
        layer: &dyn Layer,
        input: &[usize],
    ) -> Result<Option<(Box<dyn Layer>, LayerReport)>> {
        let built = if let Some(c) = layer.downcast_ref::<Conv2d>() {
            methods::conv(
                c,
                input,
                self.conv,
                &self.rank,
                (&self.cp, self.cp_refine.as_ref()),
                &self.tucker,
                self.rank_multiple,
            )?
        } else if let Some(l) = layer.downcast_ref::<Linear>() {
            methods::linear_svd(l, input, &self.rank)?
        } else if layer.num_params() == 0 {
            return Ok(None);
        } else {
            return Err(DecomposeError::Unsupported {
                layer: String::new(),
                reason: format!(
                    "layer kind `{}` has no low-rank rewrite (Conv2d and Linear do); select \
                     layers with Selector::Kinds([\"Conv2d\", \"Linear\"])",
                    layer.kind()
                ),
            });
        };
        let method = if layer.as_any().is::<Linear>() {
            "svd"
        } else {
            self.conv.name()
        };
        let before = layer.cost(input)?;
        let after = built.layer.cost(input)?;
        let mut rec = LayerReport {
            path: path.to_string(),
            method: method.to_string(),
            ranks: built.ranks,
            params: (before.params, after.params),
            macs: (before.macs, after.macs),
            time_us: None,
            rel_error: built.rel_error,
            kept: true,
            note: built.note,
        };
        if !matches!(self.rank, RankPolicy::Fixed(_)) && after.params >= before.params {
            rec.kept = false;
            rec.note = join_note(
                &rec.note,
                &format!(
                    "kept the original: rank {:?} would not reduce the parameters ({} -> {})",
                    rec.ranks, before.params, after.params
                ),
            );
            return Ok(Some((Box::new(built.layer), rec)));
        }
        if let Some(check) = &self.speed_check {
            let (t0, t1) = check.compare(layer, &built.layer, input)?;
            rec.time_us = Some((t0, t1));
            if t1 * check.margin > t0 {
                rec.kept = false;
                let note = format!(
                    "kept the original: {t1:.1} us x margin {} > {t0:.1} us",
                    check.margin
                );
                rec.note = join_note(&rec.note, &note);
            }
        }
        Ok(Some((Box::new(built.layer), rec)))
    }
}

fn join_note(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

/// Applies `rule` to the selected `Conv2d` and `Linear` layers of `graph` (input shape
/// `input`, nested graphs included) and reports, per layer, the method, ranks, parameters,
/// MACs, measured times and reconstruction error.
///
/// # Errors
/// A rank out of range, NaN or infinite weights, a grouped convolution, a selected layer kind
/// with parameters but no rewrite (a BatchNorm, an int8 layer), a CP fit that fails (with
/// `strict`), or a budget that cannot be met — each naming the layer path.
pub fn decompose(
    graph: &mut Graph,
    input: &[usize],
    selector: &Selector,
    rule: &LowRank,
) -> Result<DecomposeReport> {
    let mut layers = Vec::new();
    let select = match selector {
        Selector::All => Selector::All,
        Selector::Paths(p) => Selector::Paths(p.clone()),
        Selector::Kinds(k) => Selector::Kinds(k.clone()),
        Selector::Predicate(_) => {
            return Err(DecomposeError::invalid(
                "decompose takes a path or kind selector, or All".to_string(),
            ))
        }
    };
    let report = Rewriter::new()
        .select(select)
        .any_rule(rule.conv.name(), |l, ctx| {
            if l.as_any().is::<Conv2d>() || l.as_any().is::<Linear>() {
                let Some((new, rec)) = rule.replacement(ctx.path(), l, ctx.input_shape())? else {
                    return Ok(Action::Keep);
                };
                let kept = rec.kept;
                if !kept {
                    ctx.note(rec.note.clone());
                }
                layers.push(rec);
                Ok(if kept {
                    Action::Replace(new)
                } else {
                    Action::Keep
                })
            } else if l.is_compact() {
                Err(DecomposeError::Unsupported {
                    layer: String::new(),
                    reason: format!(
                        "a {} layer has no float weight to decompose; decompose before \
                         converting it (to sparse, int8 or shared weights)",
                        l.kind()
                    ),
                }
                .into())
            } else if l.num_params() > 0 {
                Err(DecomposeError::Unsupported {
                    layer: String::new(),
                    reason: format!(
                        "layer kind `{}` has no low-rank rewrite (Conv2d and Linear do); select \
                         layers with Selector::Kinds([\"Conv2d\", \"Linear\"])",
                        l.kind()
                    ),
                }
                .into())
            } else {
                Ok(Action::Keep)
            }
        })
        .run(graph, input)?;
    report.refuse_unhandled("decompose")?;
    Ok(DecomposeReport {
        layers,
        rewrite: report,
    })
}

#[cfg(test)]
mod tests;
