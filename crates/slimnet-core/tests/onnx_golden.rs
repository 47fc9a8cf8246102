//! Every slimnet-core layer against ONNX Runtime on seeded random inputs.
//!
//! The fixtures in `tests/fixtures/onnx_golden.json` come from the committed, seeded generator
//! `tests/fixtures/gen_onnx_golden.py` (its header pins the onnx / onnxruntime / numpy versions).
//! Regenerate from the repository root with
//! `python3 crates/slimnet-core/tests/fixtures/gen_onnx_golden.py`.
//!
//! Each case names an ONNX op with ONNX attributes; [`build`] maps it to a slimnet layer and
//! rejects anything it does not understand (an unknown op, attribute or parameter fails the
//! test instead of being skipped). Outputs are compared in inference mode (`Layer::forward`).

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use serde_json::Value;
use slimnet_core::layers::{
    Activation, ActivationKind, AvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig,
    ConvTranspose2d, ConvTransposeConfig, CoordMode, Dropout, Flatten, GlobalAvgPool,
    InstanceNorm2d, InstanceNormConfig, Linear, LinearConfig, MaxPool2d, NearestMode, PoolConfig,
    Resize2d, ResizeMode, ResizeTarget, Softmax,
};
use slimnet_core::{tensor, Layer, Tensor};

/// Absolute tolerance against ONNX Runtime (f32 with different summation orders).
const GOLDEN_ATOL: f32 = 1e-4;
/// Relative tolerance against ONNX Runtime.
const GOLDEN_RTOL: f32 = 1e-4;
/// The fixture must hold at least this many cases (guards against a truncated regeneration).
const MIN_CASES: usize = 66;
/// ONNX ops that the fixture must cover at least once.
const REQUIRED_OPS: [&str; 20] = [
    "Conv",
    "ConvTranspose",
    "Resize",
    "InstanceNormalization",
    "Gemm",
    "BatchNormalization",
    "Relu",
    "Clip",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Softmax",
    "LogSoftmax",
    "Dropout",
];

/// Groups of ops, one test each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Conv,
    Linear,
    BatchNorm,
    Activation,
    Pool,
    Reshape,
    ConvTranspose,
    Resize,
    InstanceNorm,
}

fn family(op: &str) -> Option<Family> {
    Some(match op {
        "Conv" => Family::Conv,
        "Gemm" => Family::Linear,
        "BatchNormalization" => Family::BatchNorm,
        "Relu" | "Clip" | "LeakyRelu" | "Sigmoid" | "Tanh" | "HardSigmoid" | "HardSwish" => {
            Family::Activation
        }
        "MaxPool" | "AveragePool" | "GlobalAveragePool" => Family::Pool,
        "Flatten" | "Softmax" | "LogSoftmax" | "Dropout" => Family::Reshape,
        "ConvTranspose" => Family::ConvTranspose,
        "Resize" => Family::Resize,
        "InstanceNormalization" => Family::InstanceNorm,
        _ => return None,
    })
}

/// One golden case.
struct Case {
    name: String,
    op: String,
    attrs: serde_json::Map<String, Value>,
    input: Tensor,
    params: BTreeMap<String, Tensor>,
    output: Tensor,
}

fn parse_tensor(v: &Value, what: &str) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: missing shape"))
        .iter()
        .map(|d| d.as_u64().unwrap_or_else(|| panic!("{what}: bad dim {d}")) as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: missing data"))
        .iter()
        .map(|x| {
            x.as_f64()
                .unwrap_or_else(|| panic!("{what}: bad value {x}")) as f32
        })
        .collect();
    tensor::from_vec(&shape, data).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/onnx_golden.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        json.as_array()
            .expect("the fixture is a list of cases")
            .iter()
            .map(|c| {
                let name = c["name"].as_str().expect("case name").to_string();
                let params = c["params"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{name}: params"))
                    .iter()
                    .map(|(k, v)| (k.clone(), parse_tensor(v, &format!("{name}.{k}"))))
                    .collect();
                Case {
                    op: c["op"].as_str().expect("case op").to_string(),
                    attrs: c["attrs"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{name}: attrs"))
                        .clone(),
                    input: parse_tensor(&c["input"], &format!("{name}.input")),
                    output: parse_tensor(&c["output"], &format!("{name}.output")),
                    params,
                    name,
                }
            })
            .collect()
    })
}

type Built = Result<Box<dyn Layer>, String>;

impl Case {
    /// Fails on any attribute or parameter outside the given lists.
    fn only(&self, attrs: &[&str], params: &[&str]) -> Result<(), String> {
        if let Some(a) = self.attrs.keys().find(|a| !attrs.contains(&a.as_str())) {
            return Err(format!("unsupported attribute {a:?} for {}", self.op));
        }
        if let Some(p) = self.params.keys().find(|p| !params.contains(&p.as_str())) {
            return Err(format!("unexpected parameter {p:?} for {}", self.op));
        }
        Ok(())
    }

    fn ints(&self, key: &str, default: &[usize]) -> Result<Vec<usize>, String> {
        match self.attrs.get(key) {
            None => Ok(default.to_vec()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_u64().map(|v| v as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("attribute {key}: {a:?} is not a list of sizes")),
            Some(v) => Err(format!("attribute {key}: {v} is not a list")),
        }
    }

    fn int(&self, key: &str, default: i64) -> Result<i64, String> {
        match self.attrs.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| format!("attribute {key}: {v} is not an integer")),
        }
    }

    fn float(&self, key: &str, default: f32) -> Result<f32, String> {
        match self.attrs.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|v| v as f32)
                .ok_or_else(|| format!("attribute {key}: {v} is not a number")),
        }
    }

    fn param(&self, key: &str) -> Result<Tensor, String> {
        self.params
            .get(key)
            .cloned()
            .ok_or_else(|| format!("missing parameter {key:?}"))
    }

    /// ONNX 2-D pads `[top, left, bottom, right]` as slimnet's symmetric `[ph, pw]`.
    fn symmetric_pads(&self) -> Result<[usize; 2], String> {
        match self.ints("pads", &[0, 0, 0, 0])?.as_slice() {
            &[t, l, b, r] if t == b && l == r => Ok([t, l]),
            p => Err(format!("pads {p:?} are not symmetric [t, l, t, l]")),
        }
    }

    fn pair(&self, key: &str) -> Result<[usize; 2], String> {
        match self.ints(key, &[1, 1])?.as_slice() {
            &[a, b] => Ok([a, b]),
            v => Err(format!("attribute {key}: {v:?} is not a pair")),
        }
    }

    fn axis_is_one(&self) -> Result<(), String> {
        match self.int("axis", 1)? {
            1 => Ok(()),
            a => Err(format!("axis {a} (slimnet works on axis 1)")),
        }
    }
}

fn conv(c: &Case) -> Built {
    c.only(
        &["kernel_shape", "strides", "pads", "dilations", "group"],
        &["weight", "bias"],
    )?;
    let w = c.param("weight")?;
    let ws = w.shape().to_vec();
    let [kh, kw] = match c.ints("kernel_shape", &ws[2..])?.as_slice() {
        &[kh, kw] if [kh, kw] == ws[2..] => [kh, kw],
        k => return Err(format!("kernel_shape {k:?} vs weight {ws:?}")),
    };
    let [ph, pw] = c.symmetric_pads()?;
    let bias = c.params.get("bias").cloned();
    let mut cfg = Conv2dConfig::new(c.input.shape()[1], ws[0], kh)
        .with_kernel(kh, kw)
        .with_padding2(ph, pw)
        .with_groups(c.int("group", 1)? as usize)
        .with_bias(bias.is_some());
    cfg.stride = c.pair("strides")?;
    cfg.dilation = c.pair("dilations")?;
    Ok(Box::new(
        Conv2d::from_parts(cfg, w, bias).map_err(|e| e.to_string())?,
    ))
}

fn gemm(c: &Case) -> Built {
    c.only(&["transA", "transB", "alpha", "beta"], &["weight", "bias"])?;
    if c.int("transA", 0)? != 0 || c.int("transB", 0)? != 1 {
        return Err("Linear is Gemm with transA=0, transB=1".into());
    }
    if c.float("alpha", 1.0)? != 1.0 || c.float("beta", 1.0)? != 1.0 {
        return Err("Linear is Gemm with alpha=1, beta=1".into());
    }
    let w = c.param("weight")?;
    let bias = c.params.get("bias").cloned();
    let cfg = LinearConfig::new(w.shape()[1], w.shape()[0]).with_bias(bias.is_some());
    Ok(Box::new(
        Linear::from_parts(cfg, w, bias).map_err(|e| e.to_string())?,
    ))
}

fn batchnorm(c: &Case) -> Built {
    c.only(&["epsilon"], &["scale", "B", "mean", "var"])?;
    let scale = c.param("scale")?;
    let mut cfg = BatchNormConfig::new(scale.len());
    cfg.eps = c.float("epsilon", 1e-5)?;
    let bn = BatchNorm2d::from_parts(cfg, scale, c.param("B")?, c.param("mean")?, c.param("var")?);
    Ok(Box::new(bn.map_err(|e| e.to_string())?))
}

fn activation(c: &Case) -> Built {
    let act = match c.op.as_str() {
        "Relu" => {
            c.only(&[], &[])?;
            Activation::relu()
        }
        "Clip" => {
            c.only(&["min", "max"], &[])?;
            if (c.float("min", f32::MIN)?, c.float("max", f32::MAX)?) != (0.0, 6.0) {
                return Err("only Clip(0, 6) (ReLU6) has a slimnet layer".into());
            }
            Activation::relu6()
        }
        "LeakyRelu" => {
            c.only(&["alpha"], &[])?;
            Activation::leaky_relu(c.float("alpha", 0.01)?)
        }
        "Sigmoid" => {
            c.only(&[], &[])?;
            Activation::sigmoid()
        }
        "Tanh" => {
            c.only(&[], &[])?;
            Activation::tanh()
        }
        "HardSigmoid" => {
            c.only(&["alpha", "beta"], &[])?;
            let (alpha, beta) = (c.float("alpha", 0.2)?, c.float("beta", 0.5)?);
            if (alpha, beta) == (1.0 / 6.0, 0.5) {
                // The PyTorch-convention constructor used by models.
                Activation::hard_sigmoid()
            } else {
                Activation::new(ActivationKind::HardSigmoid { alpha, beta })
                    .map_err(|e| e.to_string())?
            }
        }
        "HardSwish" => {
            c.only(&[], &[])?;
            Activation::hard_swish()
        }
        op => return Err(format!("unknown activation {op}")),
    };
    Ok(Box::new(act))
}

fn pool(c: &Case) -> Built {
    if c.op == "GlobalAveragePool" {
        c.only(&[], &[])?;
        return Ok(Box::new(GlobalAvgPool::new()));
    }
    c.only(
        &["kernel_shape", "strides", "pads", "count_include_pad"],
        &[],
    )?;
    let kernel = match c.ints("kernel_shape", &[])?.as_slice() {
        &[kh, kw] => [kh, kw],
        k => return Err(format!("kernel_shape {k:?} is not a pair")),
    };
    let mut cfg = PoolConfig::new(kernel[0]);
    cfg.kernel = kernel;
    cfg.stride = c.pair("strides")?;
    cfg.padding = c.symmetric_pads()?;
    match c.op.as_str() {
        "MaxPool" => {
            if c.attrs.contains_key("count_include_pad") {
                return Err("count_include_pad is not a MaxPool attribute".into());
            }
            Ok(Box::new(MaxPool2d::new(cfg).map_err(|e| e.to_string())?))
        }
        "AveragePool" => {
            let cfg = cfg.with_count_include_pad(c.int("count_include_pad", 0)? != 0);
            Ok(Box::new(AvgPool2d::new(cfg).map_err(|e| e.to_string())?))
        }
        op => Err(format!("unknown pool {op}")),
    }
}

fn reshape(c: &Case) -> Built {
    match c.op.as_str() {
        "Flatten" => {
            c.only(&["axis"], &[])?;
            c.axis_is_one()?;
            Ok(Box::new(Flatten::new()))
        }
        "Softmax" | "LogSoftmax" => {
            c.only(&["axis"], &[])?;
            c.axis_is_one()?;
            Ok(Box::new(if c.op == "Softmax" {
                Softmax::new()
            } else {
                Softmax::log()
            }))
        }
        "Dropout" => {
            c.only(&["ratio"], &[])?;
            let p = c.float("ratio", 0.5)?;
            Ok(Box::new(Dropout::new(p, 0).map_err(|e| e.to_string())?))
        }
        op => Err(format!("unknown op {op}")),
    }
}

fn conv_transpose(c: &Case) -> Built {
    c.only(
        &[
            "kernel_shape",
            "strides",
            "pads",
            "output_padding",
            "dilations",
            "group",
        ],
        &["weight", "bias"],
    )?;
    let w = c.param("weight")?;
    let ws = w.shape().to_vec();
    match c.ints("kernel_shape", &ws[2..])?.as_slice() {
        k if k == &ws[2..] => {}
        k => return Err(format!("kernel_shape {k:?} vs weight {ws:?}")),
    }
    let [sh, sw] = c.pair("strides")?;
    let [dh, dw] = c.pair("dilations")?;
    let pads = match c.ints("pads", &[0, 0, 0, 0])?.as_slice() {
        &[t, l, b, r] => [t, l, b, r],
        p => return Err(format!("pads {p:?} are not [top, left, bottom, right]")),
    };
    let [oh, ow] = match c.ints("output_padding", &[0, 0])?.as_slice() {
        &[a, b] => [a, b],
        v => return Err(format!("output_padding {v:?} is not a pair")),
    };
    let cfg = ConvTransposeConfig::new()
        .with_stride(sh, sw)
        .with_dilation(dh, dw)
        .with_pads(pads)
        .with_output_padding(oh, ow)
        .with_groups(c.int("group", 1)? as usize);
    let bias = c.params.get("bias").cloned();
    Ok(Box::new(
        ConvTranspose2d::new(w, bias, cfg).map_err(|e| e.to_string())?,
    ))
}

fn resize(c: &Case) -> Built {
    c.only(
        &[
            "mode",
            "coordinate_transformation_mode",
            "nearest_mode",
            "scales",
        ],
        &[],
    )?;
    let text = |key: &str, default: &str| -> Result<String, String> {
        match c.attrs.get(key) {
            None => Ok(default.to_string()),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("attribute {key}: {v} is not a string")),
        }
    };
    let coord = text("coordinate_transformation_mode", "half_pixel")?;
    let coord = CoordMode::from_onnx(&coord).ok_or_else(|| format!("coordinate mode {coord}"))?;
    let mode = match text("mode", "nearest")?.as_str() {
        "linear" => {
            if c.attrs.contains_key("nearest_mode") {
                return Err("nearest_mode with linear interpolation".into());
            }
            ResizeMode::Linear
        }
        "nearest" => {
            let m = text("nearest_mode", "round_prefer_floor")?;
            ResizeMode::Nearest(NearestMode::from_onnx(&m).ok_or_else(|| format!("nearest {m}"))?)
        }
        m => return Err(format!("mode {m} (slimnet resizes by nearest or linear)")),
    };
    let scales: Vec<f32> = match c.attrs.get("scales") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_f64().map(|v| v as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("scales {a:?} are not numbers"))?,
        v => return Err(format!("scales {v:?}: expected a list")),
    };
    let target = match scales.as_slice() {
        &[1.0, 1.0, h, w] => ResizeTarget::Scales([h, w]),
        s => return Err(format!("scales {s:?} (slimnet resizes H and W only)")),
    };
    Ok(Box::new(
        Resize2d::new(mode, coord, target).map_err(|e| e.to_string())?,
    ))
}

fn instance_norm(c: &Case) -> Built {
    c.only(&["epsilon"], &["scale", "B"])?;
    let scale = c.param("scale")?;
    let cfg = InstanceNormConfig::new(scale.len()).with_eps(c.float("epsilon", 1e-5)?);
    let l = InstanceNorm2d::from_parts(cfg, scale, c.param("B")?);
    Ok(Box::new(l.map_err(|e| e.to_string())?))
}

/// The slimnet layer for a case, or why there is none.
fn build(c: &Case) -> Built {
    match family(&c.op) {
        Some(Family::Conv) => conv(c),
        Some(Family::Linear) => gemm(c),
        Some(Family::BatchNorm) => batchnorm(c),
        Some(Family::Activation) => activation(c),
        Some(Family::Pool) => pool(c),
        Some(Family::Reshape) => reshape(c),
        Some(Family::ConvTranspose) => conv_transpose(c),
        Some(Family::Resize) => resize(c),
        Some(Family::InstanceNorm) => instance_norm(c),
        None => Err(format!("op {:?} is unknown to this test", c.op)),
    }
}

/// `|got - want| <= GOLDEN_ATOL + GOLDEN_RTOL * |want|`; false when either is NaN.
fn within_tolerance(got: f32, want: f32) -> bool {
    (got - want).abs() <= GOLDEN_ATOL + GOLDEN_RTOL * want.abs()
}

/// Runs a case; returns the max absolute error, or a description of the failure.
fn check(c: &Case) -> Result<f32, String> {
    let layer = build(c)?;
    let got = layer
        .forward(&c.input)
        .map_err(|e| format!("forward: {e}"))?;
    if got.shape() != c.output.shape() {
        return Err(format!(
            "shape {:?}, ONNX Runtime gives {:?}",
            got.shape(),
            c.output.shape()
        ));
    }
    let max_abs = tensor::max_abs_diff(&got, &c.output);
    let worst = got
        .iter()
        .zip(c.output.iter())
        .enumerate()
        .filter(|(_, (g, w))| !within_tolerance(**g, **w))
        .max_by(|a, b| {
            let (ea, eb) = ((a.1 .0 - a.1 .1).abs(), (b.1 .0 - b.1 .1).abs());
            ea.total_cmp(&eb)
        });
    match worst {
        None => Ok(max_abs),
        Some((i, (g, w))) => Err(format!(
            "max abs error {max_abs:e}; worst at flat index {i}: got {g}, ONNX Runtime {w}"
        )),
    }
}

/// Checks every case of a family and reports all failures at once.
fn check_family(fam: Family) {
    let mut ran = 0;
    let mut failures = Vec::new();
    for c in cases().iter().filter(|c| family(&c.op) == Some(fam)) {
        ran += 1;
        match check(c) {
            Ok(err) => println!("{:<40} {:<20} max abs error {err:.3e}", c.name, c.op),
            Err(msg) => failures.push(format!("{} ({}): {msg}", c.name, c.op)),
        }
    }
    assert!(ran > 0, "no {fam:?} case in the fixture");
    assert!(
        failures.is_empty(),
        "{} of {ran} {fam:?} cases disagree with ONNX Runtime (atol {GOLDEN_ATOL:e}, rtol \
         {GOLDEN_RTOL:e}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fixture_is_complete_and_every_case_is_known() {
    let cases = cases();
    assert!(
        cases.len() >= MIN_CASES,
        "fixture holds {} cases, expected at least {MIN_CASES}",
        cases.len()
    );
    let mut names = HashSet::new();
    for c in cases {
        assert!(names.insert(c.name.as_str()), "duplicate case {}", c.name);
        assert!(
            family(&c.op).is_some(),
            "case {} has op {:?}, unknown to this test",
            c.name,
            c.op
        );
        if let Err(e) = build(c) {
            panic!("case {} ({}) cannot be built: {e}", c.name, c.op);
        }
    }
    let ops: HashSet<&str> = cases.iter().map(|c| c.op.as_str()).collect();
    for op in REQUIRED_OPS {
        assert!(ops.contains(op), "no case for ONNX op {op}");
    }
}

#[test]
fn conv_matches_onnx_runtime() {
    check_family(Family::Conv);
}

#[test]
fn gemm_linear_matches_onnx_runtime() {
    check_family(Family::Linear);
}

#[test]
fn batchnorm_matches_onnx_runtime() {
    check_family(Family::BatchNorm);
}

#[test]
fn activations_match_onnx_runtime() {
    check_family(Family::Activation);
}

#[test]
fn pooling_matches_onnx_runtime() {
    check_family(Family::Pool);
}

#[test]
fn flatten_softmax_dropout_match_onnx_runtime() {
    check_family(Family::Reshape);
}

#[test]
fn conv_transpose_matches_onnx_runtime() {
    check_family(Family::ConvTranspose);
}

#[test]
fn resize_matches_onnx_runtime() {
    check_family(Family::Resize);
}

#[test]
fn instance_norm_matches_onnx_runtime() {
    check_family(Family::InstanceNorm);
}
