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
//! | [`onnx`] | `slimnet-onnx` | ONNX import ([`load`] reads `.onnx` files) and export ([`export_onnx`]) |
//!
//! and adds [`pipeline`]: compression steps composed into one measured [`pipeline::Pipeline`],
//! and TOML recipes that map onto it (what the `slimnet` command line runs).
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
pub use slimnet_onnx as onnx;
pub use slimnet_prune as prune;
pub use slimnet_quant as quant;

pub mod pipeline;

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
    onnx::register(&mut r);
    r
}

/// Loads a model: a slimnet model file (safetensors) holding layers of any slimnet crate (see
/// [`registry`]), or an ONNX model (imported with [`onnx::load`], its declared input shape
/// with a symbolic batch read as 1). The content decides (a safetensors header, or ONNX
/// protobuf); when it says neither, the extension picks the loader that reports the error.
///
/// ```
/// use slimnet::core::{models, tensor, Layer};
/// let model = models::lenet5(&mut tensor::rng(0))?;
/// let path = std::env::temp_dir().join(format!("slimnet-doc-load-{}.onnx", std::process::id()));
/// slimnet::export_onnx(&model, &[1, 1, 28, 28], &path)?;
/// let back = slimnet::load(&path)?;
/// let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// assert!(tensor::max_abs_diff(&back.forward(&x)?, &model.forward(&x)?) < 1e-5);
/// # std::fs::remove_file(path).ok();
/// # Ok::<(), slimnet::Error>(())
/// ```
///
/// # Errors
/// As [`core::io::load_with`] or [`onnx::load`].
pub fn load(path: impl AsRef<Path>) -> Result<core::Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| {
        core::Error::Io(std::io::Error::new(
            e.kind(),
            format!("reading {}: {e}", path.display()),
        ))
    })?;
    let safetensors = bytes.len() > 8 && bytes[8] == b'{';
    let by_ext = path.extension().and_then(|e| e.to_str()) == Some("onnx");
    if !safetensors && (onnx::looks_like_onnx(&bytes) || by_ext) {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let opts = onnx::ImportOptions::new()
            .with_base_dir(dir)
            .with_int8(int8_import());
        return Ok(onnx::from_bytes_with(&bytes, &opts)?.graph);
    }
    core::io::from_bytes(&bytes, &registry()).map_err(|e| match e {
        core::Error::ModelFile(m) => core::Error::ModelFile(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// The constructors of slimnet-quant's int8 layers that the ONNX reader uses for the
/// quantized ops (`QLinearConv` and `QLinearMatMul` become `QConv2d` and `QLinear`,
/// `QuantizeLinear` a `Quantize` layer); [`load`] passes them.
pub fn int8_import() -> onnx::reader::Int8Import {
    use quant::layers::{Int8Layer, QConv2d, QLinear, QOut, Quantize};
    fn layer(
        float: &dyn core::Layer,
        input: kernels::int8::QuantParams,
        output: Option<kernels::int8::QuantParams>,
    ) -> Result<Box<dyn core::Layer>> {
        let out = output.map_or(QOut::F32, QOut::Codes);
        if let Some(c) = float.downcast_ref::<core::layers::Conv2d>() {
            Ok(Box::new(QConv2d::from_conv(c, input)?.with_output(out)))
        } else if let Some(l) = float.downcast_ref::<core::layers::Linear>() {
            Ok(Box::new(QLinear::from_linear(l, input)?.with_output(out)))
        } else {
            Err(Error::Invalid(format!(
                "no int8 form of a {} layer",
                float.kind()
            )))
        }
    }
    onnx::reader::Int8Import {
        layer,
        quantize: |p| Box::new(Quantize::new(p)),
    }
}

/// The ONNX exporters of every slimnet crate: the core layers (and slimnet-onnx's), and
/// slimnet-quant's int8 layers written as `QLinearConv` / `ConvInteger` / `MatMulInteger`
/// with their i8 weights, per-channel scales and i32 biases, so ONNX Runtime runs them in
/// int8. Other layers (sparse, low-rank, weight-shared) are written through their core form.
///
/// ```
/// let reg = slimnet::export_registry();
/// assert!(reg.contains::<slimnet::quant::layers::QConv2d>());
/// ```
pub fn export_registry() -> onnx::ExportRegistry {
    use onnx::writer::int8::{export, QuantizedLayer, QuantizedShape};
    use quant::layers::{Dequantize, Int8Layer, QConv2d, QLinear, QOut, Quantize};
    fn parts<L: Int8Layer>(l: &L, shape: QuantizedShape) -> QuantizedLayer {
        let (weight, scales) = l.weight_i8();
        QuantizedLayer {
            weight,
            scales,
            bias: l.bias_i32().to_vec(),
            input: l.input_params(),
            output: match l.output() {
                QOut::Codes(p) => Some(p),
                _ => None,
            },
            relu: l.relu(),
            shape,
        }
    }
    let mut r = onnx::ExportRegistry::core();
    r.register::<QConv2d>(|l, cx| export(cx, &parts(l, QuantizedShape::Conv(l.config().clone()))));
    r.register::<QLinear>(|l, cx| {
        let c = l.config();
        let shape = QuantizedShape::Linear {
            inputs: c.in_features,
            outputs: c.out_features,
        };
        export(cx, &parts(l, shape))
    });
    r.register::<Quantize>(|l, cx| {
        let y = cx.input_codes(l.params());
        cx.set_output(y, core::ValueKind::U8(l.params()));
        Ok(())
    });
    r.register::<Dequantize>(|_, cx| {
        let y = cx.input_f32();
        cx.set_output(y, core::ValueKind::F32);
        Ok(())
    });
    r
}

/// Writes a model (layers of any slimnet crate, see [`export_registry`]) to an ONNX file for
/// inputs of shape `input` (the batch size stays free in the file); [`load`] reads it back.
///
/// # Errors
/// An input shape the model rejects, a layer that cannot be exported, I/O errors.
pub fn export_onnx(model: &core::Graph, input: &[usize], path: impl AsRef<Path>) -> Result<()> {
    Ok(onnx::save(model, input, path, &export_registry())?)
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
