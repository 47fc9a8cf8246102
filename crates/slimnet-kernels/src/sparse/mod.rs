//! Sparse f32 weights times dense activations.
//!
//! Three storage formats, all for a weight matrix `W` of shape `[rows, cols]` (a linear weight
//! `[out, in]`, or a convolution weight OIHW seen as `[O, I * kh * kw]`):
//!
//! - [`CsrMatrix`]: compressed sparse rows, for unstructured sparsity.
//! - [`BsrMatrix`]: block sparse rows with small dense `br x bc` blocks (e.g. `4x1` or `8x1`),
//!   for block-pruned weights; fewer indices and register reuse across the rows of a block.
//! - [`NmMatrix`]: N:M structured sparsity (at most `n` non-zeros in each group of `m`
//!   consecutive columns, e.g. 2:4).
//!
//! All formats implement [`SparseMatrix`], which [`spmm`], [`sparse_linear_forward`] and
//! [`sparse_conv2d_forward`] run on; [`SparseWeight`] wraps any of them, and
//! [`choose_format`] / [`SparseWeight::from_dense_auto`] pick one. Every format exposes its raw
//! arrays and a validating `from_parts` constructor for serialisation.
//!
//! ```
//! use slimnet_kernels::Activation;
//! use slimnet_kernels::sparse::{sparse_linear_forward, CsrMatrix};
//! // W = [[1, 0, 2], [0, 0, 3]]
//! let w = CsrMatrix::from_dense(&[1.0, 0.0, 2.0, 0.0, 0.0, 3.0], 2, 3, None)?;
//! assert_eq!(w.nnz(), 3);
//! let x = [1.0f32, 1.0, 1.0];
//! let mut y = [0.0f32; 2];
//! sparse_linear_forward(&w, 1, &x, None, Activation::Identity, &mut y)?;
//! assert_eq!(y, [3.0, 3.0]);
//! # Ok::<(), slimnet_kernels::KernelError>(())
//! ```

mod bsr;
mod csc;
mod csr;
mod driver;
mod format;
mod nm;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use bsr::BsrMatrix;
pub use csc::{csc_matvec, CscMatrix};
pub use csr::CsrMatrix;
pub use driver::{sparse_conv2d_forward, sparse_linear_forward, spmm, spmm_with_isa};
pub use format::{choose_format, DenseMatrix, SparseFormat, SparseWeight, CSR_MAX_DENSITY};
pub use nm::NmMatrix;

use crate::isa::Isa;
use crate::Activation;

mod sealed {
    pub trait Sealed {}
}

/// A sparse `[rows, cols]` f32 matrix the kernels can multiply with dense matrices.
///
/// Implemented by [`CsrMatrix`], [`BsrMatrix`], [`NmMatrix`] and [`SparseWeight`]; sealed.
pub trait SparseMatrix: sealed::Sealed + Sync {
    /// Number of rows (output features or channels).
    fn rows(&self) -> usize;
    /// Number of columns (input features, or `I * kh * kw`).
    fn cols(&self) -> usize;
    /// Number of stored values (explicit zeros inside blocks or N:M groups count).
    fn nnz(&self) -> usize;
    /// The matrix as a dense row-major `[rows, cols]` buffer.
    fn to_dense(&self) -> Vec<f32>;
    /// Bytes of the compact representation (values plus indices).
    fn storage_bytes(&self) -> usize;
    /// Fraction of stored values, `nnz / (rows * cols)`.
    fn density(&self) -> f64 {
        let total = self.rows() * self.cols();
        if total == 0 {
            0.0
        } else {
            self.nnz() as f64 / total as f64
        }
    }
    /// Row ranges handed to threads start at multiples of this (the block height).
    #[doc(hidden)]
    fn row_align(&self) -> usize {
        1
    }
    /// `c[r0..r1, :] = act(W[r0..r1, :] * b + bias[r0..r1])` with `b` row-major `[cols, n]`
    /// and `c` holding rows `r0..r1` of a row-major `[rows, n]` result.
    ///
    /// # Panics
    /// When a buffer is too short or the row range is not aligned (checked with `assert!`).
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    fn spmm_rows(
        &self,
        isa: Isa,
        r0: usize,
        r1: usize,
        b: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    );
}
