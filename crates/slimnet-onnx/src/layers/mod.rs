//! Layers that ONNX graphs need and slimnet-core does not have: clamping, PReLU, element-wise
//! arithmetic with a constant and unary functions, reductions over axes, reshapes, transposes
//! and slices, pooling with ONNX's asymmetric pads, dilations and ceil mode, softmax over any
//! axis and matrix products with a constant (a product of two activations is the graph node
//! [`Op::MatMul`](slimnet_core::graph::Op::MatMul)). Each is a
//! plain [`Layer`](slimnet_core::Layer) that model files know once [`register`] added its kind,
//! and that the writer exports as the ONNX op it came from.
//!
//! General padding ([`Pad`]), transposed convolutions ([`ConvTranspose2d`]) and nearest /
//! bilinear resizing ([`Resize2d`]) are general layers that live in
//! [`slimnet_core::layers`] (their model-file kinds are in
//! [`Registry::core`](slimnet_core::io::Registry::core)); they are re-exported here so that the
//! paths `slimnet_onnx::layers::Pad` etc. keep working.

mod clamp;
pub(crate) mod elementwise;
mod matmul;
mod pool;
mod prelu;
mod reduce;
pub(crate) mod reshape;
mod softmax;

pub use clamp::Clamp;
pub use elementwise::{BinaryOp, ConstOp, Unary, UnaryOp};
pub use matmul::MatMul;
pub use pool::{Pool2d, PoolKind};
pub use prelu::PRelu;
pub use reduce::{Reduce, ReduceOp};
pub use reshape::{Reshape, Slice, Transpose};
pub use slimnet_core::layers::{
    ConvTranspose2d, ConvTransposeConfig, CoordMode, NearestMode, Pad, PadMode, Resize2d,
    ResizeMode, ResizeTarget,
};
pub use softmax::SoftmaxAxis;

use slimnet_core::io::Registry;

/// Adds the layer kinds of this crate to a model-file registry, so a saved imported model
/// loads again (`Pad`, `ConvTranspose2d` and `Resize2d` are core kinds, already in
/// [`Registry::core`]).
///
/// ```
/// let mut r = slimnet_core::io::Registry::core();
/// slimnet_onnx::layers::register(&mut r);
/// assert!(r.contains("Pad") && r.contains("Pool2d") && r.contains("Resize2d"));
/// ```
pub fn register(r: &mut Registry) {
    r.register("Clamp", clamp::load);
    r.register("ConstOp", elementwise::load);
    r.register("Reshape", reshape::load_reshape);
    r.register("Transpose", reshape::load_transpose);
    r.register("Pool2d", pool::load);
    r.register("SoftmaxAxis", softmax::load);
    r.register("MatMul", matmul::load);
    r.register("Unary", elementwise::load_unary);
    r.register("Reduce", reduce::load);
    r.register("Slice", reshape::load_slice);
    r.register("PRelu", prelu::load);
}

/// Resolves a possibly negative axis against a rank.
pub(crate) fn axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

#[cfg(test)]
mod tests;
