//! slimnet-prune: importance criteria, masks, schedules, structured shrinking and sparse
//! deploy layers.
//!
//! The flow is *mask, fine-tune, convert*:
//! 1. a [`Pruner`] scores the weights of selected layers with a [`criterion::Criterion`] and
//!    sets 0/1 masks on their [`Param`](slimnet_core::Param)s (single weights, blocks or N:M;
//!    per layer or one global threshold);
//! 2. a [`schedule::PruneCallback`] raises the sparsity during training (one-shot, iterative or
//!    AGP) while the optimizers keep pruned weights at zero;
//! 3. [`convert::to_sparse`] swaps masked layers for [`sparse::SparseLinear`] /
//!    [`sparse::SparseConv2d`], which run on the sparse kernels and store their compact arrays,
//!    so the model file shrinks with the sparsity. [`register`] teaches a model-file registry
//!    to load them.
//!
//! [`structured`] removes whole filters and channels instead, giving a smaller dense model;
//! [`sensitivity`] sweeps each layer's sparsity against validation accuracy.
//!
//! ```
//! use slimnet_core::{io, models, rewrite::Selector, tensor, Layer};
//! use slimnet_prune::{convert, criterion::Magnitude, Pruner, Scope};
//! let mut model = models::lenet300(&mut tensor::rng(0))?;
//! let dense_bytes = io::to_bytes(&model)?.len();
//! Pruner::new(Magnitude).scope(Scope::Global).prune(&mut model, 0.92)?;
//! convert::to_sparse(&mut model, &[1, 1, 28, 28], Selector::All)?;
//! let bytes = io::to_bytes(&model)?;
//! assert!(bytes.len() * 5 < dense_bytes);
//! let mut registry = io::Registry::core();
//! slimnet_prune::register(&mut registry);
//! let back = io::from_bytes(&bytes, &registry)?;
//! let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! assert_eq!(model.forward(&x)?, back.forward(&x)?);
//! # Ok::<(), slimnet_prune::PruneError>(())
//! ```
#![warn(missing_docs)]

pub mod convert;
pub mod criterion;
mod error;
mod pattern;
mod pruner;
pub mod schedule;
pub mod sensitivity;
pub mod sparse;
pub mod structured;
mod walk;

pub use error::{PruneError, Result};
pub use pattern::Pattern;
pub use pruner::{
    accumulate_gradients, apply_masks, clear_masks, sparsity_report, LayerSparsity, Pruner, Scope,
    SparsityReport,
};
pub use sparse::register;
