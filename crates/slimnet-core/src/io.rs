//! Model files: a whole model (graph and weights) in one safetensors file.
//!
//! Tensors are stored under their dotted paths (`conv1.weight`, `bn1.running_mean`,
//! `fc1.weight.mask` for a pruning mask). The graph — node names, layer kinds, hyper-parameters
//! and edges — is JSON in the file's metadata under the key [`GRAPH_KEY`]. Python's `safetensors`
//! reads every tensor. Compact layers (sparse, int8, codebooks) store their real arrays, so the
//! file size is the model's real size.
//!
//! Loading goes through a [`Registry`] that maps kind names to constructors; the method crates
//! add their own kinds with [`Registry::register`].
//!
//! ```
//! use slimnet_core::{io, models, tensor, Layer};
//! let model = models::lenet300(&mut tensor::rng(0))?;
//! let bytes = io::to_bytes(&model)?;
//! let back = io::from_bytes(&bytes, &io::Registry::core())?;
//! let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! assert_eq!(model.forward(&x)?, back.forward(&x)?);
//! # Ok::<(), slimnet_core::Error>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use safetensors::tensor::{SafeTensors, View};
use safetensors::Dtype;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op};
use crate::layer::{Layer, StoredTensor};
use crate::layers::*;
use crate::tensor::Tensor;

/// Metadata key holding the graph JSON (the only metadata key, so files are byte-for-byte
/// reproducible). The JSON's `format_version` field holds [`FORMAT_VERSION`].
pub const GRAPH_KEY: &str = "slimnet.graph";
/// The format version written by this crate.
pub const FORMAT_VERSION: u64 = 1;

impl View for &StoredTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Reads tensors of one layer out of a model file, under the layer's path prefix.
pub struct TensorSource<'a> {
    st: &'a SafeTensors<'a>,
    prefix: String,
    used: &'a mut BTreeSet<String>,
}

impl TensorSource<'_> {
    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether the file holds tensor `name` for this layer.
    pub fn contains(&self, name: &str) -> bool {
        self.st.tensor(&self.full(name)).is_ok()
    }

    /// The dtype of tensor `name`, if the file holds it.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.st.tensor(&self.full(name)).ok().map(|t| t.dtype())
    }

    /// A tensor's dtype, shape and raw little-endian bytes.
    ///
    /// # Errors
    /// When the tensor is missing or has another dtype.
    pub fn raw(&mut self, name: &str, dtype: Dtype) -> Result<(Vec<usize>, Vec<u8>)> {
        let full = self.full(name);
        let t = self
            .st
            .tensor(&full)
            .map_err(|_| Error::ModelFile(format!("missing tensor `{full}`")))?;
        if t.dtype() != dtype {
            return Err(Error::ModelFile(format!(
                "tensor `{full}` has dtype {:?}, expected {dtype:?}",
                t.dtype()
            )));
        }
        self.used.insert(full);
        Ok((t.shape().to_vec(), t.data().to_vec()))
    }

    /// An f32 tensor whose values are all finite: a NaN or infinite weight would load and
    /// then give plausible-looking wrong outputs, so it is an error naming the tensor.
    ///
    /// # Errors
    /// When the tensor is missing, not f32, or holds a NaN or infinite value.
    pub fn f32(&mut self, name: &str) -> Result<Tensor> {
        let t = self.f32_any(name)?;
        if let Some((i, v)) = t.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::ModelFile(format!(
                "tensor `{}{name}` holds a non-finite value ({v}) at index {i}",
                self.prefix
            )));
        }
        Ok(t)
    }

    /// An f32 tensor that may hold NaN or infinite values (for a layer whose constants may
    /// legitimately be infinite; weights go through [`f32`](Self::f32)).
    ///
    /// # Errors
    /// When the tensor is missing or not f32.
    pub fn f32_any(&mut self, name: &str) -> Result<Tensor> {
        let (shape, bytes) = self.raw(name, Dtype::F32)?;
        let data: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_shape_vec(shape, data)
            .map_err(|e| Error::ModelFile(format!("tensor `{}{name}`: {e}", self.prefix)))
    }

    /// An f32 tensor if present.
    ///
    /// # Errors
    /// When present but not f32.
    pub fn f32_opt(&mut self, name: &str) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.f32(name).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Builds a layer from its JSON configuration and its tensors.
pub type LoadFn = fn(&Value, &mut TensorSource<'_>) -> Result<Box<dyn Layer>>;

/// Maps layer kinds to constructors, for loading model files.
#[derive(Clone)]
pub struct Registry {
    map: HashMap<String, LoadFn>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<_> = self.map.keys().collect();
        kinds.sort();
        f.debug_struct("Registry").field("kinds", &kinds).finish()
    }
}

/// A list of integers from field `name` of a layer's model-file configuration (for layers
/// that read their configuration field by field).
///
/// ```
/// let cfg = slimnet_core::serde_json::json!({"pads": [1, 2]});
/// assert_eq!(slimnet_core::io::config_ints(&cfg, "Pad", "pads")?, vec![1, 2]);
/// assert!(slimnet_core::io::config_ints(&cfg, "Pad", "mode").is_err());
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::ModelFile`] naming the kind and the field when it is missing or not a list of
/// integers.
pub fn config_ints(cfg: &Value, kind: &str, name: &str) -> Result<Vec<i64>> {
    let bad = || Error::ModelFile(format!("{kind} config: `{name}` is not a list of integers"));
    config_field(cfg, kind, name)?
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_i64().ok_or_else(bad))
        .collect()
}

/// A number from field `name` of a layer's model-file configuration (`null`, which is how
/// JSON writes NaN, is refused).
///
/// # Errors
/// [`Error::ModelFile`] naming the kind and the field when it is missing or not a number.
pub fn config_float(cfg: &Value, kind: &str, name: &str) -> Result<f32> {
    config_field(cfg, kind, name)?
        .as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| Error::ModelFile(format!("{kind} config: `{name}` is not a number")))
}

fn config_field<'a>(cfg: &'a Value, kind: &str, name: &str) -> Result<&'a Value> {
    cfg.get(name)
        .ok_or_else(|| Error::ModelFile(format!("{kind} config: missing `{name}`")))
}

/// Deserializes a layer configuration, naming the kind on failure.
///
/// # Errors
/// When the JSON does not match `T`.
pub fn parse_config<T: DeserializeOwned>(kind: &str, cfg: &Value) -> Result<T> {
    serde_json::from_value(cfg.clone()).map_err(|e| Error::ModelFile(format!("{kind} config: {e}")))
}

fn load_conv(cfg: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let cfg: Conv2dConfig = parse_config("Conv2d", cfg)?;
    let w = t.f32("weight")?;
    let b = if cfg.bias { Some(t.f32("bias")?) } else { None };
    Ok(Box::new(Conv2d::from_parts(cfg, w, b)?))
}

fn load_linear(cfg: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let cfg: LinearConfig = parse_config("Linear", cfg)?;
    let w = t.f32("weight")?;
    let b = if cfg.bias { Some(t.f32("bias")?) } else { None };
    Ok(Box::new(Linear::from_parts(cfg, w, b)?))
}

fn load_bn(cfg: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let cfg: BatchNormConfig = parse_config("BatchNorm2d", cfg)?;
    Ok(Box::new(BatchNorm2d::from_parts(
        cfg,
        t.f32("weight")?,
        t.f32("bias")?,
        t.f32("running_mean")?,
        t.f32("running_var")?,
    )?))
}

fn load_instance_norm(cfg: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let cfg: InstanceNormConfig = parse_config("InstanceNorm2d", cfg)?;
    Ok(Box::new(InstanceNorm2d::from_parts(
        cfg,
        t.f32("weight")?,
        t.f32("bias")?,
    )?))
}

fn load_activation(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Activation::new(parse_config("activation", cfg)?)?))
}

fn load_maxpool(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    Ok(Box::new(MaxPool2d::new(parse_config("MaxPool2d", cfg)?)?))
}

fn load_avgpool(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    Ok(Box::new(AvgPool2d::new(parse_config("AvgPool2d", cfg)?)?))
}

fn load_gap(_: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    Ok(Box::new(GlobalAvgPool::new()))
}

fn load_flatten(_: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Flatten::new()))
}

fn load_dropout(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let c: DropoutConfig = parse_config("Dropout", cfg)?;
    Ok(Box::new(Dropout::new(c.p, c.seed)?))
}

fn load_softmax(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let log = cfg.get("log").and_then(Value::as_bool).unwrap_or(false);
    Ok(Box::new(if log { Softmax::log() } else { Softmax::new() }))
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self {
            map: HashMap::new(),
        }
    }

    /// The layer kinds of slimnet-core.
    pub fn core() -> Self {
        let mut r = Self::empty();
        r.register("Conv2d", load_conv);
        r.register("Linear", load_linear);
        r.register("BatchNorm2d", load_bn);
        for name in ActivationKind::NAMES {
            r.register(name, load_activation);
        }
        r.register("MaxPool2d", load_maxpool);
        r.register("AvgPool2d", load_avgpool);
        r.register("GlobalAvgPool", load_gap);
        r.register("Flatten", load_flatten);
        r.register("Dropout", load_dropout);
        r.register("Softmax", load_softmax);
        r.register("LogSoftmax", load_softmax);
        r.register("InstanceNorm2d", load_instance_norm);
        r.register("ConvTranspose2d", loaders::conv_transpose);
        r.register("Resize2d", loaders::resize);
        r.register("Pad", loaders::pad);
        r
    }

    /// Adds (or replaces) the constructor of a kind.
    pub fn register(&mut self, kind: &str, f: LoadFn) {
        self.map.insert(kind.to_string(), f);
    }

    /// Whether a kind is known.
    pub fn contains(&self, kind: &str) -> bool {
        self.map.contains_key(kind)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::core()
    }
}

/// The graph as JSON: nodes with names, ops, layer kinds, configurations and input names.
pub fn graph_to_json(g: &Graph) -> Value {
    let nodes: Vec<Value> = g
        .nodes()
        .iter()
        .map(|n| {
            let inputs: Vec<&str> = n
                .inputs
                .iter()
                .map(|i| g.nodes()[i.index()].name.as_str())
                .collect();
            match &n.op {
                Op::Input => json!({"name": n.name, "op": "Input"}),
                Op::Layer(l) => json!({"name": n.name, "op": "Layer", "kind": l.kind(),
                                       "config": l.config_json(), "inputs": inputs}),
                Op::QuantAdd(p) => json!({"name": n.name, "op": "QuantAdd", "inputs": inputs,
                                          "scale": p.scale, "zero_point": p.zero_point}),
                other => json!({"name": n.name, "op": other.name(), "inputs": inputs}),
            }
        })
        .collect();
    json!({"format_version": FORMAT_VERSION, "nodes": nodes, "output": g.nodes()[g.output().index()].name})
}

fn str_field<'v>(v: &'v Value, key: &str, at: &str) -> Result<&'v str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::ModelFile(format!("{at}: missing string field `{key}`")))
}

fn graph_from_json(
    v: &Value,
    st: &SafeTensors<'_>,
    reg: &Registry,
    prefix: &str,
    used: &mut BTreeSet<String>,
    depth: usize,
) -> Result<Graph> {
    if depth > 16 {
        return Err(Error::ModelFile(
            "graphs nested deeper than 16 levels".into(),
        ));
    }
    let nodes = v
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::ModelFile(format!("graph `{prefix}`: missing `nodes` array")))?;
    let mut g = Graph::new();
    let mut ids: HashMap<&str, NodeId> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let name = str_field(n, "name", &format!("node #{i}"))?;
        let op = str_field(n, "op", name)?;
        if i == 0 {
            if op != "Input" {
                return Err(Error::ModelFile(format!(
                    "first node `{name}` must be the Input"
                )));
            }
            ids.insert(name, g.input());
            continue;
        }
        let inputs: Vec<NodeId> = n
            .get("inputs")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::ModelFile(format!("node `{name}`: missing `inputs`")))?
            .iter()
            .map(|x| {
                x.as_str()
                    .and_then(|s| ids.get(s).copied())
                    .ok_or_else(|| Error::ModelFile(format!("node `{name}`: unknown input {x}")))
            })
            .collect::<Result<_>>()?;
        let arity_ok = match op {
            "Layer" => inputs.len() == 1,
            "Add" | "Mul" | "QuantAdd" | "MatMul" => inputs.len() == 2,
            "Concat" => !inputs.is_empty(),
            _ => false,
        };
        if !arity_ok {
            return Err(Error::ModelFile(format!(
                "node `{name}`: op `{op}` with {} inputs",
                inputs.len()
            )));
        }
        let id = match op {
            "Layer" => {
                let kind = str_field(n, "kind", name)?;
                let cfg = n.get("config").unwrap_or(&Value::Null);
                let path = format!("{prefix}{name}.");
                let mut layer: Box<dyn Layer> = if kind == "Graph" {
                    Box::new(graph_from_json(cfg, st, reg, &path, used, depth + 1)?)
                } else {
                    let f = reg.map.get(kind).ok_or_else(|| Error::UnknownKind {
                        kind: kind.to_string(),
                        layer: format!("{prefix}{name}"),
                    })?;
                    let mut src = TensorSource {
                        st,
                        prefix: path.clone(),
                        used,
                    };
                    let l = f(cfg, &mut src).map_err(|e| match e {
                        Error::Config { reason, .. } => {
                            Error::ModelFile(format!("layer `{prefix}{name}` ({kind}): {reason}"))
                        }
                        other => other.in_layer(&format!("{prefix}{name}")),
                    })?;
                    // A kind whose config describes another kind (a `ReLU` node whose config
                    // says `Tanh`) would load as the other kind without a word.
                    if l.kind() != kind {
                        return Err(Error::ModelFile(format!(
                            "layer `{prefix}{name}`: the node's kind is `{kind}` but its config \
                             describes a `{}`",
                            l.kind()
                        )));
                    }
                    // Masks of parameters, stored beside them.
                    let mut l = l;
                    let mut err = None;
                    l.visit_params_mut(&mut |pname, p| {
                        let full = format!("{path}{pname}.mask");
                        if let Ok(t) = st.tensor(&full) {
                            used.insert(full.clone());
                            let mask = match t.dtype() {
                                Dtype::U8 => Tensor::from_shape_vec(
                                    t.shape().to_vec(),
                                    t.data().iter().map(|&b| b as f32).collect(),
                                )
                                .ok(),
                                // files of format 1 written before masks were u8
                                Dtype::F32 => Tensor::from_shape_vec(
                                    t.shape().to_vec(),
                                    t.data()
                                        .chunks_exact(4)
                                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                                        .collect(),
                                )
                                .ok(),
                                _ => None,
                            };
                            let r = match mask {
                                Some(m) => p.set_mask(m),
                                None => Err(Error::ModelFile(format!(
                                    "mask `{full}` is not a u8 tensor"
                                ))),
                            };
                            if let Err(e) = r {
                                err.get_or_insert(Error::ModelFile(format!("`{full}`: {e}")));
                            }
                        }
                    });
                    if let Some(e) = err {
                        return Err(e);
                    }
                    l
                };
                layer.visit_params_mut(&mut |_, p| p.apply_mask());
                g.add_boxed(name, layer, inputs[0])
            }
            "Add" => g.add(name, inputs[0], inputs[1]),
            "QuantAdd" => {
                let p = quant_params(n, name)?;
                g.add(name, inputs[0], inputs[1])
                    .and_then(|id| g.quantize_add(name, p).map(|()| id))
            }
            "Mul" => g.mul(name, inputs[0], inputs[1]),
            "MatMul" => g.matmul(name, inputs[0], inputs[1]),
            _ => g.concat(name, &inputs),
        }
        .map_err(|e| Error::ModelFile(e.to_string()))?;
        ids.insert(name, id);
    }
    let out = str_field(v, "output", "graph")?;
    let out = ids
        .get(out)
        .copied()
        .ok_or_else(|| Error::ModelFile(format!("output `{out}` is not a node")))?;
    if depth == 0 && out == g.input() {
        return Err(Error::ModelFile(format!(
            "the graph's output is its input `{}`: the model computes nothing",
            g.nodes()[0].name
        )));
    }
    g.set_output(out)?;
    Ok(g)
}

/// The `scale` and `zero_point` of a [`Op::QuantAdd`] node.
fn quant_params(n: &Value, name: &str) -> Result<crate::value::QuantParams> {
    let bad = |what: &str| Error::ModelFile(format!("node `{name}`: {what}"));
    let scale = n
        .get("scale")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("missing number `scale`"))? as f32;
    let zero_point = n
        .get("zero_point")
        .and_then(Value::as_u64)
        .and_then(|z| u8::try_from(z).ok())
        .ok_or_else(|| bad("`zero_point` must be an integer in 0..=255"))?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(bad("`scale` must be positive and finite"));
    }
    Ok(crate::value::QuantParams { scale, zero_point })
}

/// Serializes a model to safetensors bytes.
///
/// # Errors
/// When the model's tensors cannot be serialized (e.g. two with the same path).
pub fn to_bytes(model: &Graph) -> Result<Vec<u8>> {
    to_bytes_with(model, Vec::new(), Vec::new())
}

/// [`to_bytes`] with more tensors and metadata beside the model's (a training checkpoint's
/// optimizer state); [`from_bytes_with`] reads them back.
///
/// # Errors
/// Two tensors with one name (an extra tensor named like one of the model's, say).
pub fn to_bytes_with(
    model: &Graph,
    extra: Vec<(String, StoredTensor)>,
    meta: Vec<(String, String)>,
) -> Result<Vec<u8>> {
    let mut tensors: BTreeMap<String, StoredTensor> = BTreeMap::new();
    let mut dup = None;
    model.stored_tensors(&mut |name, t| {
        if tensors.insert(name.to_string(), t).is_some() {
            dup = Some(name.to_string());
        }
    });
    for (name, t) in extra {
        if tensors.insert(name.clone(), t).is_some() {
            dup = Some(name);
        }
    }
    if let Some(d) = dup {
        return Err(Error::ModelFile(format!("two tensors named `{d}`")));
    }
    let mut m: HashMap<String, String> = meta.into_iter().collect();
    m.insert(GRAPH_KEY.to_string(), graph_to_json(model).to_string());
    safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(m))
        .map_err(|e| Error::ModelFile(e.to_string()))
}

/// Parses a model from safetensors bytes.
///
/// # Errors
/// Malformed safetensors, missing or bad graph JSON, unknown kinds, missing tensors, tensors of
/// the wrong shape or dtype, and tensors that no layer uses.
pub fn from_bytes(bytes: &[u8], registry: &Registry) -> Result<Graph> {
    Ok(from_bytes_with(bytes, registry, None)?.0)
}

/// What [`to_bytes_with`] added beside a model: the tensors whose names start with the prefix
/// (as f32; the prefix removed) and the metadata other than the graph.
pub type Extras = (Vec<(String, Tensor)>, HashMap<String, String>);

/// [`from_bytes`] that also returns the f32 tensors named `<extra>...` (`extra` a prefix) and
/// the other metadata (see [`to_bytes_with`]).
///
/// # Errors
/// As [`from_bytes`]; an extra tensor that is not f32.
pub fn from_bytes_with(
    bytes: &[u8],
    registry: &Registry,
    extra: Option<&str>,
) -> Result<(Graph, Extras)> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::ModelFile(format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::ModelFile(format!("not a safetensors file: {e}")))?;
    let info = meta
        .metadata()
        .as_ref()
        .ok_or_else(|| Error::ModelFile("no metadata: not a slimnet model file".into()))?;
    let graph = info
        .get(GRAPH_KEY)
        .ok_or_else(|| Error::ModelFile(format!("no `{GRAPH_KEY}` metadata")))?;
    let v: Value =
        serde_json::from_str(graph).map_err(|e| Error::ModelFile(format!("graph JSON: {e}")))?;
    match v.get("format_version").and_then(Value::as_u64) {
        Some(FORMAT_VERSION) => {}
        other => {
            return Err(Error::ModelFile(format!(
                "format version {other:?}, this build reads {FORMAT_VERSION}"
            )))
        }
    }
    let mut used = BTreeSet::new();
    let g = graph_from_json(&v, &st, registry, "", &mut used, 0)?;
    let mut tensors = Vec::new();
    for name in st.names() {
        if used.contains(name) {
            continue;
        }
        match extra.and_then(|p| name.strip_prefix(p)) {
            Some(short) => {
                let t = st.tensor(name).expect("a listed name");
                if t.dtype() != Dtype::F32 {
                    return Err(Error::ModelFile(format!("tensor `{name}` is not f32")));
                }
                let data: Vec<f32> = t
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let t = Tensor::from_shape_vec(t.shape().to_vec(), data)
                    .map_err(|e| Error::ModelFile(format!("tensor `{name}`: {e}")))?;
                tensors.push((short.to_string(), t));
            }
            None => {
                return Err(Error::ModelFile(format!(
                    "tensor `{name}` belongs to no layer"
                )))
            }
        }
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut other = info.clone();
    other.remove(GRAPH_KEY);
    Ok((g, (tensors, other)))
}

/// Saves a model to a file (see [`write_atomically`]: a crash never leaves half a file).
///
/// # Errors
/// I/O errors, or as [`to_bytes`].
pub fn save(model: &Graph, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(model)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` so that a crash or a full disk never leaves a truncated file where
/// a good one was: the bytes go to a temporary file beside it (removed on failure), are flushed
/// to disk, and the temporary file is renamed over `path`.
///
/// # Errors
/// I/O errors (the old file, if any, is then unchanged).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        std::fs::remove_file(&tmp).ok();
        return Err(Error::Io(std::io::Error::new(
            e.kind(),
            format!("writing {}: {e}", path.display()),
        )));
    }
    Ok(())
}

/// Loads a model file with the given registry.
///
/// # Errors
/// I/O errors, or as [`from_bytes`].
pub fn load_with(path: impl AsRef<Path>, registry: &Registry) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("reading {}: {e}", path.display()),
        ))
    })?;
    from_bytes(&bytes, registry).map_err(|e| match e {
        Error::ModelFile(m) => Error::ModelFile(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Loads a model file made of slimnet-core layers.
///
/// # Errors
/// As [`load_with`].
pub fn load(path: impl AsRef<Path>) -> Result<Graph> {
    load_with(path, &Registry::core())
}
