//! int8 linear 4096x4096 at 90% unstructured sparsity: the CSR kernel against the dense int8
//! kernel on the same i8 values (zeros kept in the dense one), at batch 1 and 64, one thread.
//!
//! `u8`: requantized output with bias and ReLU (this includes computing the 4096 fixed-point
//! multipliers on every call); `f32`: dequantized output. `avx2` and `scalar` restrict both
//! kernels to that level. `csr7` is the sparse kernel on the same weights quantized to 7 bits
//! (narrow: the AVX2 level's `vpmaddubsw` path).
//!
//! `cargo bench -p slimnet-kernels --bench int8_sparse -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::int8::{
    qlinear_forward_with_isa, qsparse_linear_forward_with_isa, QCsrMatrix, QMatrix, QOutput,
    QuantParams,
};
use slimnet_kernels::Isa;

const N: usize = 4096;

/// Output buffers of both kinds.
struct Out {
    u8: Vec<u8>,
    f32: Vec<f32>,
    params: QuantParams,
    bias: Vec<i32>,
}

impl Out {
    fn get(&mut self, f32_out: bool) -> QOutput<'_> {
        if f32_out {
            QOutput::F32 {
                out: &mut self.f32,
                bias: None,
            }
        } else {
            QOutput::U8 {
                out: &mut self.u8,
                params: self.params,
                bias: Some(&self.bias),
                relu: true,
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    slimnet_kernels::threads::set_num_threads(1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let w: Vec<f32> = (0..N * N)
        .map(|_| {
            if rng.random_bool(0.1) {
                rng.random_range(-1.0f32..1.0)
            } else {
                0.0
            }
        })
        .collect();
    let sparse = QCsrMatrix::from_dense(N, N, &w, None).unwrap();
    let sparse7 = QCsrMatrix::from_dense_bits(N, N, &w, None, 7).unwrap();
    // the same i8 values and scales, dense
    let mut values = vec![0i8; N * N];
    let (rp, ci) = (sparse.row_ptr(), sparse.col_idx());
    for r in 0..N {
        for i in rp[r] as usize..rp[r + 1] as usize {
            values[r * N + ci[i] as usize] = sparse.values()[i];
        }
    }
    let dense = QMatrix::new(N, N, values, sparse.scales().to_vec()).unwrap();
    let xq = QuantParams::from_range(-1.0, 3.0);
    let mut g = c.benchmark_group("int8_linear4096_sparse90");
    g.sample_size(20);
    for batch in [1usize, 64] {
        let x: Vec<u8> = (0..batch * N).map(|_| rng.random()).collect();
        let mut out = Out {
            u8: vec![0; batch * N],
            f32: vec![0.0; batch * N],
            params: QuantParams::from_range(-20.0, 20.0),
            bias: (0..N).map(|_| rng.random_range(-1000..1000)).collect(),
        };
        for (isa, level) in [(Isa::detected(), ""), (Isa::Avx2, "_avx2")] {
            for f32_out in [false, true] {
                let kind = if f32_out { "f32" } else { "u8" };
                let id = |what: &str| BenchmarkId::new(format!("{what}_{kind}{level}"), batch);
                g.bench_function(id("dense"), |b| {
                    b.iter(|| {
                        let o = out.get(f32_out);
                        qlinear_forward_with_isa(isa, &dense, batch, &x, xq, o).unwrap()
                    })
                });
                g.bench_function(id("csr"), |b| {
                    b.iter(|| {
                        let o = out.get(f32_out);
                        qsparse_linear_forward_with_isa(isa, &sparse, batch, &x, xq, o).unwrap()
                    })
                });
                if batch == 1 && !f32_out {
                    g.bench_function(id("csr7"), |b| {
                        b.iter(|| {
                            let o = out.get(f32_out);
                            qsparse_linear_forward_with_isa(isa, &sparse7, batch, &x, xq, o)
                                .unwrap()
                        })
                    });
                }
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
