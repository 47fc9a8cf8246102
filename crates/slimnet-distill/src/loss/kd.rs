//! Hinton et al. (2015) knowledge distillation: the student matches the teacher's softened
//! class probabilities, mixed with the hard-label loss.

use ndarray::Axis;
use slimnet_core::loss::{kl_div_softened, softmax_cross_entropy, Loss};
use slimnet_core::Tensor;

use crate::error::{DistillError, Result};
use crate::teacher::FrozenTeacher;

/// Temperature and mixing weight of the distillation loss.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct KdConfig {
    /// Softmax temperature `T` (> 0) for both teacher and student.
    pub temperature: f32,
    /// Weight of the soft term in `[0, 1]`; the hard-label cross-entropy gets `1 - alpha`.
    pub alpha: f32,
}

impl Default for KdConfig {
    /// `T = 4`, `alpha = 0.9`.
    fn default() -> Self {
        Self {
            temperature: 4.0,
            alpha: 0.9,
        }
    }
}

impl KdConfig {
    /// A configuration with temperature `t` and soft-term weight `alpha`.
    pub fn new(temperature: f32, alpha: f32) -> Self {
        Self { temperature, alpha }
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DistillError::Config`] for a non-positive temperature or `alpha` outside `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(DistillError::Config(format!(
                "KD temperature {} must be positive",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(DistillError::Config(format!(
                "KD alpha {} must lie in [0, 1]",
                self.alpha
            )));
        }
        Ok(())
    }
}

/// The distillation loss on a batch: `alpha * T^2 * KL(p_T(teacher) || p_T(student)) +
/// (1 - alpha) * CE(student, labels)`, averaged over the batch, where `p_T` is the softmax at
/// temperature `T`. The `T^2` factor keeps the soft term's gradients at the same scale as `T`
/// changes. Returns the loss and its gradient with respect to the student logits `[N, C]`.
///
/// ```
/// use slimnet_core::tensor;
/// use slimnet_distill::loss::{kd_loss, KdConfig};
/// let t = tensor::from_vec(&[1, 3], vec![2.0, 0.5, -1.0])?;
/// // A student equal to the teacher pays only the hard-label term.
/// let (l, _) = kd_loss(&t, &t, &[0], &KdConfig::new(4.0, 1.0))?;
/// assert!(l.abs() < 1e-6);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// Shape mismatch, labels out of range, or an invalid configuration.
pub fn kd_loss(
    student: &Tensor,
    teacher: &Tensor,
    labels: &[usize],
    cfg: &KdConfig,
) -> Result<(f32, Tensor)> {
    cfg.validate()?;
    let t = cfg.temperature;
    let (soft, gs) = kl_div_softened(student, teacher, t)?;
    let (hard, gh) = softmax_cross_entropy(student, labels)?;
    let ws = cfg.alpha * t * t;
    let wh = 1.0 - cfg.alpha;
    Ok((ws * soft + wh * hard, gs * ws + gh * wh))
}

/// [`kd_loss`] against a frozen teacher run on each batch; a
/// [`Loss`] for [`slimnet_core::train::Trainer`].
#[derive(Debug, Clone)]
pub struct KdLoss {
    teacher: FrozenTeacher,
    cfg: KdConfig,
}

impl KdLoss {
    /// A distillation loss against `teacher`.
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(teacher: FrozenTeacher, cfg: KdConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { teacher, cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &KdConfig {
        &self.cfg
    }
}

impl Loss for KdLoss {
    fn loss(
        &mut self,
        input: &Tensor,
        output: &Tensor,
        labels: &[usize],
    ) -> slimnet_core::Result<(f32, Tensor)> {
        let t = self.teacher.forward(input)?;
        Ok(kd_loss(output, &t, labels, &self.cfg)?)
    }
}

/// [`kd_loss`] against teacher logits computed once for a whole training set (one row per
/// example, looked up by the batch's example indices, which the trainer passes to
/// [`Loss::loss_batch`]), so the teacher does not run in every epoch.
#[derive(Debug, Clone)]
pub struct CachedKdLoss {
    logits: Tensor,
    cfg: KdConfig,
}

impl CachedKdLoss {
    /// A loss over cached teacher logits `[examples, classes]`.
    ///
    /// # Errors
    /// Logits that are not 2-D, or an invalid configuration.
    pub fn new(logits: Tensor, cfg: KdConfig) -> Result<Self> {
        cfg.validate()?;
        if logits.ndim() != 2 {
            return Err(DistillError::Config(format!(
                "cached teacher logits must be [examples, classes], got {:?}",
                logits.shape()
            )));
        }
        Ok(Self { logits, cfg })
    }

    /// Runs `teacher` over every example of `inputs` (in chunks of 500) and caches the logits.
    ///
    /// # Errors
    /// When the teacher rejects the inputs, or as [`new`](Self::new).
    pub fn from_teacher(teacher: &FrozenTeacher, inputs: &Tensor, cfg: KdConfig) -> Result<Self> {
        Self::new(teacher.forward_batched(inputs, 500)?, cfg)
    }

    /// The loss for a batch of examples at `indices`.
    ///
    /// # Errors
    /// An index beyond the cache, or as [`kd_loss`].
    pub fn loss_at(
        &self,
        indices: &[usize],
        output: &Tensor,
        labels: &[usize],
    ) -> Result<(f32, Tensor)> {
        let n = self.logits.shape()[0];
        if let Some(i) = indices.iter().find(|&&i| i >= n) {
            return Err(DistillError::Config(format!(
                "example {i} beyond the {n} cached teacher logits"
            )));
        }
        let t = self.logits.select(Axis(0), indices);
        kd_loss(output, &t, labels, &self.cfg)
    }
}

impl Loss for CachedKdLoss {
    /// Without example indices the cached logits cannot be found: an error; the trainer calls
    /// [`loss_batch`](Loss::loss_batch).
    fn loss(&mut self, _: &Tensor, _: &Tensor, _: &[usize]) -> slimnet_core::Result<(f32, Tensor)> {
        Err(DistillError::Config(
            "a cached distillation loss needs the batch's example indices (use loss_batch)".into(),
        )
        .into())
    }

    fn loss_batch(
        &mut self,
        batch: &slimnet_core::loss::Batch<'_>,
        output: &Tensor,
    ) -> slimnet_core::Result<(f32, Tensor)> {
        Ok(self.loss_at(batch.indices, output, batch.labels)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::check::{max_fd_error, FD_TOL};
    use slimnet_core::tensor;

    fn logits(seed: u64) -> Tensor {
        tensor::normal(&[3, 5], 0.0, 2.0, &mut tensor::rng(seed))
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (s, t) = (logits(1), logits(2));
        let labels = [0, 3, 4];
        for cfg in [
            KdConfig::new(1.0, 0.5),
            KdConfig::new(4.0, 0.9),
            KdConfig::new(10.0, 1.0),
        ] {
            let (_, g) = kd_loss(&s, &t, &labels, &cfg).unwrap();
            let err = max_fd_error(&s, &g, |x| kd_loss(x, &t, &labels, &cfg).unwrap().0);
            assert!(err < FD_TOL, "T={} error {err}", cfg.temperature);
        }
    }

    #[test]
    fn alpha_zero_is_cross_entropy_and_t2_keeps_the_soft_gradient_scale() {
        let (s, t) = (logits(3), logits(4));
        let (l0, g0) = kd_loss(&s, &t, &[1, 2, 0], &KdConfig::new(3.0, 0.0)).unwrap();
        let (lc, gc) = softmax_cross_entropy(&s, &[1, 2, 0]).unwrap();
        assert!((l0 - lc).abs() < 1e-6 && tensor::max_abs_diff(&g0, &gc) < 1e-6);
        // For large T the soft gradient tends to (s - t - mean) / (C N), independent of T.
        let norm = |temp: f32| {
            let (_, g) = kd_loss(&s, &t, &[0, 0, 0], &KdConfig::new(temp, 1.0)).unwrap();
            g.iter().map(|v| v * v).sum::<f32>().sqrt()
        };
        let (a, b) = (norm(20.0), norm(40.0));
        assert!((a / b - 1.0).abs() < 0.05, "{a} vs {b}");
    }

    #[test]
    fn cached_logits_match_the_teacher() {
        let teacher =
            FrozenTeacher::new(slimnet_core::models::lenet300(&mut tensor::rng(0)).unwrap())
                .unwrap();
        let x = tensor::uniform(&[6, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(5));
        let cache = CachedKdLoss::from_teacher(&teacher, &x, KdConfig::default()).unwrap();
        let mut live = KdLoss::new(teacher, KdConfig::default()).unwrap();
        let idx = [4, 1];
        let xb = x.select(Axis(0), &idx);
        let out = logits(6).slice_axis(Axis(0), (0..2).into()).to_owned();
        let out = ndarray::concatenate(Axis(1), &[out.view(), out.view()]).unwrap();
        let (a, ga) = live.loss(&xb, &out, &[3, 7]).unwrap();
        let (b, gb) = cache.loss_at(&idx, &out, &[3, 7]).unwrap();
        assert!((a - b).abs() < 1e-5 && tensor::max_abs_diff(&ga, &gb) < 1e-6);
        assert!(cache.loss_at(&[6], &out, &[0]).is_err());
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(KdConfig::new(0.0, 0.5).validate().is_err());
        assert!(KdConfig::new(2.0, 1.5).validate().is_err());
    }
}
