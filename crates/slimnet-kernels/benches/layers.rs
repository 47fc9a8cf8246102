//! Dense and int8 kernels on the layer shapes (batch 1, NCHW, one thread):
//! ResNet 3x3 convolutions, VGG conv3_1, LeNet conv2, depthwise 3x3, linear layers, and the
//! int8 convolutions and linear layer.
//!
//! `cargo bench -p slimnet-kernels --bench layers -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::dense::{conv2d_forward, linear_forward};
use slimnet_kernels::int8::{qconv2d_forward, qlinear_forward, QMatrix, QOutput, QuantParams};
use slimnet_kernels::{Activation, ConvGeometry};

fn randv(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut g = c.benchmark_group("layers");
    g.sample_size(10);
    let convs = [
        ("conv3x3_64x56", 64, 56, 64, 3, 1, 1),
        ("conv3x3_128x28", 128, 28, 128, 3, 1, 1),
        ("conv3x3_256x14", 256, 14, 256, 3, 1, 1),
        ("conv3x3_512x7", 512, 7, 512, 3, 1, 1),
        ("conv3x3_vgg256x56", 256, 56, 256, 3, 1, 1),
        ("conv5x5_lenet20x12", 20, 12, 50, 5, 0, 1),
        ("dw3x3_128x56", 128, 56, 128, 3, 1, 128),
    ];
    for (name, ci, h, co, k, p, groups) in convs {
        let geo = ConvGeometry::new(1, ci, h, h, co, k, k)
            .with_padding(p, p)
            .with_groups(groups);
        let x = randv(&mut rng, geo.input_len());
        let w = randv(&mut rng, geo.weight_len());
        let mut y = vec![0.0; geo.output_len()];
        g.bench_function(name, |b| {
            b.iter(|| conv2d_forward(&geo, &x, &w, None, Activation::Relu, &mut y).unwrap())
        });
    }
    for (name, out_f, in_f, batch) in [
        ("linear_4096x4096_b1", 4096, 4096, 1),
        ("linear_4096x4096_b64", 4096, 4096, 64),
        ("linear_1024x4096_b1", 1024, 4096, 1),
    ] {
        let x = randv(&mut rng, batch * in_f);
        let w = randv(&mut rng, out_f * in_f);
        let mut y = vec![0.0; batch * out_f];
        g.bench_function(name, |b| {
            b.iter(|| {
                linear_forward(
                    batch,
                    in_f,
                    out_f,
                    &x,
                    &w,
                    None,
                    Activation::Identity,
                    &mut y,
                )
                .unwrap()
            })
        });
    }
    let q = QuantParams {
        scale: 0.02,
        zero_point: 128,
    };
    for (name, ch, h) in [
        ("qconv3x3_64x56", 64, 56),
        ("qconv3x3_128x28", 128, 28),
        ("qconv3x3_256x14", 256, 14),
        ("qconv3x3_512x7", 512, 7),
    ] {
        let geo = ConvGeometry::new(1, ch, h, h, ch, 3, 3).with_padding(1, 1);
        let x: Vec<u8> = (0..geo.input_len()).map(|_| rng.random()).collect();
        let w = QMatrix::quantize(&randv(&mut rng, geo.weight_len()), ch, ch * 9).unwrap();
        let mut y = vec![0u8; geo.output_len()];
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = QOutput::U8 {
                    out: &mut y,
                    params: q,
                    bias: None,
                    relu: true,
                };
                qconv2d_forward(&geo, &x, q, &w, out).unwrap()
            })
        });
    }
    let n = 4096;
    let x: Vec<u8> = (0..n).map(|_| rng.random()).collect();
    let w = QMatrix::quantize(&randv(&mut rng, n * n), n, n).unwrap();
    let mut y = vec![0.0f32; n];
    g.bench_function("qlinear_4096x4096_b1", |b| {
        b.iter(|| {
            qlinear_forward(
                &w,
                1,
                &x,
                q,
                QOutput::F32 {
                    out: &mut y,
                    bias: None,
                },
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
