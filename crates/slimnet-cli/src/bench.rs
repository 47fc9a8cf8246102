//! `slimnet bench`: latency percentiles of one model, or two side by side.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use slimnet::core::timing::settle;
use slimnet::core::{tensor, Layer};

use crate::common;
use crate::error::CliError;

/// The options of `bench`.
pub struct Args {
    pub model: PathBuf,
    pub other: Option<PathBuf>,
    pub threads: usize,
    pub batch: usize,
    pub runs: usize,
    /// Runs of one model in a row before the other's turn.
    pub block: usize,
    /// Least untimed time of a model at the start of each of its turns.
    pub settle: Duration,
    pub example: Vec<usize>,
    pub json: bool,
}

/// One model's timings, microseconds per batch.
#[derive(Serialize)]
struct Timing {
    model: String,
    runs: usize,
    min_us: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    mean_us: f64,
    /// Examples per second at the median.
    throughput: f64,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Output {
    threads: usize,
    batch: usize,
    /// Runs of one model in a row before the other's turn.
    block: usize,
    /// Milliseconds each model ran untimed at the start of each turn (at least two runs).
    settle_ms: u64,
    input: Vec<usize>,
    models: Vec<Timing>,
    /// First model's median over the second's, when two were given.
    speedup: Option<f64>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn run(a: Args) -> Result<(), CliError> {
    let mut input = vec![a.batch];
    input.extend_from_slice(&a.example);
    let mut paths = vec![a.model.clone()];
    paths.extend(a.other.clone());
    let mut plans = Vec::new();
    for p in &paths {
        let m = common::load_model(p)?;
        common::check_input(&m, &input, p)?;
        plans.push(m.freeze(&input)?);
    }
    let x = tensor::uniform(&input, 0.0, 1.0, &mut tensor::rng(0));
    let bar = common::spinner(a.json, format!("timing {} runs per model", a.runs));
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(a.runs); plans.len()];
    slimnet::kernels::threads::with(a.threads, || -> Result<(), CliError> {
        // in alternating blocks, so both models see the same machine load, each block after
        // untimed runs that bring the model's weights back into cache and let the clock settle
        let block = a.block.max(1);
        let mut done = 0;
        while done < a.runs {
            let n = block.min(a.runs - done);
            for (plan, t) in plans.iter().zip(times.iter_mut()) {
                settle(
                    || {
                        std::hint::black_box(plan.forward(&x)?);
                        Ok(())
                    },
                    a.settle,
                )?;
                for _ in 0..n {
                    let start = Instant::now();
                    std::hint::black_box(plan.forward(&x)?);
                    t.push(start.elapsed().as_secs_f64() * 1e6);
                }
            }
            done += n;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let models: Vec<Timing> = paths
        .iter()
        .zip(times.iter_mut())
        .map(|(p, t)| {
            t.sort_by(f64::total_cmp);
            let p50 = percentile(t, 0.5);
            Timing {
                model: p.display().to_string(),
                runs: t.len(),
                min_us: t[0],
                p50_us: p50,
                p90_us: percentile(t, 0.9),
                p99_us: percentile(t, 0.99),
                mean_us: t.iter().sum::<f64>() / t.len() as f64,
                throughput: a.batch as f64 / (p50 * 1e-6),
            }
        })
        .collect();
    let speedup = (models.len() == 2).then(|| models[0].p50_us / models[1].p50_us);
    let out = Output {
        threads: a.threads,
        batch: a.batch,
        block: a.block,
        settle_ms: a.settle.as_millis() as u64,
        input,
        models,
        speedup,
    };
    if a.json {
        return common::print_json(&out);
    }
    println!(
        "input {:?}, {} thread(s), {} runs per model (alternating in blocks of {}, each after at least 2 runs and {} ms untimed), microseconds per batch",
        out.input, out.threads, a.runs, a.block, out.settle_ms
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "model", "min", "p50", "p90", "p99", "mean", "examples/s"
    );
    for t in &out.models {
        println!(
            "{:<40} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>12.0}",
            t.model, t.min_us, t.p50_us, t.p90_us, t.p99_us, t.mean_us, t.throughput
        );
    }
    if let Some(s) = out.speedup {
        println!("speedup (p50 of the first over the second): {s:.2}");
    }
    Ok(())
}
