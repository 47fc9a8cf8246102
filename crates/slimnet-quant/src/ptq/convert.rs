//! From a calibrated float graph to the int8 graph, by rewrite rules.

use slimnet_core::layers::{Activation, ActivationKind, Conv2d, Linear};
use slimnet_core::rewrite::{Action, Ctx, Report, Rewriter, Selector};
use slimnet_core::value::ValueKind;
use slimnet_core::{Graph, Layer};
use slimnet_kernels::int8::QuantParams;

use super::{PtqConfig, Ranges};
use crate::error::{QuantError, Result};
use crate::layers::{Int8Layer, QConv2d, QLinear, QOut};
use crate::observer::to_params;

/// Whether a layer can run on the int8 kernels: a Conv2d with one group or depthwise, or a
/// Linear.
pub fn int8_capable(l: &dyn Layer) -> bool {
    if let Some(c) = l.downcast_ref::<Conv2d>() {
        let k = c.config();
        return k.groups == 1 || (k.groups == k.in_channels && k.groups == k.out_channels);
    }
    l.downcast_ref::<Linear>().is_some()
}

/// The input quantization of the layer at `path`.
fn input_params(ranges: &Ranges, path: &str) -> Result<QuantParams> {
    let &(lo, hi) = ranges
        .get(path)
        .ok_or_else(|| QuantError::invalid(path, "no calibrated range for this layer's input"))?;
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(QuantError::NonFinite {
            layer: path.to_string(),
            value: if lo.is_finite() { hi } else { lo },
        });
    }
    Ok(to_params(lo, hi))
}

/// Builds the int8 graph of `g` (as [`float_for_int8`](super::float_for_int8) made it) from
/// the calibrated input `ranges` of its layers ([`calibrate`](super::calibrate), or QAT's
/// observers); layers in `cfg.skip` and grouped convolutions stay f32. Sums whose inputs
/// both come from int8 layers add codes when `ranges` holds their calibration (see
/// [`calibrate`](super::calibrate)); products of two activations stay f32, one record each.
/// `input` is the graph's input shape. Returns the int8 graph and the report of every rule
/// that ran; the report lists under `unhandled` the layers with weights left in f32 that no
/// rule knows.
///
/// # Errors
/// Weight bits outside `2..=8` (`cfg.weight_bits`), a missing or non-finite range, or a layer
/// the int8 kernels reject (named by path).
pub fn convert(
    g: &Graph,
    ranges: &Ranges,
    cfg: &PtqConfig,
    input: &[usize],
) -> Result<(Graph, Report)> {
    crate::scheme::QScheme::symmetric(cfg.weight_bits)?;
    let bits = cfg.weight_bits;
    let mut q = g.clone();
    let skip = cfg.skip.clone();
    let skipped = move |p: &str| skip.iter().any(|s| s == p || s.replace('.', "/") == p);
    let mut report = Rewriter::new()
        .select(Selector::Predicate(Box::new(move |p, _| !skipped(p))))
        .rule::<Conv2d>("int8", |c, ctx| {
            if !int8_capable(c) {
                ctx.note(format!(
                    "{} groups: no int8 kernel, stays f32",
                    c.config().groups
                ));
                return Ok(Action::Keep);
            }
            let p = input_params(ranges, ctx.path())?;
            Ok(Action::Replace(Box::new(QConv2d::from_conv_with_bits(
                c, p, bits,
            )?)))
        })
        .rule::<Linear>("int8", |l, ctx| {
            let p = input_params(ranges, ctx.path())?;
            Ok(Action::Replace(Box::new(QLinear::from_linear_with_bits(
                l, p, bits,
            )?)))
        })
        .run(&mut q, input)?;
    report.extend(link_int8(&mut q, input)?);
    report
        .records
        .extend(super::adds::link_adds(&mut q, ranges)?);
    report.records.extend(super::adds::f32_products(&q));
    Ok((q, report))
}

/// Whether a layer hands u8 codes on unchanged in their quantization (max-pool, flatten,
/// ReLU, dropout): codes may flow through it from one int8 layer to the next.
pub(crate) fn passes_codes(l: &dyn Layer) -> bool {
    let k = ValueKind::U8(QuantParams {
        scale: 1.0,
        zero_point: 0,
    });
    l.accepts(k) && l.output_kind(k) == k && l.input_kind() == ValueKind::F32
}

/// What an int8 layer should write: codes for the layers its output reaches (through layers
/// that pass codes) when they all read codes of one quantization, else f32.
fn output_for(ctx: &Ctx<'_>) -> QOut {
    let Some(readers) = ctx.downstream(passes_codes) else {
        return QOut::F32;
    };
    let mut kinds = readers.iter().map(|l| l.input_kind());
    match kinds.next() {
        Some(ValueKind::U8(p)) if kinds.all(|k| k == ValueKind::U8(p)) => QOut::Codes(p),
        _ => QOut::F32,
    }
}

/// The rule giving an int8 layer its output: u8 codes when every layer its output reaches
/// (through layers that pass codes on) reads codes of one quantization, else f32.
///
/// # Errors
/// Never; the signature is the rewriter's.
pub fn write_codes_for_readers<T: Int8Layer>(
    q: &T,
    ctx: &mut Ctx<'_>,
) -> slimnet_core::Result<Action> {
    let out = output_for(ctx);
    if out == q.output() || (out == QOut::F32 && ctx.downstream(passes_codes).is_none()) {
        // codes kept for readers that take any (a sum of codes); readers that need reals
        // convert them
        return Ok(Action::Keep);
    }
    if let QOut::Codes(p) = out {
        ctx.note(format!(
            "writes u8 codes (scale {:.3e}, zero point {})",
            p.scale, p.zero_point
        ));
    }
    Ok(Action::Replace(Box::new(q.clone().with_output(out))))
}

/// The rule fusing a ReLU into the int8 layer before it, when it is that layer's only reader.
///
/// # Errors
/// Never; the signature is the rewriter's.
pub fn fuse_relu(a: &Activation, ctx: &mut Ctx<'_>) -> slimnet_core::Result<Action> {
    fn fused<T: Int8Layer>(p: Option<&T>) -> Option<Action> {
        p.filter(|q| !q.relu())
            .map(|q| Action::FuseIntoProducer(Box::new(q.clone().with_relu(true))))
    }
    if a.activation_kind() != ActivationKind::Relu {
        return Ok(Action::Keep);
    }
    let Some(p) = ctx.producer().filter(|p| p.sole_reader) else {
        return Ok(Action::Keep);
    };
    Ok(fused(p.downcast::<QConv2d>())
        .or_else(|| fused(p.downcast::<QLinear>()))
        .unwrap_or(Action::Keep))
}

/// The rules that join int8 layers ([`write_codes_for_readers`] and [`fuse_relu`]); static
/// quantization and QAT run them after making their int8 layers.
///
/// # Errors
/// An input shape the graph rejects.
pub fn link_int8(g: &mut Graph, input: &[usize]) -> Result<Report> {
    let report = Rewriter::new()
        .rule::<QConv2d>("link", write_codes_for_readers)
        .rule::<QLinear>("link", write_codes_for_readers)
        .rule::<Activation>("fuse-relu", fuse_relu)
        .run(g, input)?;
    Ok(report)
}
