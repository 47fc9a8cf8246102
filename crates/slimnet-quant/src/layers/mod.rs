//! Quantized deploy layers: int8 layers on the integer kernels ([`QConv2d`], [`QLinear`], with
//! dense or sparse weights), [`DynamicQLinear`], [`WeightOnly`] packed weights, and explicit
//! boundaries ([`Quantize`], [`Dequantize`]).
//!
//! Between int8 layers a graph carries u8 activation codes ([`slimnet_core::value::Value`]):
//! no value is dequantized between two int8 layers, and an int8 layer next to an f32 layer
//! converts on that edge only.

mod boundary;
mod dynamic;
mod int8;
mod sparse_store;
mod store;
mod weight_only;

pub use boundary::{Dequantize, Quantize};
pub use dynamic::DynamicQLinear;
pub use int8::{Int8Layer, QConv2d, QLinear, QOut, SPARSE_DENSITY};
pub use weight_only::WeightOnly;

#[allow(unused_imports)]
pub(crate) use weight_only::with_weight;

use slimnet_core::io::Registry;

/// Adds the deploy layer kinds of this module to a registry.
pub(crate) fn register(r: &mut Registry) {
    r.register("Quantize", boundary::load_quantize);
    r.register("Dequantize", boundary::load_dequantize);
    r.register("QConv2d", int8::load_qconv);
    r.register("QSparseConv2d", int8::load_qconv);
    r.register("QLinear", int8::load_qlinear);
    r.register("QSparseLinear", int8::load_qlinear);
    r.register("DynamicQLinear", dynamic::load_dynamic);
    r.register("WeightOnly", weight_only::load_weight_only);
}

#[cfg(test)]
mod tests;
