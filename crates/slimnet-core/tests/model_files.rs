//! Model files: lossless round trips, clear errors on bad files, and a mutation fuzz test.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::Rng;
use slimnet_core::graph::Sequential;
use slimnet_core::io::{self, Registry};
use slimnet_core::layers::*;
use slimnet_core::{models, tensor, Error, Graph, Layer, Tensor};

fn input(seed: u64) -> Tensor {
    tensor::uniform(&[2, 1, 28, 28], -1.0, 1.0, &mut tensor::rng(seed))
}

/// Changes BatchNorm running statistics away from their defaults and sets a pruning mask, so
/// that a round trip has everything to lose.
fn perturbed(mut g: Graph) -> Graph {
    for _ in 0..3 {
        g.forward_train(&input(5)).unwrap();
    }
    if let Some(fc) = g.layer_mut("fc1").and_then(|l| l.downcast_mut::<Linear>()) {
        let mask = fc.weight.value().mapv(|v| (v.abs() > 0.05) as u8 as f32);
        fc.weight.set_mask(mask).unwrap();
    }
    g
}

/// A graph with a matrix product of two activations: each 28x28 image times a 1x1
/// convolution of itself.
fn matmul_net(rng: &mut tensor::SlimRng) -> Graph {
    let mut g = Graph::new();
    let x = g.input();
    let f = g
        .add_layer("f", Conv2dConfig::new(1, 1, 1).init(rng).unwrap(), x)
        .unwrap();
    g.matmul("product", x, f).unwrap();
    g
}

#[test]
fn save_then_load_gives_bit_identical_outputs() {
    let mut rng = tensor::rng(3);
    for (name, g) in [
        ("lenet5", models::lenet5(&mut rng).unwrap()),
        ("lenet300", models::lenet300(&mut rng).unwrap()),
        ("vgg", models::vgg_small(&mut rng).unwrap()),
        ("resnet", models::resnet_small(&mut rng).unwrap()),
        ("matmul", matmul_net(&mut rng)),
    ] {
        let g = perturbed(g);
        let dir = std::env::temp_dir().join(format!("slimnet-test-{}-{name}", std::process::id()));
        let path = dir.join("model.safetensors");
        io::save(&g, &path).unwrap();
        let back = io::load(&path).unwrap();
        let x = input(9);
        let (a, b) = (g.forward(&x).unwrap(), back.forward(&x).unwrap());
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name}: outputs differ after a round trip"
        );
        // Masks and buffers survive too.
        let mut masks = (0, 0);
        g.visit_params(&mut |_, p| masks.0 += p.mask().is_some() as usize);
        back.visit_params(&mut |_, p| masks.1 += p.mask().is_some() as usize);
        assert_eq!(masks.0, masks.1, "{name}: masks lost");
        assert!(
            io::to_bytes(&g).unwrap() == io::to_bytes(&back).unwrap(),
            "{name}: file bytes differ"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn python_safetensors_reads_every_tensor() {
    let g = perturbed(models::lenet5(&mut tensor::rng(4)).unwrap());
    let path = std::env::temp_dir().join(format!("slimnet-py-{}.safetensors", std::process::id()));
    io::save(&g, &path).unwrap();
    let script = "import sys, json\n\
                  from safetensors.numpy import load_file\n\
                  from safetensors import safe_open\n\
                  t = load_file(sys.argv[1])\n\
                  with safe_open(sys.argv[1], 'np') as f: meta = f.metadata()\n\
                  json.loads(meta['slimnet.graph'])\n\
                  print(json.dumps({k: [list(v.shape), float(v.astype('float64').sum())] for k, v in t.items()}))";
    let out = slimnet_testkit::python_with(&["safetensors", "numpy"])
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python could not read the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut n = 0;
    g.stored_tensors(&mut |name, t| {
        n += 1;
        let entry = &got[name];
        assert_eq!(entry[0], serde_json::json!(t.shape), "{name}: shape");
        let sum: f64 = match t.dtype {
            safetensors::Dtype::U8 => t.bytes.iter().map(|&b| b as f64).sum(),
            _ => t
                .bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .sum(),
        };
        assert!(
            (entry[1].as_f64().unwrap() - sum).abs() < 1e-6 * (1.0 + sum.abs()),
            "{name}: values"
        );
    });
    assert_eq!(got.as_object().unwrap().len(), n);
    std::fs::remove_file(path).ok();
}

/// A small model whose file is a few kilobytes, for error and fuzz tests.
fn tiny() -> Graph {
    let mut rng = tensor::rng(1);
    let mut g = Sequential::new()
        .push(
            "conv",
            Conv2dConfig::new(1, 2, 3)
                .with_stride(2)
                .init(&mut rng)
                .unwrap(),
        )
        .push("bn", BatchNormConfig::new(2).init().unwrap())
        .push("relu", Activation::relu())
        .push("pool", MaxPool2d::new(PoolConfig::new(2)).unwrap())
        .push("flat", Flatten::new())
        .push("fc", LinearConfig::new(72, 10).init(&mut rng).unwrap())
        .build()
        .unwrap();
    let (x, y) = (g.input(), g.output());
    let side = g.add_layer("side", Softmax::new(), y).unwrap();
    let sum = g.add("sum", y, side).unwrap();
    g.set_output(sum).unwrap();
    let _ = x;
    g
}

/// Splits a safetensors file into its JSON header and the data that follows.
fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn graph_json(header: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(header["__metadata__"]["slimnet.graph"].as_str().unwrap()).unwrap()
}

fn with_graph(header: &serde_json::Value, g: &serde_json::Value) -> serde_json::Value {
    let mut h = header.clone();
    h["__metadata__"]["slimnet.graph"] = serde_json::Value::String(g.to_string());
    h
}

fn load_err(bytes: &[u8]) -> String {
    match io::from_bytes(bytes, &Registry::core()) {
        Ok(_) => panic!("a bad file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_give_clear_errors() {
    let good = io::to_bytes(&tiny()).unwrap();
    io::from_bytes(&good, &Registry::core()).unwrap();
    let (h, data) = split(&good);
    let g = graph_json(&h);

    assert!(
        load_err(&good[..good.len() - 3]).contains("not a safetensors file"),
        "truncated"
    );
    assert!(
        load_err(&good[..5]).contains("not a safetensors file"),
        "header cut"
    );
    assert!(load_err(b"").contains("not a safetensors file"));

    let mut bad_json = h.clone();
    bad_json["__metadata__"]["slimnet.graph"] = "{\"nodes\": [".into();
    assert!(load_err(&join(&bad_json, &data)).contains("graph JSON"));

    let mut no_meta = h.clone();
    no_meta.as_object_mut().unwrap().remove("__metadata__");
    assert!(load_err(&join(&no_meta, &data)).contains("no metadata"));

    let mut version = g.clone();
    version["format_version"] = 99.into();
    assert!(load_err(&join(&with_graph(&h, &version), &data)).contains("format version"));

    // A graph that asks for a tensor the file does not hold.
    let mut missing = g.clone();
    let bn = missing["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["name"] == "conv")
        .unwrap();
    bn["name"] = "conv0".into();
    missing["nodes"][2]["inputs"] = serde_json::json!(["conv0"]);
    let e = load_err(&join(&with_graph(&h, &missing), &data));
    assert!(e.contains("missing tensor `conv0.weight`"), "{e}");

    let mut wrong_shape = h.clone();
    wrong_shape["fc.weight"]["shape"] = serde_json::json!([72, 10]);
    let e = load_err(&join(&wrong_shape, &data));
    assert!(e.contains("fc") && e.contains("[72, 10]"), "{e}");

    let mut wrong_dtype = h.clone();
    wrong_dtype["fc.bias"]["dtype"] = "I32".into();
    assert!(load_err(&join(&wrong_dtype, &data)).contains("dtype"));

    let mut unknown = g.clone();
    unknown["nodes"][1]["kind"] = "Conv7d".into();
    let e = load_err(&join(&with_graph(&h, &unknown), &data));
    assert!(e.contains("unknown layer kind `Conv7d` at `conv`"), "{e}");

    let mut bad_cfg = g.clone();
    bad_cfg["nodes"][1]["config"]["groups"] = 0.into();
    assert!(load_err(&join(&with_graph(&h, &bad_cfg), &data)).contains("groups"));

    let mut bad_edge = g.clone();
    bad_edge["nodes"][2]["inputs"] = serde_json::json!(["nowhere"]);
    assert!(load_err(&join(&with_graph(&h, &bad_edge), &data)).contains("unknown input"));

    let mut dropped = g.clone();
    dropped["nodes"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["name"] != "bn");
    dropped["nodes"][2]["inputs"] = serde_json::json!(["conv"]);
    assert!(load_err(&join(&with_graph(&h, &dropped), &data)).contains("belongs to no layer"));
}

fn mutate(good: &[u8], rng: &mut tensor::SlimRng) -> Vec<u8> {
    let (h, data) = split(good);
    let hlen = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize + 8;
    match rng.random_range(0..5) {
        // Random byte changes, mostly in the header.
        0 => {
            let mut b = good.to_vec();
            for _ in 0..rng.random_range(1..6) {
                let i = if rng.random_bool(0.8) {
                    rng.random_range(0..hlen)
                } else {
                    rng.random_range(0..b.len())
                };
                b[i] = rng.random();
            }
            b
        }
        // Truncation or garbage appended.
        1 => {
            let mut b = good.to_vec();
            if rng.random_bool(0.5) {
                b.truncate(rng.random_range(0..b.len()));
            } else {
                b.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>()));
            }
            b
        }
        // The length prefix.
        2 => {
            let mut b = good.to_vec();
            let v: u64 = match rng.random_range(0..3) {
                0 => rng.random(),
                1 => (hlen as u64 - 8)
                    .wrapping_add(rng.random_range(0..16))
                    .wrapping_sub(8),
                _ => rng.random_range(0..b.len() as u64 * 2),
            };
            b[..8].copy_from_slice(&v.to_le_bytes());
            b
        }
        // Tensor table edits: shapes, dtypes, offsets.
        3 => {
            let mut h = h.clone();
            let names: Vec<String> = h
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "__metadata__")
                .cloned()
                .collect();
            let k = &names[rng.random_range(0..names.len())];
            match rng.random_range(0..3) {
                0 => h[k]["shape"][0] = rng.random_range(0..100u64).into(),
                1 => {
                    h[k]["dtype"] =
                        ["F32", "F16", "I8", "U8", "I64", "BOOL"][rng.random_range(0..6)].into()
                }
                _ => h[k]["data_offsets"][1] = rng.random_range(0..(data.len() as u64 + 10)).into(),
            }
            join(&h, &data)
        }
        // Graph JSON edits: replace a random value somewhere in the graph.
        _ => {
            let mut g = graph_json(&h);
            let nodes = g["nodes"].as_array().unwrap().len();
            let n = rng.random_range(0..nodes);
            let node = &mut g["nodes"][n];
            let value: serde_json::Value = match rng.random_range(0..7) {
                0 => serde_json::Value::Null,
                1 => rng.random_range(0..5u64).into(),
                2 => (rng.random::<u32>() as u64 * 1024).into(),
                3 => (-1).into(),
                4 => "Add".into(),
                5 => serde_json::json!([0, 1 << 30]),
                _ => serde_json::json!({"x": 1}),
            };
            let keys: Vec<String> = node.as_object().unwrap().keys().cloned().collect();
            let key = &keys[rng.random_range(0..keys.len())];
            if key == "config" && node["config"].is_object() {
                let ck: Vec<String> = node["config"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                if !ck.is_empty() {
                    let c = &ck[rng.random_range(0..ck.len())];
                    node["config"][c] = value;
                }
            } else {
                node[key] = value;
            }
            if rng.random_bool(0.1) {
                g["output"] = "relu".into();
            }
            join(&with_graph(&h, &g), &data)
        }
    }
}

#[test]
fn ten_thousand_mutated_files_never_panic() {
    let good = io::to_bytes(&tiny()).unwrap();
    let reg = Registry::core();
    let mut rng = tensor::rng(2024);
    let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    let (mut ok, mut err, mut panics) = (0, 0, Vec::new());
    for i in 0..10_000 {
        let bytes = mutate(&good, &mut rng);
        let r = catch_unwind(AssertUnwindSafe(|| match io::from_bytes(&bytes, &reg) {
            Ok(g) => {
                // A model that loads must also answer a forward pass with a value or an error.
                let small = g
                    .shapes(x.shape())
                    .map(|s| s.iter().all(|s| s.iter().product::<usize>() < 1 << 22))
                    .unwrap_or(true);
                if small {
                    let _ = g.forward(&x);
                }
                true
            }
            Err(
                Error::ModelFile(_)
                | Error::UnknownKind { .. }
                | Error::Config { .. }
                | Error::Graph(_),
            ) => false,
            Err(other) => panic!("unexpected error kind: {other}"),
        }));
        match r {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panics.push(i),
        }
    }
    assert!(
        panics.is_empty(),
        "{} mutated files panicked, first at #{}",
        panics.len(),
        panics[0]
    );
    assert_eq!(ok + err, 10_000);
    assert!(
        err > 5_000,
        "most mutations must be rejected, got {err} errors and {ok} loads"
    );
}
