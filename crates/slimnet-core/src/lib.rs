//! slimnet-core: tensors, the [`Layer`] trait, graphs, standard layers, losses, optimizers, the
//! training loop, datasets, model files and the cost model.
//!
//! Conventions: activations NCHW, convolution weights OIHW, linear weights `[out, in]` (see
//! [`tensor`]). Inference is [`Layer::forward`] (`&self`); training is
//! [`Layer::forward_train`] then [`Layer::backward`].
//!
//! ```
//! use slimnet_core::{models, summary::Summary, tensor, Layer};
//! let model = models::lenet5(&mut tensor::rng(0))?;
//! let logits = model.forward(&tensor::zeros(&[1, 1, 28, 28]))?;
//! assert_eq!(logits.shape(), &[1, 10]);
//! let s = Summary::of(&model, &[1, 1, 28, 28])?;
//! assert_eq!(s.params(), 431_080);
//! # Ok::<(), slimnet_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod buffers;
pub mod data;
mod error;
pub mod graph;
pub mod io;
mod layer;
pub mod layers;
pub mod limits;
pub mod loss;
pub mod models;
pub mod optim;
mod param;
pub mod rewrite;
pub mod summary;
pub mod tensor;
pub mod timing;
pub mod train;
pub mod value;

pub use error::{Error, Result};
pub use graph::{Graph, Sequential};
pub use layer::{Cost, Layer, LayerBase, StoredTensor};
pub use param::Param;
/// The JSON library of [`Layer::config_json`] and model-file loaders, re-exported so that a
/// layer of your own needs no extra dependency.
pub use serde_json;
pub use tensor::Tensor;
pub use value::{Value, ValueKind};
