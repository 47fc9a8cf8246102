//! Graphs written the way exporters write them (PyTorch's `x.view(x.size(0), -1)` as
//! `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, `MatMul + Add`, a convolution's bias
//! as a separate `Add`, SiLU as `Mul(x, Sigmoid(x))`, asymmetric and `SAME_UPPER` padding,
//! ceil-mode pooling), built with `onnx.helper` for several opsets, run in ONNX Runtime and
//! imported: outputs within 1e-4 at another batch size than the one shapes were inferred with.

use slimnet_core::layers::{Flatten, Linear};
use slimnet_core::{tensor, Layer};
use slimnet_testkit::python_with;

const SCRIPT: &str = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
out = sys.argv[1]
rng = np.random.default_rng(0)
def init(name, a): return nh.from_array(np.asarray(a), name)
for opset in [9, 11, 13, 17]:
    f = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.3
    inits = [init("w1", f(8, 3, 3, 3)), init("b1", f(1, 8, 1, 1)), init("g", np.abs(f(8)) + 0.5),
             init("be", f(8)), init("mu", f(8)), init("var", np.abs(f(8)) + 0.5),
             init("w2", f(8, 1, 3, 3)), init("zero", np.array([0], np.int64)),
             init("minus1", np.array([-1], np.int64)), init("wf", f(8 * 3 * 3 if opset >= 10 else 8 * 2 * 2, 10)), init("bf", f(10))]
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["c1"], pads=[0, 0, 1, 1], strides=[2, 2], name="conv1"),
        h.make_node("Add", ["c1", "b1"], ["c1b"], name="conv1.bias"),
        h.make_node("BatchNormalization", ["c1b", "g", "be", "mu", "var"], ["bn"], epsilon=1e-3),
        h.make_node("Sigmoid", ["bn"], ["sg"]),
        h.make_node("Mul", ["bn", "sg"], ["silu"]),
        h.make_node("Conv", ["silu", "w2"], ["c2"], group=8, auto_pad="SAME_UPPER", strides=[2, 2]),
    ]
    if opset >= 11:
        inits += [init("lo", np.array(0, np.float32)), init("hi", np.array(6, np.float32))]
        nodes.append(h.make_node("Clip", ["c2", "lo", "hi"], ["r6"]))
    else:
        nodes.append(h.make_node("Clip", ["c2"], ["r6"], min=0.0, max=6.0))
    pool = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    if opset >= 10:
        pool["ceil_mode"] = 1
    nodes.append(h.make_node("MaxPool", ["r6"], ["p"], **pool))
    nodes.append(h.make_node("Shape", ["p"], ["shp"]))
    inits.append(init("idx0", np.array(0, np.int64)))
    nodes.append(h.make_node("Gather", ["shp", "idx0"], ["n"], axis=0))
    if opset >= 13:
        nodes.append(h.make_node("Unsqueeze", ["n", "zero"], ["n1"]))
    else:
        nodes.append(h.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]))
    nodes += [
        h.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        h.make_node("Reshape", ["p", "newshape"], ["flat"]),
        h.make_node("MatMul", ["flat", "wf"], ["mm"], name="fc"),
        h.make_node("Add", ["mm", "bf"], ["logits"]),
        h.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    g = h.make_graph(nodes, "patterns", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 16, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 10])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=7)
    onnx.checker.check_model(m)
    path = f"{out}/patterns_{opset}.onnx"
    onnx.save(m, path)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    x.astype("<f4").tofile(f"{path}.x"); y.astype("<f4").tofile(f"{path}.y")
"#;

fn read_f32(path: &str, shape: &[usize]) -> slimnet_core::Tensor {
    let raw = std::fs::read(path).unwrap();
    let v = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    tensor::from_vec(shape, v).unwrap()
}

#[test]
fn exporter_patterns_import_and_match_onnx_runtime() {
    let dir = std::env::temp_dir().join(format!("slimnet-onnx-patterns-{}", std::process::id()));
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
    for opset in [9, 11, 13, 17] {
        let path = dir.join(format!("patterns_{opset}.onnx"));
        let m = slimnet_onnx::load(&path).unwrap();
        assert_eq!(
            (m.input_shape.as_slice(), m.opset),
            (&[1, 3, 16, 16][..], opset)
        );
        let p = path.display().to_string();
        let x = read_f32(&format!("{p}.x"), &[2, 3, 16, 16]);
        let want = read_f32(&format!("{p}.y"), &[2, 10]);
        let y = m.graph.forward(&x).unwrap();
        let d = tensor::max_abs_diff(&y, &want);
        assert!(d < 1e-4, "opset {opset}: {d}");
        // the folded reshape is a Flatten, MatMul + Add one Linear with a bias, the conv
        // bias folded into the convolution (keeping its ONNX name)
        let g = &m.graph;
        let mut kinds = Vec::new();
        g.visit_layers(&mut |p, l| kinds.push(format!("{p}:{}", l.kind())));
        assert!(g.nodes().iter().any(|n| matches!(&n.op, slimnet_core::graph::Op::Layer(l) if l.downcast_ref::<Flatten>().is_some())), "{kinds:?}");
        let fc = g
            .layer("fc")
            .and_then(|l| l.downcast_ref::<Linear>())
            .expect("fc is Linear");
        assert!(fc.bias.is_some());
        assert!(kinds.iter().any(|k| k == "conv1:Conv2d"), "{kinds:?}");
        assert!(!kinds.iter().any(|k| k.contains("ConstOp")), "{kinds:?}");
        println!(
            "opset {opset}: {} nodes, max difference {d}",
            g.nodes().len()
        );
    }
}

#[test]
fn unsupported_ops_name_the_node_before_anything_runs() {
    use slimnet_onnx::proto::{
        tensor_shape_proto::{dimension::Value as D, Dimension},
        type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let node = |op: &str, name: &str, i: &[&str], o: &str| NodeProto {
        input: i.iter().map(|s| s.to_string()).collect(),
        output: vec![o.into()],
        name: Some(name.into()),
        op_type: Some(op.into()),
        ..Default::default()
    };
    let info = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: [1, 4]
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(D::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let model = |nodes: Vec<NodeProto>, inits: Vec<TensorProto>| ModelProto {
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![info("x")],
            output: vec![info("y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = model(
        vec![
            node("Relu", "r", &["x"], "a"),
            node("Resize", "up.1", &["a"], "y"),
        ],
        vec![],
    );
    let e = slimnet_onnx::reader::import(&m, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("up.1") && e.contains("Resize") && e.contains("13"),
        "{e}"
    );
    // the quantized ops need slimnet-quant's layers, which the facade hands the reader
    let scale = TensorProto {
        name: Some("s".into()),
        data_type: Some(1),
        float_data: vec![0.1],
        ..Default::default()
    };
    let q = model(
        vec![node("QuantizeLinear", "q", &["x", "s"], "y")],
        vec![scale],
    );
    let e = slimnet_onnx::reader::import(&q, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("slimnet::load"), "{e}");
}
