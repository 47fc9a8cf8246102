//! The factorisations behind each rewrite: from a layer and a rank policy to a replacement chain.

use ndarray::{Array2, ArrayD, IxDyn};
use slimnet_core::layers::{Conv2d, Linear, LinearConfig};
use slimnet_core::{Graph, Layer, Sequential};

use super::chain::{build_chain, chain_cost, conv_cfg, pointwise, weight};
use super::ConvMethod;
use crate::cp::{cp_als, cp_refine_lm, max_cp_rank, CpConfig, LmConfig};
use crate::error::{check_finite, DecomposeError, Result};
use crate::rank::{select_rank, RankPolicy};
use crate::svd::{svd, Svd};
use crate::tucker::{tucker2, TuckerConfig};

/// A replacement chain and what it is.
pub(crate) struct Built {
    pub layer: Graph,
    pub ranks: Vec<usize>,
    pub rel_error: f64,
    pub note: String,
}

fn singular_values(d: &Svd) -> Vec<f64> {
    d.s.iter().map(|&v| v as f64).collect()
}

/// Relative Frobenius error of keeping the leading `r` of `s`.
fn tail_error(s: &[f64], r: usize) -> f64 {
    let total: f64 = s.iter().map(|v| v * v).sum();
    let tail: f64 = s[r..].iter().map(|v| v * v).sum();
    if total == 0.0 {
        0.0
    } else {
        (tail / total).sqrt()
    }
}

/// Linear -> Linear(in -> r, no bias) -> Linear(r -> out, bias).
pub(crate) fn linear_svd(l: &Linear, input: &[usize], policy: &RankPolicy) -> Result<Built> {
    let cfg = l.config();
    let (o, i) = (cfg.out_features, cfg.in_features);
    let w = l.weight.value();
    check_finite(w.iter(), "weight")?;
    if let Some(b) = &l.bias {
        check_finite(b.value().iter(), "bias")?;
    }
    let wm = w
        .view()
        .into_shape_with_order((o, i))
        .map_err(|e| DecomposeError::invalid(e.to_string()))?;
    let d = svd(wm)?;
    let s = singular_values(&d);
    let n = input[0];
    let bias = usize::from(cfg.bias) * o;
    let cost = |r: usize| (r * (i + o) + bias, n * r * (i + o));
    let r = select_rank(&s, policy, &cost, (o * i + bias, n * o * i))?;
    let d = d.truncate(r)?;
    let (left, right) = d.balanced();
    let reduce = Linear::from_parts(
        LinearConfig::new(i, r).with_bias(false),
        right.into_dyn(),
        None,
    )?;
    let restore = Linear::from_parts(
        LinearConfig::new(r, o).with_bias(cfg.bias),
        left.into_dyn(),
        l.bias.as_ref().map(|b| b.value().clone()),
    )?;
    let layer = Sequential::new()
        .push("reduce", reduce)
        .push("restore", restore)
        .build()?;
    Ok(Built {
        layer,
        ranks: vec![r],
        rel_error: tail_error(&s, r),
        note: String::new(),
    })
}

/// Checks a convolution can be decomposed and returns its weight and bias.
fn conv_parts(c: &Conv2d) -> Result<(&ArrayD<f32>, Option<ArrayD<f32>>)> {
    let cfg = c.config();
    if cfg.groups != 1 {
        return Err(DecomposeError::Unsupported {
            layer: String::new(),
            reason: format!(
                "grouped convolutions ({} groups) are not decomposed: low-rank rewrites need a \
                 dense kernel; exclude this layer with a Selector",
                cfg.groups
            ),
        });
    }
    check_finite(c.weight.value().iter(), "weight")?;
    if let Some(b) = &c.bias {
        check_finite(b.value().iter(), "bias")?;
    }
    Ok((c.weight.value(), c.bias.as_ref().map(|b| b.value().clone())))
}

/// Dispatches to the convolution rewrite of `method`.
pub(crate) fn conv(
    c: &Conv2d,
    input: &[usize],
    method: ConvMethod,
    policy: &RankPolicy,
    (cp, cp_refine): (&CpConfig, Option<&LmConfig>),
    tucker: &TuckerConfig,
    multiple: usize,
) -> Result<Built> {
    let round = |r: usize, max: usize| round_rank(r, multiple, policy, max);
    let (w, bias) = conv_parts(c)?;
    let cfg = c.config();
    let [o, i, kh, kw] = cfg.weight_shape();
    let orig = (
        o * i * kh * kw + usize::from(cfg.bias) * o,
        c.cost(input)?.macs,
    );
    let (st, pd, dl) = (cfg.stride, cfg.padding, cfg.dilation);
    match method {
        ConvMethod::Spatial => {
            // M[(c, y), (o, x)] = W[o, c, y, x]
            let m = Array2::from_shape_fn((i * kh, o * kw), |(cy, ox)| {
                w[[ox / kw, cy / kh, cy % kh, ox % kw]]
            });
            let d = svd(m.view())?;
            let s = singular_values(&d);
            let cfgs = |r: usize| {
                [
                    conv_cfg(i, r, [kh, 1], [st[0], 1], [pd[0], 0], [dl[0], 1], 1, false),
                    conv_cfg(
                        r,
                        o,
                        [1, kw],
                        [1, st[1]],
                        [0, pd[1]],
                        [1, dl[1]],
                        1,
                        cfg.bias,
                    ),
                ]
            };
            let r = round(
                select_rank(&s, policy, &|r| chain_cost(&cfgs(r), input), orig)?,
                s.len(),
            );
            let (left, right) = d.truncate(r)?.balanced();
            let [cv, ch] = cfgs(r);
            let layer = build_chain(
                vec![
                    (
                        "vertical",
                        cv,
                        weight([r, i, kh, 1], |k, ci, y, _| left[[ci * kh + y, k]]),
                    ),
                    (
                        "horizontal",
                        ch,
                        weight([o, r, 1, kw], |oo, k, _, x| right[[k, oo * kw + x]]),
                    ),
                ],
                bias,
            )?;
            Ok(Built {
                layer,
                ranks: vec![r],
                rel_error: tail_error(&s, r),
                note: String::new(),
            })
        }
        ConvMethod::Channel => {
            let m = w
                .view()
                .into_shape_with_order((o, i * kh * kw))
                .map_err(|e| DecomposeError::invalid(e.to_string()))?;
            let d = svd(m)?;
            let s = singular_values(&d);
            let cfgs = |r: usize| {
                [
                    conv_cfg(i, r, [kh, kw], st, pd, dl, 1, false),
                    pointwise(r, o, cfg.bias),
                ]
            };
            let r = round(
                select_rank(&s, policy, &|r| chain_cost(&cfgs(r), input), orig)?,
                s.len(),
            );
            let (left, right) = d.truncate(r)?.balanced();
            let [ca, cb] = cfgs(r);
            let right = right
                .into_shape_with_order((r, i, kh, kw))
                .expect("sizes match")
                .into_dyn();
            let layer = build_chain(
                vec![
                    ("conv", ca, right),
                    (
                        "project",
                        cb,
                        weight([o, r, 1, 1], |oo, k, _, _| left[[oo, k]]),
                    ),
                ],
                bias,
            )?;
            Ok(Built {
                layer,
                ranks: vec![r],
                rel_error: tail_error(&s, r),
                note: String::new(),
            })
        }
        ConvMethod::Tucker2 => {
            let cfgs = |ro: usize, ri: usize| {
                [
                    pointwise(i, ri, false),
                    conv_cfg(ri, ro, [kh, kw], st, pd, dl, 1, false),
                    pointwise(ro, o, cfg.bias),
                ]
            };
            let (ro, ri) =
                tucker_ranks(w, policy, &|ro, ri| chain_cost(&cfgs(ro, ri), input), orig)?;
            let max_o = o.min(i * kh * kw);
            let max_i = i.min(o * kh * kw);
            let (ro, ri) = (round(ro, max_o), round(ri, max_i));
            let ri = ri.min(ro * kh * kw);
            let ro = ro.min(ri * kh * kw);
            let t = tucker2(w.view(), ro, ri, tucker)?;
            let uo = t.factors[0].as_ref().expect("mode 0 decomposed");
            let ui = t.factors[1].as_ref().expect("mode 1 decomposed");
            let [ca, cb, cc] = cfgs(ro, ri);
            let layer = build_chain(
                vec![
                    (
                        "reduce",
                        ca,
                        weight([ri, i, 1, 1], |b, ci, _, _| ui[[ci, b]]),
                    ),
                    ("core", cb, t.core.clone()),
                    (
                        "restore",
                        cc,
                        weight([o, ro, 1, 1], |oo, a, _, _| uo[[oo, a]]),
                    ),
                ],
                bias,
            )?;
            Ok(Built {
                layer,
                ranks: vec![ro, ri],
                rel_error: t.rel_error,
                note: format!("HOOI {} sweeps", t.iterations),
            })
        }
        ConvMethod::Cp => {
            let cfgs = |r: usize| {
                [
                    pointwise(i, r, false),
                    conv_cfg(r, r, [kh, 1], [st[0], 1], [pd[0], 0], [dl[0], 1], r, false),
                    conv_cfg(r, r, [1, kw], [1, st[1]], [0, pd[1]], [1, dl[1]], r, false),
                    pointwise(r, o, cfg.bias),
                ]
            };
            let max = max_cp_rank(&[o, i, kh, kw]);
            let r = match policy {
                RankPolicy::Fixed(r) => {
                    crate::error::check_rank(*r, max, || {
                        format!("a CP model of a {o}x{i}x{kh}x{kw} kernel")
                    })?;
                    *r
                }
                RankPolicy::ParamRatio(_) | RankPolicy::MacRatio(_) => {
                    // costs grow linearly in the rank: no spectrum is needed
                    let fake = vec![1.0; max];
                    select_rank(&fake, policy, &|r| chain_cost(&cfgs(r), input), orig)?
                }
                _ => {
                    let (ro, ri) = tucker_ranks(w, policy, &|_, _| (0, 0), orig)?;
                    ro.max(ri)
                }
            };
            let r = round(r, max);
            let als = cp_als(w.view(), r, cp)?;
            let mut note = format!(
                "CP-ALS {} sweeps{}",
                als.iterations,
                if als.converged { "" } else { ", not converged" }
            );
            let fit = match cp_refine {
                Some(lm) => {
                    let fit = cp_refine_lm(w.view(), &als, lm)?;
                    if let Some(st) = &fit.refinement {
                        note.push_str(&format!(
                            "; LM {} iterations (damping {:.2e}), error {:.4e} -> {:.4e}{}",
                            st.iterations,
                            st.damping,
                            st.initial_error,
                            st.final_error,
                            if st.converged { "" } else { ", not converged" }
                        ));
                    }
                    fit
                }
                None => als,
            };
            let lam = &fit.weights;
            let (fa, fb, fy, fx) = (
                &fit.factors[0],
                &fit.factors[1],
                &fit.factors[2],
                &fit.factors[3],
            );
            let [ca, cv, chz, cd] = cfgs(r);
            let layer = build_chain(
                vec![
                    (
                        "reduce",
                        ca,
                        weight([r, i, 1, 1], |k, ci, _, _| fb[[ci, k]]),
                    ),
                    (
                        "vertical",
                        cv,
                        weight([r, 1, kh, 1], |k, _, y, _| fy[[y, k]]),
                    ),
                    (
                        "horizontal",
                        chz,
                        weight([r, 1, 1, kw], |k, _, _, x| fx[[x, k]]),
                    ),
                    (
                        "restore",
                        cd,
                        weight([o, r, 1, 1], |oo, k, _, _| fa[[oo, k]] * lam[k]),
                    ),
                ],
                bias,
            )?;
            Ok(Built {
                layer,
                ranks: vec![r],
                rel_error: fit.rel_error,
                note,
            })
        }
    }
}

/// `r` rounded to a multiple of `m` as [`LowRank::rank_multiple`](super::LowRank) describes.
fn round_rank(r: usize, m: usize, policy: &RankPolicy, max: usize) -> usize {
    if m <= 1 || r < m || r.is_multiple_of(m) {
        return r;
    }
    match policy {
        RankPolicy::Fixed(_) => r,
        RankPolicy::ParamRatio(_) | RankPolicy::MacRatio(_) => r - r % m,
        _ => (r + m - r % m).min(max),
    }
}

/// (r_out, r_in) of a Tucker-2 rewrite under `policy`.
fn tucker_ranks(
    w: &ArrayD<f32>,
    policy: &RankPolicy,
    cost: &dyn Fn(usize, usize) -> (usize, usize),
    orig: (usize, usize),
) -> Result<(usize, usize)> {
    let sh = w.shape();
    let (o, i) = (sh[0], sh[1]);
    // a mode's rank is at most its size and the product of the other sizes (the width of its
    // unfolding's SVD): a 1x1 convolution from 20 to 10 channels has input rank at most 10
    let (max_o, max_i) = (o.min(w.len() / o.max(1)), i.min(w.len() / i.max(1)));
    let hw = sh[2] * sh[3];
    // and each at most the other times the kernel's size (the core's other modes), for HOOI
    let clamp = |(a, b): (usize, usize)| {
        let (a, b) = (a.min(max_o), b.min(max_i));
        let b = b.min(a * hw);
        (a.min(b * hw), b)
    };
    match *policy {
        RankPolicy::Fixed(r) => {
            crate::error::check_rank(r, o.max(i), || format!("Tucker-2 of a {sh:?} kernel"))?;
            Ok(clamp((r, r)))
        }
        RankPolicy::ParamRatio(_) | RankPolicy::MacRatio(_) => {
            // scale both ranks with the channel counts
            let big = o.max(i);
            let at = |t: usize| {
                (
                    ((t * o) as f64 / big as f64).ceil() as usize,
                    ((t * i) as f64 / big as f64).ceil() as usize,
                )
            };
            let fake = vec![1.0; big];
            let t = select_rank(
                &fake,
                policy,
                &|t| {
                    let (a, b) = at(t);
                    cost(a, b)
                },
                orig,
            )?;
            Ok(clamp(at(t)))
        }
        _ => {
            let per_mode = match *policy {
                RankPolicy::ErrorBudget(e) => RankPolicy::ErrorBudget(e / 2f64.sqrt()),
                ref p => p.clone(),
            };
            let unfold = |mode: usize| {
                let other = w.len() / sh[mode];
                Array2::from_shape_fn((sh[mode], other), |(a, j)| {
                    // the remaining indices in row-major order
                    let (b, yx) = (j / (sh[2] * sh[3]), j % (sh[2] * sh[3]));
                    let idx = if mode == 0 {
                        [a, b, yx / sh[3], yx % sh[3]]
                    } else {
                        [b, a, yx / sh[3], yx % sh[3]]
                    };
                    w[IxDyn(&idx)]
                })
            };
            let mut ranks = [0; 2];
            for (mode, r) in ranks.iter_mut().enumerate() {
                let m = unfold(mode);
                let s = singular_values(&svd(m.view())?);
                *r = select_rank(&s, &per_mode, &|r| (r, r), (usize::MAX, usize::MAX))?;
            }
            Ok(clamp((ranks[0], ranks[1])))
        }
    }
}
