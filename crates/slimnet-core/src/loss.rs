//! Losses, each returning the mean loss and its gradient with respect to the prediction.
//!
//! Classification: [`softmax_cross_entropy`], [`kl_div_softened`]. Regression and
//! image-to-image networks: [`mse`], the style loss [`gram_style`] (with [`gram_matrix`]), the
//! smoothness prior [`total_variation`] and the optical-flow end-point error [`epe`].

use ndarray::{ArrayView2, Axis, IxDyn};

use crate::error::{Error, Result};
use crate::layers::log_softmax_axis1;
use crate::tensor::{contiguous, Tensor};

fn check_logits(logits: &Tensor, labels: &[usize]) -> Result<(usize, usize)> {
    if logits.ndim() != 2 || logits.shape()[0] != labels.len() || logits.shape()[0] == 0 {
        return Err(Error::Invalid(format!(
            "logits of shape {:?} for {} labels (expected [N, classes] with N = labels > 0)",
            logits.shape(),
            labels.len()
        )));
    }
    let c = logits.shape()[1];
    if let Some(l) = labels.iter().find(|&&l| l >= c) {
        return Err(Error::Invalid(format!(
            "label {l} out of range for {c} classes"
        )));
    }
    Ok((labels.len(), c))
}

/// Softmax cross-entropy averaged over the batch: `logits` `[N, C]`, integer labels.
///
/// Returns the loss and `d loss / d logits`.
///
/// # Errors
/// Shape mismatch or a label out of range.
///
/// ```
/// use slimnet_core::{loss, tensor};
/// let logits = tensor::from_vec(&[1, 2], vec![0.0, 0.0])?;
/// let (l, g) = loss::softmax_cross_entropy(&logits, &[1])?;
/// assert!((l - std::f32::consts::LN_2).abs() < 1e-6);
/// assert_eq!(g.as_slice().unwrap(), &[0.5, -0.5]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)> {
    let (n, _) = check_logits(logits, labels)?;
    let ls = log_softmax_axis1(logits);
    let mut loss = 0.0f64;
    let mut grad = ls.mapv(f32::exp);
    for (i, (&y, mut row)) in labels.iter().zip(grad.axis_iter_mut(Axis(0))).enumerate() {
        loss -= ls[[i, y]] as f64;
        row[y] -= 1.0;
    }
    grad /= n as f32;
    Ok(((loss / n as f64) as f32, grad))
}

/// Mean squared error over all elements.
///
/// ```
/// use slimnet_core::{loss, tensor};
/// let p = tensor::from_vec(&[2], vec![1.0, 3.0])?;
/// let t = tensor::from_vec(&[2], vec![1.0, 1.0])?;
/// let (l, g) = loss::mse(&p, &t)?;
/// assert_eq!(l, 2.0);
/// assert_eq!(g.as_slice().unwrap(), &[0.0, 2.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// Shape mismatch or empty tensors.
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<(f32, Tensor)> {
    if pred.shape() != target.shape() || pred.is_empty() {
        return Err(Error::Invalid(format!(
            "mse of shapes {:?} and {:?}",
            pred.shape(),
            target.shape()
        )));
    }
    let n = pred.len() as f32;
    let diff = pred - target;
    let loss = diff.iter().map(|d| (*d as f64) * (*d as f64)).sum::<f64>() / n as f64;
    Ok((loss as f32, diff * (2.0 / n)))
}

/// KL divergence `KL(softmax(teacher / T) || softmax(student / T))` averaged over the batch,
/// with its gradient with respect to the student logits.
///
/// Hinton et al. multiply this term by `T^2` so its gradients keep their scale as `T` changes;
/// that factor is left to the caller (the distillation crate applies it).
///
/// # Errors
/// Shape mismatch or a non-positive temperature.
pub fn kl_div_softened(
    student: &Tensor,
    teacher: &Tensor,
    temperature: f32,
) -> Result<(f32, Tensor)> {
    if student.shape() != teacher.shape() || student.ndim() != 2 || student.shape()[0] == 0 {
        return Err(Error::Invalid(format!(
            "student logits {:?} and teacher logits {:?} must both be [N, C]",
            student.shape(),
            teacher.shape()
        )));
    }
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::Invalid(format!(
            "temperature {temperature} must be positive"
        )));
    }
    let n = student.shape()[0] as f32;
    let ls = log_softmax_axis1(&(student / temperature));
    let lt = log_softmax_axis1(&(teacher / temperature));
    let pt = lt.mapv(f32::exp);
    let mut loss = 0.0f64;
    for ((p, a), b) in pt.iter().zip(lt.iter()).zip(ls.iter()) {
        if *p > 0.0 {
            loss += (*p as f64) * ((*a - *b) as f64);
        }
    }
    let grad = (ls.mapv(f32::exp) - &pt) / (n * temperature);
    Ok(((loss / n as f64) as f32, grad))
}

/// `[N, C, H, W]` with no zero size, or a shape error naming `what`.
fn nchw_nonempty(t: &Tensor, what: &str) -> Result<(usize, usize, usize, usize)> {
    match *t.shape() {
        [n, c, h, w] if n > 0 && c > 0 && h > 0 && w > 0 => Ok((n, c, h, w)),
        _ => Err(Error::shape(
            format!("{what} [N, C, H, W] with no zero size"),
            t.shape(),
        )),
    }
}

/// The Gram matrix of each sample's feature maps: for features `F` of shape `[N, C, H, W]`,
/// seen per sample as a `C x (H * W)` matrix, `G = F F^T / (C * H * W)`, of shape `[N, C, C]`
/// (the normalisation of Johnson et al. 2016). `G[n, i, j]` is the mean product of channels
/// `i` and `j`, so it describes which features occur together (the "style"), not where.
///
/// ```
/// use slimnet_core::{loss, tensor};
/// // two channels over two positions: [1, 2] and [3, 4]
/// let f = tensor::from_vec(&[1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0])?;
/// let g = loss::gram_matrix(&f)?;
/// assert_eq!(g.shape(), &[1, 2, 2]);
/// // (1*1 + 2*2) / 4, (1*3 + 2*4) / 4, (3*3 + 4*4) / 4
/// assert_eq!(g.as_slice().unwrap(), &[1.25, 2.75, 2.75, 6.25]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// Features that are not `[N, C, H, W]` with every size positive.
pub fn gram_matrix(features: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = nchw_nonempty(features, "features")?;
    let hw = h * w;
    let norm = (c * hw) as f32;
    let f = contiguous(features);
    let mut g = Vec::with_capacity(n * c * c);
    for sample in f.chunks_exact(c * hw) {
        let fm = ArrayView2::from_shape((c, hw), sample).expect("one sample's length");
        let gm = fm.dot(&fm.t()) / norm;
        g.extend(gm.iter().copied());
    }
    Ok(Tensor::from_shape_vec(IxDyn(&[n, c, c]), g).expect("N * C * C values"))
}

/// Gram-matrix style loss: the mean squared difference between the Gram matrices
/// ([`gram_matrix`]) of `features` `[N, C, H, W]` and `target_gram`, over all `N * C * C`
/// entries, with its gradient with respect to `features`.
///
/// `target_gram` is `[N, C, C]` (one target per sample) or `[1, C, C]` (one style for the whole
/// batch, the usual case: the Gram matrix of the style image's features).
///
/// The gradient: with `D = 2 (G - T) / (N * C * C)`, `d loss / d F = (D + D^T) F / (C * H * W)`
/// per sample.
///
/// ```
/// use slimnet_core::{loss, tensor};
/// let style = tensor::uniform(&[1, 4, 6, 6], -1.0, 1.0, &mut tensor::rng(0));
/// let target = loss::gram_matrix(&style)?;
/// // the same features match their own style exactly, with a zero gradient
/// let (l, g) = loss::gram_style(&style, &target)?;
/// assert!(l.abs() < 1e-12 && g.iter().all(|v| v.abs() < 1e-6));
/// // other features of another size (the Gram matrix does not depend on H, W) do not
/// let x = tensor::uniform(&[2, 4, 5, 3], -1.0, 1.0, &mut tensor::rng(1));
/// let (l, g) = loss::gram_style(&x, &target)?;
/// assert!(l > 0.0 && g.shape() == x.shape());
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// Features that are not `[N, C, H, W]` with positive sizes, or a target that is not
/// `[N, C, C]` or `[1, C, C]`.
pub fn gram_style(features: &Tensor, target_gram: &Tensor) -> Result<(f32, Tensor)> {
    let (n, c, h, w) = nchw_nonempty(features, "features")?;
    let ts = target_gram.shape();
    if ts.len() != 3 || !(ts[0] == n || ts[0] == 1) || ts[1] != c || ts[2] != c {
        return Err(Error::shape(
            format!(
                "a target Gram matrix [{n}, {c}, {c}] or [1, {c}, {c}] for features {:?}",
                features.shape()
            ),
            ts,
        ));
    }
    let g = gram_matrix(features)?;
    let t = contiguous(target_gram);
    let cc = c * c;
    let hw = h * w;
    let count = (n * cc) as f64;
    let norm = (c * hw) as f32;
    let f = contiguous(features);
    let mut loss = 0.0f64;
    let mut grad = Vec::with_capacity(f.len());
    for (k, (gs, fs)) in g
        .as_slice()
        .expect("a fresh tensor is contiguous")
        .chunks_exact(cc)
        .zip(f.chunks_exact(c * hw))
        .enumerate()
    {
        let ts = &t[if ts[0] == 1 { 0 } else { k * cc }..][..cc];
        let mut d = vec![0.0f32; cc];
        for ((d, &g), &t) in d.iter_mut().zip(gs).zip(ts) {
            let e = f64::from(g) - f64::from(t);
            loss += e * e;
            *d = (2.0 * e / count) as f32;
        }
        let dm = ArrayView2::from_shape((c, c), &d).expect("C * C values");
        let sym = (&dm + &dm.t()) / norm;
        let fm = ArrayView2::from_shape((c, hw), fs).expect("one sample's length");
        grad.extend(sym.dot(&fm).iter().copied());
    }
    let grad = Tensor::from_shape_vec(IxDyn(features.shape()), grad).expect("the features' length");
    Ok(((loss / count) as f32, grad))
}

/// Total-variation loss of images `[N, C, H, W]`, the smoothness prior of style transfer:
/// the mean squared difference of horizontally adjacent pixels plus the mean squared difference
/// of vertically adjacent pixels,
///
/// `tv = sum (x[.., i, j + 1] - x[.., i, j])^2 / (N C H (W - 1))
///     + sum (x[.., i + 1, j] - x[.., i, j])^2 / (N C (H - 1) W)`.
///
/// This is the squared ("L2", anisotropic) variant, each direction averaged over its own pairs
/// so that the value does not depend on the image size; a direction without pairs (`W = 1` or
/// `H = 1`) adds nothing.
///
/// ```
/// use slimnet_core::{loss, tensor};
/// // a horizontal ramp 0, 1, 2 on two rows: horizontal steps of 1, no vertical change
/// let x = tensor::from_vec(&[1, 1, 2, 3], vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0])?;
/// let (l, g) = loss::total_variation(&x)?;
/// assert_eq!(l, 1.0);
/// // pulling the ends in lowers it; the middle is balanced
/// assert_eq!(g.as_slice().unwrap(), &[-0.5, 0.0, 0.5, -0.5, 0.0, 0.5]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// An image that is not `[N, C, H, W]` with positive sizes, or a single pixel (`H = W = 1`,
/// no adjacent pairs).
pub fn total_variation(image: &Tensor) -> Result<(f32, Tensor)> {
    let (n, c, h, w) = nchw_nonempty(image, "an image")?;
    if h == 1 && w == 1 {
        return Err(Error::shape(
            "an image [N, C, H, W] with at least two pixels per plane",
            image.shape(),
        ));
    }
    let x = contiguous(image);
    let mut grad = vec![0.0f32; x.len()];
    let planes = n * c;
    let (ch, cv) = ((planes * h * (w - 1)) as f64, (planes * (h - 1) * w) as f64);
    let (mut sh, mut sv) = (0.0f64, 0.0f64);
    for (p, g) in x.chunks_exact(h * w).zip(grad.chunks_exact_mut(h * w)) {
        for i in 0..h {
            for j in 0..w {
                let k = i * w + j;
                if j + 1 < w {
                    let d = f64::from(p[k + 1]) - f64::from(p[k]);
                    sh += d * d;
                    let gd = (2.0 * d / ch) as f32;
                    g[k + 1] += gd;
                    g[k] -= gd;
                }
                if i + 1 < h {
                    let d = f64::from(p[k + w]) - f64::from(p[k]);
                    sv += d * d;
                    let gd = (2.0 * d / cv) as f32;
                    g[k + w] += gd;
                    g[k] -= gd;
                }
            }
        }
    }
    let loss = if w > 1 { sh / ch } else { 0.0 } + if h > 1 { sv / cv } else { 0.0 };
    let grad = Tensor::from_shape_vec(IxDyn(image.shape()), grad).expect("the image's length");
    Ok((loss as f32, grad))
}

/// What [`epe`] adds to the squared error under the square root, so that its gradient is zero,
/// not `0 / 0`, where the error is zero. It raises each pixel's error by at most
/// `sqrt(EPE_EPSILON) = 1e-6` (the error where the error is zero).
pub const EPE_EPSILON: f64 = 1e-12;

/// End-point error of optical flow: `pred_flow` and `target_flow` are `[N, 2, H, W]`
/// (horizontal and vertical displacement, in pixels); the loss is the mean over the `N * H * W`
/// pixels of the Euclidean distance `sqrt(du^2 + dv^2 + EPE_EPSILON)` between the predicted and
/// the true vector, with its gradient with respect to `pred_flow`,
/// `(du, dv) / sqrt(du^2 + dv^2 + EPE_EPSILON) / (N * H * W)`.
///
/// [`EPE_EPSILON`] keeps the gradient finite (zero) where a prediction is exact.
///
/// ```
/// use slimnet_core::{loss, tensor};
/// // one pixel off by (3, 4): error 5; one exact
/// let pred = tensor::from_vec(&[1, 2, 1, 2], vec![3.0, 1.0, 4.0, 1.0])?;
/// let target = tensor::from_vec(&[1, 2, 1, 2], vec![0.0, 1.0, 0.0, 1.0])?;
/// let (l, g) = loss::epe(&pred, &target)?;
/// assert!((l - 2.5).abs() < 1e-5);
/// assert_eq!(g.as_slice().unwrap(), &[0.3, 0.0, 0.4, 0.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// Flows that are not `[N, 2, H, W]` with positive sizes, or of different shapes.
pub fn epe(pred_flow: &Tensor, target_flow: &Tensor) -> Result<(f32, Tensor)> {
    let (n, c, h, w) = nchw_nonempty(pred_flow, "a flow")?;
    if c != 2 {
        return Err(Error::shape("a flow [N, 2, H, W]", pred_flow.shape()));
    }
    if target_flow.shape() != pred_flow.shape() {
        return Err(Error::shape(
            format!(
                "a target flow of the prediction's shape {:?}",
                pred_flow.shape()
            ),
            target_flow.shape(),
        ));
    }
    let (p, t) = (contiguous(pred_flow), contiguous(target_flow));
    let hw = h * w;
    let count = (n * hw) as f64;
    let mut grad = vec![0.0f32; p.len()];
    let mut loss = 0.0f64;
    for s in 0..n {
        let (u, v) = (s * 2 * hw, s * 2 * hw + hw);
        for k in 0..hw {
            let du = f64::from(p[u + k]) - f64::from(t[u + k]);
            let dv = f64::from(p[v + k]) - f64::from(t[v + k]);
            let r = (du * du + dv * dv + EPE_EPSILON).sqrt();
            loss += r;
            grad[u + k] = (du / r / count) as f32;
            grad[v + k] = (dv / r / count) as f32;
        }
    }
    let grad = Tensor::from_shape_vec(IxDyn(pred_flow.shape()), grad).expect("the flow's length");
    Ok(((loss / count) as f32, grad))
}

/// A training objective over a batch: the trainer calls it with the batch input, the model
/// output and the labels, and back-propagates the returned gradient.
pub trait Loss {
    /// Mean loss and its gradient with respect to `output`.
    ///
    /// # Errors
    /// When shapes do not fit.
    fn loss(&mut self, input: &Tensor, output: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)>;

    /// [`loss`](Self::loss) of a training batch, which also knows the examples' indices in the
    /// training set (a distillation loss looks up cached teacher outputs by them). The
    /// default ignores the indices.
    ///
    /// # Errors
    /// When shapes do not fit.
    fn loss_batch(&mut self, batch: &Batch<'_>, output: &Tensor) -> Result<(f32, Tensor)> {
        self.loss(batch.input, output, batch.labels)
    }
}

/// A loss borrowed mutably is a loss, so callers keep it (and its state) after training.
impl<L: Loss + ?Sized> Loss for &mut L {
    fn loss(&mut self, input: &Tensor, output: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)> {
        (**self).loss(input, output, labels)
    }

    fn loss_batch(&mut self, batch: &Batch<'_>, output: &Tensor) -> Result<(f32, Tensor)> {
        (**self).loss_batch(batch, output)
    }
}

/// One training batch: the examples' indices in the training set, inputs and labels.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Indices of the examples in the training set.
    pub indices: &'a [usize],
    /// Inputs `[N, ...]`.
    pub input: &'a Tensor,
    /// Labels.
    pub labels: &'a [usize],
}

/// Softmax cross-entropy on integer labels.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropy;

impl Loss for CrossEntropy {
    fn loss(
        &mut self,
        _input: &Tensor,
        output: &Tensor,
        labels: &[usize],
    ) -> Result<(f32, Tensor)> {
        softmax_cross_entropy(output, labels)
    }
}
