//! Reading ONNX: a `ModelProto` becomes a slimnet [`Graph`] of core layers (and the few layers
//! of [`crate::layers`] where core has none).
//!
//! Initializers and `Constant` nodes are weights; chains of shape arithmetic on constants
//! (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, as PyTorch writes `x.view(x.size(0),
//! -1)`) fold to constants at import, using the input shape. Every node is checked against
//! the supported ops before the graph is built, so an unsupported op fails the import with an
//! error naming the node, its op type and the opset, before anything runs.

mod attrs;
mod fold;
mod importer;
mod ops;
mod quant_ops;
mod shape_ops;
pub(crate) mod tensor;
mod upsample_ops;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use prost::Message;
use slimnet_core::{Graph, Layer};
use slimnet_kernels::int8::QuantParams;

use crate::error::{OnnxError, Result};
use crate::proto::{type_proto, ModelProto, ValueInfoProto};
pub(crate) use importer::{display_name, Importer, Val};
use slimnet_core::tensor::checked_len;

/// Lowest opset of the default domain that the reader accepts.
pub const MIN_OPSET: i64 = 6;
/// Highest opset of the default domain that the reader accepts (the supported ops kept their
/// float semantics up to it; later opsets only added element types).
pub const MAX_OPSET: i64 = 25;

/// The op types the reader imports (default domain). Constant-only ops (`Shape`, `Gather`,
/// `Cast`, `ConstantOfShape`, ...) are accepted where they fold to constants; `Slice`, `Neg`
/// and the arithmetic fold on constants and become layers on activations.
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "InstanceNormalization",
    "Relu",
    "Clip",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Abs",
    "Elu",
    "Selu",
    "Softplus",
    "Softsign",
    "ReduceMean",
    "ReduceSum",
    "Concat",
    "Softmax",
    "LogSoftmax",
    "Dropout",
    "Identity",
    "Pad",
    "Resize",
    "Upsample",
    "Constant",
    "Shape",
    "Gather",
    "Cast",
    "Slice",
    "Split",
    "ConstantOfShape",
    "Neg",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
];

/// Builds the int8 form of a float layer (see [`Int8Import::layer`]).
pub type Int8LayerFn = fn(
    float: &dyn Layer,
    input: QuantParams,
    output: Option<QuantParams>,
) -> slimnet_core::Result<Box<dyn Layer>>;

/// Constructors of int8 layers, which live in a crate this one does not depend on
/// (slimnet-quant); the facade `slimnet` fills them in. Without them, `QuantizeLinear` of an
/// activation, `QLinearConv` and `QLinearMatMul` are unsupported (`DequantizeLinear`,
/// `ConvInteger` and `MatMulInteger` import as float layers either way).
#[derive(Clone, Copy)]
pub struct Int8Import {
    /// The int8 form of `float` (a `Conv2d` or `Linear` with the dequantized weight and bias)
    /// reading codes quantized with `input`, writing codes of `output` (f32 when `None`).
    pub layer: Int8LayerFn,
    /// A layer quantizing its input to codes of `params` (ONNX `QuantizeLinear`).
    pub quantize: fn(params: QuantParams) -> Box<dyn Layer>,
}

impl std::fmt::Debug for Int8Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Int8Import")
    }
}

/// How to read a model.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// The input shape to infer shapes with (and to fold `Shape` ops with); by default the
    /// model's declared input shape, with symbolic sizes (a batch `N`) read as 1.
    pub input_shape: Option<Vec<usize>>,
    /// The folder that external tensor data is relative to (set by [`load`]).
    pub base_dir: Option<PathBuf>,
    /// Constructors of int8 layers for the quantized ops.
    pub int8: Option<Int8Import>,
}

impl ImportOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Infers shapes for this input shape.
    pub fn with_input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Imports the quantized ops with these int8 layer constructors.
    pub fn with_int8(mut self, int8: Int8Import) -> Self {
        self.int8 = Some(int8);
        self
    }

    /// Reads external data relative to `dir`.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }
}

/// An imported model: the graph, with what the ONNX file said about its input and output.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Imported {
    /// The graph.
    pub graph: Graph,
    /// The input shape the shapes were inferred with.
    pub input_shape: Vec<usize>,
    /// The inferred output shape.
    pub output_shape: Vec<usize>,
    /// The ONNX name of the input.
    pub input_name: String,
    /// The ONNX name of the output.
    pub output_name: String,
    /// The opset of the default domain.
    pub opset: i64,
}

/// Parses ONNX protobuf bytes (no import).
///
/// # Errors
/// [`OnnxError::Decode`] for bytes that are not a `ModelProto`.
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))
}

/// Imports a model from ONNX bytes with default options.
///
/// # Errors
/// As [`import`].
pub fn from_bytes(bytes: &[u8]) -> Result<Imported> {
    from_bytes_with(bytes, &ImportOptions::default())
}

/// Imports a model from ONNX bytes.
///
/// # Errors
/// As [`import`].
pub fn from_bytes_with(bytes: &[u8], opts: &ImportOptions) -> Result<Imported> {
    import(&decode(bytes)?, opts)
}

/// Imports an `.onnx` file (external data is read from its folder).
///
/// # Errors
/// I/O errors, or as [`import`].
pub fn load(path: impl AsRef<Path>) -> Result<Imported> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| OnnxError::io(path, e))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    from_bytes_with(&bytes, &ImportOptions::new().with_base_dir(dir))
}

/// Imports a parsed model.
///
/// # Errors
/// An opset outside [`MIN_OPSET`]`..=`[`MAX_OPSET`], an op outside [`SUPPORTED_OPS`] (named
/// with its node and opset), a graph with other than one input and one output, malformed
/// tensors or attributes, and shapes that do not fit.
pub fn import(model: &ModelProto, opts: &ImportOptions) -> Result<Imported> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map_or(1, |o| o.version());
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(OnnxError::Opset {
            opset,
            min: MIN_OPSET,
            max: MAX_OPSET,
        });
    }
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::graph("the model has no graph"))?;
    for n in &g.node {
        let domain_ok = matches!(n.domain(), "" | "ai.onnx");
        if !domain_ok || !SUPPORTED_OPS.contains(&n.op_type()) {
            let op = if domain_ok {
                n.op_type().to_string()
            } else {
                format!("{}::{}", n.domain(), n.op_type())
            };
            return Err(OnnxError::Unsupported {
                node: display_name(n),
                op,
                opset,
                reason: "no slimnet layer for this op".into(),
            });
        }
    }
    let mut imp = Importer {
        opset,
        graph: Graph::new(),
        vals: HashMap::new(),
        uses: HashMap::new(),
        base: opts.base_dir.clone(),
        folded: 0,
        int8: opts.int8,
        domain: HashMap::new(),
    };
    for t in &g.initializer {
        let c = tensor::from_proto(t, imp.base.as_deref())?;
        imp.vals
            .insert(t.name().to_string(), Val::Const(Rc::new(c)));
    }
    if !g.sparse_initializer.is_empty() {
        return Err(OnnxError::graph("sparse initializers are not supported"));
    }
    let inputs: Vec<&ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !imp.vals.contains_key(i.name()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(OnnxError::graph(format!(
            "{} inputs that are not initializers; a slimnet graph has exactly one",
            inputs.len()
        )));
    };
    let [output] = g.output.as_slice() else {
        return Err(OnnxError::graph(format!(
            "{} outputs; a slimnet graph has exactly one",
            g.output.len()
        )));
    };
    let input_shape = match &opts.input_shape {
        Some(s) => s.clone(),
        None => declared_shape(input)?,
    };
    checked_len(&input_shape)
        .ok()
        .filter(|_| input_shape.iter().all(|&d| (1..=1 << 24).contains(&d)))
        .ok_or_else(|| {
            OnnxError::graph(format!(
                "input shape {input_shape:?}: sizes must be in 1..=2^24, at most 2^31 elements"
            ))
        })?;
    let x = imp.graph.input();
    imp.vals
        .insert(input.name().to_string(), Val::Act(x, input_shape.clone()));
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *imp.uses.entry(i.clone()).or_default() += 1;
        }
    }
    *imp.uses.entry(output.name().to_string()).or_default() += 1;
    for n in &g.node {
        imp.node(n)?;
    }
    let (out, output_shape) = match imp.vals.get(output.name()) {
        Some(Val::Act(id, s)) => (*id, s.clone()),
        Some(Val::Const(_)) => {
            return Err(OnnxError::graph(format!(
                "the output `{}` is a constant, not computed from the input",
                output.name()
            )))
        }
        None => {
            return Err(OnnxError::graph(format!(
                "no node writes the output `{}`",
                output.name()
            )))
        }
    };
    imp.graph.set_output(out)?;
    Ok(Imported {
        graph: imp.graph,
        input_shape,
        output_shape,
        input_name: input.name().to_string(),
        output_name: output.name().to_string(),
        opset,
    })
}

/// The declared shape of an input: symbolic or missing sizes read as 1.
fn declared_shape(v: &ValueInfoProto) -> Result<Vec<usize>> {
    let t = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => {
            return Err(OnnxError::graph(format!(
                "input `{}` is not a tensor",
                v.name()
            )))
        }
    };
    if t.elem_type() != tensor::dtype::FLOAT {
        return Err(OnnxError::graph(format!(
            "input `{}` has element type {}; slimnet reads f32 inputs",
            v.name(),
            t.elem_type()
        )));
    }
    let shape = t.shape.as_ref().ok_or_else(|| {
        OnnxError::graph(format!("input `{}` declares no shape; give one", v.name()))
    })?;
    use crate::proto::tensor_shape_proto::dimension::Value as D;
    shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(D::DimValue(v)) if v > 0 => {
                usize::try_from(v).map_err(|_| OnnxError::graph(format!("input size {v}")))
            }
            Some(D::DimValue(v)) if v < 0 => Err(OnnxError::graph(format!("input size {v}"))),
            _ => Ok(1),
        })
        .collect()
}
