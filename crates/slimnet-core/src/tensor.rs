//! Tensor conventions.
//!
//! A [`Tensor`] is an `ndarray::ArrayD<f32>`. Activations are NCHW (`[batch, channels, height,
//! width]`) or `[batch, features]`; convolution weights are OIHW (`[out, in / groups, kh, kw]`);
//! linear weights are `[out, in]`. These are the layouts PyTorch and ONNX use, so weights move
//! between them without transposes.

use ndarray::{ArrayD, Axis, IxDyn};
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

/// The shape of `a` and `b` broadcast together (NumPy rules: shapes aligned at the right, an
/// axis of size 1 stretches), or `None` when they do not broadcast.
///
/// ```
/// use slimnet_core::tensor::broadcast_shape;
/// assert_eq!(broadcast_shape(&[2, 3, 4], &[3, 1]), Some(vec![2, 3, 4]));
/// assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
/// ```
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        if i + s.len() >= n {
            s[i + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (da, db) if da == db || db == 1 => Some(da),
            (1, db) => Some(db),
            _ => None,
        })
        .collect()
}

/// How [`matmul`] multiplies operands of two shapes.
struct MatMulShape {
    /// The broadcast leading (batch) axes.
    batch: Vec<usize>,
    n: usize,
    k: usize,
    m: usize,
    /// The output shape (without the axes of rank-1 operands).
    out: Vec<usize>,
}

impl MatMulShape {
    fn of(a: &[usize], b: &[usize]) -> Option<Self> {
        if a.is_empty() || b.is_empty() {
            return None;
        }
        let a2 = if a.len() == 1 {
            vec![1, a[0]]
        } else {
            a.to_vec()
        };
        let b2 = if b.len() == 1 {
            vec![b[0], 1]
        } else {
            b.to_vec()
        };
        let (n, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
        let (k2, m) = (b2[b2.len() - 2], b2[b2.len() - 1]);
        if k != k2 {
            return None;
        }
        let batch = broadcast_shape(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
        let mut out = batch.clone();
        if a.len() > 1 {
            out.push(n);
        }
        if b.len() > 1 {
            out.push(m);
        }
        Some(Self {
            batch,
            n,
            k,
            m,
            out,
        })
    }
}

/// The shape of [`matmul`]`(a, b)` for operands of shapes `a` and `b`, or `None` when they do
/// not multiply.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    MatMulShape::of(a, b).map(|s| s.out)
}

/// Matrix product with NumPy's `matmul` rules (ONNX `MatMul`): the last two axes multiply,
/// the leading axes broadcast, and a rank-1 operand is a row (left) or a column (right) whose
/// axis is dropped from the result.
///
/// ```
/// use slimnet_core::tensor::{from_vec, matmul};
/// // two heads of a 2x2 by 2x1 product, the right operand shared by both
/// let a = from_vec(&[2, 2, 2], vec![1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 1.0, 0.0])?;
/// let b = from_vec(&[2, 1], vec![1.0, 10.0])?;
/// let y = matmul(&a, &b)?;
/// assert_eq!(y.shape(), &[2, 2, 1]);
/// assert_eq!(y.as_slice().unwrap(), &[21.0, 43.0, 10.0, 1.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// Shapes that do not multiply, or a result of more than 2^31 elements.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let s = MatMulShape::of(a.shape(), b.shape()).ok_or_else(|| {
        Error::shape(
            format!("an operand that multiplies with {:?}", b.shape()),
            a.shape(),
        )
    })?;
    checked_len(&s.out)?;
    if a.ndim() >= 2 && b.ndim() == 2 {
        // one matrix on the right (a linear map of the last axis): one product of all rows
        let rows = a.len() / s.k.max(1);
        let a2 = a
            .to_shape(IxDyn(&[rows, s.k]))
            .expect("same length")
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2-D");
        let b2 = b.view().into_dimensionality::<ndarray::Ix2>().expect("2-D");
        // (the product may be column-major: its values are taken in logical order)
        let y = a2.dot(&b2);
        return Ok(
            Tensor::from_shape_vec(IxDyn(&s.out), y.into_iter().collect())
                .expect("the product's length"),
        );
    }
    let full = |t: &Tensor, rows: usize, cols: usize| {
        let mut shape = s.batch.clone();
        shape.extend([rows, cols]);
        let promoted = if t.ndim() == 1 {
            t.to_shape(IxDyn(&[rows, cols]))
                .expect("a rank-1 operand as a matrix")
                .into_owned()
        } else {
            t.to_owned()
        };
        let count: usize = s.batch.iter().product();
        promoted
            .broadcast(IxDyn(&shape))
            .expect("checked by the shape")
            .to_shape(IxDyn(&[count, rows, cols]))
            .expect("same length")
            .into_owned()
    };
    let (a3, b3) = (full(a, s.n, s.k), full(b, s.k, s.m));
    let mut out = Vec::with_capacity(checked_len(&s.out)?);
    for (ai, bi) in a3.outer_iter().zip(b3.outer_iter()) {
        let ai = ai.into_dimensionality::<ndarray::Ix2>().expect("2-D");
        let bi = bi.into_dimensionality::<ndarray::Ix2>().expect("2-D");
        out.extend(ai.dot(&bi).iter().copied());
    }
    Ok(Tensor::from_shape_vec(IxDyn(&s.out), out).expect("the product's length"))
}

/// Sums `g` over the axes where `shape` was broadcast (the gradient of a broadcast), returning
/// a tensor of `shape`.
pub fn sum_to_shape(g: Tensor, shape: &[usize]) -> Tensor {
    if g.shape() == shape {
        return g;
    }
    let mut r = g;
    let extra = r.ndim() - shape.len();
    for _ in 0..extra {
        r = r.sum_axis(Axis(0));
    }
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && r.shape()[i] != 1 {
            r = r.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    r
}

/// The gradients of `a @ b` ([`matmul`]) with respect to `a` and `b`, given
/// the gradient `g` of the product: `g @ b^T` and `a^T @ g`, summed over broadcast axes. A
/// rank-1 operand is taken as the row or column it stands for.
///
/// # Errors
/// When `g` is not of the product's shape.
pub fn matmul_grads(a: &Tensor, b: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
    if matmul_shape(a.shape(), b.shape()).as_deref() != Some(g.shape()) {
        return Err(Error::shape(
            format!(
                "the gradient of a product of {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
            g.shape(),
        ));
    }
    // promote rank-1 operands (and the gradient's dropped axes) to matrices
    let (a2, b2) = (
        if a.ndim() == 1 {
            a.view().insert_axis(Axis(0)).to_owned()
        } else {
            a.clone()
        },
        if b.ndim() == 1 {
            b.view().insert_axis(Axis(1)).to_owned()
        } else {
            b.clone()
        },
    );
    let mut g2 = g.clone();
    if a.ndim() == 1 {
        let at = g2.ndim() - usize::from(b.ndim() > 1);
        g2 = g2.insert_axis(Axis(at));
    }
    if b.ndim() == 1 {
        let at = g2.ndim();
        g2 = g2.insert_axis(Axis(at));
    }
    let t = |x: &Tensor| {
        let mut v = x.view();
        v.swap_axes(x.ndim() - 2, x.ndim() - 1);
        v.as_standard_layout().into_owned()
    };
    let ga = sum_to_shape(matmul(&g2, &t(&b2))?, a2.shape());
    let gb = sum_to_shape(matmul(&t(&a2), &g2)?, b2.shape());
    let back = |x: Tensor, shape: &[usize]| {
        Tensor::from_shape_vec(IxDyn(shape), x.into_iter().collect())
            .expect("a promoted operand keeps its length")
    };
    Ok((back(ga, a.shape()), back(gb, b.shape())))
}
