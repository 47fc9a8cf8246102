//! Batch-1 latency of a float model and its static int8 version, for profiling.
//!
//! ```text
//! cargo run --release -p slimnet-quant --example prof_int8 -- [lenet5|resnet|lenet300] [iters] [f32|int8|both]
//! ```
//! Uses `target/slimnet/<model>.safetensors` when it loads, else a randomly initialised model.

use std::time::Instant;

use slimnet_core::{io, models, tensor, Layer};
use slimnet_quant::ptq::{quantize_static, PtqConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("lenet5", String::as_str);
    let iters: usize = args.get(1).map_or(Ok(2000), |s| s.parse())?;
    let which = args.get(2).map_or("both", String::as_str);
    let model = io::load(format!("target/slimnet/{name}.safetensors"))
        .or_else(|_| models::by_name(name, &mut tensor::rng(0)))?;
    let calib = (0..4).map(|i| tensor::uniform(&[16, 1, 28, 28], -0.5, 2.5, &mut tensor::rng(i)));
    let q = quantize_static(&model, calib, &PtqConfig::default())?;
    let x = tensor::uniform(&[1, 1, 28, 28], -0.5, 2.5, &mut tensor::rng(9));
    for (label, m) in [("f32", &model as &dyn Layer), ("int8", &q as &dyn Layer)] {
        if which != "both" && which != label {
            continue;
        }
        m.forward(&x)?;
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(m.forward(&x)?);
        }
        println!(
            "{label}: {:.1} us",
            t.elapsed().as_secs_f64() / iters as f64 * 1e6
        );
    }
    Ok(())
}
