//! What the style-transfer example needs around the library: a perceptual loss on a frozen loss
//! network ([`Perceptual`]: content, Gram-matrix style and total variation, as Johnson et al.
//! 2016 train their network), training an image-to-image network with it on core's
//! trainer ([`fit_style`]), random crops of photos as training images ([`photo_crops`]),
//! and images written side by side as one PNG ([`write_rgb_png`]).
//!
//! Images are `[N, 3, H, W]` with 8-bit values `v` stored as `(v - 127) / 128`, the input
//! scaling of the EfficientNet-Lite0 loss network the example uses.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_core::data::Dataset;
use slimnet_core::graph::NodeId;
use slimnet_core::loss::{gram_matrix, gram_style, mse, total_variation, Loss};
use slimnet_core::rewrite::fold_batchnorm;
use slimnet_core::train::{Callback, Clock, StepInfo};
use slimnet_core::{tensor, Error, Graph, Layer, Result, Tensor};

use crate::fit::Fit;

/// The weights of the three terms of a [`Perceptual`] loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerceptualWeights {
    /// Of the squared error between the output's and the input's features at the content layer.
    pub content: f32,
    /// Of the mean Gram-matrix error over the style layers.
    pub style: f32,
    /// Of the total variation of the output.
    pub tv: f32,
}

/// The terms of a [`Perceptual`] loss, each already multiplied by its weight.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terms {
    /// Content term.
    pub content: f32,
    /// Style term.
    pub style: f32,
    /// Total-variation term.
    pub tv: f32,
}

impl Terms {
    /// The loss: the sum of the terms.
    pub fn total(&self) -> f32 {
        self.content + self.style + self.tv
    }
}

/// A perceptual loss on a frozen loss network: the content term compares the loss network's
/// features of the output with those of the input image at one layer, the style term the Gram
/// matrices of the output's features at several layers with those of one style image, and a
/// total-variation term keeps the output smooth. The gradient with respect to the output is
/// back-propagated through the loss network, whose weights are never updated.
pub struct Perceptual {
    net: Graph,
    content: NodeId,
    style: Vec<NodeId>,
    grams: Vec<Tensor>,
    weights: PerceptualWeights,
}

impl Perceptual {
    /// A loss on `net` (its batch norms are folded into its convolutions first, so that the
    /// training-mode passes used for the gradient compute what inference computes), with the
    /// content layer `content` and the style layers `style` (node names of `net`), the target
    /// Gram matrices taken from `style_image` `[1, 3, H, W]`.
    ///
    /// # Errors
    /// A node name `net` does not have, no style layer, or an image `net` rejects.
    pub fn new(
        mut net: Graph,
        style_image: &Tensor,
        content: &str,
        style: &[&str],
        weights: PerceptualWeights,
    ) -> Result<Self> {
        fold_batchnorm(&mut net, style_image.shape())?;
        let id = |name: &str| {
            net.node_id(name)
                .ok_or_else(|| Error::Graph(format!("the loss network has no node `{name}`")))
        };
        let content = id(content)?;
        let style: Vec<NodeId> = style.iter().map(|s| id(s)).collect::<Result<_>>()?;
        if style.is_empty() {
            return Err(Error::Invalid(
                "a perceptual loss needs a style layer".into(),
            ));
        }
        let feats = net.forward_train_at(style_image, &style)?;
        let grams = feats.iter().map(gram_matrix).collect::<Result<_>>()?;
        net.zero_grad();
        Ok(Self {
            net,
            content,
            style,
            grams,
            weights,
        })
    }

    /// The weighted terms of the loss of `output` as a stylisation of `input`, and the
    /// gradient of their sum with respect to `output`.
    ///
    /// # Errors
    /// Images of different shapes, or shapes the loss network rejects.
    pub fn terms(&mut self, input: &Tensor, output: &Tensor) -> Result<(Terms, Tensor)> {
        if input.shape() != output.shape() {
            return Err(Error::Invalid(format!(
                "a stylised image {:?} of another shape than its input {:?}",
                output.shape(),
                input.shape()
            )));
        }
        let w = self.weights;
        let target = self.net.forward_train_at(input, &[self.content])?.remove(0);
        let mut taps = vec![self.content];
        taps.extend(&self.style);
        let feats = self.net.forward_train_at(output, &taps)?;
        let (content, g) = mse(&feats[0], &target)?;
        let mut seeds: Vec<(NodeId, Tensor)> = vec![(self.content, g * w.content)];
        let mut style = 0.0;
        let share = w.style / self.style.len() as f32;
        for ((id, f), gram) in self.style.iter().zip(&feats[1..]).zip(&self.grams) {
            let (l, g) = gram_style(f, gram)?;
            style += share * l;
            let g = g * share;
            match seeds.iter_mut().find(|s| s.0 == *id) {
                Some(s) => s.1 += &g,
                None => seeds.push((*id, g)),
            }
        }
        let mut grad = self.net.backward_from(&seeds)?;
        self.net.zero_grad();
        let (tv, g) = total_variation(output)?;
        grad.scaled_add(w.tv, &g);
        let terms = Terms {
            content: w.content * content,
            style,
            tv: w.tv * tv,
        };
        Ok((terms, grad))
    }

    /// The mean weighted terms of `model`'s stylisations of `images` (inference mode, in
    /// batches of 8).
    ///
    /// # Errors
    /// As [`terms`](Self::terms), or a model that rejects the images.
    pub fn evaluate(&mut self, model: &dyn Layer, images: &Tensor) -> Result<Terms> {
        let n = images.shape()[0];
        let mut sum = Terms::default();
        for start in (0..n).step_by(8) {
            let x = images
                .slice_axis(ndarray::Axis(0), (start..(start + 8).min(n)).into())
                .to_owned();
            let (t, _) = self.terms(&x, &model.forward(&x)?)?;
            let k = x.shape()[0] as f32;
            sum.content += t.content * k;
            sum.style += t.style * k;
            sum.tv += t.tv * k;
        }
        let n = n.max(1) as f32;
        Ok(Terms {
            content: sum.content / n,
            style: sum.style / n,
            tv: sum.tv / n,
        })
    }
}

impl Loss for Perceptual {
    fn loss(&mut self, input: &Tensor, output: &Tensor, _: &[usize]) -> Result<(f32, Tensor)> {
        let (t, g) = self.terms(input, output)?;
        Ok((t.total(), g))
    }
}

/// Validation loss every few steps, timed by a clock that leaves the evaluations out.
struct EvalLoss<'a> {
    loss: &'a mut Perceptual,
    val: &'a Tensor,
    clock: &'a Clock,
    every: usize,
    phase: &'a str,
    points: Vec<(f64, f32)>,
}

impl Callback for EvalLoss<'_> {
    fn on_step_end(&mut self, model: &mut Graph, info: &StepInfo) -> Result<()> {
        let last = info.batch + 1 == info.steps_per_epoch;
        if !info.global_step.is_multiple_of(self.every) && !last {
            return Ok(());
        }
        let t = self.clock.paused(|| self.loss.evaluate(model, self.val))?;
        self.points.push((self.clock.seconds(), t.total()));
        if last {
            println!(
                "{} epoch {} validation loss {:.4} (content {:.4}, style {:.4}, tv {:.4}) at {:.1} s",
                self.phase,
                info.epoch + 1,
                t.total(),
                t.content,
                t.style,
                t.tv,
                self.clock.seconds()
            );
        }
        Ok(())
    }
}

/// Trains the image-to-image `model` on `train` `[N, 3, H, W]` with the perceptual loss `loss`
/// (Adam, cosine learning rate), timed by `clock`; returns the loss on `val` as `(seconds,
/// loss)` points.
///
/// # Errors
/// Errors of the training loop, the model or the loss.
pub fn fit_style(
    model: &mut Graph,
    train: &Tensor,
    val: &Tensor,
    loss: &mut Perceptual,
    fit: &Fit,
    clock: &Clock,
    phase: &str,
) -> Result<Vec<(f64, f32)>> {
    let n = train.shape()[0];
    // the trainer's examples: the images, with labels it does not use
    let images = Dataset::new(train.clone(), vec![0; n], 1)?;
    // the trainer owns its loss for the whole run; the evaluations use a second copy of the
    // (frozen) loss network
    let mut eval_loss = Perceptual {
        net: loss.net.clone(),
        content: loss.content,
        style: loss.style.clone(),
        grams: loss.grams.clone(),
        weights: loss.weights,
    };
    let mut eval = EvalLoss {
        loss: &mut eval_loss,
        val,
        clock,
        every: fit.eval_every(n),
        phase,
        points: Vec::new(),
    };
    fit.run(model, &images, &mut *loss, &mut eval, clock, phase)?;
    Ok(eval.points)
}

/// `n` random `size x size` crops of the photos at `paths` as images `[n, 3, size, size]`: a
/// photo, a scale (the crop covers between a third and all of the photo's shorter side), a
/// position and a horizontal flip drawn from `seed` for each.
///
/// # Errors
/// A photo that cannot be read or decoded, or no photo.
pub fn photo_crops(
    paths: &[std::path::PathBuf],
    n: usize,
    size: usize,
    seed: u64,
) -> crate::Res<Tensor> {
    if paths.is_empty() {
        return Err("no photo to crop".into());
    }
    let photos: Vec<image::RgbImage> = paths
        .iter()
        .map(|p| {
            image::open(p)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect::<std::result::Result<_, _>>()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * 3 * size * size);
    for _ in 0..n {
        let photo = &photos[rng.random_range(0..photos.len())];
        let (w, h) = photo.dimensions();
        let short = w.min(h);
        let side = rng.random_range(short / 3..=short).max(1);
        let (x, y) = (
            rng.random_range(0..=w - side),
            rng.random_range(0..=h - side),
        );
        let crop = image::imageops::crop_imm(photo, x, y, side, side).to_image();
        let mut crop = image::imageops::resize(
            &crop,
            size as u32,
            size as u32,
            image::imageops::FilterType::Triangle,
        );
        if rng.random_bool(0.5) {
            crop = image::imageops::flip_horizontal(&crop);
        }
        out.extend(rgb_planes(&crop));
    }
    Ok(tensor::from_vec(&[n, 3, size, size], out)?)
}

/// The photo at `path` resized so that its shorter side is `size`, centre-cropped to
/// `size x size`, as an image `[1, 3, size, size]`.
///
/// # Errors
/// A photo that cannot be read or decoded.
pub fn photo(path: &std::path::Path, size: usize) -> crate::Res<Tensor> {
    let rgb = crate::pretrained::photo_rgb(path, size as u32)?;
    let img = image::RgbImage::from_raw(size as u32, size as u32, rgb)
        .ok_or("a photo of the wrong size")?;
    Ok(tensor::from_vec(&[1, 3, size, size], rgb_planes(&img))?)
}

/// The planes `[3, H, W]` of an 8-bit RGB image, scaled as `(v - 127) / 128`.
fn rgb_planes(img: &image::RgbImage) -> Vec<f32> {
    let hw = (img.width() * img.height()) as usize;
    let mut planes = vec![0.0f32; 3 * hw];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            planes[c * hw + i] = (f32::from(px[c]) - 127.0) / 128.0;
        }
    }
    planes
}

/// Writes images `[3, H, W]` (scaled as [`photo_crops`] makes them; values beyond the 8-bit
/// range are clipped) side by side, 4 pixels apart, as one PNG.
///
/// # Errors
/// Images of different sizes or not `[3, H, W]`, or a file that cannot be written.
pub fn write_rgb_png(path: &std::path::Path, images: &[Tensor]) -> crate::Res<()> {
    let Some(first) = images.first() else {
        return Err("no image to draw".into());
    };
    let &[3, h, w] = first.shape() else {
        return Err(format!("an image [3, H, W], not {:?}", first.shape()).into());
    };
    if images.iter().any(|i| i.shape() != first.shape()) {
        return Err("images of different sizes".into());
    }
    let gap = 4;
    let width = images.len() * w + (images.len() - 1) * gap;
    let mut img = image::RgbImage::from_pixel(width as u32, h as u32, image::Rgb([255; 3]));
    for (k, im) in images.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                let px = std::array::from_fn(|c| {
                    (im[[c, y, x]] * 128.0 + 127.0).round().clamp(0.0, 255.0) as u8
                });
                img.put_pixel((k * (w + gap) + x) as u32, y as u32, image::Rgb(px));
            }
        }
    }
    img.save(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::layers::{Activation, BatchNormConfig, Conv2dConfig};

    /// A small loss network with a batch norm (folded by the loss) and three named layers.
    fn loss_net() -> Graph {
        let mut rng = tensor::rng(3);
        let mut g = Graph::new();
        let x = g.input();
        let conv = |cin, cout, rng: &mut _| {
            Conv2dConfig::new(cin, cout, 3)
                .with_padding(1)
                .init(rng)
                .unwrap()
        };
        let a = g.add_layer("c1", conv(3, 4, &mut rng), x).unwrap();
        let a = g
            .add_layer("bn", BatchNormConfig::new(4).init().unwrap(), a)
            .unwrap();
        let a = g.add_layer("r1", Activation::tanh(), a).unwrap();
        g.add_layer("c2", conv(4, 5, &mut rng), a).unwrap();
        g
    }

    /// The gradient of the weighted loss with respect to the output, against central
    /// differences of the loss itself (content, style at two layers, one of them shared with
    /// the content layer, and total variation).
    #[test]
    fn perceptual_gradient_matches_differences() {
        let style = tensor::uniform(&[1, 3, 6, 6], -1.0, 1.0, &mut tensor::rng(1));
        let weights = PerceptualWeights {
            content: 1.0,
            style: 30.0,
            tv: 0.5,
        };
        let mut loss = Perceptual::new(loss_net(), &style, "r1", &["r1", "c2"], weights).unwrap();
        let input = tensor::uniform(&[2, 3, 5, 4], -1.0, 1.0, &mut tensor::rng(2));
        let output = tensor::uniform(&[2, 3, 5, 4], -1.0, 1.0, &mut tensor::rng(4));
        let (terms, grad) = loss.terms(&input, &output).unwrap();
        assert!(terms.content > 0.0 && terms.style > 0.0 && terms.tv > 0.0);
        let h = 1e-2f32;
        for i in (0..output.len()).step_by(7) {
            let mut at = |d: f32| {
                let mut o = output.clone();
                o.as_slice_mut().unwrap()[i] += d;
                f64::from(loss.terms(&input, &o).unwrap().0.total())
            };
            let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
            let analytic = f64::from(grad.as_slice().unwrap()[i]);
            assert!(
                (numeric - analytic).abs() <= 2e-2 * analytic.abs().max(1e-2),
                "value {i}: {numeric} against {analytic}"
            );
        }
        // the same image as its own input: no content loss
        let (same, _) = loss.terms(&input, &input).unwrap();
        assert!(same.content.abs() < 1e-12);
        assert!(loss.terms(&input, &style).is_err());
        assert!(Perceptual::new(loss_net(), &style, "nope", &["c2"], weights).is_err());
        assert!(Perceptual::new(loss_net(), &style, "r1", &[], weights).is_err());
    }
}
