//! Attention transfer (Zagoruyko & Komodakis 2017): the student matches the teacher's spatial
//! attention maps, the L2-normalized sum over channels of squared activations. Channel counts
//! may differ; spatial sizes must agree.

use ndarray::{Axis, Ix2};
use slimnet_core::tensor::expect_nchw;
use slimnet_core::Tensor;

use crate::error::{DistillError, Result};

/// Guards the normalization of an all-zero map: `q = a / sqrt(|a|^2 + EPS)`.
const EPS: f32 = 1e-12;

/// Sum over channels of squares, `[N, C, H, W]` -> `[N, H * W]`.
fn energy(f: &Tensor) -> Result<ndarray::Array2<f32>> {
    let (n, _, h, w) = expect_nchw(f.shape(), None)?;
    let a = f.mapv(|v| v * v).sum_axis(Axis(1));
    a.into_shape_with_order((n, h * w))
        .map_err(|e| DistillError::Config(e.to_string()))?
        .into_dimensionality::<Ix2>()
        .map_err(|e| DistillError::Config(e.to_string()))
}

/// Per-row L2 normalization and the row scales `sqrt(|a|^2 + EPS)`.
fn normalize(a: &ndarray::Array2<f32>) -> (ndarray::Array2<f32>, Vec<f32>) {
    let mut q = a.clone();
    let mut scales = Vec::with_capacity(a.nrows());
    for mut row in q.rows_mut() {
        let s = (row.iter().map(|v| v * v).sum::<f32>() + EPS).sqrt();
        row /= s;
        scales.push(s);
    }
    (q, scales)
}

/// The spatial attention map of a feature map: `[N, C, H, W]` -> `[N, H * W]`, each row the
/// channel-wise sum of squares normalized to unit L2 norm.
///
/// # Errors
/// When `f` is not 4-D.
pub fn attention_map(f: &Tensor) -> Result<Tensor> {
    Ok(normalize(&energy(f)?).0.into_dyn())
}

/// The attention-transfer loss `(1/N) sum_n |Q_s(n) - Q_t(n)|^2` between the attention maps of
/// student and teacher feature maps, and its gradient with respect to the student's map.
///
/// ```
/// use slimnet_core::tensor;
/// use slimnet_distill::loss::attention_loss;
/// let t = tensor::uniform(&[2, 16, 7, 7], 0.0, 1.0, &mut tensor::rng(1));
/// let s = &t.slice_axis(ndarray::Axis(1), (0..4).into()).to_owned() * 3.0;
/// let (l, g) = attention_loss(&s, &t)?;
/// assert!(l >= 0.0 && g.shape() == s.shape());
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// When either map is not 4-D, or batch or spatial sizes differ.
pub fn attention_loss(student: &Tensor, teacher: &Tensor) -> Result<(f32, Tensor)> {
    let (sn, _, sh, sw) = expect_nchw(student.shape(), None)?;
    let (tn, _, th, tw) = expect_nchw(teacher.shape(), None)?;
    if (sn, sh, sw) != (tn, th, tw) || sn == 0 {
        return Err(DistillError::Config(format!(
            "attention transfer needs equal batch and spatial sizes: student {:?}, teacher {:?}",
            student.shape(),
            teacher.shape()
        )));
    }
    let (qs, scales) = normalize(&energy(student)?);
    let (qt, _) = normalize(&energy(teacher)?);
    let diff = &qs - &qt;
    let n = sn as f32;
    let loss = diff.iter().map(|d| d * d).sum::<f32>() / n;
    // dL/dq = 2 diff / N; dq/da = (I - q q^T) / s; da/df = 2 f.
    let mut ga = diff * (2.0 / n);
    for ((mut g, q), s) in ga.rows_mut().into_iter().zip(qs.rows()).zip(&scales) {
        let dot: f32 = g.iter().zip(q.iter()).map(|(a, b)| a * b).sum();
        g.zip_mut_with(&q, |gv, qv| *gv = (*gv - qv * dot) / s);
    }
    let mut grad = student * 2.0;
    for (mut gn, an) in grad.outer_iter_mut().zip(ga.rows()) {
        let an = an.into_shape_with_order((sh, sw)).expect("h * w values");
        for mut gc in gn.outer_iter_mut() {
            gc.zip_mut_with(&an, |v, a| *v *= a);
        }
    }
    Ok((loss, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::check::{max_fd_error, FD_TOL};
    use slimnet_core::tensor;

    #[test]
    fn gradient_matches_finite_differences() {
        let s = tensor::uniform(&[2, 3, 3, 4], -1.0, 1.0, &mut tensor::rng(1));
        let t = tensor::uniform(&[2, 6, 3, 4], -1.0, 1.0, &mut tensor::rng(2));
        let (_, g) = attention_loss(&s, &t).unwrap();
        let err = max_fd_error(&s, &g, |x| attention_loss(x, &t).unwrap().0);
        assert!(err < FD_TOL, "{err}");
    }

    #[test]
    fn maps_are_unit_norm_and_scale_free() {
        let t = tensor::uniform(&[2, 5, 4, 4], -1.0, 1.0, &mut tensor::rng(3));
        let q = attention_map(&t).unwrap();
        for row in q.outer_iter() {
            assert!((row.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let (l, _) = attention_loss(&(&t * 5.0), &t).unwrap();
        assert!(l < 1e-10, "{l}");
        assert!(attention_loss(&t, &tensor::zeros(&[2, 5, 2, 2])).is_err());
    }
}
