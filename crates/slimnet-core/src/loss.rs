//! Losses, each returning the mean loss and its gradient with respect to the prediction.

use ndarray::Axis;

use crate::error::{Error, Result};
use crate::layers::log_softmax_axis1;
use crate::tensor::Tensor;

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
