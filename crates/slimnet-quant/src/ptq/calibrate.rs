//! Calibration: run the float graph over batches and observe every value that will be quantized.

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressStyle};
use slimnet_core::{Graph, Tensor};

use super::plan::Plan;
use super::PtqConfig;
use crate::error::{QuantError, Result};
use crate::eval::eval_tapped;

/// Activation ranges `(lo, hi)` keyed by node name.
pub type Ranges = BTreeMap<String, (f32, f32)>;

/// Observes the values that static quantization of `g` (BatchNorm already folded, see
/// [`fold`](super::fold)) will quantize, over `batches`, and returns their ranges.
///
/// # Errors
/// [`QuantError::EmptyCalibration`] without batches; [`QuantError::NonFinite`] naming the node
/// where NaN or infinity appeared; a batch the model rejects.
pub fn calibrate<I>(g: &Graph, batches: I, cfg: &PtqConfig) -> Result<Ranges>
where
    I: IntoIterator<Item = Tensor>,
{
    let plan = Plan::new(g, &cfg.skip);
    let points = plan.points(g);
    let mut observers: Vec<_> = points.iter().map(|_| cfg.observer.build()).collect();
    let mut at_node: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, (node, _, _)) in points.iter().enumerate() {
        at_node.entry(*node).or_default().push(k);
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
        eval_tapped(g, &x, &mut |i, y| {
            let Some(ks) = at_node.get(&i) else {
                return Ok(());
            };
            let data = slimnet_core::tensor::contiguous(y);
            for &k in ks {
                if points[k].2 {
                    let r: Vec<f32> = data.iter().map(|v| v.max(0.0)).collect();
                    // keep NaN visible to the observer (max(NaN, 0) is 0)
                    if let Some(v) = data.iter().find(|v| !v.is_finite()) {
                        return Err(QuantError::NonFinite {
                            layer: String::new(),
                            value: *v,
                        });
                    }
                    observers[k].observe(&r)?;
                } else {
                    observers[k].observe(&data)?;
                }
            }
            Ok(())
        })
        .inspect_err(|_| bar.abandon())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if count == 0 {
        return Err(QuantError::EmptyCalibration);
    }
    points
        .iter()
        .zip(&observers)
        .map(|((_, name, _), o)| Ok((name.clone(), o.range().map_err(|e| e.in_layer(name))?)))
        .collect()
}
