//! slimnet-quant: quantization schemes, calibration observers, int8 deploy layers, post-training
//! and quantization-aware training, and Deep Compression weight sharing.
#![warn(missing_docs)]

mod error;
mod eval;
pub mod layers;
pub mod observer;
pub mod pack;
pub mod ptq;
pub mod scheme;

pub use error::{QuantError, Result};

/// Teaches a model-file registry every layer kind of this crate.
pub fn register(registry: &mut slimnet_core::io::Registry) {
    layers::register(registry);
}
