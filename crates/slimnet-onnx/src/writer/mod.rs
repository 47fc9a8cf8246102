//! Writing ONNX: any slimnet [`Graph`] becomes a `ModelProto`.
//!
//! Core layers (and this crate's) are written as the ONNX ops they are; nested graphs are
//! inlined; a layer of another crate is written by the exporter registered for its type in an
//! [`ExportRegistry`] (the facade registers slimnet-quant's int8 layers, written as
//! `QLinearConv` and integer ops so ONNX Runtime runs them in int8), else through its core form
//! ([`Layer::to_core`]: a sparse layer as its dense weights). Edges carry f32 or u8 codes like
//! a slimnet graph's: a value is quantized or dequantized only where its reader needs another
//! kind.

mod builder;
mod core;
pub mod int8;
mod upsample;

use std::any::TypeId;
use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use slimnet_core::graph::Op;
use slimnet_core::value::ValueKind;
use slimnet_core::{Graph, Layer};

pub use builder::{attr, LayerExport};
use builder::{Builder, Edge};

use crate::error::{OnnxError, Result};
use crate::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use crate::reader::tensor::dtype;

/// The opset of the default domain that exported files import.
pub const EXPORT_OPSET: i64 = 19;
/// The ONNX IR version of exported files.
pub const EXPORT_IR_VERSION: i64 = 9;

type ExportFn = Box<dyn Fn(&dyn Layer, &mut LayerExport<'_>) -> Result<()> + Send + Sync>;

/// Exporters keyed by layer type. [`ExportRegistry::core`] knows the core layers and this
/// crate's; other crates' layer types are added with [`register`](Self::register).
///
/// ```
/// use slimnet_core::layers::Flatten;
/// use slimnet_onnx::ExportRegistry;
/// let mut reg = ExportRegistry::core();
/// assert!(reg.contains::<Flatten>());
/// // an exporter of your own, here writing Flatten as Reshape to [N, -1]
/// reg.register::<Flatten>(|_, cx| {
///     let x = cx.input();
///     let shape = cx.init_i64("shape", &[2], &[0, -1]);
///     let y = cx.node("Reshape", &[&x, &shape], vec![]);
///     cx.set_output(y, cx.input_kind());
///     Ok(())
/// });
/// ```
pub struct ExportRegistry {
    map: HashMap<TypeId, ExportFn>,
}

impl std::fmt::Debug for ExportRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportRegistry")
            .field("types", &self.map.len())
            .finish()
    }
}

impl Default for ExportRegistry {
    fn default() -> Self {
        Self::core()
    }
}

impl ExportRegistry {
    /// A registry without exporters (layers go through their core form).
    pub fn empty() -> Self {
        Self {
            map: HashMap::new(),
        }
    }

    /// The exporters of the core layers and of [`crate::layers`].
    pub fn core() -> Self {
        let mut r = Self::empty();
        core::register(&mut r);
        upsample::register(&mut r);
        r
    }

    /// Adds (or replaces) the exporter of layer type `T`. It gets the layer and a
    /// [`LayerExport`] whose input is already of the kind the layer reads, and must call
    /// [`LayerExport::set_output`].
    pub fn register<T: Layer + 'static>(
        &mut self,
        f: impl Fn(&T, &mut LayerExport<'_>) -> Result<()> + Send + Sync + 'static,
    ) {
        self.map.insert(
            TypeId::of::<T>(),
            Box::new(move |l, cx| match l.as_any().downcast_ref::<T>() {
                Some(t) => f(t, cx),
                None => Err(cx.error("exporter called with a layer of another type")),
            }),
        );
    }

    /// Whether `T` has an exporter.
    pub fn contains<T: Layer + 'static>(&self) -> bool {
        self.map.contains_key(&TypeId::of::<T>())
    }
}

fn value_info(name: &str, ty: i32, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 {
                dimension::Value::DimParam("N".into())
            } else {
                dimension::Value::DimValue(d as i64)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(ty),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The model as an ONNX `ModelProto`, for inputs of shape `input` (the batch size stays
/// symbolic in the file: any batch runs).
///
/// # Errors
/// An input shape the graph rejects, or a layer with neither an exporter nor a core form.
pub fn to_model(graph: &Graph, input: &[usize], registry: &ExportRegistry) -> Result<ModelProto> {
    let mut b = Builder::default();
    let x = b.fresh("input");
    let start = Edge {
        name: x.clone(),
        kind: ValueKind::F32,
        shape: input.to_vec(),
    };
    let out = export_graph(&mut b, registry, graph, "", start)?;
    let out = b.convert(&out, ValueKind::F32);
    let y = b.fresh("output");
    b.nodes.push(crate::proto::NodeProto {
        input: vec![out.name.clone()],
        output: vec![y.clone()],
        name: Some("output:identity".into()),
        op_type: Some("Identity".into()),
        ..Default::default()
    });
    Ok(ModelProto {
        ir_version: Some(EXPORT_IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(EXPORT_OPSET),
        }],
        producer_name: Some("slimnet".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            name: Some("slimnet".into()),
            node: b.nodes,
            initializer: b.initializers,
            input: vec![value_info(&x, dtype::FLOAT, input)],
            output: vec![value_info(&y, dtype::FLOAT, &out.shape)],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The model as ONNX bytes (see [`to_model`]).
///
/// # Errors
/// As [`to_model`].
pub fn to_bytes(graph: &Graph, input: &[usize], registry: &ExportRegistry) -> Result<Vec<u8>> {
    Ok(to_model(graph, input, registry)?.encode_to_vec())
}

/// Writes the model to an `.onnx` file (through a temporary file, renamed).
///
/// # Errors
/// As [`to_model`], and I/O errors.
pub fn save(
    graph: &Graph,
    input: &[usize],
    path: impl AsRef<Path>,
    registry: &ExportRegistry,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(graph, input, registry)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| OnnxError::io(dir, e))?;
    }
    slimnet_core::io::write_atomically(path, &bytes)?;
    Ok(())
}

fn export_graph(
    b: &mut Builder,
    reg: &ExportRegistry,
    g: &Graph,
    prefix: &str,
    input: Edge,
) -> Result<Edge> {
    let shapes = g.shapes(&input.shape)?;
    let mut edges: Vec<Option<Edge>> = vec![None; g.nodes().len()];
    for (i, node) in g.nodes().iter().enumerate() {
        let path = format!("{prefix}{}", node.name);
        let ins: Vec<Edge> = node
            .inputs
            .iter()
            .map(|j| {
                edges[j.index()]
                    .clone()
                    .expect("nodes come in topological order")
            })
            .collect();
        let e = match &node.op {
            Op::Input => input.clone(),
            Op::Layer(l) => export_layer(b, reg, l.as_ref(), &path, &ins[0], &shapes[i])?,
            op @ (Op::Add | Op::Mul | Op::Concat | Op::MatMul) => {
                let names: Vec<String> = ins
                    .iter()
                    .map(|e| b.convert(e, ValueKind::F32).name)
                    .collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let (name, attrs) = match op {
                    Op::Add => ("Add", vec![]),
                    Op::Mul => ("Mul", vec![]),
                    Op::MatMul => ("MatMul", vec![]),
                    _ => ("Concat", vec![attr::int("axis", 1)]),
                };
                Edge {
                    name: b.node(&path, name, &refs, attrs),
                    kind: ValueKind::F32,
                    shape: shapes[i].clone(),
                }
            }
            // an int8 residual sum: DequantizeLinear on each input, Add, QuantizeLinear (ONNX
            // Runtime fuses the pattern into QLinearAdd)
            Op::QuantAdd(p) => {
                let names: Vec<String> = ins
                    .iter()
                    .map(|e| b.convert(e, ValueKind::F32).name)
                    .collect();
                let sum = Edge {
                    name: b.node(&path, "Add", &[&names[0], &names[1]], vec![]),
                    kind: ValueKind::F32,
                    shape: shapes[i].clone(),
                };
                b.convert(&sum, ValueKind::U8(*p))
            }
            op => {
                return Err(OnnxError::export(
                    &path,
                    op.name(),
                    "a graph node kind this writer does not know",
                ))
            }
        };
        edges[i] = Some(e);
    }
    Ok(edges[g.output().index()].clone().expect("the output ran"))
}

fn export_layer(
    b: &mut Builder,
    reg: &ExportRegistry,
    l: &dyn Layer,
    path: &str,
    x: &Edge,
    out: &[usize],
) -> Result<Edge> {
    let k = if l.accepts(x.kind) {
        x.kind
    } else {
        l.input_kind()
    };
    let x = b.convert(x, k);
    if let Some(inner) = Graph::of(l) {
        return export_graph(b, reg, inner, &format!("{path}."), x);
    }
    if let Some(f) = reg.map.get(&l.as_any().type_id()) {
        let mut cx = LayerExport {
            b,
            path: path.to_string(),
            kind: l.kind(),
            input: x,
            output_shape: out.to_vec(),
            output: None,
        };
        f(l, &mut cx)?;
        return cx
            .output
            .take()
            .ok_or_else(|| OnnxError::export(path, l.kind(), "the exporter declared no output"));
    }
    match l.to_core() {
        Some(core) => {
            let core = core?;
            export_layer(b, reg, core.as_ref(), path, &x, out)
        }
        None => Err(OnnxError::export(
            path,
            l.kind(),
            "no ONNX exporter is registered for this layer type and it has no core form",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::{Result as CoreResult, Sequential, Tensor};

    /// A layer of another crate, with neither an exporter nor a core form.
    #[derive(Debug, Clone)]
    struct Opaque;

    impl Layer for Opaque {
        fn kind(&self) -> &'static str {
            "Opaque"
        }
        fn forward(&self, x: &Tensor) -> CoreResult<Tensor> {
            Ok(x.clone())
        }
        fn output_shape(&self, input: &[usize]) -> CoreResult<Vec<usize>> {
            Ok(input.to_vec())
        }
    }

    #[test]
    fn layers_without_an_exporter_or_core_form_are_named() {
        let inner = Sequential::new().push("odd", Opaque).build().unwrap();
        let g = Sequential::new().push("block", inner).build().unwrap();
        let e = to_model(&g, &[1, 2], &ExportRegistry::core()).unwrap_err();
        assert!(
            matches!(&e, OnnxError::Export { layer, kind, .. } if layer == "block.odd" && kind == "Opaque"),
            "{e}"
        );
        // an exporter registered for the type writes it
        let mut reg = ExportRegistry::core();
        reg.register::<Opaque>(|_, cx| {
            let x = cx.input();
            let y = cx.node("Identity", &[&x], vec![]);
            cx.set_output(y, ValueKind::F32);
            Ok(())
        });
        let m = to_model(&g, &[1, 2], &reg).unwrap();
        let nodes = &m.graph.unwrap().node;
        assert_eq!(nodes[0].name(), "block.odd");
    }
}
