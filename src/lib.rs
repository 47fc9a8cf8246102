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
//! No feature flags yet.
#![warn(missing_docs)]

pub use slimnet_core as core;
pub use slimnet_decompose as decompose;
pub use slimnet_distill as distill;
pub use slimnet_kernels as kernels;
pub use slimnet_prune as prune;
pub use slimnet_quant as quant;

use std::path::Path;

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
pub fn load(path: impl AsRef<Path>) -> core::Result<core::Graph> {
    core::io::load_with(path, &registry())
}
