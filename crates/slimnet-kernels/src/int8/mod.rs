//! int8 kernels: u8 activations (affine, with a zero point) times i8 weights (symmetric, per
//! output channel) into i32 accumulators, then requantized to u8 with a fixed-point multiplier
//! or dequantized to f32.
//!
//! - [`QuantParams`], [`quantize_u8`], [`dequantize_u8`]: activation quantization,
//!   vectorized.
//! - [`quantize_weights_per_channel`], [`QMatrix`]: weights, packed once for the kernels;
//!   [`quantize_weights_per_channel_bits`] for 7-bit ("narrow", [`NARROW_MAX`]) weights.
//! - [`Requant`]: the fixed-point multiplier and shift for a real scale.
//! - [`qlinear_forward`], [`qconv2d_forward`], [`qdepthwise_forward`]: the layers' kernels,
//!   writing a [`QOutput`].
//! - [`QCsrMatrix`], [`qsparse_linear_forward`], [`qsparse_conv2d_forward`]: sparse (CSR)
//!   weights with the same quantization and outputs.
//! - [`max_pool_2x2_u8`]: 2x2 max pooling of codes (the max of codes is the code of the max).
//!
//! Variants: scalar reference; AVX2 (u8 and i8 widened to i16, `vpmaddwd`: exact, unlike
//! `vpmaddubsw` whose i16 pair sums saturate; on weights whose levels are all within
//! `±`[`NARROW_MAX`], such as 7-bit ones, `vpmaddubsw` is exact and the batch-1 sparse kernel
//! uses it); AVX-512 VNNI (`vpdpbusd`); AMX tiles (`tdpbuud`, for products with more than one
//! column). All are bit-exact with the reference.
//!
//! Convolutions with stride 1 unfold from a copy of the input padded with the zero point
//! (`direct`): no per-row edge cases, and with AVX-512 VBMI each 64-column tile of the unfolding
//! is one byte permute; with VNNI and a u8 output the requantization is fused into the
//! product's tiles. The requantization itself (`requant`) runs 16 values a vector in 32-bit
//! lanes, and the multipliers of a weight's channels are kept for the last pair of activation
//! scales. Batch-1 sparse linear layers skip the inputs at the zero point when that is cheaper
//! (a column walk, see [`qsparse_linear_forward`]).
//!
//! One thread, batch 1, u8 outputs (`benches/int8_small.rs`, AMD Zen 4 with VBMI + VNNI): the
//! LeNet-5 conv1 (1 to 20 channels, 5x5, 28x28) 3.2 us, its conv2 core (10 to 23, 5x5, 12x12)
//! 2.6 us, fc1 (500x800 at 5-10% density, half the inputs at the zero point) 2.3-2.7 us.

#[cfg(target_arch = "x86_64")]
mod amx;
mod convert;
mod direct;
mod gemm;
mod ops;
mod pool;
mod quant;
mod requant;
#[cfg(target_arch = "x86_64")]
mod requant_x86;
#[cfg(test)]
mod small_tests;
mod sparse;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use convert::{add_u8, dequantize_u8, quantize_u8};
pub use gemm::{QMatrix, MAX_INNER};
pub use ops::{
    qconv2d_forward, qconv2d_forward_with_isa, qdepthwise_forward, qdepthwise_forward_with_isa,
    qlinear_forward, qlinear_forward_with_isa, QOutput,
};
pub use pool::max_pool_2x2_u8;
pub use quant::{
    quantize_weights_per_channel, quantize_weights_per_channel_bits, QuantParams, Requant,
    NARROW_MAX,
};
pub use sparse::{
    qsparse_conv2d_forward, qsparse_conv2d_forward_with_isa, qsparse_linear_forward,
    qsparse_linear_forward_with_isa, QCsrMatrix,
};
