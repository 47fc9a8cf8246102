//! Calibration: run the float graph over batches and observe the input of every layer that
//! will run in int8.

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressStyle};
use slimnet_core::graph::Op;
use slimnet_core::{Graph, Tensor};

use super::adds::add_keys;
use super::PtqConfig;
use crate::error::{QuantError, Result};
use crate::observer::Observer;

/// Input ranges `(lo, hi)` of the int8 layers, keyed by layer path; for each `Add` node also
/// the ranges of its two inputs and of its sum, keyed `<path>:a`, `<path>:b` and
/// `<path>:sum` (an int8 residual addition is quantized with them).
pub type Ranges = BTreeMap<String, (f32, f32)>;

/// Observes, over `batches`, the input of every layer of `g` that static quantization will
/// make int8 (see [`int8_capable`](super::int8_capable); `g` as [`float_for_int8`] made it,
/// layers in `cfg.skip` left out), and the inputs and sum of every top-level `Add` node, and
/// returns their ranges. An `Add` whose values hold NaN, infinity or a single value gets no
/// range (it stays an f32 sum) rather than an error.
///
/// [`float_for_int8`]: super::float_for_int8
///
/// # Errors
/// [`QuantError::EmptyCalibration`] without batches; [`QuantError::NonFinite`] naming the layer
/// whose input held NaN or infinity; [`QuantError::ConstantCalibration`] naming the layer whose
/// input took one value only (all-zero or constant data: its range would have zero width);
/// a batch the model rejects.
pub fn calibrate<I>(g: &Graph, batches: I, cfg: &PtqConfig) -> Result<Ranges>
where
    I: IntoIterator<Item = Tensor>,
{
    let mut observers: BTreeMap<String, Box<dyn Observer>> = BTreeMap::new();
    g.visit_layers(&mut |path, l| {
        if super::int8_capable(l) && !cfg.skips(path) {
            observers.insert(path.to_string(), cfg.observer.build());
        }
    });
    let mut sums: BTreeMap<String, Box<dyn Observer>> = BTreeMap::new();
    for n in g.nodes() {
        if matches!(n.op, Op::Add) && !cfg.skips(&n.name) {
            for key in add_keys(&n.name) {
                sums.insert(key, cfg.observer.build());
            }
        }
    }
    let iter = batches.into_iter();
    let bar = if cfg.progress {
        ProgressBar::new(iter.size_hint().1.unwrap_or(0) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} {elapsed_precise}")
            .expect("valid template"),
    );
    let mut count = 0usize;
    for x in iter {
        count += 1;
        let mut failed = None;
        let r = g.forward_tapped(&x, &mut |path, ins, out| {
            let keys = add_keys(path);
            if ins.len() == 2 && keys.iter().all(|k| sums.contains_key(k)) {
                let data: Vec<Vec<f32>> = [ins[0], ins[1], out]
                    .iter()
                    .map(|v| slimnet_core::tensor::contiguous(&v.to_f32()).into_owned())
                    .collect();
                if data.iter().all(|d| d.iter().all(|v| v.is_finite())) {
                    for (key, d) in keys.iter().zip(&data) {
                        let o = sums.get_mut(key).expect("checked above");
                        o.observe(d).map_err(slimnet_core::Error::from)?;
                    }
                } else {
                    // the sum stays f32
                    keys.iter().for_each(|k| drop(sums.remove(k)));
                }
                return Ok(());
            }
            let Some(o) = observers.get_mut(path) else {
                return Ok(());
            };
            let data = ins[0].to_f32();
            let data = slimnet_core::tensor::contiguous(&data);
            if let Some(v) = data.iter().find(|v| !v.is_finite()) {
                failed = Some(QuantError::NonFinite {
                    layer: path.to_string(),
                    value: *v,
                });
                return Err(slimnet_core::Error::Invalid("non-finite input".into()));
            }
            o.observe(&data).map_err(slimnet_core::Error::from)
        });
        if let Err(e) = r {
            bar.abandon();
            return Err(failed.unwrap_or_else(|| e.into()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if count == 0 {
        return Err(QuantError::EmptyCalibration);
    }
    let sums = sums.iter().filter_map(|(key, o)| match o.range() {
        Ok((lo, hi)) if lo < hi && lo.is_finite() && hi.is_finite() => {
            Some((key.clone(), (lo, hi)))
        }
        _ => None,
    });
    observers
        .iter()
        .map(|(path, o)| {
            let (lo, hi) = o.range().map_err(|e| e.in_layer(path))?;
            if lo == hi {
                return Err(QuantError::ConstantCalibration {
                    layer: path.clone(),
                    value: lo,
                });
            }
            Ok((path.clone(), (lo, hi)))
        })
        .chain(sums.map(Ok))
        .collect()
}
