//! [`FrozenTeacher`]: a trained model that only exposes inference.

use std::sync::Arc;

use slimnet_core::{Graph, Layer, Tensor};

use crate::error::{DistillError, Result};

/// A trained teacher that can only run inference (`&self`), shared cheaply between losses and
/// threads. Freezing checks that the model carries no accumulated gradients, the trace of a
/// model still being trained; afterwards no `&mut` access exists, so the teacher cannot change.
///
/// ```
/// use slimnet_core::{models, tensor};
/// use slimnet_distill::FrozenTeacher;
/// let teacher = FrozenTeacher::new(models::lenet300(&mut tensor::rng(0))?)?;
/// let logits = teacher.forward(&tensor::zeros(&[2, 1, 28, 28]))?;
/// assert_eq!(logits.shape(), &[2, 10]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FrozenTeacher {
    graph: Arc<Graph>,
}

impl FrozenTeacher {
    /// Freezes a trained model.
    ///
    /// # Errors
    /// [`DistillError::TeacherNotFrozen`] when a parameter holds a non-zero gradient (the model is in
    /// the middle of training), naming the parameter.
    pub fn new(graph: Graph) -> Result<Self> {
        let mut hot = None;
        graph.visit_params(&mut |path, p| {
            if hot.is_none() && p.grad.iter().any(|g| *g != 0.0) {
                hot = Some(path.to_string());
            }
        });
        if let Some(path) = hot {
            return Err(DistillError::TeacherNotFrozen {
                reason: format!(
                    "parameter `{path}` holds a non-zero gradient; finish training and zero the gradients first"
                ),
            });
        }
        Ok(Self {
            graph: Arc::new(graph),
        })
    }

    /// The model (read-only).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Inference: `[N, ...]` input -> the model's output.
    ///
    /// # Errors
    /// When the model rejects the input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.graph.forward(x)?)
    }

    /// Inference over `x` in chunks of `batch` examples, concatenated along axis 0.
    ///
    /// # Errors
    /// When the model rejects the input, or `batch` is 0.
    pub fn forward_batched(&self, x: &Tensor, batch: usize) -> Result<Tensor> {
        forward_chunked(self.graph.as_ref(), x, batch)
    }
}

/// Runs `layer` over `x` in chunks of `batch` examples and concatenates the outputs.
pub(crate) fn forward_chunked(layer: &dyn Layer, x: &Tensor, batch: usize) -> Result<Tensor> {
    if batch == 0 {
        return Err(DistillError::Config("chunk size must be positive".into()));
    }
    let n = x.shape().first().copied().unwrap_or(0);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let chunk = x
            .slice_axis(ndarray::Axis(0), (start..end).into())
            .to_owned();
        parts.push(layer.forward(&chunk)?);
        start = end;
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(ndarray::Axis(0), &views)
        .map_err(|e| DistillError::Config(format!("cannot concatenate outputs: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::{models, tensor};

    #[test]
    fn a_model_with_gradients_is_not_frozen() {
        let mut g = models::lenet300(&mut tensor::rng(1)).unwrap();
        let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(2));
        let y = g.forward_train(&x).unwrap();
        g.backward(&y).unwrap();
        let err = FrozenTeacher::new(g.clone()).unwrap_err();
        assert!(
            matches!(err, DistillError::TeacherNotFrozen { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("fc"), "{err}");
        (&mut g as &mut dyn Layer).zero_grad();
        assert!(FrozenTeacher::new(g).is_ok());
    }

    #[test]
    fn chunked_forward_equals_one_pass() {
        let t = FrozenTeacher::new(models::lenet300(&mut tensor::rng(1)).unwrap()).unwrap();
        let x = tensor::uniform(&[7, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(3));
        let a = t.forward(&x).unwrap();
        let b = t.forward_batched(&x, 3).unwrap();
        assert!(tensor::max_abs_diff(&a, &b) < 1e-5);
    }
}
