//! Times slimnet's kernels on the cases of `benches/peers/run.py` and writes `case ms` lines.
//!
//! `cargo run --release -p slimnet-kernels --example peer_cases -- [OUT_FILE] [CASE...]`
//! (default `target/peers/slimnet.txt`, all cases). One thread unless a case name ends in
//! `_t2` (the 56x56 convolutions are also timed with two threads).

use std::fmt::Write as _;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::dense::{conv2d_forward_prepared, linear_forward, ConvWeights};
use slimnet_kernels::int8::{qconv2d_forward, qlinear_forward, QMatrix, QOutput, QuantParams};
use slimnet_kernels::sparse::{sparse_linear_forward, SparseFormat, SparseWeight};
use slimnet_kernels::threads::set_num_threads;
use slimnet_kernels::{Activation, ConvGeometry};

/// Median milliseconds of `f` over enough runs to fill about half a second.
fn time_ms(mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64();
    let reps = ((0.5 / once.max(1e-6)) as usize).clamp(5, 200);
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn randv(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/peers/slimnet.txt".into());
    let only: Vec<String> = std::env::args().skip(2).collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut out = String::new();
    let mut record = |name: &str, ms: f64| {
        println!("{name:<24} {ms:9.3} ms");
        writeln!(out, "{name} {ms:.4}").unwrap();
    };
    // (name, C, H, O, k, pad, stride, depthwise)
    let convs = [
        ("conv_64x56", 64, 56, 64, 3, 1, 1, false),
        ("conv_128x28", 128, 28, 128, 3, 1, 1, false),
        ("conv_256x14", 256, 14, 256, 3, 1, 1, false),
        ("conv_512x7", 512, 7, 512, 3, 1, 1, false),
        ("conv_vgg256x56", 256, 56, 256, 3, 1, 1, false),
        ("conv_lenet20x12", 20, 12, 50, 5, 0, 1, false),
        ("dw_128x56", 128, 56, 128, 3, 1, 1, true),
        // the layers of `models::resnet_small` at batch 1
        ("rs_stem1x28", 1, 28, 16, 3, 1, 1, false),
        ("rs_16x28", 16, 28, 16, 3, 1, 1, false),
        ("rs_16to32s2", 16, 28, 32, 3, 1, 2, false),
        ("rs_down16to32s2", 16, 28, 32, 1, 0, 2, false),
        ("rs_32x14", 32, 14, 32, 3, 1, 1, false),
        ("rs_32to64s2", 32, 14, 64, 3, 1, 2, false),
        ("rs_down32to64s2", 32, 14, 64, 1, 0, 2, false),
        ("rs_64x7", 64, 7, 64, 3, 1, 1, false),
    ];
    for (name, c, h, o, k, p, st, dw) in convs {
        if !want(name) {
            continue;
        }
        let mut g = ConvGeometry::new(1, c, h, h, o, k, k)
            .with_padding(p, p)
            .with_stride(st, st);
        if dw {
            g = g.with_groups(c);
        }
        let x = randv(&mut rng, g.input_len());
        // prepared once, as ONNX Runtime prepacks a constant weight when the session is made
        let w = ConvWeights::new(randv(&mut rng, g.weight_len()));
        let b = randv(&mut rng, o);
        let mut y = vec![0.0; g.output_len()];
        for t in [1, 2] {
            if t == 2 && h != 56 {
                continue;
            }
            set_num_threads(t);
            let ms = time_ms(|| {
                conv2d_forward_prepared(&g, &x, &w, Some(&b), Activation::Identity, &mut y).unwrap()
            });
            record(
                &if t == 1 {
                    name.to_string()
                } else {
                    format!("{name}_t2")
                },
                ms,
            );
        }
        set_num_threads(1);
    }
    for (name, out_f, in_f, batch) in [
        ("linear_4096_b1", 4096, 4096, 1),
        ("linear_4096_b64", 4096, 4096, 64),
        ("linear_1024x4096_b1", 1024, 4096, 1),
    ] {
        if !want(name) {
            continue;
        }
        let x = randv(&mut rng, batch * in_f);
        let w = randv(&mut rng, out_f * in_f);
        let mut y = vec![0.0; batch * out_f];
        let ms = time_ms(|| {
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
        });
        record(name, ms);
    }
    const N: usize = 4096;
    for sp in [70, 90, 95] {
        if !want(&format!("sparse{sp}_4096_b1")) && !want(&format!("sparse{sp}_4096_b64")) {
            continue;
        }
        let keep = 1.0 - sp as f64 / 100.0;
        let dense: Vec<f32> = (0..N * N)
            .map(|_| {
                if rng.random_bool(keep) {
                    rng.random_range(-1.0f32..1.0)
                } else {
                    0.0
                }
            })
            .collect();
        let w = SparseWeight::from_dense(SparseFormat::Csr, &dense, N, N, None).unwrap();
        for batch in [1, 64] {
            if !want(&format!("sparse{sp}_4096_b{batch}")) {
                continue;
            }
            let x = randv(&mut rng, batch * N);
            let mut y = vec![0.0; batch * N];
            let ms = time_ms(|| {
                sparse_linear_forward(&w, batch, &x, None, Activation::Identity, &mut y).unwrap()
            });
            record(&format!("sparse{sp}_4096_b{batch}"), ms);
        }
    }
    let xq = QuantParams {
        scale: 0.02,
        zero_point: 128,
    };
    let yq = QuantParams {
        scale: 0.05,
        zero_point: 128,
    };
    // `qconv7_*`: 7-bit weights, the range whose u8 x i8 pair sums cannot saturate
    // `vpmaddubsw` (what ONNX Runtime asks of its quantizer's weights on CPUs without VNNI)
    for (name, c, h, bits) in [
        ("qconv_64x56", 64, 56, 8),
        ("qconv_128x28", 128, 28, 8),
        ("qconv_256x14", 256, 14, 8),
        ("qconv_512x7", 512, 7, 8),
        ("qconv7_64x56", 64, 56, 7),
        ("qconv7_128x28", 128, 28, 7),
        ("qconv7_256x14", 256, 14, 7),
        ("qconv7_512x7", 512, 7, 7),
    ] {
        if !want(name) {
            continue;
        }
        let g = ConvGeometry::new(1, c, h, h, c, 3, 3).with_padding(1, 1);
        let x: Vec<u8> = (0..g.input_len()).map(|_| rng.random()).collect();
        let wf = randv(&mut rng, g.weight_len());
        let w = QMatrix::quantize_bits(&wf, c, c * 9, bits).unwrap();
        let bias: Vec<i32> = (0..c).map(|_| rng.random_range(-1000..1000)).collect();
        let mut y = vec![0u8; g.output_len()];
        let ms = time_ms(|| {
            let o = QOutput::U8 {
                out: &mut y,
                params: yq,
                bias: Some(&bias),
                relu: false,
            };
            qconv2d_forward(&g, &x, xq, &w, o).unwrap()
        });
        record(name, ms);
    }
    if want("qlinear_4096_b1") {
        let x: Vec<u8> = (0..N).map(|_| rng.random()).collect();
        let w = QMatrix::quantize(&randv(&mut rng, N * N), N, N).unwrap();
        let mut y = vec![0.0f32; N];
        let ms = time_ms(|| {
            qlinear_forward(
                &w,
                1,
                &x,
                xq,
                QOutput::F32 {
                    out: &mut y,
                    bias: None,
                },
            )
            .unwrap()
        });
        record("qlinear_4096_b1", ms);
    }
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, out).unwrap();
    println!("wrote {path}");
}
