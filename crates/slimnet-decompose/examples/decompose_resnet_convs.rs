//! Measured speed of low-rank rewrites of ResNet 3x3 convolutions (batch 1, one thread) against
//! their MAC reduction.
//!
//! ```text
//! cargo run --release -p slimnet-decompose --example decompose_resnet_convs [-- MAC_RATIO [RANK_MULTIPLE]]
//! ```
//! For each shape and method, a rank is chosen so the rewrite keeps at most `MAC_RATIO`
//! (default 0.33) of the MACs, rounded down to a multiple of `RANK_MULTIPLE` (default 1: no
//! rounding; see `LowRank::rank_multiple`); one line per case:
//! `conv <shape> <method> rank=<r> mac_reduction=<f> speedup=<f> efficiency=<speedup/mac_reduction>`.
//! The target is efficiency >= 0.7.
//!
//! Timings include allocating every intermediate tensor. With glibc, a chain whose
//! intermediates are large (CP at 64x56x56: three 1.1 MB tensors) can return its heap top to the
//! system after every run and page-fault it back in on the next; running with
//! `MALLOC_TRIM_THRESHOLD_=268435456` shows the time without that effect.

use slimnet_core::layers::Conv2dConfig;
use slimnet_core::{tensor, Layer};
use slimnet_decompose::rank::RankPolicy;
use slimnet_decompose::rewrite::{time_layer, ConvMethod, LowRank};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    slimnet_kernels::threads::set_num_threads(1);
    let ratio: f64 = std::env::args().nth(1).map_or(Ok(0.33), |v| v.parse())?;
    let multiple: usize = std::env::args().nth(2).map_or(Ok(1), |v| v.parse())?;
    let shapes = [(64usize, 56usize), (128, 28), (256, 14), (512, 7)];
    let methods = [
        ConvMethod::Tucker2,
        ConvMethod::Spatial,
        ConvMethod::Channel,
        ConvMethod::Cp,
    ];
    let mut worst = f64::INFINITY;
    for &(c, hw) in &shapes {
        let conv = Conv2dConfig::new(c, c, 3)
            .with_padding(1)
            .with_bias(false)
            .init(&mut tensor::rng(c as u64))?;
        let input = [1, c, hw, hw];
        let x = tensor::uniform(&input, -1.0, 1.0, &mut tensor::rng(1));
        for &m in &methods {
            // CP needs many sweeps on a random kernel; a few suffice for timing
            let rule = LowRank::new(m, RankPolicy::MacRatio(ratio))
                .with_cp(
                    slimnet_decompose::cp::CpConfig::default()
                        .with_max_iterations(3)
                        .with_strict(false),
                )
                .with_rank_multiple(multiple);
            let Some((new, rec)) = rule.replacement("conv", &conv, &input)? else {
                continue;
            };
            let (mut t0, mut t1) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..5 {
                t0 = t0.min(time_layer(&conv, &x, 5)?);
                t1 = t1.min(time_layer(new.as_ref(), &x, 5)?);
            }
            let red = rec.macs.0 as f64 / rec.macs.1 as f64;
            let speedup = t0 / t1;
            worst = worst.min(speedup / red);
            let ranks: Vec<String> = rec.ranks.iter().map(ToString::to_string).collect();
            println!(
                "conv {c}x{hw}x{hw} {:<12} rank={:<7} mac_reduction={red:.2} speedup={speedup:.2} efficiency={:.2} dense_us={t0:.0} rewritten_us={t1:.0}",
                m.name(),
                ranks.join("x"),
                speedup / red
            );
            let _ = conv.kind();
        }
    }
    println!("worst efficiency={worst:.2} (target >= 0.7)");
    Ok(())
}
