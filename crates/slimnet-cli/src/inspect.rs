//! `slimnet inspect`: the cost table of a model with each layer's measured time.

use std::path::Path;

use serde::Serialize;
use slimnet::core::graph::Op;
use slimnet::core::io;
use slimnet::core::summary::Summary;
use slimnet::core::timing::{latency, TimingConfig};

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
        });
    }
    let plan = model.freeze(input)?;
    let total =
        slimnet::kernels::threads::with(1, || latency(&plan, input, &TimingConfig::default()))?;
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
        "{:<20} {:<16} {:<18} {:>10} {:>12} {:>10} {:>10}",
        "layer", "kind", "output", "params", "MACs", "bytes", "time us"
    );
    for r in &out.layers {
        println!(
            "{:<20} {:<16} {:<18} {:>10} {:>12} {:>10} {:>10}",
            r.name,
            r.kind,
            format!("{:?}", r.output),
            r.params,
            r.macs,
            r.bytes,
            r.time_us.map_or("-".into(), |t| format!("{t:.1}"))
        );
    }
    println!(
        "total: {} params, {} MACs, {} weight bytes, file {} bytes, plan latency {:.1} us \
         (input {:?}, one thread, median)",
        out.params, out.macs, out.weight_bytes, out.file_bytes, out.latency_us, out.input
    );
    Ok(())
}
