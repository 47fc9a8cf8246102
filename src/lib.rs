//! slimnet: compress and accelerate convolutional neural networks.
//!
//! This facade re-exports the workspace crates as modules:
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`kernels`] | `slimnet-kernels` | dense, sparse and int8 compute kernels |
//! | [`core`] | `slimnet-core` | tensors, layers, graphs, training, datasets, model files, rewrite passes |
//! | [`decompose`] | `slimnet-decompose` | low-rank decompositions and layer rewrites |
//! | [`prune`] | `slimnet-prune` | pruning criteria, masks, schedules, sparse layers |
//! | [`quant`] | `slimnet-quant` | quantization schemes, calibration, QAT, int8 layers, weight sharing |
//! | [`distill`] | `slimnet-distill` | distillation losses, stage-wise teacher-student, light blocks |
//!
//! Every crate's error converts into [`Error`] without losing anything (the method crate's
//! error stays the source), so `?` works across crates in one function returning [`Result`].
//!
//! No feature flags yet.
#![warn(missing_docs)]

pub use slimnet_core as core;
pub use slimnet_decompose as decompose;
pub use slimnet_distill as distill;
pub use slimnet_kernels as kernels;
pub use slimnet_prune as prune;
pub use slimnet_quant as quant;

use std::path::Path;

/// The README's code, compiled as documentation tests so that it cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The error of every slimnet crate, converted losslessly: a method crate's error is kept
/// whole as the source of [`core::Error::Method`].
///
/// ```
/// fn prune_then_save() -> slimnet::Result<()> {
///     use slimnet::core::{models, tensor};
///     use slimnet::prune::{criterion::Magnitude, Pruner};
///     let mut model = models::lenet300(&mut tensor::rng(0))?;
///     Pruner::new(Magnitude).prune(&mut model, 1.5)?; // a prune error, through `?`
///     Ok(())
/// }
/// let e = prune_then_save().unwrap_err();
/// assert!(e.to_string().contains("sparsity 1.5"), "{e}");
/// let source = std::error::Error::source(&e).unwrap();
/// assert!(source.downcast_ref::<slimnet::prune::PruneError>().is_some());
/// ```
pub type Error = core::Error;

/// The result of every slimnet call, with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A model-file registry that knows every layer kind of every slimnet crate: the core layers,
/// sparse layers (prune), int8 and fake-quant layers (quant) and light blocks (distill).
///
/// ```
/// let reg = slimnet::registry();
/// for kind in ["Conv2d", "SparseLinear", "ChannelShuffle"] {
///     assert!(reg.contains(kind), "{kind}");
/// }
/// ```
pub fn registry() -> core::io::Registry {
    let mut r = core::io::Registry::core();
    prune::register(&mut r);
    quant::register(&mut r);
    distill::blocks::register(&mut r);
    r
}

/// Loads a model file holding layers of any slimnet crate (see [`registry`]).
///
/// # Errors
/// As [`core::io::load_with`].
pub fn load(path: impl AsRef<Path>) -> Result<core::Graph> {
    core::io::load_with(path, &registry())
}

/// Saves a model (any layers of any slimnet crate) to one safetensors file, written to a
/// temporary file and renamed; [`load`] reads it back.
///
/// ```
/// use slimnet::core::{models, tensor, Layer};
/// let model = models::lenet5(&mut tensor::rng(0))?;
/// let path = std::env::temp_dir().join(format!("slimnet-doc-{}.safetensors", std::process::id()));
/// slimnet::save(&model, &path)?;
/// let back = slimnet::load(&path)?;
/// let x = tensor::zeros(&[1, 1, 28, 28]);
/// assert_eq!(back.forward(&x)?, model.forward(&x)?);
/// # std::fs::remove_file(path).ok();
/// # Ok::<(), slimnet::Error>(())
/// ```
///
/// # Errors
/// As [`core::io::save`].
pub fn save(model: &core::Graph, path: impl AsRef<Path>) -> Result<()> {
    core::io::save(model, path)
}
