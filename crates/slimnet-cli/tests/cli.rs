//! The `slimnet` binary end to end: every error case prints one line on stderr and exits with
//! its class's code; the commands work on small models and MNIST subsets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use slimnet::core::data::npy;
use slimnet::core::layers::LinearConfig;
use slimnet::core::{models, tensor, Sequential};

/// Exit codes (see `slimnet --help`).
const USAGE: i32 = 2;
const IO: i32 = 3;
const RECIPE: i32 = 4;
const MODEL: i32 = 5;
const DATA: i32 = 6;
const STEPS: i32 = 7;

/// A fresh folder for one test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slimnet-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn slimnet(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slimnet"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the binary runs")
}

/// Runs `args`, expects exit code `code` and one line on stderr containing `needle`.
fn fails(cwd: &Path, args: &[&str], code: i32, needle: &str) -> String {
    let o = slimnet(cwd, args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: `{needle}` not in: {err}"
    );
    assert!(lines[0].starts_with("error"), "{err}");
    err
}

/// Runs `args`, expects success; returns stdout.
fn succeeds(cwd: &Path, args: &[&str]) -> String {
    let o = slimnet(cwd, args);
    assert!(
        o.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A random LeNet-300 saved in `d`.
fn lenet300(d: &Path) -> String {
    let p = d.join("lenet300.safetensors");
    slimnet::save(&models::lenet300(&mut tensor::rng(0)).unwrap(), &p).unwrap();
    p.display().to_string()
}

/// A model that takes `[N, 10]`, not images.
fn vector_model(d: &Path) -> String {
    let p = d.join("vector.safetensors");
    let g = Sequential::new()
        .push(
            "fc",
            LinearConfig::new(10, 10).init(&mut tensor::rng(0)).unwrap(),
        )
        .build()
        .unwrap();
    slimnet::save(&g, &p).unwrap();
    p.display().to_string()
}

fn write(d: &Path, name: &str, text: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A recipe with these steps (and quick timing).
fn recipe(d: &Path, name: &str, steps: &str) -> String {
    write(
        d,
        name,
        &format!("[measure]\nwarmup = 1\nruns = 3\nmin_time_ms = 0\n\n{steps}"),
    )
}

/// `compress --recipe r --model m`.
fn compress<'a>(r: &'a str, m: &'a str) -> [&'a str; 5] {
    ["compress", "--recipe", r, "--model", m]
}

const PRUNE: &str = "[[step]]\nstep = \"prune\"\nsparsity = 0.9\n";
const SPARSE: &str = "[[step]]\nstep = \"to_sparse\"\n";
const QUANT: &str = "[[step]]\nstep = \"quantize\"\ncalibration = 64\n";

#[test]
fn file_errors() {
    let d = dir("files");
    fails(
        &d,
        &["inspect", "missing.safetensors"],
        IO,
        "missing.safetensors",
    );
    fails(&d, &["eval", "missing.onnx"], IO, "missing.onnx");
    fails(&d, &["inspect", "."], IO, "is a folder");
    fails(
        &d,
        &["compress", "--recipe", "nope.toml"],
        IO,
        "recipe nope.toml: no such file",
    );
    let r = write(
        &d,
        "path.toml",
        &format!("[model]\npath = \"absent.safetensors\"\n{PRUNE}"),
    );
    fails(&d, &["compress", "--recipe", &r], IO, "absent.safetensors");
}

#[test]
fn model_file_errors() {
    let d = dir("models");
    let empty = write(&d, "empty.safetensors", "");
    fails(&d, &["inspect", &empty], MODEL, "empty.safetensors");
    let junk = d.join("junk.safetensors");
    std::fs::write(
        &junk,
        (0..4000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fails(
        &d,
        &["inspect", junk.to_str().unwrap()],
        MODEL,
        "model file",
    );
    let bad_onnx = write(&d, "bad.onnx", "not a protobuf at all");
    fails(&d, &["inspect", &bad_onnx], MODEL, "bad.onnx");

    // a layer kind no registry knows
    let p = d.join("lenet5.safetensors");
    slimnet::save(&models::lenet5(&mut tensor::rng(0)).unwrap(), &p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    // the kind is in the graph JSON (a string in the header's metadata)
    let at = bytes
        .windows(7)
        .position(|w| w == b"Flatten")
        .expect("the header names Flatten");
    let mut bad = bytes.clone();
    bad[at..at + 7].copy_from_slice(b"Mystery");
    let unknown = d.join("unknown.safetensors");
    std::fs::write(&unknown, bad).unwrap();
    let e = fails(
        &d,
        &["inspect", unknown.to_str().unwrap()],
        MODEL,
        "unknown layer kind `Mystery`",
    );
    assert!(e.contains("flatten"), "{e}");
}

#[test]
fn recipe_errors() {
    let d = dir("recipes");
    let m = lenet300(&d);
    let r = recipe(&d, "top.toml", &format!("colour = \"red\"\n{PRUNE}"));
    fails(
        &d,
        &compress(&r, &m),
        RECIPE,
        "top.toml:6:1: unknown field `colour`",
    );
    let r = recipe(&d, "key.toml", &format!("{PRUNE}sparsty = 0.5\n"));
    fails(
        &d,
        &compress(&r, &m),
        RECIPE,
        "key.toml:9:1: unknown field `sparsty`",
    );
    let r = recipe(&d, "kind.toml", "[[step]]\nstep = \"shrink\"\n");
    fails(&d, &compress(&r, &m), RECIPE, "unknown variant `shrink`");
    let r = recipe(&d, "syntax.toml", "[[step]\nstep = \"prune\"\n");
    fails(&d, &compress(&r, &m), RECIPE, "syntax.toml:6:");
    let r = recipe(
        &d,
        "type.toml",
        "[[step]]\nstep = \"prune\"\nsparsity = \"high\"\n",
    );
    fails(
        &d,
        &compress(&r, &m),
        RECIPE,
        "invalid type: string \"high\"",
    );
    let r = recipe(&d, "empty.toml", "");
    fails(&d, &compress(&r, &m), RECIPE, "at least one [[step]]");
    let r = recipe(
        &d,
        "first.toml",
        "[[step]]\nsparsity = 0.5\nstep = \"prune\"\n",
    );
    fails(&d, &compress(&r, &m), RECIPE, "found `sparsity` first");
    let r = recipe(
        &d,
        "nested.toml",
        &format!("{PRUNE}fine_tune = {{ epochs = 1, learning_rate = 0.1 }}\n"),
    );
    fails(
        &d,
        &compress(&r, &m),
        RECIPE,
        "unknown field `learning_rate`",
    );
    let r = recipe(
        &d,
        "both.toml",
        &format!("[model]\nzoo = \"lenet5\"\npath = \"x.safetensors\"\n{PRUNE}"),
    );
    fails(
        &d,
        &compress(&r, &m),
        RECIPE,
        "either model.zoo or model.path",
    );
    let r = recipe(
        &d,
        "neg.toml",
        "[[step]]\nstep = \"quantize\"\ncalibration = -5\n",
    );
    fails(&d, &compress(&r, &m), RECIPE, "invalid value: integer `-5`");
}

#[test]
fn step_order_and_settings_errors() {
    let d = dir("order");
    let m = lenet300(&d);
    let r = recipe(&d, "pq.toml", &format!("{QUANT}{PRUNE}"));
    fails(
        &d,
        &compress(&r, &m),
        STEPS,
        "step 2 `prune`: the model is int8",
    );
    let r = recipe(&d, "sparse.toml", SPARSE);
    fails(
        &d,
        &compress(&r, &m),
        STEPS,
        "step 1 `to_sparse`: no layer has a pruning mask",
    );
    let r = recipe(
        &d,
        "tune.toml",
        &format!("{PRUNE}{SPARSE}[[step]]\nstep = \"fine_tune\"\n"),
    );
    fails(
        &d,
        &compress(&r, &m),
        STEPS,
        "step 3 `fine_tune`: the model holds sparse deploy layers",
    );
    let r = recipe(
        &d,
        "dec.toml",
        &format!("{PRUNE}[[step]]\nstep = \"decompose\"\nmethod = \"cp\"\nrank = \"vbmf\"\n"),
    );
    fails(
        &d,
        &compress(&r, &m),
        STEPS,
        "step 2 `decompose`: the model is pruned",
    );
    let r = recipe(&d, "qq.toml", &format!("{QUANT}{QUANT}"));
    fails(&d, &compress(&r, &m), STEPS, "already quantized");
    // bad numbers
    let r = recipe(
        &d,
        "big.toml",
        "[[step]]\nstep = \"prune\"\nsparsity = 1.5\n",
    );
    fails(
        &d,
        &compress(&r, &m),
        STEPS,
        "step 1 `prune`: sparsity must be in [0, 1), got 1.5",
    );
    let r = recipe(
        &d,
        "rank.toml",
        "[[step]]\nstep = \"decompose\"\nmethod = \"tucker2\"\nrank = { mac_ratio = 0.0 }\n",
    );
    fails(
        &d,
        &compress(&r, &m),
        STEPS,
        "rank.mac_ratio must be in (0, 1]",
    );
    let r = recipe(&d, "lr.toml", "[[step]]\nstep = \"fine_tune\"\nlr = -0.1\n");
    fails(&d, &compress(&r, &m), STEPS, "lr must be a positive number");
    let r = recipe(
        &d,
        "agp.toml",
        "[[step]]\nstep = \"prune\"\nsparsity = 0.5\nschedule = { agp = { epochs = 2, updates = 4 } }\n",
    );
    fails(&d, &compress(&r, &m), STEPS, "give fine_tune settings");

    // an int8 model file refuses a step that needs float weights
    let int8 = d.join("int8.safetensors");
    let calib = (0..2).map(|i| tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(i)));
    let q = slimnet::quant::ptq::quantize_static(
        &models::lenet300(&mut tensor::rng(0)).unwrap(),
        calib,
        &Default::default(),
    )
    .unwrap();
    slimnet::save(&q, &int8).unwrap();
    let r = recipe(&d, "prune.toml", PRUNE);
    fails(
        &d,
        &[
            "compress",
            "--recipe",
            &r,
            "--model",
            int8.to_str().unwrap(),
            "--train-examples",
            "64",
            "--validation-examples",
            "64",
        ],
        STEPS,
        "the model is int8 (as given)",
    );
}

#[test]
fn data_and_shape_errors() {
    let d = dir("data");
    let v = vector_model(&d);
    let m = lenet300(&d);
    fails(
        &d,
        &["inspect", &v],
        DATA,
        "does not take inputs of shape [1, 1, 28, 28]",
    );
    fails(
        &d,
        &["inspect", &m, "--input", "1,3,32,32"],
        DATA,
        "[1, 3, 32, 32]",
    );
    fails(
        &d,
        &["bench", &m, "--example", "2,28,28"],
        DATA,
        "[1, 2, 28, 28]",
    );
    let r = recipe(&d, "p.toml", PRUNE);
    fails(
        &d,
        &[
            "compress",
            "--recipe",
            &r,
            "--model",
            &v,
            "--validation-examples",
            "10",
        ],
        DATA,
        "the model does not take the mnist examples",
    );
    fails(
        &d,
        &["compress", "--recipe", &r, "--model", &m, "--data", "cifar"],
        DATA,
        "unknown data set `cifar`",
    );
    fails(
        &d,
        &["eval", &m, "--data", "imagenet"],
        DATA,
        "unknown data set `imagenet`",
    );
}

#[test]
fn npy_folders() {
    let d = dir("npy");
    let m = lenet300(&d);
    let data = d.join("digits");
    std::fs::create_dir_all(&data).unwrap();
    let px: Vec<u8> = (0..8 * 28 * 28).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..8).collect();
    for set in ["train", "val"] {
        std::fs::write(
            data.join(format!("{set}_x.npy")),
            npy::encode("|u1", &[8, 28, 28], &px),
        )
        .unwrap();
        std::fs::write(
            data.join(format!("{set}_y.npy")),
            npy::encode("|u1", &[8], &labels),
        )
        .unwrap();
    }
    let out = succeeds(&d, &["eval", &m, "--data", data.to_str().unwrap()]);
    assert!(out.contains(" digits examples=8 "), "{out}");
    std::fs::write(
        data.join("val_y.npy"),
        npy::encode("|u1", &[7], &labels[..7]),
    )
    .unwrap();
    fails(
        &d,
        &["eval", &m, "--data", "digits"],
        DATA,
        "8 images but val_y.npy 7 labels",
    );
    std::fs::remove_file(data.join("train_x.npy")).unwrap();
    fails(&d, &["eval", &m, "--data", "digits"], DATA, "train_x.npy");
}

/// `n` gray 28x28 PNGs in `dir`, class `c` drawn as a bright band at row `8 * c`.
fn pngs(dir: &Path, c: u32, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let img = image::GrayImage::from_fn(28, 28, |x, y| {
            let on = (y / 8 == c) || (x + y + i) % 13 == 0;
            image::Luma([if on { 230 } else { 20 }])
        });
        img.save(dir.join(format!("{i}.png"))).unwrap();
    }
}

#[test]
fn image_folders() {
    let d = dir("images");
    let m = lenet300(&d);
    let root = d.join("bands");
    for c in 0..3 {
        pngs(&root.join("train").join(format!("band{c}")), c, 4);
        pngs(&root.join("val").join(format!("band{c}")), c, 2);
    }
    let out = succeeds(&d, &["eval", &m, "--data", "bands"]);
    assert!(out.contains(" bands examples=6 "), "{out}");
    let out = succeeds(
        &d,
        &["eval", &m, "--data", "bands", "--image-size", "28x28"],
    );
    assert!(out.contains(" bands examples=6 "), "{out}");

    fails(
        &d,
        &["eval", &m, "--data", "bands", "--channels", "2"],
        USAGE,
        "1 (gray) or 3 (RGB)",
    );
    fails(
        &d,
        &["eval", &m, "--data", "bands", "--image-size", "0"],
        USAGE,
        "not a size",
    );
    fails(
        &d,
        &["eval", &m, "--data", "bands", "--image-size", "28x"],
        USAGE,
        "not a size",
    );
    // RGB or resized images are not what this model takes
    fails(
        &d,
        &["eval", &m, "--data", "bands", "--channels", "3"],
        DATA,
        "[1, 3, 28, 28]",
    );
    fails(
        &d,
        &["eval", &m, "--data", "bands", "--image-size", "32"],
        DATA,
        "[1, 1, 32, 32]",
    );

    // a file that is not an image is named when its batch is read
    std::fs::write(root.join("val/band1/0.png"), b"not a png").unwrap();
    fails(&d, &["eval", &m, "--data", "bands"], DATA, "0.png");
    // a validation class the training part does not have
    pngs(&root.join("val/band9"), 1, 1);
    fails(
        &d,
        &["eval", &m, "--data", "bands"],
        DATA,
        "class `band9` has no folder",
    );
    // a class folder without images
    std::fs::create_dir_all(d.join("empty/nothing")).unwrap();
    fails(
        &d,
        &["eval", &m, "--data", "empty"],
        DATA,
        "no .png or .jpg images",
    );
}

#[test]
fn usage_errors() {
    let d = dir("usage");
    let m = lenet300(&d);
    fails(&d, &["shrink"], USAGE, "unrecognized subcommand");
    fails(&d, &["compress"], USAGE, "--recipe");
    fails(&d, &["bench", &m, "--threads", "0"], USAGE, "--threads");
    fails(&d, &["bench", &m, "--batch", "0"], USAGE, "--batch");
    fails(&d, &["bench", &m, "--block", "0"], USAGE, "--block");
    fails(
        &d,
        &["bench", &m, "--settle-ms", "soon"],
        USAGE,
        "--settle-ms",
    );
    fails(&d, &["inspect", &m, "--input", "1,x,28"], USAGE, "--input");
    fails(
        &d,
        &["export", &m, "--out", "model.pdf"],
        USAGE,
        "cannot tell the format",
    );
    fails(
        &d,
        &["export", &m, "--out", "m.x", "--format", "pdf"],
        USAGE,
        "--format",
    );
    fails(
        &d,
        &["sensitivity", &m, "--sparsities", "0.5,1.5"],
        USAGE,
        "1.5 is outside [0, 1)",
    );
    fails(
        &d,
        &["train", "--model", "alexnet"],
        USAGE,
        "unknown zoo model `alexnet`",
    );
    fails(
        &d,
        &["eval", &m, "--validation-examples", "0"],
        USAGE,
        "at least 1",
    );
}

#[test]
fn commands_work() {
    let d = dir("ok");
    let m = lenet300(&d);

    let json: serde_json::Value =
        serde_json::from_str(&succeeds(&d, &["inspect", &m, "--json"])).unwrap();
    assert_eq!(json["params"], 266_610);
    assert_eq!(json["layers"].as_array().unwrap().len(), 6);
    assert!(
        json["layers"][1]["time_us"].as_f64().unwrap() > 0.0,
        "{json}"
    );
    // nothing to fold or fuse in LeNet-300: every layer is a step of the plan
    for layer in json["layers"].as_array().unwrap() {
        assert!(layer["plan_us"].as_f64().unwrap() > 0.0, "{layer}");
    }

    // a small recipe: prune, sparse kernels, int8, on 512 MNIST images
    let r = recipe(&d, "tiny.toml", &format!("{PRUNE}{SPARSE}{QUANT}"));
    let args = [
        "compress",
        "--recipe",
        &r,
        "--model",
        &m,
        "--train-examples",
        "512",
        "--validation-examples",
        "200",
        "--out",
        "out/tiny.safetensors",
    ];
    let out = succeeds(&d, &args);
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("compress tiny base_acc="), "{out}");
    let ratio: f64 = last
        .split("size_ratio=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(ratio > 5.0, "{out}");
    for f in [
        "tiny.safetensors",
        "tiny-report.md",
        "tiny-accuracy-size.svg",
        "tiny-accuracy-latency.svg",
    ] {
        assert!(d.join("out").join(f).is_file(), "{f}: {out}");
    }
    let md = std::fs::read_to_string(d.join("out/tiny-report.md")).unwrap();
    assert!(md.contains("| 3 quantize |") && md.contains("![accuracy against file size]"));
    let svg = std::fs::read_to_string(d.join("out/tiny-accuracy-size.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("3 quantize"),
        "{svg}"
    );

    let mut j = args.to_vec();
    j.push("--json");
    let json: serde_json::Value = serde_json::from_str(&succeeds(&d, &j)).unwrap();
    assert_eq!(json["report"]["steps"].as_array().unwrap().len(), 3);
    assert!(json["summary"]
        .as_str()
        .unwrap()
        .starts_with("compress tiny"));

    let compressed = d.join("out/tiny.safetensors").display().to_string();
    let json: serde_json::Value = serde_json::from_str(&succeeds(
        &d,
        &[
            "bench",
            &m,
            &compressed,
            "--runs",
            "5",
            "--block",
            "3",
            "--settle-ms",
            "1",
            "--batch",
            "2",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(json["models"].as_array().unwrap().len(), 2);
    // blocks of 3 and a last one of 2: every run timed, no more
    assert_eq!(json["block"], 3);
    assert_eq!(json["settle_ms"], 1);
    for m in json["models"].as_array().unwrap() {
        assert_eq!(m["runs"], 5, "{m}");
    }
    assert!(json["speedup"].as_f64().unwrap() > 0.0);
    let text = succeeds(&d, &["bench", &m, &compressed, "--runs", "5"]);
    assert!(text.contains("speedup"), "{text}");

    let out = succeeds(&d, &["export", &compressed, "--out", "out/tiny.onnx"]);
    assert!(out.starts_with("export "), "{out}");
    let back = slimnet::load(d.join("out/tiny.onnx")).unwrap();
    assert!(!back.nodes().is_empty());

    let out = succeeds(
        &d,
        &[
            "train",
            "--model",
            "lenet300",
            "--epochs",
            "1",
            "--train-examples",
            "256",
            "--out",
            "out/trained.safetensors",
        ],
    );
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("train lenet300 mnist accuracy="), "{out}");
    assert!(out.starts_with("epoch  1 "), "{out}");
    assert!(d.join("out/trained.safetensors").is_file());

    let out = succeeds(&d, &["eval", &compressed, "--validation-examples", "100"]);
    assert!(
        out.starts_with("eval ") && out.contains("examples=100"),
        "{out}"
    );
}
