//! Batch-1 time of each int8 kernel of the compressed character CNN (`hanzi_compress`'s
//! model, at 200 classes by default: Tucker-2 convolutions of the ranks its policy picks, fc1
//! and fc2 at 10% density), so a level's share of the whole network can be read layer by layer.
//!
//! ```text
//! cargo run --release -p slimnet-kernels --example hanzi_layers [-- CLASSES [BITS [DENSITY]]]
//! SLIMNET_ISA=avx2 cargo run --release -p slimnet-kernels --example hanzi_layers
//! ```
//! `CLASSES` (default 200) sets fc2's rows, `BITS` (default 8) the weights' bits (7: narrow
//! weights, see `slimnet_kernels::int8::NARROW_MAX`), `DENSITY` (default 0.1) the share of
//! fc1's and fc2's weights kept. A line times fc1 and fc2 one after the other, as
//! the network runs them: when the two no longer fit in a core's L2 together, that pair takes
//! longer than the sum of the one-layer times.
//! One thread; each time is the median of 400 calls on random codes and weights. Prints one
//! line per layer (microseconds and GMAC/s for the convolutions), the pair of FC layers, and
//! the total of the one-layer times.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slimnet_kernels::int8::{
    qconv2d_forward, qsparse_linear_forward, QCsrMatrix, QMatrix, QOutput, QuantParams,
};
use slimnet_kernels::threads::set_num_threads;
use slimnet_kernels::ConvGeometry;

/// Median microseconds of 400 calls of `f`, after one warm-up call.
fn median_us(mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..400)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let usage = || -> ! {
        eprintln!(
            "usage: hanzi_layers [CLASSES [BITS [DENSITY]]] (a positive number of classes, \
             bits 2-8, FC density in (0, 1])"
        );
        std::process::exit(2);
    };
    let mut args = std::env::args().skip(1);
    let classes: usize = match args.next().map(|a| a.parse()) {
        None => 200,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => usage(),
    };
    let bits: u32 = match args.next().map(|a| a.parse()) {
        None => 8,
        Some(Ok(b)) if (2..=8).contains(&b) => b,
        Some(_) => usage(),
    };
    let density: f64 = match args.next().map(|a| a.parse()) {
        None => 0.1,
        Some(Ok(d)) if d > 0.0 && d <= 1.0 => d,
        Some(_) => usage(),
    };
    set_num_threads(1);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let q = QuantParams {
        scale: 0.02,
        zero_point: 3,
    };
    let mut total = 0.0;
    // (name, input channels, plane side, output channels, kernel side)
    let convs = [
        ("conv1", 1, 32, 32, 3),
        ("conv2/reduce", 32, 16, 12, 1),
        ("conv2/core", 12, 16, 24, 3),
        ("conv2/restore", 24, 16, 64, 1),
        ("conv3/reduce", 64, 8, 24, 1),
        ("conv3/core", 24, 8, 48, 3),
        ("conv3/restore", 48, 8, 128, 1),
        ("conv4/reduce", 128, 8, 48, 1),
        ("conv4/core", 48, 8, 96, 3),
        ("conv4/restore", 96, 8, 256, 1),
    ];
    for (name, c, h, o, k) in convs {
        let g = ConvGeometry::new(1, c, h, h, o, k, k).with_padding(k / 2, k / 2);
        let x: Vec<u8> = (0..g.input_len()).map(|_| rng.random()).collect();
        let wf: Vec<f32> = (0..g.weight_len())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let w = QMatrix::quantize_bits(&wf, o, c * k * k, bits).expect("weight");
        let bias: Vec<i32> = (0..o).map(|_| rng.random_range(-1000..1000)).collect();
        let mut y = vec![0u8; g.output_len()];
        let us = median_us(|| {
            let out = QOutput::U8 {
                out: &mut y,
                params: q,
                bias: Some(&bias),
                relu: true,
            };
            qconv2d_forward(&g, &x, q, &w, out).expect("conv")
        });
        total += us;
        let gmacs = g.macs() as f64 / us / 1e3;
        println!("{name:16} {us:8.2} us  {gmacs:6.1} GMAC/s");
    }
    let mut fcs = Vec::new();
    for (name, o, i) in [("fc1", 1024, 4096), ("fc2", classes, 1024)] {
        let dense: Vec<f32> = (0..o * i)
            .map(|_| {
                if rng.random_bool(density) {
                    rng.random_range(-1.0f32..1.0)
                } else {
                    0.0
                }
            })
            .collect();
        let w = QCsrMatrix::from_dense_bits(o, i, &dense, None, bits).expect("sparse weight");
        let x: Vec<u8> = (0..i).map(|_| rng.random()).collect();
        let mut y = vec![0u8; o];
        let us = median_us(|| fc(&w, &x, &mut y, q));
        total += us;
        println!("{name:16} {us:8.2} us");
        fcs.push((w, x, y));
    }
    // the two layers one after the other, as in the network: together they may not fit in
    // the cache that each fits in alone
    let us = median_us(|| {
        for (w, x, y) in &mut fcs {
            fc(w, x, y, q);
        }
    });
    println!("{:16} {us:8.2} us", "fc1 then fc2");
    println!("hanzi_layers total_us={total:.1}");
}

/// One batch-1 sparse int8 layer with a fused ReLU, writing codes.
fn fc(w: &QCsrMatrix, x: &[u8], y: &mut [u8], q: QuantParams) {
    let out = QOutput::U8 {
        out: y,
        params: q,
        bias: None,
        relu: true,
    };
    qsparse_linear_forward(w, 1, x, q, out).expect("sparse linear");
}
