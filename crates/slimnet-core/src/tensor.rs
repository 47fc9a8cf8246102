//! Tensor conventions.
//!
//! A [`Tensor`] is an `ndarray::ArrayD<f32>`. Activations are NCHW (`[batch, channels, height,
//! width]`) or `[batch, features]`; convolution weights are OIHW (`[out, in / groups, kh, kw]`);
//! linear weights are `[out, in]`. These are the layouts PyTorch and ONNX use, so weights move
//! between them without transposes.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// The tensor type: a dynamically-shaped f32 array.
pub type Tensor = ArrayD<f32>;

/// The seeded random generator used everywhere in slimnet (no hidden global RNG).
pub type SlimRng = ChaCha8Rng;

/// A seeded generator.
pub fn rng(seed: u64) -> SlimRng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A tensor of zeros.
pub fn zeros(shape: &[usize]) -> Tensor {
    ArrayD::zeros(IxDyn(shape))
}

/// A tensor from a shape and row-major data.
///
/// # Errors
/// When `data.len()` differs from the product of `shape`.
pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
    let n = data.len();
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|_| Error::Invalid(format!("{n} values do not fill shape {shape:?}")))
}

/// A tensor of independent uniform samples in `[lo, hi)`.
pub fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut SlimRng) -> Tensor {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(lo..hi))
}

/// A tensor of independent normal samples (Box-Muller).
pub fn normal(shape: &[usize], mean: f32, std: f32, rng: &mut SlimRng) -> Tensor {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        mean + std * z as f32
    })
}

/// Element count of a shape, or an error when it overflows or exceeds `2^31` elements (the
/// bound every layer that computes a shape from its input or its file keeps to).
///
/// ```
/// use slimnet_core::tensor::checked_len;
/// assert_eq!(checked_len(&[2, 3, 4])?, 24);
/// assert!(checked_len(&[1 << 20, 1 << 20]).is_err());
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::Shape`](crate::Error::Shape) naming the shape.
pub fn checked_len(shape: &[usize]) -> crate::error::Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 31)
        .ok_or_else(|| crate::error::Error::shape("a shape of at most 2^31 elements", shape))
}

/// The data of a tensor as a contiguous row-major slice, copying only if it is not already one.
pub fn contiguous(t: &Tensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.iter().copied().collect()),
    }
}

/// Checks that `t` has rank 4 (NCHW) and, when given, `channels` channels.
///
/// # Errors
/// [`Error::Shape`] describing the expected `[N, C, H, W]`.
pub fn expect_nchw(t: &[usize], channels: Option<usize>) -> Result<(usize, usize, usize, usize)> {
    let want = || match channels {
        Some(c) => format!("[N, {c}, H, W]"),
        None => "[N, C, H, W]".to_string(),
    };
    if t.len() != 4 {
        return Err(Error::shape(want(), t));
    }
    if let Some(c) = channels {
        if t[1] != c {
            return Err(Error::shape(want(), t));
        }
    }
    Ok((t[0], t[1], t[2], t[3]))
}

/// Largest absolute elementwise difference of two tensors of the same shape (infinite if shapes differ).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    if a.shape() != b.shape() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
