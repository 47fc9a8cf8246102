//! Runs one case in a loop for profiling: `cargo run --release -p slimnet-kernels --example
//! prof_case -- <qconv64|qconv<C>x<H>|sparse90b64|sparse90b1|conv64|conv<C>x<H>|pw<C>x<O>x<H>|k<C>x<O>x<H>x<KH>x<KW>> [seconds]`
//! (`pw`: a 1x1 convolution from C to O channels on an HxH image; `k`: a KHxKW one with "same"
//! padding).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::dense::{conv2d_forward, conv2d_forward_prepared, ConvWeights};
use slimnet_kernels::int8::{qconv2d_forward, QMatrix, QOutput, QuantParams};
use slimnet_kernels::sparse::{sparse_linear_forward, SparseFormat, SparseWeight};
use slimnet_kernels::{Activation, ConvGeometry};

fn main() {
    let case = std::env::args().nth(1).unwrap_or_else(|| "qconv64".into());
    let secs: f64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut run: Box<dyn FnMut()> = match case.as_str() {
        s if s.starts_with("qconv") => {
            // qconv64 (64 channels at 56x56), or qconv<C>x<H>: C to C channels at HxH
            let (c, h) = match s["qconv".len()..].split_once('x') {
                Some((c, h)) => (c.parse().unwrap(), h.parse().unwrap()),
                None => (64, 56),
            };
            let g = ConvGeometry::new(1, c, h, h, c, 3, 3).with_padding(1, 1);
            let x: Vec<u8> = (0..g.input_len()).map(|_| rng.random()).collect();
            let wf: Vec<f32> = uniform(&mut rng, g.weight_len());
            let w = QMatrix::quantize(&wf, c, c * 9).unwrap();
            let mut y = vec![0u8; g.output_len()];
            let q = QuantParams {
                scale: 0.02,
                zero_point: 128,
            };
            Box::new(move || {
                let o = QOutput::U8 {
                    out: &mut y,
                    params: q,
                    bias: None,
                    relu: false,
                };
                qconv2d_forward(&g, &x, q, &w, o).unwrap()
            })
        }
        s if s.starts_with("pw") => {
            let v: Vec<usize> = s[2..].split('x').map(|t| t.parse().unwrap()).collect();
            let g = ConvGeometry::new(1, v[0], v[2], v[2], v[1], 1, 1);
            let x = uniform(&mut rng, g.input_len());
            let w = uniform(&mut rng, g.weight_len());
            let mut y = vec![0.0; g.output_len()];
            Box::new(move || {
                conv2d_forward(&g, &x, &w, None, Activation::Identity, &mut y).unwrap()
            })
        }
        "dw128" => {
            let g = ConvGeometry::new(1, 128, 56, 56, 128, 3, 3)
                .with_padding(1, 1)
                .with_groups(128);
            let x = uniform(&mut rng, g.input_len());
            let w = uniform(&mut rng, g.weight_len());
            let mut y = vec![0.0; g.output_len()];
            Box::new(move || {
                conv2d_forward(&g, &x, &w, None, Activation::Identity, &mut y).unwrap()
            })
        }
        "lin64" => {
            let n = 4096;
            let x = uniform(&mut rng, 64 * n);
            let w = uniform(&mut rng, n * n);
            let mut y = vec![0.0; 64 * n];
            Box::new(move || {
                slimnet_kernels::dense::linear_forward(
                    64,
                    n,
                    n,
                    &x,
                    &w,
                    None,
                    Activation::Identity,
                    &mut y,
                )
                .unwrap()
            })
        }
        s if s.starts_with("conv") => {
            // conv64 (64 channels at 56x56), or conv<C>x<H>: C to C channels at HxH
            let (c, h) = match s["conv".len()..].split_once('x') {
                Some((c, h)) => (c.parse().unwrap(), h.parse().unwrap()),
                None => (64, 56),
            };
            let g = ConvGeometry::new(1, c, h, h, c, 3, 3).with_padding(1, 1);
            let x = uniform(&mut rng, g.input_len());
            let w = ConvWeights::new(uniform(&mut rng, g.weight_len()));
            let mut y = vec![0.0; g.output_len()];
            Box::new(move || {
                conv2d_forward_prepared(&g, &x, &w, None, Activation::Identity, &mut y).unwrap()
            })
        }
        s if s.starts_with('k') => {
            // k<C>x<O>x<H>x<KH>x<KW>: C to O channels at HxH, a KHxKW kernel, "same" padding
            let v: Vec<usize> = s[1..].split('x').map(|t| t.parse().unwrap()).collect();
            let g = ConvGeometry::new(1, v[0], v[2], v[2], v[1], v[3], v[4])
                .with_padding(v[3] / 2, v[4] / 2);
            let x = uniform(&mut rng, g.input_len());
            let w = ConvWeights::new(uniform(&mut rng, g.weight_len()));
            let mut y = vec![0.0; g.output_len()];
            Box::new(move || {
                conv2d_forward_prepared(&g, &x, &w, None, Activation::Identity, &mut y).unwrap()
            })
        }
        s if s.starts_with("sparse90b") => {
            let batch: usize = s["sparse90b".len()..].parse().unwrap();
            let n = 4096;
            let d: Vec<f32> = (0..n * n)
                .map(|_| {
                    if rng.random_bool(0.1) {
                        rng.random_range(-1.0..1.0)
                    } else {
                        0.0
                    }
                })
                .collect();
            let w = SparseWeight::from_dense(SparseFormat::Csr, &d, n, n, None).unwrap();
            let x = uniform(&mut rng, batch * n);
            let mut y = vec![0.0; batch * n];
            Box::new(move || {
                sparse_linear_forward(&w, batch, &x, None, Activation::Identity, &mut y).unwrap()
            })
        }
        other => panic!("unknown case {other}"),
    };
    run();
    let t = Instant::now();
    let c0 = cpu_ns();
    let mut k = 0;
    while t.elapsed().as_secs_f64() < secs {
        run();
        k += 1;
    }
    let wall = t.elapsed().as_secs_f64() * 1e3 / k as f64;
    let cpu = (cpu_ns() - c0) as f64 / 1e6 / k as f64;
    println!("{case}: wall {wall:.3} ms, on-cpu {cpu:.3} ms");
}

/// `len` values drawn uniformly from [-1, 1).
fn uniform(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat; 0 elsewhere), so timings are
/// less disturbed by other processes on a shared machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
