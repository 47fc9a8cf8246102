//! Quantized deploy layers: boundaries ([`Quantize`], [`Dequantize`]), int8 layers on the integer
//! kernels ([`QConv2d`], [`QLinear`]), [`DynamicQLinear`], and [`WeightOnly`] packed weights.
//!
//! Between int8 layers a graph carries u8 activation codes. slimnet-core's `Graph` moves f32
//! tensors between nodes, so the codes travel as exact integers `0..=255` in f32 tensors (a
//! lossless encoding: no value is ever dequantized between two int8 layers); each int8 layer
//! reads them back as u8 and hands them to the kernels.

mod boundary;
mod dynamic;
mod int8;
mod store;
mod weight_only;

pub use boundary::{Dequantize, Quantize};
pub use dynamic::DynamicQLinear;
pub use int8::{QConv2d, QLinear, QOut};
pub use weight_only::WeightOnly;

#[allow(unused_imports)]
pub(crate) use weight_only::with_weight;

use slimnet_core::io::Registry;

/// Adds the deploy layer kinds of this module to a registry.
pub(crate) fn register(r: &mut Registry) {
    r.register("Quantize", boundary::load_quantize);
    r.register("Dequantize", boundary::load_dequantize);
    r.register("QConv2d", int8::load_qconv);
    r.register("QLinear", int8::load_qlinear);
    r.register("DynamicQLinear", dynamic::load_dynamic);
    r.register("WeightOnly", weight_only::load_weight_only);
}

#[cfg(test)]
mod tests;
