//! slimnet-quant: quantization schemes, calibration observers, int8 deploy layers, post-training
//! and quantization-aware training, and Deep Compression weight sharing.
//!
//! - [`scheme`]: affine / symmetric, per-tensor / per-channel weight quantization at 2-8 bits;
//!   [`pack`] stores sub-8-bit codes packed.
//! - [`observer`]: min-max, moving-average min-max, percentile, MSE-optimal and KL-entropy
//!   (histogram) range observers.
//! - [`ptq`]: static int8 quantization of a whole graph (BatchNorm folded, calibration with a
//!   progress bar, Quantize / Dequantize boundaries placed automatically, u8 activations between
//!   int8 layers with fused ReLU), dynamic quantization of Linear, weight-only quantization.
//! - [`qat`]: fake-quant wrappers with a straight-through estimator, freezable observers,
//!   conversion to the int8 deploy graph.
//! - [`share`]: weight sharing (k-means codebooks, centroid fine-tuning, packed or Huffman-coded
//!   indices, pruning masks respected).
//! - [`layers`]: the deploy layers; [`register`] teaches a model-file registry all kinds of this
//!   crate, so files hold int8 weights, scales, zero points and codebooks at their real size.
//!
//! ```
//! use slimnet_core::{io, models, tensor, Layer};
//! use slimnet_quant::ptq::{quantize_static, PtqConfig};
//! let model = models::resnet_small(&mut tensor::rng(0))?;
//! let calib = (0..2).map(|i| tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(i)));
//! let int8 = quantize_static(&model, calib, &PtqConfig::default())?;
//! let bytes = io::to_bytes(&int8)?;
//! let mut registry = io::Registry::core();
//! slimnet_quant::register(&mut registry);
//! let back = io::from_bytes(&bytes, &registry)?;
//! let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(5));
//! assert_eq!(back.forward(&x)?, int8.forward(&x)?);
//! # Ok::<(), slimnet_quant::QuantError>(())
//! ```
//!
//! Errors: one [`QuantError`] enum; variants name the layer or node path. Bad input is handled
//! as documented: NaN / infinity during calibration and an empty calibration set are errors,
//! bit widths are checked, a zero range gets scale 1 (constant zero stays exact), and every
//! integer result saturates (i32 biases, u8 codes), never wraps.
#![warn(missing_docs)]

mod error;
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
