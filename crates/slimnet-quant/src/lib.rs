//! slimnet-quant: quantization schemes, calibration observers, int8 deploy layers, post-training
//! and quantization-aware training, and Deep Compression weight sharing.
#![warn(missing_docs)]

mod error;
mod eval;
pub mod layers;
pub mod observer;
pub mod pack;
pub mod ptq;
pub mod qat;
pub mod scheme;
pub mod share;

pub use error::{QuantError, Result};

/// Teaches a model-file registry every layer kind of this crate.
pub fn register(registry: &mut slimnet_core::io::Registry) {
    layers::register(registry);
    registry.register("FakeQuantize", qat::load_fake_quantize);
    registry.register("QatWeights", qat::load_qat_weights);
    registry.register("SharedWeights", share::load_shared);
}
