//! Mutated int8 ONNX files (the quantized ops, read with slimnet-quant's layers) give errors,
//! never panics.

use slimnet::core::layers::{
    Activation, Conv2dConfig, Flatten, LinearConfig, MaxPool2d, PoolConfig,
};
use slimnet::core::{tensor, Sequential};
use slimnet::onnx::ImportOptions;
use slimnet::quant::ptq::{quantize_static, PtqConfig};

#[test]
fn mutated_int8_files_give_errors() {
    let mut rng = tensor::rng(0);
    let model = Sequential::new()
        .push(
            "conv",
            Conv2dConfig::new(1, 2, 3)
                .with_padding(1)
                .init(&mut rng)
                .unwrap(),
        )
        .push("relu", Activation::relu())
        .push("pool", MaxPool2d::new(PoolConfig::new(2)).unwrap())
        .push("flatten", Flatten::new())
        .push("fc", LinearConfig::new(32, 3).init(&mut rng).unwrap())
        .build()
        .unwrap();
    let calib = tensor::uniform(&[16, 1, 8, 8], 0.0, 1.0, &mut rng);
    let q = quantize_static(&model, [calib], &PtqConfig::default()).unwrap();
    let bytes = slimnet::onnx::to_bytes(&q, &[1, 1, 8, 8], &slimnet::export_registry()).unwrap();
    let opts = ImportOptions::new().with_int8(slimnet::int8_import());
    assert!(slimnet::onnx::from_bytes_with(&bytes, &opts).is_ok());
    // xorshift: a seeded stream of positions and bytes
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut ok = 0;
    for i in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next(5) {
            let at = next(b.len());
            match next(3) {
                0 => b[at] = next(256) as u8,
                1 => b[at] ^= 1 << next(8),
                _ => b[at] = [0x00, 0x7f, 0x80, 0xff][next(4)],
            }
        }
        let res = std::panic::catch_unwind(|| slimnet::onnx::from_bytes_with(&b, &opts).is_ok());
        ok += res.unwrap_or_else(|_| panic!("mutation {i} panicked")) as usize;
    }
    println!("3000 mutated int8 files, {ok} still imported, none panicked");
}
