//! int8 models quantized by ONNX Runtime's own tool (`onnxruntime.quantization.quantize_static`,
//! QDQ and QOperator formats, per-channel weights) import through `slimnet::load` and match
//! ONNX Runtime's outputs within a few quantization steps. (A bias after the last MatMul
//! would become ONNX Runtime's contrib op `com.microsoft::QLinearAdd`, which is not read.)

use slimnet::core::{tensor, Layer, Tensor};
use slimnet_testkit::python_with;

const SCRIPT: &str = r#"
import sys, numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
import onnxruntime as ort
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType
out = sys.argv[1]
rng = np.random.default_rng(0)
f = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)
inits = [nh.from_array(f(8, 1, 3, 3), "w1"), nh.from_array(f(8), "b1"),
         nh.from_array(f(16, 8, 3, 3), "w2"), nh.from_array(f(16), "b2"),
         nh.from_array(f(16 * 5 * 5, 10), "wf")]
nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c1"], ["r1"]),
         h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
         h.make_node("Conv", ["p1", "w2", "b2"], ["c2"]),
         h.make_node("Relu", ["c2"], ["r2"]),
         h.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
         h.make_node("Flatten", ["p2"], ["fl"]),
         h.make_node("MatMul", ["fl", "wf"], ["y"])]
g = h.make_graph(nodes, "small", [h.make_tensor_value_info("x", T.FLOAT, ["N", 1, 24, 24])],
                 [h.make_tensor_value_info("y", T.FLOAT, ["N", 10])], inits)
m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)], ir_version=7)
onnx.save(m, f"{out}/float.onnx")
calib = [rng.random((1, 1, 24, 24), dtype=np.float32) for _ in range(32)]
class Reader(CalibrationDataReader):
    def __init__(self): self.it = iter([{"x": c} for c in calib])
    def get_next(self): return next(self.it, None)
x = rng.random((4, 1, 24, 24), dtype=np.float32)
x.astype("<f4").tofile(f"{out}/x.bin")
for fmt, name in [(QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qop")]:
    path = f"{out}/{name}.onnx"
    quantize_static(f"{out}/float.onnx", path, Reader(), quant_format=fmt, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y.astype("<f4").tofile(f"{out}/{name}.y")
    print(name, sorted(set(n.op_type for n in onnx.load(path).graph.node)))
"#;

fn read(path: &std::path::Path, shape: &[usize]) -> Tensor {
    let raw = std::fs::read(path).unwrap();
    let v = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    tensor::from_vec(shape, v).unwrap()
}

#[test]
fn onnx_runtime_quantized_models_import() {
    let dir = std::env::temp_dir().join(format!("slimnet-onnx-ortq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = python_with(&["onnxruntime", "onnx", "numpy"])
        .args(["-c", SCRIPT])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let x = read(&dir.join("x.bin"), &[4, 1, 24, 24]);
    for name in ["qdq", "qop"] {
        let g = slimnet::load(dir.join(format!("{name}.onnx"))).unwrap();
        let want = read(&dir.join(format!("{name}.y")), &[4, 10]);
        let y = g.forward(&x).unwrap();
        let d = tensor::max_abs_diff(&y, &want);
        let range = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let mut kinds = Vec::new();
        g.visit_layers(&mut |_, l| kinds.push(l.kind()));
        println!("{name}: largest difference {d} (outputs up to {range}); layers {kinds:?}");
        assert!(d <= 0.05 * range.max(1.0), "{name}: {d}");
        if name == "qop" {
            // QLinearConv and QLinearMatMul come in as slimnet's int8 layers
            for k in ["QConv2d", "QLinear"] {
                assert!(kinds.contains(&k), "{kinds:?}");
            }
        }
    }
}
