//! The facade's ONNX wiring: `slimnet::load` tells ONNX from safetensors by content,
//! imported models with slimnet-onnx's layers save and load as model files, and ONNX errors
//! reach `slimnet::Error` whole.

use slimnet::core::{models, tensor, Layer};
use slimnet::onnx::OnnxError;

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("slimnet-onnx-facade-{}-{name}", std::process::id()))
}

#[test]
fn load_sniffs_the_content() {
    let model = models::lenet5(&mut tensor::rng(0)).unwrap();
    let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
    let want = model.forward(&x).unwrap();
    // ONNX bytes under a neutral name, safetensors under an `.onnx` name
    let (onnx, st) = (tmp("model.bin"), tmp("model-really-safetensors.onnx"));
    slimnet::export_onnx(&model, &[1, 1, 28, 28], &onnx).unwrap();
    slimnet::save(&model, &st).unwrap();
    for p in [&onnx, &st] {
        let back = slimnet::load(p).unwrap();
        assert!(
            tensor::max_abs_diff(&back.forward(&x).unwrap(), &want) < 1e-5,
            "{}",
            p.display()
        );
    }
    std::fs::remove_file(onnx).ok();
    std::fs::remove_file(st).ok();
}

#[test]
fn imported_models_save_as_model_files() {
    use slimnet::onnx::layers::{Clamp, Pad, PadMode};
    let mut rng = tensor::rng(2);
    let g = slimnet::core::Sequential::new()
        .push(
            "pad",
            Pad::new(vec![(0, 0), (0, 0), (1, 0), (0, 1)], PadMode::Edge).unwrap(),
        )
        .push(
            "conv",
            slimnet::core::layers::Conv2dConfig::new(1, 2, 3)
                .init(&mut rng)
                .unwrap(),
        )
        .push("clamp", Clamp::new(-0.5, f32::INFINITY).unwrap())
        .build()
        .unwrap();
    let onnx = tmp("layers.onnx");
    slimnet::export_onnx(&g, &[1, 1, 8, 8], &onnx).unwrap();
    let imported = slimnet::load(&onnx).unwrap();
    let st = tmp("layers.safetensors");
    slimnet::save(&imported, &st).unwrap();
    let back = slimnet::load(&st).unwrap();
    let x = tensor::uniform(&[1, 1, 8, 8], -1.0, 1.0, &mut rng);
    assert_eq!(back.forward(&x).unwrap(), imported.forward(&x).unwrap());
    assert!(tensor::max_abs_diff(&back.forward(&x).unwrap(), &g.forward(&x).unwrap()) < 1e-6);
    std::fs::remove_file(onnx).ok();
    std::fs::remove_file(st).ok();
}

#[test]
fn onnx_errors_reach_slimnet_error_whole() {
    let path = tmp("bad.onnx");
    std::fs::write(&path, b"\x08\x07 definitely not a model").unwrap();
    let e = slimnet::load(&path).unwrap_err();
    let src = std::error::Error::source(&e).expect("the ONNX error");
    assert!(src.downcast_ref::<OnnxError>().is_some(), "{e}");
    let back: OnnxError = e.into_method::<OnnxError>().map(|(_, o)| o).unwrap();
    assert!(matches!(back, OnnxError::Decode(_)), "{back}");
    std::fs::remove_file(path).ok();
}
