//! Trainable parameters, their gradients and sparsity masks.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::tensor::{zeros, Tensor};

/// Source of parameter versions: every new value gets a number no other value had, so a cache
/// keyed by [`Param::version`] can never mistake one value for another, even across clones and
/// replaced parameters.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// A trainable tensor with its accumulated gradient and an optional sparsity mask.
///
/// The mask (1 keeps a weight, 0 prunes it) lives with the parameter so that every method that
/// touches weights — optimizers, quantization, weight sharing — can respect it without knowing who
/// set it. Optimizers zero masked gradients before a step and masked weights after it.
///
/// The value is read with [`value`](Self::value) and changed through
/// [`value_mut`](Self::value_mut) or [`set_value`](Self::set_value), which give it a new
/// [`version`](Self::version): layers that keep a prepared form of a weight (a Winograd
/// transform, packed panels) compare one number per call instead of the weights themselves.
///
/// ```
/// use slimnet_core::{tensor, Param};
/// let mut p = Param::new(tensor::zeros(&[2, 2]));
/// let v = p.version();
/// p.value_mut()[[0, 1]] = 3.0;
/// assert_ne!(p.version(), v);
/// assert_eq!(p.value()[[0, 1]], 3.0);
/// ```
#[derive(Debug)]
pub struct Param {
    value: Tensor,
    /// The gradient accumulated by `backward` since the last [`zero_grad`](Self::zero_grad).
    pub grad: Tensor,
    mask: Option<Tensor>,
    version: u64,
}

impl Clone for Param {
    /// A copy with its own version (so a copy edited later never shares a cache entry).
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            grad: self.grad.clone(),
            mask: self.mask.clone(),
            version: next_version(),
        }
    }
}

impl Param {
    /// A parameter with a zero gradient and no mask.
    pub fn new(value: Tensor) -> Self {
        let grad = zeros(value.shape());
        Self {
            value,
            grad,
            mask: None,
            version: next_version(),
        }
    }

    /// The value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The value, for editing in place; the parameter gets a new [`version`](Self::version).
    pub fn value_mut(&mut self) -> &mut Tensor {
        self.version = next_version();
        &mut self.value
    }

    /// The value for editing (new version) beside the gradient, as an optimizer step needs.
    pub fn value_mut_and_grad(&mut self) -> (&mut Tensor, &Tensor) {
        self.version = next_version();
        (&mut self.value, &self.grad)
    }

    /// The value beside the gradient for accumulating into, as a backward pass needs.
    pub fn value_and_grad_mut(&mut self) -> (&Tensor, &mut Tensor) {
        (&self.value, &mut self.grad)
    }

    /// Replaces the value (same shape), giving the parameter a new version; the mask, if any,
    /// is applied to the new value.
    ///
    /// # Errors
    /// When the new value's shape differs from the old one's.
    pub fn set_value(&mut self, value: Tensor) -> Result<()> {
        if value.shape() != self.value.shape() {
            return Err(Error::Invalid(format!(
                "a value of shape {:?} for a parameter of shape {:?}",
                value.shape(),
                self.value.shape()
            )));
        }
        self.value = value;
        self.version = next_version();
        self.apply_mask();
        Ok(())
    }

    /// A number that changes whenever the value may have changed, unique across all
    /// parameters of the process.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        match self.grad.as_slice_mut() {
            // large gradients (a wide classifier's) are cleared on every kernel thread
            Some(g) => {
                let n = g.len();
                crate::buffers::for_parts(g, 1, n, |_, g| g.fill(0.0));
            }
            None => self.grad.fill(0.0),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether the parameter has no elements.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The sparsity mask, if any.
    pub fn mask(&self) -> Option<&Tensor> {
        self.mask.as_ref()
    }

    /// Sets a 0/1 mask of the value's shape and zeroes the masked weights.
    ///
    /// # Errors
    /// When the mask's shape differs from the value's or it holds values other than 0 and 1.
    pub fn set_mask(&mut self, mask: Tensor) -> Result<()> {
        if mask.shape() != self.value.shape() {
            return Err(Error::Invalid(format!(
                "mask of shape {:?} for a parameter of shape {:?}",
                mask.shape(),
                self.value.shape()
            )));
        }
        if mask.iter().any(|&m| m != 0.0 && m != 1.0) {
            return Err(Error::Invalid("a mask holds only 0 and 1".into()));
        }
        self.mask = Some(mask);
        self.apply_mask();
        Ok(())
    }

    /// Removes the mask (weights stay as they are).
    pub fn clear_mask(&mut self) {
        self.mask = None;
    }

    /// Zeroes masked weights and their gradients.
    pub fn apply_mask(&mut self) {
        if let Some(m) = &self.mask {
            self.version = next_version();
            masked(&mut self.value, m);
            masked(&mut self.grad, m);
        }
    }

    /// Number of non-zero values.
    pub fn nonzeros(&self) -> usize {
        self.value.iter().filter(|v| **v != 0.0).count()
    }
}

/// `t *= mask`, element by element (on every kernel thread for large tensors).
fn masked(t: &mut Tensor, mask: &Tensor) {
    match (t.as_slice_mut(), mask.as_slice()) {
        (Some(t), Some(m)) if t.len() == m.len() => {
            let n = t.len();
            crate::buffers::for_parts(t, 1, n, |r, t| {
                t.iter_mut().zip(&m[r]).for_each(|(v, &k)| *v *= k)
            });
        }
        _ => t.zip_mut_with(mask, |v, &k| *v *= k),
    }
}
