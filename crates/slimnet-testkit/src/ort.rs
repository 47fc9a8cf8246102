//! ONNX Runtime as the peer: outputs and batch-1 latency of `.onnx` files, run from Python
//! (one intra-op thread, CPU provider) through [`python_with`](crate::python_with).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use slimnet_core::data::Dataset;
use slimnet_core::serde_json::{self, json, Value};
use slimnet_core::timing::Latency;
use slimnet_core::Tensor;

/// Runs every job of the manifest: `run` jobs write the model's output for an input file
/// (in chunks of `batch` along axis 0), `time` jobs the microseconds per image of each round,
/// the models taking turns image by image so that a change of load hits them alike.
const SCRIPT: &str = r#"
import json, sys, time, numpy as np, onnxruntime as ort
jobs = json.load(open(sys.argv[1]))
def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
for j in jobs:
    x = np.fromfile(j["input"], dtype="<f4").reshape(j["shape"])
    if j["kind"] == "run":
        s = session(j["model"]); name = s.get_inputs()[0].name
        b = max(1, j["batch"])
        ys = [s.run(None, {name: x[i:i + b]})[0] for i in range(0, len(x), b)]
        y = np.concatenate(ys).astype("<f4")
        y.tofile(j["output"])
        j["out_shape"] = list(y.shape)
    else:
        ss = [session(m) for m in j["models"]]
        names = [s.get_inputs()[0].name for s in ss]
        imgs = [x[i:i + 1] for i in range(len(x))]
        for s, n in zip(ss, names):
            for im in imgs:
                s.run(None, {n: im})
        times = [[] for _ in ss]
        for _ in range(j["rounds"]):
            for k, (s, n) in enumerate(zip(ss, names)):
                t0 = time.perf_counter()
                for im in imgs:
                    s.run(None, {n: im})
                times[k].append((time.perf_counter() - t0) * 1e6 / len(imgs))
        j["times"] = times
json.dump(jobs, open(sys.argv[2], "w"))
"#;

fn scratch(name: &str) -> Result<PathBuf, String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "slimnet-ort-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir.join(name))
}

fn write_f32(path: &Path, x: &Tensor) -> Result<(), String> {
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs the script on `jobs`, returning them with the results filled in.
fn execute(jobs: Vec<Value>) -> Result<Vec<Value>, String> {
    let (m_in, m_out) = (scratch("jobs.json")?, scratch("done.json")?);
    std::fs::write(&m_in, serde_json::to_vec(&jobs).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", m_in.display()))?;
    let out = crate::python_with(&["onnxruntime", "numpy"])
        .args(["-c", SCRIPT])
        .arg(&m_in)
        .arg(&m_out)
        .output()
        .map_err(|e| format!("running python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ONNX Runtime failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = std::fs::read(&m_out).map_err(|e| format!("{}: {e}", m_out.display()))?;
    serde_json::from_slice(&text).map_err(|e| e.to_string())
}

/// The first output of `model` for the input `x`, computed by ONNX Runtime on one thread in
/// chunks of `batch` along the first axis (the model must take any batch size, or `batch`
/// must be its batch size).
///
/// # Errors
/// When Python or ONNX Runtime fails (the message holds its error).
pub fn run(model: &Path, x: &Tensor, batch: usize) -> Result<Tensor, String> {
    let (input, output) = (scratch("x.f32")?, scratch("y.f32")?);
    write_f32(&input, x)?;
    let done = execute(vec![json!({
        "kind": "run", "model": model, "input": input, "shape": x.shape(),
        "output": output, "batch": batch,
    })])?;
    let shape: Vec<usize> = done[0]["out_shape"]
        .as_array()
        .ok_or("no output shape")?
        .iter()
        .map(|v| v.as_u64().map(|v| v as usize).ok_or("bad output shape"))
        .collect::<Result<_, _>>()?;
    let bytes = std::fs::read(&output).map_err(|e| format!("{}: {e}", output.display()))?;
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    slimnet_core::tensor::from_vec(&shape, v).map_err(|e| e.to_string())
}

/// The batch-1 latency of each of `models` in ONNX Runtime (one thread) on the images of
/// `images`, measured as [`speed::batch1`](crate::speed::batch1) measures slimnet: after one
/// untimed pass, each of `rounds` rounds runs every model over every image and records its
/// mean microseconds per image.
///
/// # Errors
/// When Python or ONNX Runtime fails.
pub fn batch1(models: &[&Path], images: &Dataset, rounds: usize) -> Result<Vec<Latency>, String> {
    let x = images.batch(&(0..images.len()).collect::<Vec<_>>()).0;
    let input = scratch("images.f32")?;
    write_f32(&input, &x)?;
    let done = execute(vec![json!({
        "kind": "time", "models": models, "input": input, "shape": x.shape(),
        "rounds": rounds.max(1),
    })])?;
    done[0]["times"]
        .as_array()
        .ok_or("no times")?
        .iter()
        .map(|t| {
            let t: Vec<f64> = t
                .as_array()
                .ok_or("bad times")?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            if t.is_empty() {
                return Err("no times".to_string());
            }
            Ok(Latency::of(t))
        })
        .collect()
}
