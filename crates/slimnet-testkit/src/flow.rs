//! What the optical-flow example needs around the library: training a flow network on
//! [`FlowDataset`] pairs with the end-point error (core's trainer with a loss that looks up
//! each batch's target flows), the mean EPE on a held-out set, and flow fields drawn as
//! colour-wheel PNG images.

use ndarray::{ArrayView3, Axis};
use slimnet_core::data::flow::FlowDataset;
use slimnet_core::data::Dataset;
use slimnet_core::loss::{epe, Batch, Loss};
use slimnet_core::train::{Callback, Clock, StepInfo};

use crate::fit::Fit;
use slimnet_core::{Error, Graph, Layer, Result, Tensor};

/// The end-point error against the training set's flows, found by the batch's indices.
#[derive(Debug)]
struct EpeTargets<'a> {
    flows: &'a Tensor,
}

impl Loss for EpeTargets<'_> {
    fn loss(&mut self, _: &Tensor, _: &Tensor, _: &[usize]) -> Result<(f32, Tensor)> {
        Err(Error::Invalid(
            "the flow loss needs the examples' indices (use loss_batch)".into(),
        ))
    }

    fn loss_batch(&mut self, batch: &Batch<'_>, output: &Tensor) -> Result<(f32, Tensor)> {
        epe(output, &self.flows.select(Axis(0), batch.indices))
    }
}

/// Mean end-point error of `model` over `data` (inference mode, batches of 32).
///
/// # Errors
/// A model that rejects the pairs.
pub fn mean_epe(model: &dyn Layer, data: &FlowDataset) -> Result<f32> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut sum = 0.0f64;
    for chunk in idx.chunks(32) {
        let (x, flow) = data.batch(chunk)?;
        sum += epe(&model.forward(&x)?, &flow)?.0 as f64 * chunk.len() as f64;
    }
    Ok((sum / data.len().max(1) as f64) as f32)
}

/// Validation EPE every few steps, timed by a clock that leaves the evaluations out.
struct EvalEpe<'a> {
    val: &'a FlowDataset,
    clock: &'a Clock,
    every: usize,
    phase: &'a str,
    points: Vec<(f64, f32)>,
}

impl Callback for EvalEpe<'_> {
    fn on_step_end(&mut self, model: &mut Graph, info: &StepInfo) -> Result<()> {
        let last = info.batch + 1 == info.steps_per_epoch;
        if !info.global_step.is_multiple_of(self.every) && !last {
            return Ok(());
        }
        let e = self.clock.paused(|| mean_epe(model, self.val))?;
        self.points.push((self.clock.seconds(), e));
        if last {
            println!(
                "{} epoch {} validation EPE {e:.4} at {:.1} s",
                self.phase,
                info.epoch + 1,
                self.clock.seconds()
            );
        }
        Ok(())
    }
}

/// Trains `model` on `train` with the end-point error (Adam, cosine learning rate), timed by
/// `clock`; returns the validation EPE curve as `(seconds, EPE)` points.
///
/// # Errors
/// Errors of the training loop or of the model.
pub fn fit_flow(
    model: &mut Graph,
    train: &FlowDataset,
    val: &FlowDataset,
    fit: &Fit,
    clock: &Clock,
    phase: &str,
) -> Result<Vec<(f64, f32)>> {
    // the trainer's examples: the input pairs, with labels it does not use
    let pairs = Dataset::new(train.inputs.clone(), vec![0; train.len()], 1)?;
    let mut eval = EvalEpe {
        val,
        clock,
        every: fit.eval_every(train.len()),
        phase,
        points: Vec::new(),
    };
    let loss = EpeTargets {
        flows: &train.flows,
    };
    fit.run(model, &pairs, loss, &mut eval, clock, phase)?;
    Ok(eval.points)
}

/// The first time a curve of [`fit_flow`] reached `epe` or lower.
pub fn seconds_to(points: &[(f64, f32)], epe: f32) -> Option<f64> {
    points.iter().find(|p| p.1 <= epe).map(|p| p.0)
}

/// Writes flow fields `[2, H, W]` side by side as one PNG on the usual colour wheel: the hue is
/// the direction, the saturation the length relative to `max_len` (longer vectors saturate),
/// white where there is no motion. Grey frames `[H, W]` in `[0, 1]` can lead the row.
///
/// # Errors
/// Panels of different sizes, or a file that cannot be written.
pub fn write_flow_png(
    path: &std::path::Path,
    frames: &[ndarray::ArrayView2<'_, f32>],
    flows: &[ArrayView3<'_, f32>],
    max_len: f32,
) -> crate::Res<()> {
    let (h, w) = match (frames.first(), flows.first()) {
        (Some(f), _) => f.dim(),
        (None, Some(f)) => (f.dim().1, f.dim().2),
        (None, None) => return Err("no panel to draw".into()),
    };
    let panels = frames.len() + flows.len();
    let gap = 4;
    let width = panels * w + (panels - 1) * gap;
    let mut img = image::RgbImage::from_pixel(width as u32, h as u32, image::Rgb([255; 3]));
    for (p, f) in frames.iter().enumerate() {
        if f.dim() != (h, w) {
            return Err(format!("frame {p} is {:?}, not {h}x{w}", f.dim()).into());
        }
        for ((y, x), &v) in f.indexed_iter() {
            let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            img.put_pixel((p * (w + gap) + x) as u32, y as u32, image::Rgb([g; 3]));
        }
    }
    for (q, f) in flows.iter().enumerate() {
        if f.dim() != (2, h, w) {
            return Err(format!("flow {q} is {:?}, not 2x{h}x{w}", f.dim()).into());
        }
        let left = (frames.len() + q) * (w + gap);
        for y in 0..h {
            for x in 0..w {
                let rgb = wheel(f[[0, y, x]], f[[1, y, x]], max_len);
                img.put_pixel((left + x) as u32, y as u32, image::Rgb(rgb));
            }
        }
    }
    img.save(path)?;
    Ok(())
}

/// The colour of flow `(u, v)`: hue from the direction, saturation from the length.
fn wheel(u: f32, v: f32, max_len: f32) -> [u8; 3] {
    let s = ((u * u + v * v).sqrt() / max_len.max(1e-6)).min(1.0);
    let hue = (v.atan2(u).to_degrees() + 360.0) % 360.0;
    let c = s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    // value 1: the colour is white plus the hue's chroma
    let m = 1.0 - c;
    [r, g, b].map(|t| ((t + m) * 255.0).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_is_white_at_rest_and_saturated_at_full_length() {
        assert_eq!(wheel(0.0, 0.0, 1.0), [255, 255, 255]);
        assert_eq!(wheel(2.0, 0.0, 1.0), [255, 0, 0]);
        assert_eq!(wheel(-1.0, 0.0, 1.0), [0, 255, 255]);
        let half = wheel(0.5, 0.0, 1.0);
        assert_eq!(half, [255, 128, 128]);
    }
}
