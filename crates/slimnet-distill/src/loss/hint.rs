//! FitNets hints (Romero et al. 2015): the student's intermediate feature map, passed through a
//! trainable adapter, regresses the teacher's feature map with a mean squared error.

use slimnet_core::loss::mse;
use slimnet_core::tensor::SlimRng;
use slimnet_core::{Graph, Layer, Tensor};

use crate::adapter::{make_adapter, AdapterConfig};
use crate::error::{DistillError, Result};

/// A hint loss with its adapter (student shape -> teacher shape). The adapter's parameters
/// receive gradients in [`loss`](Self::loss); train them together with the student (e.g. by
/// stepping an optimizer over [`adapter_mut`](Self::adapter_mut)).
///
/// ```
/// use slimnet_core::tensor;
/// use slimnet_distill::loss::HintLoss;
/// let s = tensor::uniform(&[2, 4, 14, 14], 0.0, 1.0, &mut tensor::rng(1));
/// let t = tensor::uniform(&[2, 16, 7, 7], 0.0, 1.0, &mut tensor::rng(2));
/// let mut hint = HintLoss::auto(s.shape(), t.shape(), &mut tensor::rng(0))?;
/// let (loss, grad) = hint.loss(&s, &t)?;
/// assert!(loss > 0.0 && grad.shape() == s.shape());
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HintLoss {
    adapter: Graph,
}

impl HintLoss {
    /// A hint loss through a given adapter.
    pub fn new(adapter: Graph) -> Self {
        Self { adapter }
    }

    /// A hint loss whose adapter [`make_adapter`] builds (1x1 conv + BN, average pooling).
    ///
    /// # Errors
    /// As [`make_adapter`].
    pub fn auto(student: &[usize], teacher: &[usize], rng: &mut SlimRng) -> Result<Self> {
        Ok(Self::new(make_adapter(
            student,
            teacher,
            &AdapterConfig::default(),
            rng,
        )?))
    }

    /// The adapter.
    pub fn adapter(&self) -> &Graph {
        &self.adapter
    }

    /// The adapter, mutably (to step an optimizer over it).
    pub fn adapter_mut(&mut self) -> &mut Graph {
        &mut self.adapter
    }

    /// `mse(adapter(student), teacher)`: runs the adapter in training mode, accumulates its
    /// parameter gradients and returns the loss and the gradient with respect to `student`.
    ///
    /// # Errors
    /// When the adapter rejects the student's shape or its output differs from the teacher's.
    pub fn loss(&mut self, student: &Tensor, teacher: &Tensor) -> Result<(f32, Tensor)> {
        let y = self.adapter.forward_train(student)?;
        if y.shape() != teacher.shape() {
            return Err(DistillError::Config(format!(
                "hint adapter maps {:?} to {:?}, teacher features are {:?}",
                student.shape(),
                y.shape(),
                teacher.shape()
            )));
        }
        let (l, g) = mse(&y, teacher)?;
        let gx = self.adapter.backward(&g)?;
        Ok((l, gx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::Resample;
    use crate::loss::check::{max_fd_error, FD_TOL};
    use slimnet_core::tensor;

    #[test]
    fn gradient_matches_finite_differences() {
        let s = tensor::uniform(&[2, 3, 4, 4], -1.0, 1.0, &mut tensor::rng(1));
        let t = tensor::uniform(&[2, 5, 2, 2], -1.0, 1.0, &mut tensor::rng(2));
        for cfg in [
            AdapterConfig::default(),
            AdapterConfig::default()
                .with_batch_norm(false)
                .with_resample(Resample::StridedConv),
        ] {
            let adapter = make_adapter(s.shape(), t.shape(), &cfg, &mut tensor::rng(0)).unwrap();
            let mut h = HintLoss::new(adapter);
            let (_, g) = h.loss(&s, &t).unwrap();
            let mut probe = h.clone();
            let err = max_fd_error(&s, &g, |x| probe.loss(x, &t).unwrap().0);
            assert!(err < FD_TOL, "{cfg:?}: {err}");
        }
    }

    #[test]
    fn adapter_parameters_receive_gradients() {
        let s = tensor::uniform(&[2, 3, 4, 4], -1.0, 1.0, &mut tensor::rng(1));
        let t = tensor::uniform(&[2, 6, 4, 4], -1.0, 1.0, &mut tensor::rng(2));
        let mut h = HintLoss::auto(s.shape(), t.shape(), &mut tensor::rng(0)).unwrap();
        h.loss(&s, &t).unwrap();
        let mut total = 0.0;
        h.adapter()
            .visit_params(&mut |_, p| total += p.grad.iter().map(|v| v.abs()).sum::<f32>());
        assert!(total > 0.0);
        let wrong = tensor::zeros(&[2, 7, 4, 4]);
        assert!(h.loss(&s, &wrong).is_err());
    }
}
