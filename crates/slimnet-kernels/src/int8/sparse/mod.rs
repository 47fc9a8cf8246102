//! int8 sparse weights: [`QCsrMatrix`] (CSR with i8 values, one scale per row) times u8
//! activations, accumulated exactly in i32 and written through the same requantization as the
//! dense int8 kernels ([`QOutput`](super::QOutput)).
//!
//! - [`qsparse_linear_forward`]: `[batch, in]` inputs.
//! - [`qsparse_conv2d_forward`]: groups-1 convolution over u8 im2col columns padded with the
//!   input zero point.
//!
//! Variants, all bit-exact with the scalar reference for any thread count:
//!
//! - one input column (batch 1, or small batches one row at a time): AVX-512 VBMI + VNNI
//!   permute 128-byte windows of the input into place for `vpdpbusd`, over a layout of the
//!   weight in groups of 16 rows (`slices`); AVX2 (and AVX-512 without them) shuffles 16-byte
//!   windows with `vpshufb` over groups of 8 rows.
//!   When enough inputs sit at the zero point (after a ReLU, about half), a walk over the
//!   columns of the other inputs (`csc`, a column-major copy made on first use) is cheaper, and
//!   is chosen by a cost estimate: on the 500x800 layer at 5-10% density with half the inputs
//!   at the zero point, 6-10 us against 8-15 us gathering with AVX2; with VBMI only when most
//!   inputs are at the zero point.
//! - more columns: VNNI interleaves four rows of the transposed input per quad of non-zeros
//!   for `vpdpbusd`; AVX2 (and AVX-512 without VNNI) takes pairs through `vpmaddwd`.
//!
//! On the 4096x4096 layer at 90% sparsity (Zen 4, one thread, `benches/int8_sparse.rs`), against
//! the dense int8 kernel on the same values: 2.7x faster at batch 1 and 2.8x at batch 64 with
//! u8 outputs (5.5x and 2.7x with f32 outputs, which skip the per-call multipliers). At the
//! AVX2 level, 2.6x at batch 1 (175 against 449 us).

mod csc;
mod matrix;
mod ops;
mod product;
mod slices;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use matrix::QCsrMatrix;
pub use ops::{
    qsparse_conv2d_forward, qsparse_conv2d_forward_with_isa, qsparse_linear_forward,
    qsparse_linear_forward_with_isa,
};
