//! Sparse linear 4096x4096 (70%, 90%, 95% unstructured sparsity; 90% in 8x1 blocks and 2:4)
//! against the dense linear kernel, at batch 1 and 64.
//!
//! `cargo bench -p slimnet-kernels --bench sparse -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::dense::linear_forward;
use slimnet_kernels::sparse::{sparse_linear_forward, NmMatrix, SparseFormat, SparseWeight};
use slimnet_kernels::Activation;

const N: usize = 4096;

fn unstructured(rng: &mut ChaCha8Rng, sparsity: f64) -> Vec<f32> {
    (0..N * N)
        .map(|_| {
            if rng.random_bool(1.0 - sparsity) {
                rng.random_range(-1.0f32..1.0)
            } else {
                0.0
            }
        })
        .collect()
}

fn blocked8x1(rng: &mut ChaCha8Rng, sparsity: f64) -> Vec<f32> {
    let mut w = vec![0.0; N * N];
    for bi in 0..N / 8 {
        for c in 0..N {
            if rng.random_bool(1.0 - sparsity) {
                for r in 0..8 {
                    w[(bi * 8 + r) * N + c] = rng.random_range(-1.0f32..1.0);
                }
            }
        }
    }
    w
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let dense = (0..N * N)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect::<Vec<_>>();
    let mut cases: Vec<(String, SparseWeight)> = Vec::new();
    for s in [0.7, 0.9, 0.95] {
        let w = unstructured(&mut rng, s);
        cases.push((
            format!("csr{}", (s * 100.0) as u32),
            SparseWeight::from_dense(SparseFormat::Csr, &w, N, N, None).unwrap(),
        ));
    }
    let w = blocked8x1(&mut rng, 0.9);
    cases.push((
        "bsr8x1_90".into(),
        SparseWeight::from_dense(SparseFormat::Bsr { block: (8, 1) }, &w, N, N, None).unwrap(),
    ));
    cases.push((
        "nm2of4".into(),
        SparseWeight::Nm(NmMatrix::prune_from_dense(&dense, N, N, (2, 4)).unwrap()),
    ));
    let mut g = c.benchmark_group("linear4096");
    g.sample_size(10);
    for batch in [1usize, 64] {
        let x = (0..batch * N)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect::<Vec<_>>();
        let mut y = vec![0.0; batch * N];
        g.bench_function(BenchmarkId::new("dense", batch), |b| {
            b.iter(|| {
                linear_forward(batch, N, N, &x, &dense, None, Activation::Identity, &mut y).unwrap()
            })
        });
        for (name, w) in &cases {
            g.bench_function(BenchmarkId::new(name.as_str(), batch), |b| {
                b.iter(|| {
                    sparse_linear_forward(w, batch, &x, None, Activation::Identity, &mut y).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
