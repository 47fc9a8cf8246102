//! Building an ONNX graph: nodes, initializers, fresh names and the kind of each value (f32,
//! or u8 codes with their quantization).

use std::collections::HashSet;

use slimnet_core::value::ValueKind;
use slimnet_kernels::int8::QuantParams;

use crate::error::OnnxError;
use crate::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto, TensorProto};
use crate::reader::tensor::dtype;

/// A value of the ONNX graph being written: its name, kind and shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Edge {
    pub name: String,
    pub kind: ValueKind,
    pub shape: Vec<usize>,
}

/// The nodes and initializers written so far.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    used: HashSet<String>,
    node_names: HashSet<String>,
}

impl Builder {
    /// `name`, or `name_2`, `name_3`, ... when taken.
    pub fn fresh(&mut self, name: &str) -> String {
        let mut n = name.to_string();
        let mut k = 2;
        while !self.used.insert(n.clone()) {
            n = format!("{name}_{k}");
            k += 1;
        }
        n
    }

    /// A node name: `base` for the first node of a layer, then `base_2`, ...
    fn node_name(&mut self, base: &str) -> String {
        let mut n = base.to_string();
        let mut k = 2;
        while !self.node_names.insert(n.clone()) {
            n = format!("{base}_{k}");
            k += 1;
        }
        n
    }

    pub fn initializer(&mut self, name: &str, dims: &[usize], ty: i32, raw: Vec<u8>) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(ty),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    pub fn node(
        &mut self,
        base: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(&format!("{base}:{}", op.to_lowercase()));
        let name = self.node_name(base);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(name),
            op_type: Some(op.to_string()),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// `x` as a value of `kind`: quantized, dequantized or both where it is not already.
    pub fn convert(&mut self, x: &Edge, kind: ValueKind) -> Edge {
        if x.kind == kind {
            return x.clone();
        }
        let mut cur = x.clone();
        if let ValueKind::U8(p) = cur.kind {
            let (s, z) = self.qparams(&x.name, p);
            let name = self.node(&x.name, "DequantizeLinear", &[&cur.name, &s, &z], vec![]);
            cur = Edge {
                name,
                kind: ValueKind::F32,
                shape: x.shape.clone(),
            };
        }
        if let ValueKind::U8(p) = kind {
            let (s, z) = self.qparams(&x.name, p);
            let name = self.node(&x.name, "QuantizeLinear", &[&cur.name, &s, &z], vec![]);
            cur = Edge {
                name,
                kind,
                shape: x.shape.clone(),
            };
        }
        cur
    }

    /// Scale and zero-point initializers for `p`.
    pub fn qparams(&mut self, base: &str, p: QuantParams) -> (String, String) {
        let s = self.initializer(
            &format!("{base}.scale"),
            &[],
            dtype::FLOAT,
            p.scale.to_le_bytes().to_vec(),
        );
        let z = self.initializer(
            &format!("{base}.zero_point"),
            &[],
            dtype::UINT8,
            vec![p.zero_point],
        );
        (s, z)
    }
}

/// Builds node attributes.
pub mod attr {
    use super::*;

    fn named(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    /// An integer attribute.
    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            i: Some(v),
            ..named(name, AttributeType::Int)
        }
    }

    /// A list of integers.
    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            ints: v.to_vec(),
            ..named(name, AttributeType::Ints)
        }
    }

    /// A float attribute.
    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            f: Some(v),
            ..named(name, AttributeType::Float)
        }
    }

    /// A string attribute.
    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            s: Some(v.as_bytes().to_vec()),
            ..named(name, AttributeType::String)
        }
    }

    /// Sizes as an integer list.
    pub fn sizes(name: &str, v: &[usize]) -> AttributeProto {
        ints(name, &v.iter().map(|&d| d as i64).collect::<Vec<_>>())
    }
}

/// What an exporter sees of the layer it writes, and how it writes: its input (converted to
/// the kind the layer reads), its shapes, and methods that add initializers and nodes. Names
/// of initializers are the layer's path with a suffix (`conv1.weight`), so parameters keep
/// their slimnet paths in the ONNX file.
pub struct LayerExport<'a> {
    pub(crate) b: &'a mut Builder,
    pub(crate) path: String,
    pub(crate) kind: &'static str,
    pub(crate) input: Edge,
    pub(crate) output_shape: Vec<usize>,
    pub(crate) output: Option<Edge>,
}

impl LayerExport<'_> {
    /// The layer's dotted path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input.shape
    }

    /// The output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// The kind of the input value as handed over (what the layer [`accepts`] of what its
    /// producer wrote, else its [`input_kind`]).
    ///
    /// [`accepts`]: slimnet_core::Layer::accepts
    /// [`input_kind`]: slimnet_core::Layer::input_kind
    pub fn input_kind(&self) -> ValueKind {
        self.input.kind
    }

    /// The name of the input value, as it is.
    pub fn input(&self) -> String {
        self.input.name.clone()
    }

    /// The name of the input as f32 (dequantized when it is codes).
    pub fn input_f32(&mut self) -> String {
        self.b.convert(&self.input, ValueKind::F32).name
    }

    /// The name of the input as u8 codes quantized with `p`.
    pub fn input_codes(&mut self, p: QuantParams) -> String {
        self.b.convert(&self.input, ValueKind::U8(p)).name
    }

    fn init(&mut self, suffix: &str, dims: &[usize], ty: i32, raw: Vec<u8>) -> String {
        let name = format!("{}.{suffix}", self.path);
        self.b.initializer(&name, dims, ty, raw)
    }

    /// An f32 initializer named `<path>.<suffix>`; returns its (unique) name.
    pub fn init_f32(&mut self, suffix: &str, dims: &[usize], v: &[f32]) -> String {
        self.init(
            suffix,
            dims,
            dtype::FLOAT,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    /// An i8 initializer.
    pub fn init_i8(&mut self, suffix: &str, dims: &[usize], v: &[i8]) -> String {
        self.init(
            suffix,
            dims,
            dtype::INT8,
            v.iter().map(|&x| x as u8).collect(),
        )
    }

    /// A u8 initializer.
    pub fn init_u8(&mut self, suffix: &str, dims: &[usize], v: &[u8]) -> String {
        self.init(suffix, dims, dtype::UINT8, v.to_vec())
    }

    /// An i32 initializer.
    pub fn init_i32(&mut self, suffix: &str, dims: &[usize], v: &[i32]) -> String {
        self.init(
            suffix,
            dims,
            dtype::INT32,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    /// An i64 initializer.
    pub fn init_i64(&mut self, suffix: &str, dims: &[usize], v: &[i64]) -> String {
        self.init(
            suffix,
            dims,
            dtype::INT64,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    /// Scale and zero-point initializers (f32 and u8 scalars) for `p`.
    pub fn qparams(&mut self, suffix: &str, p: QuantParams) -> (String, String) {
        let base = format!("{}.{suffix}", self.path);
        self.b.qparams(&base, p)
    }

    /// Adds a node of `op` (default domain) reading `inputs` (`""` for an absent optional
    /// input); returns the name of its one output.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.b.node(&self.path, op, inputs, attrs)
    }

    /// Declares the layer's output: the value `name`, of `kind`.
    pub fn set_output(&mut self, name: String, kind: ValueKind) {
        self.output = Some(Edge {
            name,
            kind,
            shape: self.output_shape.clone(),
        });
    }

    /// An export error naming this layer.
    pub fn error(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::export(&self.path, self.kind, reason)
    }
}
