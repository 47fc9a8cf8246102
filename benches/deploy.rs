//! Criterion bench of inference as deployed (batch 1, one thread):
//! - ResNet-small through `Graph::freeze`, f32 against whole-network int8 (u8 codes between
//!   layers), with 8-bit and 7-bit weights (`int8_w7`: the AVX2 level's `vpmaddubsw` paths);
//! - a core `Conv2d` at the 512-channel 7x7 ResNet shape against the kernel it calls, so the
//!   layer's own overhead shows;
//! - the style network of `style_transfer` at 256x256 (`models::style_net(16)`) against its
//!   light student (`distill::layerwise::lighten` of it), the example's `speedup`; the weights
//!   are random (the time does not depend on them).
//!
//! `cargo bench --bench deploy -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use slimnet::core::layers::Conv2dConfig;
use slimnet::core::{models, tensor, Layer};
use slimnet::distill::layerwise::lighten;
use slimnet::kernels::dense::{conv2d_forward_prepared, ConvWeights};
use slimnet::kernels::Activation;
use slimnet::quant::ptq::{quantize_static, PtqConfig};

fn deploy(c: &mut Criterion) {
    slimnet::kernels::threads::set_num_threads(1);
    let mut rng = tensor::rng(0);
    let mut model = models::resnet_small(&mut rng).expect("resnet builds");
    let calib: Vec<_> = (0..4)
        .map(|_| tensor::uniform(&[16, 1, 28, 28], 0.0, 1.0, &mut rng))
        .collect();
    for x in &calib {
        model.forward_train(x).expect("forward"); // BatchNorm statistics off their defaults
    }
    let int8 = quantize_static(&model, calib.clone(), &PtqConfig::default()).expect("quantizes");
    let seven = PtqConfig::default().with_weight_bits(7);
    let int8_w7 = quantize_static(&model, calib, &seven).expect("quantizes");
    let input = [1, 1, 28, 28];
    let x = tensor::uniform(&input, 0.0, 1.0, &mut rng);
    let f32_plan = model.freeze(&input).expect("freezes");
    let int8_plan = int8.freeze(&input).expect("freezes");
    let int8_w7_plan = int8_w7.freeze(&input).expect("freezes");
    let mut g = c.benchmark_group("resnet_small_b1");
    g.bench_function("f32", |b| b.iter(|| f32_plan.run(&x).expect("runs")));
    g.bench_function("int8", |b| b.iter(|| int8_plan.run(&x).expect("runs")));
    g.bench_function("int8_w7", |b| {
        b.iter(|| int8_w7_plan.run(&x).expect("runs"))
    });
    g.finish();

    let conv = Conv2dConfig::new(512, 512, 3)
        .with_padding(1)
        .init(&mut rng)
        .expect("conv");
    let x = tensor::uniform(&[1, 512, 7, 7], -1.0, 1.0, &mut rng);
    let geom = conv.geometry(x.shape()).expect("fits");
    let w = ConvWeights::new(conv.weight.value().as_slice().expect("contiguous").to_vec());
    let bias: Vec<f32> = conv
        .bias
        .as_ref()
        .expect("bias")
        .value()
        .iter()
        .copied()
        .collect();
    let xs = x.as_slice().expect("contiguous").to_vec();
    let mut out = vec![0.0f32; geom.output_len()];
    conv.prepare(x.shape()).expect("prepares");
    let mut g = c.benchmark_group("conv512x7_b1");
    g.bench_function("kernel", |b| {
        b.iter(|| {
            conv2d_forward_prepared(&geom, &xs, &w, Some(&bias), Activation::Identity, &mut out)
                .expect("runs")
        })
    });
    g.bench_function("layer", |b| {
        b.iter(|| slimnet::core::buffers::recycle(conv.forward(&x).expect("runs")))
    });
    g.finish();

    let teacher = models::style_net(16, &mut rng).expect("style network builds");
    let student = lighten(&teacher, &[3, 128, 128], &mut rng)
        .expect("lightens")
        .student;
    let frame = [1, 3, 256, 256];
    let x = tensor::uniform(&frame, 0.0, 1.0, &mut rng);
    let mut g = c.benchmark_group("style_256_b1");
    for (name, model) in [("teacher", &teacher), ("student", &student)] {
        let plan = model.freeze(&frame).expect("freezes");
        g.bench_function(name, |b| {
            b.iter(|| slimnet::core::buffers::recycle(plan.run(&x).expect("runs")))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = deploy
}
criterion_main!(benches);
