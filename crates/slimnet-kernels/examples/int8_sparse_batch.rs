//! int8 CSR product against the dense int8 kernel on the same values, by density and batch:
//! the measurements behind the CSR kernels' batch threshold (small batches run one input row at
//! a time) and where sparse stops paying.
//!
//! ```text
//! cargo run --release -p slimnet-kernels --example int8_sparse_batch
//! ```
//! Shape: the 4096x4096 linear layer, weights kept at random with the given density, inputs
//! random u8. f32 output (so the per-call fixed-point multipliers of a u8 output, which both
//! kernels pay alike, are left out). One thread; each time is the best of 3 rounds, in
//! microseconds; `x` is dense time over CSR time.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::int8::{qlinear_forward, qsparse_linear_forward, QCsrMatrix, QMatrix};
use slimnet_kernels::int8::{QOutput, QuantParams};
use slimnet_kernels::KernelError;

const N: usize = 4096;

/// Best of 3 rounds of about 50 ms, microseconds per call.
fn time_us(mut f: impl FnMut() -> Result<(), KernelError>) -> Result<f64, KernelError> {
    let t = Instant::now();
    f()?;
    let reps = ((0.05 / t.elapsed().as_secs_f64()) as usize).clamp(1, 1000);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(best * 1e6)
}

fn main() -> Result<(), KernelError> {
    slimnet_kernels::threads::set_num_threads(1);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let batches = [1usize, 4, 16, 31, 32, 64];
    let xq = QuantParams::from_range(-1.0, 3.0);
    print!("density");
    for b in batches {
        print!("  {:>24}", format!("batch {b}: dense csr x"));
    }
    println!();
    for density in [0.05, 0.1, 0.2, 0.3, 0.5] {
        let w: Vec<f32> = (0..N * N)
            .map(|_| {
                if rng.random_bool(density) {
                    rng.random_range(-1.0..1.0)
                } else {
                    0.0
                }
            })
            .collect();
        let sparse = QCsrMatrix::from_dense(N, N, &w, None)?;
        let dense = QMatrix::quantize(&w, N, N)?;
        print!("{density:>7.2}");
        for batch in batches {
            let x: Vec<u8> = (0..batch * N).map(|_| rng.random()).collect();
            let mut y = vec![0f32; batch * N];
            let td = time_us(|| {
                let out = QOutput::F32 {
                    out: &mut y,
                    bias: None,
                };
                qlinear_forward(&dense, batch, &x, xq, out)
            })?;
            let ts = time_us(|| {
                let out = QOutput::F32 {
                    out: &mut y,
                    bias: None,
                };
                qsparse_linear_forward(&sparse, batch, &x, xq, out)
            })?;
            print!("  {td:>9.0} {ts:>8.0} {:>5.1}", td / ts);
        }
        println!();
    }
    Ok(())
}
