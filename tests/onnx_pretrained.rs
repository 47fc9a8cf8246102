//! Real pretrained CNNs that ship inside a registry package, imported and checked against
//! ONNX Runtime: the PaddleOCR models of the PyPI wheel `rapidocr-onnxruntime==1.3.24`
//! (fetched once into slimnet's cache, SHA-256 pinned; see `slimnet_testkit::pretrained`).
//!
//! - the text-direction classifier (MobileNetV3-style: depthwise convolutions, hard-swish,
//!   squeeze-and-excitation) imports and matches;
//! - the DB text detector (PP-OCRv4: its FPN upsamples with `Resize`, its head with
//!   `ConvTranspose`) imports and matches;
//! - the text recognizer (PP-OCRv4: a CNN backbone, then transformer blocks whose layer norms
//!   are exported as `ReduceMean`, `Pow`, `Sqrt`, `Div` and whose attention multiplies two
//!   activations) imports and matches.

use std::path::Path;
use std::time::Instant;

use slimnet::core::{tensor, Layer, Tensor};
use slimnet::onnx::reader::{self, ImportOptions};
use slimnet_testkit::{ort, pretrained};

/// Outputs of ONNX Runtime and slimnet agree to this (absolute, plus as much relative).
const TOL: f32 = 1e-4;

/// Imports `file` for `shape`, returning the import and the milliseconds it took.
fn import(file: &Path, shape: &[usize]) -> (reader::Imported, f64) {
    let bytes = std::fs::read(file).unwrap();
    let start = Instant::now();
    let m = reader::from_bytes_with(&bytes, &ImportOptions::new().with_input_shape(shape))
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    (m, start.elapsed().as_secs_f64() * 1e3)
}

/// Imports a model, runs it on a seeded input in `[-1, 1]` (PaddleOCR's normalization) in
/// slimnet and in ONNX Runtime, and asserts the outputs agree.
fn check(name: &str, shape: &[usize], seed: u64) {
    let file = pretrained::rapidocr_models().unwrap().join(name);
    let (m, ms) = import(&file, shape);
    let x = tensor::uniform(shape, -1.0, 1.0, &mut tensor::rng(seed));
    let ours: Tensor = m.graph.forward(&x).unwrap();
    let theirs = ort::run(&file, &x, shape[0]).unwrap();
    assert_eq!(ours.shape(), theirs.shape(), "{name}");
    assert_eq!(ours.shape(), m.output_shape.as_slice(), "{name}");
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs() - TOL * b.abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= TOL, "{name}: off by {worst} beyond {TOL} relative");
    // a model that ignores its input would pass the comparison on a constant output
    let spread = theirs.iter().fold(f32::MIN, |a, &b| a.max(b))
        - theirs.iter().fold(f32::MAX, |a, &b| a.min(b));
    assert!(spread > 1e-3, "{name}: constant output");
    // the imported layers save as a slimnet model file and load back to the same outputs
    let dir = std::env::temp_dir().join(format!("slimnet-pretrained-{}", std::process::id()));
    let saved = dir.join(format!("{name}.safetensors"));
    slimnet::save(&m.graph, &saved).unwrap();
    let back = slimnet::load(&saved).unwrap().forward(&x).unwrap();
    assert_eq!(
        back, ours,
        "{name}: the saved model computes something else"
    );
    std::fs::remove_dir_all(&dir).ok();
    println!(
        "pretrained {name} import_ms={ms:.1} layers={} params={} max_abs_diff={:.2e} output={:?}",
        m.graph.children().len(),
        m.graph.num_params(),
        tensor::max_abs_diff(&ours, &theirs),
        ours.shape()
    );
}

#[test]
fn direction_classifier_matches_onnx_runtime() {
    check(pretrained::CLS, &[2, 3, 48, 192], 1);
}

#[test]
fn text_detector_matches_onnx_runtime() {
    // not square, and more than one image: the upsampling must follow both axes and the batch
    check(pretrained::DET, &[2, 3, 160, 224], 2);
}

#[test]
fn text_recognizer_matches_onnx_runtime() {
    // PP-OCRv4's recognizer: a convolutional backbone, then two transformer blocks over the
    // columns (layer norms as ReduceMean/Pow/Sqrt/Div, attention as MatMul of activations and
    // Softmax, the heads split by Slice), and a classifier over 6,625 characters per column
    check(pretrained::REC, &[2, 3, 48, 160], 3);
}
