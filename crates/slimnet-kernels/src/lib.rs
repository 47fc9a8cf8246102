//! Compute kernels for slimnet.
//!
//! This is the leaf crate of the workspace: plain functions over slices, with no notion of a layer.
//! Every kernel has a portable scalar path; faster variants are chosen at run time.
//!
//! - [`dense`]: f32 GEMM glue, im2col / col2im, convolution forward and backward, linear layers.
//! - [`int8`]: u8 x i8 GEMM, convolution and depthwise with fixed-point requantization, and
//!   the same for CSR sparse weights.
//! - [`sparse`]: CSR, block-sparse and N:M sparse weights times dense activations.
//! - [`isa`]: run-time choice of scalar, AVX2, AVX-512 or (int8) AMX kernel variants.
//! - [`threads`]: the thread count the kernels use.
//!
//! Safe entry points check lengths and shapes and return [`KernelError`]; they never panic on bad sizes.
//!
//! ```
//! use slimnet_kernels::dense::conv2d_forward;
//! use slimnet_kernels::{Activation, ConvGeometry};
//! // one 1-channel 3x3 image, one 2x2 averaging filter, no padding
//! let g = ConvGeometry::new(1, 1, 3, 3, 1, 2, 2);
//! let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
//! let w = vec![0.25f32; 4];
//! let mut y = vec![0.0f32; g.output_len()];
//! conv2d_forward(&g, &x, &w, None, Activation::Identity, &mut y).unwrap();
//! assert_eq!(y, vec![2.0, 3.0, 5.0, 6.0]);
//! ```
#![warn(missing_docs)]

mod activation;
mod aligned;
pub mod dense;
mod error;
mod geometry;
pub mod int8;
pub mod isa;
mod scratch;
pub mod sparse;
pub mod threads;

pub use activation::Activation;
pub use error::{KernelError, Result};
pub use geometry::ConvGeometry;
pub use isa::Isa;
