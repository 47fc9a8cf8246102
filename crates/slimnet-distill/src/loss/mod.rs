//! Distillation losses, each returning the loss and its gradient with respect to the student's
//! tensor: Hinton's knowledge distillation ([`kd`]), FitNets hints through an adapter
//! ([`hint`]) and attention transfer ([`attention`]).

pub mod attention;
pub mod hint;
pub mod kd;

pub use attention::{attention_loss, attention_map};
pub use hint::HintLoss;
pub use kd::{kd_loss, CachedKdLoss, KdConfig, KdLoss};

#[cfg(test)]
pub(crate) mod check {
    //! Finite-difference checks shared by the loss tests.
    use slimnet_core::Tensor;

    /// Central-difference tolerance for f32 losses of order 1 (step 1e-2 in f32 arithmetic).
    pub const FD_TOL: f32 = 2e-3;

    /// Compares `analytic` with central differences of `f` at `x`, element by element; returns
    /// the largest error relative to `max(1, |analytic|)`.
    pub fn max_fd_error(x: &Tensor, analytic: &Tensor, mut f: impl FnMut(&Tensor) -> f32) -> f32 {
        let h = 1e-2f32;
        let mut worst = 0.0f32;
        for i in 0..x.len() {
            let mut xp = x.clone();
            xp.as_slice_mut().unwrap()[i] += h;
            let mut xm = x.clone();
            xm.as_slice_mut().unwrap()[i] -= h;
            let num = (f(&xp) - f(&xm)) / (2.0 * h);
            let a = analytic.as_slice().unwrap()[i];
            worst = worst.max((num - a).abs() / a.abs().max(1.0));
        }
        worst
    }
}
