//! `slimnet inspect`: the cost table of a model with each layer's measured time, alone and as a
//! step of the frozen plan.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use slimnet::core::graph::{Op, Plan};
use slimnet::core::io;
use slimnet::core::summary::Summary;
use slimnet::core::tensor;
use slimnet::core::timing::{latency, Latency, TimingConfig};

use crate::common;
use crate::error::CliError;

/// One layer of the table.
#[derive(Serialize)]
struct Row {
    name: String,
    kind: String,
    output: Vec<usize>,
    params: usize,
    macs: usize,
    bytes: usize,
    /// Median time of the layer alone on a random input of its shape, one thread.
    time_us: Option<f64>,
    /// Median time of the layer's step in the frozen plan (on the values the plan hands it,
    /// their conversion included), one thread; none for a layer the plan folded or fused
    /// into another.
    plan_us: Option<f64>,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Output {
    model: String,
    input: Vec<usize>,
    layers: Vec<Row>,
    params: usize,
    macs: usize,
    weight_bytes: usize,
    file_bytes: usize,
    /// Median batch latency of the frozen plan, one thread.
    latency_us: f64,
}

pub fn run(path: &Path, input: &[usize], json: bool) -> Result<(), CliError> {
    let model = common::load_model(path)?;
    common::check_input(&model, input, path)?;
    let bar = common::spinner(json, format!("timing the layers of {}", path.display()));
    let summary = Summary::of(&model, input)?;
    let shapes = model.shapes(input)?;
    let quick = TimingConfig::quick().with_runs(20);
    let mut rows = Vec::new();
    for (row, node) in summary.rows.iter().zip(model.nodes().iter().skip(1)) {
        let time_us = match &node.op {
            Op::Layer(l) => {
                let shape = &shapes[node.inputs[0].index()];
                let t = slimnet::kernels::threads::with(1, || latency(l.as_ref(), shape, &quick))
                    .map_err(|e| e.in_layer(&node.name))?;
                Some(t.median_us)
            }
            _ => None,
        };
        rows.push(Row {
            name: row.name.clone(),
            kind: row.kind.clone(),
            output: row.cost.output.clone(),
            params: row.cost.params,
            macs: row.cost.macs,
            bytes: row.cost.bytes,
            time_us,
            plan_us: None,
        });
    }
    let plan = model.freeze(input)?;
    let total =
        slimnet::kernels::threads::with(1, || latency(&plan, input, &TimingConfig::default()))?;
    let steps = slimnet::kernels::threads::with(1, || step_times(&plan, input))?;
    for r in &mut rows {
        r.plan_us = steps.get(&r.name).copied();
    }
    bar.finish_and_clear();
    let out = Output {
        model: path.display().to_string(),
        input: input.to_vec(),
        params: summary.params(),
        macs: summary.macs(),
        weight_bytes: summary.bytes(),
        file_bytes: io::to_bytes(&model)?.len(),
        latency_us: total.median_us,
        layers: rows,
    };
    if json {
        return common::print_json(&out);
    }
    println!(
        "{:<20} {:<16} {:<18} {:>10} {:>12} {:>10} {:>10} {:>10}",
        "layer", "kind", "output", "params", "MACs", "bytes", "alone us", "in plan us"
    );
    let us = |t: Option<f64>| t.map_or("-".into(), |t| format!("{t:.1}"));
    for r in &out.layers {
        println!(
            "{:<20} {:<16} {:<18} {:>10} {:>12} {:>10} {:>10} {:>10}",
            r.name,
            r.kind,
            format!("{:?}", r.output),
            r.params,
            r.macs,
            r.bytes,
            us(r.time_us),
            us(r.plan_us)
        );
    }
    println!(
        "total: {} params, {} MACs, {} weight bytes, file {} bytes, plan latency {:.1} us \
         (input {:?}, one thread, median)",
        out.params, out.macs, out.weight_bytes, out.file_bytes, out.latency_us, out.input
    );
    Ok(())
}

/// The median time of each step of `plan` over timed runs on a random input of `shape`, by
/// node name.
fn step_times(plan: &Plan, shape: &[usize]) -> Result<HashMap<String, f64>, CliError> {
    let x = tensor::uniform(shape, 0.0, 1.0, &mut tensor::rng(0));
    let mut times: HashMap<String, Vec<f64>> = HashMap::new();
    for run in 0..53 {
        let (_, steps) = plan.run_timed(&x)?;
        // the first runs fill the caches and the buffer pool
        if run >= 3 {
            for (name, d) in steps {
                let t = times.entry(name.to_string()).or_default();
                t.push(d.as_secs_f64() * 1e6);
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|(name, t)| (name, Latency::of(t).median_us))
        .collect())
}
