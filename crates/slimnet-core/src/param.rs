//! Trainable parameters, their gradients and sparsity masks.

use crate::error::{Error, Result};
use crate::tensor::{zeros, Tensor};

/// A trainable tensor with its accumulated gradient and an optional sparsity mask.
///
/// The mask (1 keeps a weight, 0 prunes it) lives with the parameter so that every method that
/// touches weights — optimizers, quantization, weight sharing — can respect it without knowing who
/// set it. Optimizers zero masked gradients before a step and masked weights after it.
#[derive(Debug, Clone)]
pub struct Param {
    /// The value.
    pub value: Tensor,
    /// The gradient accumulated by `backward` since the last [`zero_grad`](Self::zero_grad).
    pub grad: Tensor,
    mask: Option<Tensor>,
}

impl Param {
    /// A parameter with a zero gradient and no mask.
    pub fn new(value: Tensor) -> Self {
        let grad = zeros(value.shape());
        Self {
            value,
            grad,
            mask: None,
        }
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
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
            self.value.zip_mut_with(m, |v, &k| *v *= k);
            self.grad.zip_mut_with(m, |g, &k| *g *= k);
        }
    }

    /// Number of non-zero values.
    pub fn nonzeros(&self) -> usize {
        self.value.iter().filter(|v| **v != 0.0).count()
    }
}
