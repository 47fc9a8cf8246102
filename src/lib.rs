//! slimnet: compress and accelerate convolutional neural networks.
//!
//! This facade re-exports the workspace crates as modules:
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`kernels`] | `slimnet-kernels` | dense, sparse and int8 compute kernels |
//! | [`core`] | `slimnet-core` | tensors, layers, graphs, training, datasets, model files |
//!
//! No feature flags yet.
#![warn(missing_docs)]

pub use slimnet_core as core;
pub use slimnet_kernels as kernels;
