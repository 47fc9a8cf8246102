//! slimnet-onnx: ONNX in and out for slimnet.
//!
//! - Reading ([`reader`]): an ONNX model (opsets [`reader::MIN_OPSET`] to
//!   [`reader::MAX_OPSET`]) becomes a slimnet [`Graph`](slimnet_core::Graph) of core layers
//!   (padding, transposed convolutions, resizing and instance normalization among them), plus
//!   the few layers of [`layers`] where core has none (clamps, arithmetic with constants,
//!   reshapes, ONNX-style pooling). Initializers and `Constant` nodes are weights, named after
//!   their ONNX node (`.` becomes `_`); shape arithmetic on constants folds at import; an op
//!   outside [`reader::SUPPORTED_OPS`] is an error naming the node, op type and opset.
//!   Quantized ops (`QLinearConv`, `QLinearMatMul`, `QuantizeLinear`, ...) become
//!   slimnet-quant's int8 layers through [`reader::Int8Import`] constructors, which the facade
//!   passes (`slimnet::load`).
//! - Writing ([`writer`]): any slimnet graph becomes an ONNX model (opset
//!   [`writer::EXPORT_OPSET`]): core layers as themselves, nested graphs inlined, layers of other
//!   crates through an [`ExportRegistry`] keyed by layer type (the facade `slimnet` registers
//!   the int8 layers of slimnet-quant) or their core form
//!   ([`Layer::to_core`](slimnet_core::Layer::to_core)).
//!
//! - PyTorch checkpoints ([`pth`]): state dicts of the legacy `torch.save` format, read without
//!   PyTorch and without executing anything, and EfficientNet-Lite0 built from one
//!   ([`pth::efficientnet_lite0`]).
//!
//! The protobuf code is generated from `onnx.proto` once and committed (see [`proto`]), so
//! building needs no `protoc`.
//!
//! ```
//! use slimnet_core::{models, tensor, Layer};
//! let model = models::lenet5(&mut tensor::rng(0))?;
//! let bytes = slimnet_onnx::to_bytes(&model, &[1, 1, 28, 28], &slimnet_onnx::ExportRegistry::core())?;
//! let back = slimnet_onnx::from_bytes(&bytes)?;
//! assert_eq!(back.input_shape, vec![1, 1, 28, 28]);
//! let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! // the batch size stays free: the file was written for 1, it runs 2
//! assert!(tensor::max_abs_diff(&back.graph.forward(&x)?, &model.forward(&x)?) < 1e-5);
//! // parameters keep their paths
//! assert!(back.graph.layer("conv1").is_some());
//! # Ok::<(), slimnet_onnx::OnnxError>(())
//! ```
#![warn(missing_docs)]

pub mod conformance;
mod error;
pub mod layers;
pub mod proto;
pub mod pth;
pub mod reader;
pub mod writer;

pub use error::{OnnxError, Result};
pub use layers::register;
pub use reader::{from_bytes, from_bytes_with, load, ImportOptions, Imported, Int8Import};
pub use writer::{attr, save, to_bytes, to_model, ExportRegistry, LayerExport};

/// Whether `bytes` look like an ONNX model rather than a safetensors file: a protobuf that
/// starts with the `ir_version` field (tag 1, varint) or another `ModelProto` field.
///
/// ```
/// use slimnet_core::{models, tensor};
/// let m = models::lenet300(&mut tensor::rng(0))?;
/// let onnx = slimnet_onnx::to_bytes(&m, &[1, 1, 28, 28], &slimnet_onnx::ExportRegistry::core())?;
/// assert!(slimnet_onnx::looks_like_onnx(&onnx));
/// assert!(!slimnet_onnx::looks_like_onnx(&slimnet_core::io::to_bytes(&m)?));
/// # Ok::<(), slimnet_onnx::OnnxError>(())
/// ```
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    // ModelProto fields: 1 ir_version (varint), 2 producer_name, 3 producer_version,
    // 4 domain, 6 doc_string, 7 graph, 8 opset_import, 14 metadata_props (length-delimited),
    // 5 model_version (varint). A safetensors file starts with a little-endian u64 header size.
    match bytes.first() {
        Some(&b) => {
            matches!(
                b,
                0x08 | 0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42 | 0x72
            ) && reader::decode(bytes).is_ok()
        }
        None => false,
    }
}

/// The README's code, compiled as documentation tests so that it cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
