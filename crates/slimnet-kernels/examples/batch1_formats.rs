//! Batch-1 product time of every weight format against density, with every input active: the
//! measurements behind the format choice ([`SparseWeight::from_dense_auto`]) and the column
//! walk's cost model ([`CscMatrix::skip_value`]).
//!
//! ```text
//! cargo run --release -p slimnet-kernels --example batch1_formats
//! ```
//! Shapes: LeNet-300-100's two large layers (their dense weights fit in a core's L2 cache) and
//! the 4096x4096 layer (it does not). Weights are kept at random with the given density. One
//! thread; each time is the best of 5 rounds.
//!
//! Columns: `dense` (row-major dot products), `csr` (row-major gathers), `bsr4` (4x1 blocks),
//! `csc` (the column walk, dense columns where they pay; the count in brackets) and `csc-sparse`
//! (the column walk with every column sparse).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::sparse::{
    csc_matvec, sparse_linear_forward, CscMatrix, SparseFormat, SparseWeight,
};
use slimnet_kernels::Activation;
use slimnet_kernels::KernelError;

/// Best of 5 rounds, microseconds per call.
fn time_us(rows: usize, cols: usize, mut f: impl FnMut() -> Result<(), KernelError>) -> f64 {
    let reps = (2e8 / (rows * cols) as f64).max(3.0) as usize;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f().expect("valid shapes");
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best * 1e6
}

fn main() -> Result<(), KernelError> {
    slimnet_kernels::threads::set_num_threads(1);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    println!("shape      density    dense      csr     bsr4            csc   csc-sparse  (us)");
    for (rows, cols) in [(300usize, 784usize), (100, 300), (4096, 4096)] {
        // inputs are kept away from zero, so the column walk visits every column
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(0.5..1.0)).collect();
        for density in [0.05, 0.1, 0.2, 0.3, 0.5, 1.0] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|_| {
                    if rng.random_bool(density) {
                        rng.random_range(-0.5..0.5)
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut y = vec![0.0; rows];
            let mut line = format!("{:<10} {density:>7.2}", format!("{rows}x{cols}"));
            for format in [
                SparseFormat::Dense,
                SparseFormat::Csr,
                SparseFormat::Bsr { block: (4, 1) },
            ] {
                let sw = SparseWeight::from_dense(format, &w, rows, cols, None)?;
                let t = time_us(rows, cols, || {
                    sparse_linear_forward(&sw, 1, &x, None, Activation::Identity, &mut y)
                });
                line += &format!(" {t:>8.2}");
            }
            let SparseWeight::Csr(csr) =
                SparseWeight::from_dense(SparseFormat::Csr, &w, rows, cols, None)?
            else {
                unreachable!("asked for CSR");
            };
            let hybrid = CscMatrix::from_csr(&csr);
            let sparse = CscMatrix::with_dense_columns(&csr, f32::INFINITY, 0);
            let t = time_us(rows, cols, || {
                csc_matvec(&hybrid, &x, 0.0, None, Activation::Identity, &mut y)
            });
            line += &format!(" {t:>8.2} ({:>4})", hybrid.dense_columns());
            let t = time_us(rows, cols, || {
                csc_matvec(&sparse, &x, 0.0, None, Activation::Identity, &mut y)
            });
            println!("{line} {t:>12.2}");
        }
    }
    Ok(())
}
