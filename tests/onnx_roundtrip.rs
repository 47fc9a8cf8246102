//! Round trips through ONNX: zoo models and compressed models (low-rank, pruned and sparse,
//! int8) exported with `slimnet::export_onnx`, checked by `onnx.checker`, run in ONNX Runtime
//! from Python (one thread), compared with slimnet's own outputs, and (f32 models) read back
//! with the reader.

use std::path::{Path, PathBuf};

use slimnet::core::layers::BatchNorm2d;
use slimnet::core::rewrite::Selector;
use slimnet::core::{models, tensor, Graph, Layer, Tensor};
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{decompose, ConvMethod, LowRank};
use slimnet::prune::criterion::Magnitude;
use slimnet::prune::{Pruner, Scope};
use slimnet::quant::layers::{Int8Layer, QLinear};
use slimnet::quant::ptq::{quantize_static, PtqConfig};
use slimnet_testkit::python_with;

const INPUT: [usize; 4] = [1, 1, 28, 28];
/// f32 outputs of ONNX Runtime and slimnet agree to this (absolute, plus as much relative).
const F32_TOL: f32 = 1e-4;

const ORT_SCRIPT: &str = r#"
import json, sys, numpy as np, onnx, onnxruntime as ort
man = json.load(open(sys.argv[1]))
for c in man:
    m = onnx.load(c["model"])
    onnx.checker.check_model(m, full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(c["model"], so, providers=["CPUExecutionProvider"])
    x = np.fromfile(c["input"], dtype="<f4").reshape(c["shape"])
    y = s.run(None, {s.get_inputs()[0].name: x})[0].astype("<f4")
    y.tofile(c["output"])
    c["out_shape"] = list(y.shape)
    c["ops"] = sorted(set(n.op_type for n in m.graph.node))
json.dump(man, open(sys.argv[2], "w"))
"#;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slimnet-onnx-rt-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Exports each model, runs them all in ONNX Runtime, returns (output, op types) per model.
fn ort(tag: &str, cases: &[(&str, &Graph, &Tensor)]) -> Vec<(Tensor, Vec<String>)> {
    let mut man = Vec::new();
    for (name, g, x) in cases {
        let model = tmp(&format!("{tag}-{name}.onnx"));
        slimnet::export_onnx(g, &INPUT, &model).unwrap();
        let input = tmp(&format!("{tag}-{name}.in"));
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&input, bytes).unwrap();
        man.push(slimnet::core::serde_json::json!({
            "model": model, "input": input, "shape": x.shape(), "output": tmp(&format!("{tag}-{name}.out")),
        }));
    }
    let (m_in, m_out) = (
        tmp(&format!("{tag}-manifest.json")),
        tmp(&format!("{tag}-result.json")),
    );
    std::fs::write(&m_in, slimnet::core::serde_json::to_vec(&man).unwrap()).unwrap();
    let out = python_with(&["onnxruntime", "onnx", "numpy"])
        .args(["-c", ORT_SCRIPT])
        .arg(&m_in)
        .arg(&m_out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: Vec<slimnet::core::serde_json::Value> =
        slimnet::core::serde_json::from_slice(&std::fs::read(&m_out).unwrap()).unwrap();
    res.iter()
        .map(|c| {
            let shape: Vec<usize> = c["out_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let raw = std::fs::read(Path::new(c["output"].as_str().unwrap())).unwrap();
            let v = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let ops = c["ops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap().to_string())
                .collect();
            (tensor::from_vec(&shape, v).unwrap(), ops)
        })
        .collect()
}

/// Gives every batch norm random running statistics and affine parameters.
fn randomize_bn(g: &mut Graph, seed: u64) {
    let mut rng = tensor::rng(seed);
    g.visit_layers_mut(&mut |_, l| {
        if let Some(bn) = l.downcast_mut::<BatchNorm2d>() {
            let c = bn.running_mean.len();
            bn.running_mean = tensor::uniform(&[c], -0.5, 0.5, &mut rng);
            bn.running_var = tensor::uniform(&[c], 0.5, 2.0, &mut rng);
            *bn.weight.value_mut() = tensor::uniform(&[c], 0.5, 1.5, &mut rng);
            *bn.bias.value_mut() = tensor::uniform(&[c], -0.2, 0.2, &mut rng);
        }
    });
}

fn close(a: &Tensor, b: &Tensor, tol: f32) -> Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("shapes {:?} and {:?}", a.shape(), b.shape()));
    }
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0f32, f32::max);
    if worst <= tol {
        Ok(())
    } else {
        Err(format!("largest difference {worst}"))
    }
}

fn zoo() -> Vec<(&'static str, Graph)> {
    let mut v = vec![
        ("lenet5", models::lenet5(&mut tensor::rng(0)).unwrap()),
        ("lenet300", models::lenet300(&mut tensor::rng(1)).unwrap()),
        (
            "resnet_small",
            models::resnet_small(&mut tensor::rng(2)).unwrap(),
        ),
        ("vgg_small", models::vgg_small(&mut tensor::rng(3)).unwrap()),
    ];
    for (i, (_, g)) in v.iter_mut().enumerate() {
        randomize_bn(g, 10 + i as u64);
    }
    v
}

fn compressed() -> Vec<(&'static str, Graph)> {
    let mut low = models::lenet5(&mut tensor::rng(4)).unwrap();
    let rule = LowRank::new(ConvMethod::Tucker2, RankPolicy::MacRatio(0.3));
    decompose(
        &mut low,
        &INPUT,
        &Selector::Paths(vec!["conv2".into()]),
        &rule,
    )
    .unwrap();
    let mut sparse = models::lenet5(&mut tensor::rng(5)).unwrap();
    Pruner::new(Magnitude)
        .scope(Scope::Global)
        .prune(&mut sparse, 0.9)
        .unwrap();
    slimnet::prune::convert::to_sparse(&mut sparse, &INPUT, Selector::All).unwrap();
    let mut kinds = Vec::new();
    sparse.visit_layers(&mut |_, l| kinds.push(l.kind()));
    assert!(kinds.iter().any(|k| k.starts_with("Sparse")), "{kinds:?}");
    vec![("lowrank_lenet5", low), ("sparse_lenet5", sparse)]
}

/// A model of slimnet-onnx's own layers (what imports make of asymmetric padding, ceil-mode
/// pooling, constants, reshapes, transposes, matrix products and softmax over any axis).
fn onnx_layers() -> (&'static str, Graph) {
    use slimnet::core::layers::Conv2dConfig;
    use slimnet::onnx::layers::*;
    let mut rng = tensor::rng(6);
    let scale = tensor::uniform(&[4, 1, 1], 0.5, 1.5, &mut rng);
    let g = slimnet::core::Sequential::new()
        .push(
            "pad",
            Pad::new(vec![(0, 0), (0, 0), (1, 0), (0, 2)], PadMode::Constant(0.5)).unwrap(),
        )
        .push(
            "conv",
            Conv2dConfig::new(1, 4, 3)
                .with_stride(2)
                .init(&mut rng)
                .unwrap(),
        )
        .push(
            "pool",
            Pool2d::new(
                PoolKind::Avg {
                    count_include_pad: false,
                },
                [3, 3],
                [2, 2],
                [1, 0, 0, 1],
                [1, 1],
                true,
            )
            .unwrap(),
        )
        .push("scale", ConstOp::new(BinaryOp::Mul, scale, false))
        .push("clamp", Clamp::new(-1.0, 2.0).unwrap())
        .push(
            "edge",
            Pad::new(vec![(0, 0), (0, 0), (1, 1), (2, 0)], PadMode::Reflect).unwrap(),
        )
        .push("transpose", Transpose::new(vec![0, 1, 3, 2]).unwrap())
        .push("reshape", Reshape::new(vec![0, -1], false).unwrap())
        .push(
            "fc",
            MatMul::new(tensor::uniform(&[4 * 9 * 9, 10], -0.1, 0.1, &mut rng)).unwrap(),
        )
        .push("softmax", SoftmaxAxis::new(-1, false, false))
        .push("logsoftmax", SoftmaxAxis::new(1, true, true))
        .build()
        .unwrap();
    ("onnx_layers", g)
}

/// A transformer block as the reader imports one (PP-OCRv4's recognizer): a layer norm
/// spelled as reductions and element-wise ops, single-head attention (a matrix product of two
/// activations, softmax over the last axis), a slice of the channels, and unary functions.
fn attention() -> (&'static str, Graph) {
    use slimnet::core::layers::Conv2dConfig;
    use slimnet::onnx::layers::*;
    let mut rng = tensor::rng(8);
    let mut g = Graph::new();
    let x = g.input();
    let lin = |g: &mut Graph, name: &str, from, rng: &mut tensor::SlimRng| {
        let w = tensor::uniform(&[8, 8], -0.5, 0.5, rng);
        g.add_layer(name, MatMul::new(w).unwrap(), from).unwrap()
    };
    let conv = Conv2dConfig::new(1, 8, 3).with_stride(2);
    let c = g
        .add_layer("conv", conv.init(&mut rng).unwrap(), x)
        .unwrap();
    let flat = Reshape::new(vec![0, 8, -1], false).unwrap();
    let c = g.add_layer("flat", flat, c).unwrap();
    let t = g
        .add_layer("tokens", Transpose::new(vec![0, 2, 1]).unwrap(), c)
        .unwrap();
    // layer norm over the channels: (t - mean) / sqrt(mean((t - mean)^2) + eps)
    let mean = g
        .add_layer("mean", Reduce::new(ReduceOp::Mean, vec![-1], true), t)
        .unwrap();
    let neg = g.add_layer("neg", Unary::new(UnaryOp::Neg), mean).unwrap();
    let d = g.add("centered", t, neg).unwrap();
    let two = tensor::from_vec(&[], vec![2.0]).unwrap();
    let sq = g
        .add_layer("square", ConstOp::new(BinaryOp::Pow, two, false), d)
        .unwrap();
    let var = g
        .add_layer("var", Reduce::new(ReduceOp::Mean, vec![-1], true), sq)
        .unwrap();
    let eps = tensor::from_vec(&[], vec![1e-5]).unwrap();
    let var = g
        .add_layer("eps", ConstOp::new(BinaryOp::Add, eps, false), var)
        .unwrap();
    let sd = g.add_layer("sqrt", Unary::new(UnaryOp::Sqrt), var).unwrap();
    let r = g
        .add_layer("rstd", Unary::new(UnaryOp::Reciprocal), sd)
        .unwrap();
    let n = g.mul("norm", d, r).unwrap();
    // attention
    let q = lin(&mut g, "q", n, &mut rng);
    let k = lin(&mut g, "k", n, &mut rng);
    let v = lin(&mut g, "v", n, &mut rng);
    let kt = g
        .add_layer("kt", Transpose::new(vec![0, 2, 1]).unwrap(), k)
        .unwrap();
    let s = g.matmul("scores", q, kt).unwrap();
    let p = g
        .add_layer("softmax", SoftmaxAxis::new(-1, false, false), s)
        .unwrap();
    let a = g.matmul("mix", p, v).unwrap();
    // half the channels, then unary functions and a sum over the tokens
    let half = Slice::new(vec![0], vec![4], vec![-1], vec![1]).unwrap();
    let h = g.add_layer("half", half, a).unwrap();
    let h = g.add_layer("abs", Unary::new(UnaryOp::Abs), h).unwrap();
    let h = g.add_layer("exp", Unary::new(UnaryOp::Exp), h).unwrap();
    let h = g.add_layer("log", Unary::new(UnaryOp::Log), h).unwrap();
    let slopes = tensor::from_vec(&[4], vec![0.1, -0.2, 0.3, 2.0]).unwrap();
    let h = g.add_layer("prelu", PRelu::new(slopes), h).unwrap();
    let elu = Unary::new(UnaryOp::Elu { alpha: 0.5 });
    let h = g.add_layer("elu", elu, h).unwrap();
    g.add_layer("sum", Reduce::new(ReduceOp::Sum, vec![1], false), h)
        .unwrap();
    ("attention", g)
}

/// The upsampling layers of detection and segmentation heads, as the reader imports them, with
/// the reflection padding and instance normalization of style-transfer networks.
fn upsampling() -> (&'static str, Graph) {
    use slimnet::core::layers::{ActivationKind, Conv2dConfig, InstanceNormConfig};
    use slimnet::onnx::layers::*;
    let mut rng = tensor::rng(7);
    let w = tensor::uniform(&[4, 3, 3, 3], -0.5, 0.5, &mut rng);
    let b = tensor::uniform(&[3], -0.5, 0.5, &mut rng);
    let up = ConvTransposeConfig::new()
        .with_stride(2, 2)
        .with_pads([1, 0, 0, 1])
        .with_output_padding(1, 1);
    let nearest = |m| ResizeMode::Nearest(m);
    let g = slimnet::core::Sequential::new()
        .push(
            "conv",
            Conv2dConfig::new(1, 4, 3)
                .with_stride(2)
                .init(&mut rng)
                .unwrap(),
        )
        .push("up", ConvTranspose2d::new(w, Some(b), up).unwrap())
        .push(
            "reflect",
            Pad::spatial([1, 2, 2, 1], PadMode::Reflect).unwrap(),
        )
        .push("norm", {
            let mut n = InstanceNormConfig::new(3).with_eps(1e-3).init().unwrap();
            n.weight
                .value_mut()
                .assign(&tensor::uniform(&[3], 0.5, 1.5, &mut rng));
            n.bias
                .value_mut()
                .assign(&tensor::uniform(&[3], -0.5, 0.5, &mut rng));
            n
        })
        .push("norm_relu", {
            // an activation fused into the normalisation, as frozen plans have them: exported
            // as the node after it
            let cfg = InstanceNormConfig::new(3).with_activation(ActivationKind::Relu);
            let mut n = cfg.init().unwrap();
            n.bias
                .value_mut()
                .assign(&tensor::uniform(&[3], -0.5, 0.5, &mut rng));
            n
        })
        .push(
            "bilinear",
            Resize2d::new(
                ResizeMode::Linear,
                CoordMode::HalfPixel,
                ResizeTarget::Scales([1.5, 0.75]),
            )
            .unwrap(),
        )
        .push(
            "nearest",
            Resize2d::new(
                nearest(NearestMode::RoundPreferCeil),
                CoordMode::Asymmetric,
                ResizeTarget::Sizes([20, 31]),
            )
            .unwrap(),
        )
        .push(
            "fit",
            Resize2d::new(
                ResizeMode::Linear,
                CoordMode::HalfPixel,
                ResizeTarget::KeepAspect {
                    sizes: [12, 12],
                    fit: true,
                },
            )
            .unwrap(),
        )
        .push(
            "corners",
            Resize2d::new(
                ResizeMode::Linear,
                CoordMode::AlignCorners,
                ResizeTarget::Sizes([11, 9]),
            )
            .unwrap(),
        )
        .push(
            "simple",
            Resize2d::new(
                nearest(NearestMode::Simple),
                CoordMode::Asymmetric,
                ResizeTarget::Scales([2.0, 3.0]),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    ("upsampling", g)
}

#[test]
fn f32_models_match_onnx_runtime_and_read_back() {
    let models: Vec<(&str, Graph)> = zoo()
        .into_iter()
        .chain(compressed())
        .chain([onnx_layers(), upsampling(), attention()])
        .collect();
    let x = tensor::uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(99));
    let cases: Vec<(&str, &Graph, &Tensor)> = models.iter().map(|(n, g)| (*n, g, &x)).collect();
    let outs = ort("f32", &cases);
    for ((name, g), (y_ort, _)) in models.iter().zip(&outs) {
        let y = g.forward(&x).unwrap();
        close(y_ort, &y, F32_TOL)
            .unwrap_or_else(|e| panic!("{name}: ONNX Runtime vs slimnet: {e}"));
        let back = slimnet::load(tmp(&format!("f32-{name}.onnx"))).unwrap();
        close(&back.forward(&x).unwrap(), &y, F32_TOL)
            .unwrap_or_else(|e| panic!("{name}: read back: {e}"));
        println!("{name}: ONNX Runtime and the read-back model match slimnet within {F32_TOL}");
    }
}

#[test]
fn int8_models_run_in_int8_in_onnx_runtime() {
    let calib = tensor::uniform(&[128, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(7));
    let batches = || {
        (0..2).map(|i| {
            calib
                .slice(ndarray::s![i * 64..(i + 1) * 64, .., .., ..])
                .to_owned()
                .into_dyn()
        })
    };
    let mut models = Vec::new();
    for (name, g) in zoo().into_iter().chain(compressed()) {
        let q = quantize_static(&g, batches(), &PtqConfig::default()).unwrap();
        models.push((name, q));
    }
    let x = tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(98));
    let cases: Vec<(&str, &Graph, &Tensor)> = models.iter().map(|(n, g)| (*n, g, &x)).collect();
    let outs = ort("int8", &cases);
    for ((name, g), (y_ort, ops)) in models.iter().zip(&outs) {
        let y = g.forward(&x).unwrap();
        assert!(ops.iter().any(|o| o == "QLinearConv"), "{name}: {ops:?}");
        let exact = y
            .iter()
            .zip(y_ort)
            .filter(|(a, b)| (*a - *b).abs() <= 1e-5 * (1.0 + b.abs()))
            .count();
        let worst = y
            .iter()
            .zip(y_ort)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let range = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // one step of the last layer's input codes moves output c by at most
        // s_in * sum_k |w_ck| (every input one code off)
        let mut last = None;
        g.visit_layers(&mut |_, l| {
            if let Some(q) = l.downcast_ref::<QLinear>() {
                last = Some(q.clone());
            }
        });
        let q = last.expect("an int8 classifier");
        let (w, sw) = q.weight_i8();
        let cols = w.len() / sw.len();
        let step: Vec<f32> = (0..sw.len())
            .map(|c| {
                q.input_params().scale
                    * sw[c]
                    * w[c * cols..(c + 1) * cols]
                        .iter()
                        .map(|&v| (v as f32).abs())
                        .sum::<f32>()
            })
            .collect();
        for (i, (a, b)) in y.iter().zip(y_ort).enumerate() {
            let c = i % step.len();
            assert!(
                (a - b).abs() <= step[c] * 1.001 + 1e-5,
                "{name}: output {i}: {a} vs {b}, one input step {}",
                step[c]
            );
        }
        // read back: the int8 layers again, the same outputs
        let back = slimnet::load(tmp(&format!("int8-{name}.onnx"))).unwrap();
        let mut kinds = Vec::new();
        back.visit_layers(&mut |_, l| kinds.push(l.kind()));
        assert!(
            kinds.iter().any(|k| k.starts_with('Q')),
            "{name}: {kinds:?}"
        );
        let yb = back.forward(&x).unwrap();
        let back_exact = y
            .iter()
            .zip(&yb)
            .filter(|(a, b)| (*a - *b).abs() <= 1e-5 * (1.0 + b.abs()))
            .count();
        for (i, (a, b)) in y.iter().zip(&yb).enumerate() {
            let c = i % step.len();
            assert!(
                (a - b).abs() <= step[c] * 1.001 + 1e-5,
                "{name} read back: output {i}: {a} vs {b}"
            );
        }
        println!(
            "{name}: read back with {} int8 layers, {back_exact} of {} outputs equal",
            kinds.iter().filter(|k| k.starts_with('Q')).count(),
            y.len()
        );
        println!(
            "{name}: {exact} of {} outputs equal, largest difference {worst} (outputs up to {range}, one input step of the classifier at least {}); ops {ops:?}",
            y.len(),
            step.iter().fold(f32::INFINITY, |m, &v| m.min(v))
        );
    }
}
