//! The ONNX backend test cases (`onnx/backend/test/data/<suite>/<case>/`) run through the
//! reader: what `cargo run --release -p slimnet-onnx --example conformance` runs, and what
//! tests use. Three suites ([`Suite`]): the node tests (one op each, current opsets), and two
//! suites of models exported by PyTorch's `torch.onnx.export` (whole `nn` modules, and single
//! operators; opsets 6, 9 and 12).
//!
//! The cases come from the `onnx==1.22.0` wheel on PyPI (later wheels dropped them), fetched
//! once with `pip download` into [`slimnet_core::data::cache_dir`]`/onnx` and unpacked there
//! (`SLIMNET_ONNX_WHEEL` names a wheel already on disk instead).
//!
//! A node test's model has one graph input per operand. A slimnet graph has one input, so the
//! first input is the data and the others (weights, biases, shapes, bounds) become
//! initializers holding the test's values. Which cases are in scope is decided from the model
//! alone ([`scope`]), before anything runs; each out-of-scope case gets its reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use slimnet_core::{Layer, Tensor};

use crate::proto::{ModelProto, TensorProto};
use crate::reader::{self, tensor, ImportOptions, SUPPORTED_OPS};

/// The pinned wheel.
pub const ONNX_VERSION: &str = "1.22.0";

/// Ops that only fold on constants: their node tests apply them to activations.
const CONST_ONLY: &[&str] = &["Constant", "Shape", "Gather", "Cast", "ConstantOfShape"];

/// A folder of backend test cases in the onnx wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `node/`: one op per case, with its attributes.
    Node,
    /// `pytorch-converted/`: `torch.nn` modules exported by PyTorch.
    PytorchConverted,
    /// `pytorch-operator/`: single PyTorch operators exported by PyTorch.
    PytorchOperator,
}

impl Suite {
    /// Every suite.
    pub const ALL: [Suite; 3] = [Suite::Node, Suite::PytorchConverted, Suite::PytorchOperator];

    /// The folder under `onnx/backend/test/data/`.
    pub fn folder(self) -> &'static str {
        match self {
            Suite::Node => "node",
            Suite::PytorchConverted => "pytorch-converted",
            Suite::PytorchOperator => "pytorch-operator",
        }
    }
}

/// The folder holding one subfolder per node test, fetched and unpacked on first use.
///
/// # Errors
/// When pip or the unpacking fails (the message says what to do).
pub fn node_tests_dir() -> Result<PathBuf, String> {
    suite_dir(Suite::Node)
}

/// The cases of `suite` that test ops the reader knows ([`Case::selected`]), by name.
///
/// # Errors
/// As [`suite_dir`], or a case that cannot be read.
pub fn selected_cases(suite: Suite) -> Result<Vec<Case>, String> {
    let dir = suite_dir(suite)?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for p in paths {
        let case = Case::load(&p)?;
        if case.selected() {
            cases.push(case);
        }
    }
    Ok(cases)
}

/// The folder holding one subfolder per case of `suite`, fetched and unpacked on first use.
///
/// # Errors
/// When pip or the unpacking fails (the message says what to do).
pub fn suite_dir(suite: Suite) -> Result<PathBuf, String> {
    let root = slimnet_core::data::cache_dir().join("onnx");
    let dir = root.join(format!("{}-{ONNX_VERSION}", suite.folder()));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let wheel = match std::env::var_os("SLIMNET_ONNX_WHEEL") {
        Some(w) => PathBuf::from(w),
        None => {
            if find_wheel(&root).is_none() {
                let out = Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--no-deps",
                        "--only-binary=:all:",
                    ])
                    .arg(format!("onnx=={ONNX_VERSION}"))
                    .arg("-d")
                    .arg(&root)
                    .output()
                    .map_err(|e| format!("running python3 -m pip ({e}); install python3-pip"))?;
                if !out.status.success() {
                    return Err(format!(
                        "pip download onnx=={ONNX_VERSION} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            find_wheel(&root).ok_or("pip download left no onnx wheel")?
        }
    };
    let script = "import sys, zipfile, os\n\
        z = zipfile.ZipFile(sys.argv[1]); out = sys.argv[2]; p = 'onnx/backend/test/data/' + sys.argv[3] + '/'\n\
        for n in z.namelist():\n    \
            if n.startswith(p) and not n.endswith('/'):\n        \
                t = os.path.join(out, n[len(p):]); os.makedirs(os.path.dirname(t), exist_ok=True)\n        \
                open(t, 'wb').write(z.read(n))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(&dir)
        .arg(suite.folder())
        .output()
        .map_err(|e| format!("running python3 ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {}: {}",
            wheel.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::write(dir.join(".complete"), wheel.display().to_string())
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

fn find_wheel(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with(&format!("onnx-{ONNX_VERSION}-")) && n.ends_with(".whl")
        })
}

/// One node test, loaded.
#[derive(Debug)]
pub struct Case {
    /// Folder name (`test_conv_with_strides_padding`).
    pub name: String,
    /// The model as shipped.
    pub model: ModelProto,
    /// `input_N.pb` of `test_data_set_0`.
    pub inputs: Vec<TensorProto>,
    /// `output_N.pb`.
    pub outputs: Vec<TensorProto>,
}

impl Case {
    /// Loads the case in `dir`.
    ///
    /// # Errors
    /// Missing or unreadable files.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
        let model = ModelProto::decode(read(dir.join("model.onnx"))?.as_slice())
            .map_err(|e| e.to_string())?;
        let data = dir.join("test_data_set_0");
        let list = |prefix: &str| -> Result<Vec<TensorProto>, String> {
            let mut v = Vec::new();
            while let Ok(b) = std::fs::read(data.join(format!("{prefix}_{}.pb", v.len()))) {
                v.push(TensorProto::decode(b.as_slice()).map_err(|e| e.to_string())?);
            }
            Ok(v)
        };
        Ok(Self {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model,
            inputs: list("input")?,
            outputs: list("output")?,
        })
    }

    fn ops(&self) -> Vec<&str> {
        self.model
            .graph
            .iter()
            .flat_map(|g| g.node.iter().map(|n| n.op_type()))
            .collect()
    }

    /// Whether the case tests the ops the reader knows (the cases the example lists).
    pub fn selected(&self) -> bool {
        let ops = self.ops();
        let default = self
            .model
            .graph
            .iter()
            .flat_map(|g| &g.node)
            .all(|n| matches!(n.domain(), "" | "ai.onnx"));
        // an expanded case (the op's function body) belongs to the op it expands
        let expanded = self.name.contains("_expanded")
            && SUPPORTED_OPS.iter().any(|op| {
                let stem = format!("test_{}", op.to_lowercase());
                self.name
                    .strip_prefix(&stem)
                    .is_some_and(|r| r.starts_with('_'))
            });
        !ops.is_empty() && (expanded || (default && ops.iter().all(|o| SUPPORTED_OPS.contains(o))))
    }
}

/// Why a selected case is out of scope, or `None` when it is in scope. Decided from the model
/// and its declared test data, never from running it.
pub fn scope(case: &Case) -> Option<&'static str> {
    let g = case.model.graph.as_ref()?;
    if case.name.contains("_expanded") {
        return Some("function expansion into ops slimnet has no layer for");
    }
    let elem = |t: &TensorProto| t.data_type();
    let Some(x) = case.inputs.first() else {
        return Some("no graph input (a constant model)");
    };
    let tensors = g.input.iter().chain(&g.output).all(|v| {
        matches!(
            v.r#type.as_ref().and_then(|t| t.value.as_ref()),
            Some(crate::proto::type_proto::Value::TensorType(_))
        )
    });
    if !tensors {
        return Some("sequence or optional values (slimnet graphs carry tensors)");
    }
    let input = g.input.first().map(|v| v.name());
    if g.node
        .iter()
        .any(|n| CONST_ONLY.contains(&n.op_type()) && n.input.first().map(String::as_str) == input)
    {
        return Some("an op slimnet folds on constants, applied to the data");
    }
    if elem(x) != tensor::dtype::FLOAT
        || case.outputs.iter().any(|o| elem(o) != tensor::dtype::FLOAT)
    {
        return Some("non-f32 data (slimnet layers compute in f32)");
    }
    if case.outputs.len() != g.output.len() {
        return Some("outputs without test data");
    }
    if x.dims.contains(&0) {
        return Some("empty tensors");
    }
    for n in &g.node {
        let op = n.op_type();
        let attr = |name: &str| n.attribute.iter().find(|a| a.name() == name).map(|a| a.i());
        let spatial = matches!(
            op,
            "Conv"
                | "ConvTranspose"
                | "InstanceNormalization"
                | "MaxPool"
                | "AveragePool"
                | "GlobalAveragePool"
                | "Resize"
                | "Upsample"
        );
        if spatial && x.dims.len() != 4 {
            return Some("1-D or 3-D spatial op (slimnet's are 2-D, NCHW)");
        }
        let text = |name: &str| {
            n.attribute
                .iter()
                .find(|a| a.name() == name)
                .map(|a| String::from_utf8_lossy(a.s()).into_owned())
        };
        if op == "Resize" && text("mode").as_deref() == Some("cubic") {
            return Some("cubic interpolation (slimnet resizes by nearest or linear)");
        }
        if op == "Resize" && attr("antialias") == Some(1) {
            return Some("antialiased resizing");
        }
        if op == "Resize"
            && text("coordinate_transformation_mode").as_deref() == Some("tf_crop_and_resize")
        {
            return Some("crop and resize (a region of interest)");
        }
        if op == "Concat" && g.input.len() > 1 {
            return Some("concatenation with a second operand, which becomes a constant (a slimnet graph has one input)");
        }
        if matches!(op, "BatchNormalization" | "Dropout")
            && (attr("training_mode") == Some(1) || n.input.len() > 2 && op == "Dropout")
        {
            return Some("training mode");
        }
    }
    None
}

/// The case's model with every graph input but the first turned into an initializer holding
/// the test's value.
pub fn baked(case: &Case) -> ModelProto {
    let mut m = case.model.clone();
    if let Some(g) = m.graph.as_mut() {
        let names: Vec<String> = g.input.iter().map(|i| i.name().to_string()).collect();
        for (k, name) in names.iter().enumerate().skip(1) {
            if let Some(t) = case.inputs.get(k) {
                let mut t = t.clone();
                t.name = Some(name.clone());
                g.initializer.push(t);
            }
        }
    }
    m
}

/// Imports the (baked) case, runs it on its first input and compares with its outputs
/// (`|a - b| <= 1e-5 + 1e-3 |b|`, NaN equal to NaN). A slimnet graph has one output, so a case
/// with several (the parts of a `Split`) is imported once per output, keeping only that one.
///
/// # Errors
/// The import or forward error, or the largest mismatch, naming the output when there are
/// several.
pub fn run(case: &Case) -> Result<(), String> {
    let model = baked(case);
    let outputs = model.graph.as_ref().map_or(0, |g| g.output.len());
    for k in 0..outputs {
        let mut m = model.clone();
        if let Some(g) = m.graph.as_mut() {
            g.output = vec![g.output[k].clone()];
        }
        run_output(case, &m, k).map_err(|e| {
            if outputs > 1 {
                format!("output {k}: {e}")
            } else {
                e
            }
        })?;
    }
    Ok(())
}

/// [`run`] for output `k`, with `model` the baked model keeping only that output.
fn run_output(case: &Case, model: &ModelProto, k: usize) -> Result<(), String> {
    let x = tensor::from_proto(&case.inputs[0], None).map_err(|e| e.to_string())?;
    let want = tensor::from_proto(&case.outputs[k], None).map_err(|e| e.to_string())?;
    let opts = ImportOptions::new().with_input_shape(&x.dims);
    let imported = reader::import(model, &opts).map_err(|e| format!("import: {e}"))?;
    let y: Tensor = imported
        .graph
        .forward(&x.tensor())
        .map_err(|e| format!("forward: {e}"))?;
    if y.shape() != want.dims.as_slice() {
        return Err(format!(
            "output shape {:?}, expected {:?}",
            y.shape(),
            want.dims
        ));
    }
    let (mut bad, mut worst) = (0usize, (0.0f32, 0usize));
    for (i, (a, b)) in y.iter().zip(want.floats()).enumerate() {
        let d = (a - b).abs();
        if (a.is_nan() && b.is_nan()) || *a == b || d <= 1e-5 + 1e-3 * b.abs() {
            continue;
        }
        bad += 1;
        if bad == 1 || d.is_nan() || d > worst.0 {
            worst = (d, i);
        }
    }
    if bad > 0 {
        return Err(format!(
            "{bad} values differ, the most ({}) at element {}",
            worst.0, worst.1
        ));
    }
    Ok(())
}
