//! The slimnet side of `benches/peers/decompose.py`: runs one decomposition on a raw
//! little-endian f32 file (row-major) on one thread and prints `ms=<f> relerr=<f>`.
//!
//! ```text
//! decompose_peer svd FILE M N
//! decompose_peer cp FILE D0,D1,... RANK ITERATIONS [SEED]
//! decompose_peer cp-lm FILE D0,D1,... RANK ITERATIONS   (ALS, then Levenberg-Marquardt)
//! decompose_peer tucker FILE D0,D1,... R0,R1,...
//! ```
//! The timed region is the decomposition alone (reading the file and the error check are not
//! timed); the best of `REPEAT` (env, default 3) runs is printed.

use std::time::Instant;

use ndarray::{Array2, ArrayD, IxDyn};
use slimnet_decompose::{cp, svd, tucker};

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn dims(s: &str) -> Vec<usize> {
    s.split(',').map(|v| v.parse().expect("a size")).collect()
}

fn best<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let repeat: usize = std::env::var("REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        out = Some(r);
    }
    (best, out.expect("ran once"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    slimnet_kernels::threads::set_num_threads(1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("svd") => {
            let (m, n) = (args[2].parse()?, args[3].parse()?);
            let a = Array2::from_shape_vec((m, n), read_f32(&args[1]))?;
            let (ms, d) = best(|| svd::svd(a.view()));
            let d = d?;
            println!("ms={ms:.3} relerr={:.3e}", d.relative_error(a.view()));
        }
        Some("cp") => {
            let shape = dims(&args[2]);
            let (rank, iters): (usize, usize) = (args[3].parse()?, args[4].parse()?);
            let x = ArrayD::from_shape_vec(IxDyn(&shape), read_f32(&args[1]))?;
            // the seed fills the SVD start's columns beyond the 3x3 modes' sizes
            let seed: u64 = args.get(5).map_or(Ok(0), |s| s.parse())?;
            let cfg = cp::CpConfig::default()
                .with_max_iterations(iters)
                .with_tol(0.0)
                .with_seed(seed);
            let (ms, d) = best(|| cp::cp_als(x.view(), rank, &cfg));
            let d = d?;
            println!(
                "ms={ms:.3} relerr={:.4e} iterations={} line_search_accepted={}",
                d.relative_error(x.view()),
                d.iterations,
                d.line_search_accepted
            );
        }
        Some("cp-lm") => {
            let shape = dims(&args[2]);
            let (rank, iters): (usize, usize) = (args[3].parse()?, args[4].parse()?);
            let x = ArrayD::from_shape_vec(IxDyn(&shape), read_f32(&args[1]))?;
            let cfg = cp::CpConfig::default()
                .with_max_iterations(iters)
                .with_tol(0.0);
            let lm = cp::LmConfig::default().with_strict(false);
            let (ms, d) = best(|| {
                cp::cp_als(x.view(), rank, &cfg).and_then(|a| cp::cp_refine_lm(x.view(), &a, &lm))
            });
            let d = d?;
            let st = d.refinement.clone().expect("refined");
            println!(
                "ms={ms:.3} relerr={:.4e} lm_iterations={} lm_converged={} als_relerr={:.4e}",
                d.relative_error(x.view()),
                st.iterations,
                st.converged,
                st.initial_error
            );
        }
        Some("tucker") => {
            let shape = dims(&args[2]);
            let ranks = dims(&args[3]);
            let x = ArrayD::from_shape_vec(IxDyn(&shape), read_f32(&args[1]))?;
            let (ms, d) = best(|| tucker::hooi(x.view(), &ranks, &tucker::TuckerConfig::default()));
            let d = d?;
            println!(
                "ms={ms:.3} relerr={:.4e} iterations={}",
                d.rel_error, d.iterations
            );
        }
        _ => return Err("usage: decompose_peer svd|cp|tucker ...".into()),
    }
    Ok(())
}
