//! Criterion benches: decompositions on the peer shapes, and dense vs rewritten ResNet 3x3
//! convolutions at batch 1 on one thread (ranks keeping a third of the MACs).

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use slimnet_core::layers::Conv2dConfig;
use slimnet_core::{tensor, Layer};
use slimnet_decompose::rank::RankPolicy;
use slimnet_decompose::rewrite::{ConvMethod, LowRank};
use slimnet_decompose::{cp, svd};

fn decompositions(c: &mut Criterion) {
    slimnet_kernels::threads::set_num_threads(1);
    let a = tensor::normal(&[4608, 512], 0.0, 1.0, &mut tensor::rng(0));
    let a: Array2<f32> = a.into_dimensionality().expect("2-D");
    let mut g = c.benchmark_group("decompose");
    g.sample_size(10);
    g.bench_function("svd_4608x512", |b| {
        b.iter(|| svd::svd(a.view()).expect("svd"))
    });
    let x = tensor::normal(&[128, 128, 3, 3], 0.0, 1.0, &mut tensor::rng(1));
    let cfg = cp::CpConfig::default()
        .with_max_iterations(10)
        .with_tol(0.0);
    g.bench_function("cp_als_128x128x3x3_r64_10_sweeps", |b| {
        b.iter(|| cp::cp_als(x.view(), 64, &cfg).expect("cp"))
    });
    g.finish();
}

fn conv_rewrites(c: &mut Criterion) {
    slimnet_kernels::threads::set_num_threads(1);
    let mut g = c.benchmark_group("resnet_conv_batch1");
    g.sample_size(20);
    for &(ch, hw) in &[(64usize, 56usize), (128, 28), (256, 14), (512, 7)] {
        let conv = Conv2dConfig::new(ch, ch, 3)
            .with_padding(1)
            .with_bias(false)
            .init(&mut tensor::rng(ch as u64))
            .expect("conv");
        let input = [1, ch, hw, hw];
        let x = tensor::uniform(&input, -1.0, 1.0, &mut tensor::rng(2));
        g.bench_function(format!("{ch}x{hw}x{hw}/dense"), |b| {
            b.iter(|| conv.forward(&x).expect("forward"))
        });
        for m in [ConvMethod::Tucker2, ConvMethod::Spatial] {
            let rule = LowRank::new(m, RankPolicy::MacRatio(0.33));
            let (new, _) = rule
                .replacement("conv", &conv, &input)
                .expect("rewrite")
                .expect("a replacement");
            g.bench_function(format!("{ch}x{hw}x{hw}/{}", m.name()), |b| {
                b.iter(|| new.forward(&x).expect("forward"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decompositions, conv_rewrites);
criterion_main!(benches);
