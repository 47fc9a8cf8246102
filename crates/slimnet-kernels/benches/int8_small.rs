//! int8 layers at batch 1 on one thread, u8 outputs with bias and fused ReLU: the composed
//! LeNet-5's layers (conv1, the low-rank conv2 core dense and sparse, its 1x1 convolutions, the
//! pruned fc1 whose input is half zero points after ReLU and max-pool), the 4096x4096 90%-sparse
//! linear layer at batch 1 and 64, the ResNet 3x3 convolutions (padding 1), and resnet_small's
//! 3x3 layers with 8-bit and 7-bit weights (`rs8_*`, `rs7_*`); one-channel 3x3 layers: its stem
//! and the character CNN's conv1.
//!
//! The kernels run at the level `SLIMNET_ISA` allows (the best the CPU has by default):
//!
//! `cargo bench -p slimnet-kernels --bench int8_small -- --warm-up-time 1 --measurement-time 2`
//! `SLIMNET_ISA=avx2 cargo bench -p slimnet-kernels --bench int8_small`

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::int8::{
    qconv2d_forward, qlinear_forward, qsparse_conv2d_forward, qsparse_linear_forward, QCsrMatrix,
    QMatrix, QOutput, QuantParams,
};
use slimnet_kernels::ConvGeometry;

const XQ: QuantParams = QuantParams {
    scale: 0.02,
    zero_point: 128,
};
const YQ: QuantParams = QuantParams {
    scale: 0.05,
    zero_point: 100,
};

/// A u8 output with bias and ReLU.
fn out<'a>(y: &'a mut [u8], bias: &'a [i32]) -> QOutput<'a> {
    QOutput::U8 {
        out: y,
        params: YQ,
        bias: Some(bias),
        relu: true,
    }
}

/// `len` weights in [-1, 1), each kept with probability `density`.
fn weights(rng: &mut ChaCha8Rng, len: usize, density: f64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            if density >= 1.0 || rng.random_bool(density) {
                rng.random_range(-1.0f32..1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// `len` random codes, a fraction `at_zp` of them equal to the zero point.
fn inputs(rng: &mut ChaCha8Rng, len: usize, at_zp: f64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            if rng.random_bool(at_zp) {
                XQ.zero_point
            } else {
                rng.random()
            }
        })
        .collect()
}

fn bias(rng: &mut ChaCha8Rng, n: usize) -> Vec<i32> {
    (0..n).map(|_| rng.random_range(-1000..1000)).collect()
}

fn convs(c: &mut Criterion, rng: &mut ChaCha8Rng) {
    let mut g = c.benchmark_group("int8_small");
    g.sample_size(30);
    // (name, C, H, O, k, pad, sparse densities)
    type Case = (
        &'static str,
        usize,
        usize,
        usize,
        usize,
        usize,
        &'static [f64],
    );
    let cases: [Case; 11] = [
        ("conv1_1x20_5x5_28", 1, 28, 20, 5, 0, &[]),
        // one-channel 3x3 layers: resnet_small's stem, the character CNN's conv1
        ("stem_1x16_3x3_28", 1, 28, 16, 3, 1, &[]),
        ("hanzi_conv1_1x32_3x3_32", 1, 32, 32, 3, 1, &[]),
        ("conv2core_10x23_5x5_12", 10, 12, 23, 5, 0, &[0.1, 0.2, 0.3]),
        ("pw_20x10_12", 20, 12, 10, 1, 0, &[]),
        ("pw_23x50_8", 23, 8, 50, 1, 0, &[]),
        ("conv2_20x50_5x5_12", 20, 12, 50, 5, 0, &[]),
        ("resnet_64x56", 64, 56, 64, 3, 1, &[]),
        ("resnet_128x28", 128, 28, 128, 3, 1, &[]),
        ("resnet_256x14", 256, 14, 256, 3, 1, &[]),
        ("resnet_512x7", 512, 7, 512, 3, 1, &[]),
    ];
    for (name, ci, h, co, k, p, densities) in cases {
        let geo = ConvGeometry::new(1, ci, h, h, co, k, k).with_padding(p, p);
        let x = inputs(rng, geo.input_len(), 0.0);
        let kk = ci * k * k;
        let w = QMatrix::quantize(&weights(rng, co * kk, 1.0), co, kk).unwrap();
        let b = bias(rng, co);
        let mut y = vec![0u8; geo.output_len()];
        g.bench_function(name, |bch| {
            bch.iter(|| qconv2d_forward(&geo, &x, XQ, &w, out(&mut y, &b)).unwrap())
        });
        for &d in densities {
            let ws = QCsrMatrix::from_dense(co, kk, &weights(rng, co * kk, d), None).unwrap();
            let id = format!("{name}_sparse{}", (d * 100.0).round());
            g.bench_function(id, |bch| {
                bch.iter(|| qsparse_conv2d_forward(&geo, &x, XQ, &ws, out(&mut y, &b)).unwrap())
            });
        }
    }
    // resnet_small's 3x3 layers, which the levels without VNNI multiply straight from the
    // image in channel quads, with 8-bit and 7-bit weights: (name, C, H, O, stride)
    let layers: [(&str, usize, usize, usize, usize); 5] = [
        ("16x28", 16, 28, 16, 1),
        ("16to32_s2", 16, 28, 32, 2),
        ("32x14", 32, 14, 32, 1),
        ("32to64_s2", 32, 14, 64, 2),
        ("64x7", 64, 7, 64, 1),
    ];
    for bits in [8, 7] {
        for (name, ci, h, co, s) in layers {
            let geo = ConvGeometry::new(1, ci, h, h, co, 3, 3)
                .with_padding(1, 1)
                .with_stride(s, s);
            let x = inputs(rng, geo.input_len(), 0.0);
            let kk = ci * 9;
            let w = QMatrix::quantize_bits(&weights(rng, co * kk, 1.0), co, kk, bits).unwrap();
            let b = bias(rng, co);
            let mut y = vec![0u8; geo.output_len()];
            g.bench_function(format!("rs{bits}_{name}"), |bch| {
                bch.iter(|| qconv2d_forward(&geo, &x, XQ, &w, out(&mut y, &b)).unwrap())
            });
        }
    }
    g.finish();
}

fn linears(c: &mut Criterion, rng: &mut ChaCha8Rng) {
    let mut g = c.benchmark_group("int8_small");
    g.sample_size(30);
    // fc1 of the composed LeNet-5: half its inputs at the zero point
    let (o, i) = (500, 800);
    let x = inputs(rng, i, 0.5);
    let b = bias(rng, o);
    let mut y = vec![0u8; o];
    let wd = QMatrix::quantize(&weights(rng, o * i, 1.0), o, i).unwrap();
    g.bench_function("fc1_500x800_dense", |bch| {
        bch.iter(|| qlinear_forward(&wd, 1, &x, XQ, out(&mut y, &b)).unwrap())
    });
    for d in [0.05, 0.1] {
        let w = QCsrMatrix::from_dense(o, i, &weights(rng, o * i, d), None).unwrap();
        let id = format!("fc1_500x800_sparse{}", (d * 100.0).round());
        g.bench_function(id, |bch| {
            bch.iter(|| qsparse_linear_forward(&w, 1, &x, XQ, out(&mut y, &b)).unwrap())
        });
    }
    // the large sparse layer: random inputs (few at the zero point), batch 1 and 64
    let n = 4096;
    let w = QCsrMatrix::from_dense(n, n, &weights(rng, n * n, 0.1), None).unwrap();
    let b = bias(rng, n);
    for batch in [1usize, 64] {
        let x = inputs(rng, batch * n, 0.0);
        let mut y = vec![0u8; batch * n];
        g.bench_function(format!("sparse90_4096_b{batch}"), |bch| {
            bch.iter(|| qsparse_linear_forward(&w, batch, &x, XQ, out(&mut y, &b)).unwrap())
        });
    }
    let x = inputs(rng, n, 0.5);
    let mut y = vec![0u8; n];
    g.bench_function("sparse90_4096_b1_halfzp", |bch| {
        bch.iter(|| qsparse_linear_forward(&w, 1, &x, XQ, out(&mut y, &b)).unwrap())
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    slimnet_kernels::threads::set_num_threads(1);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    convs(c, &mut rng);
    linears(c, &mut rng);
}

criterion_group!(benches, bench);
criterion_main!(benches);
