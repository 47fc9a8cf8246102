//! Batch-1 latency per layer of a pruned LeNet-300-100, dense against sparse, on MNIST test
//! images, with how many of each sparse layer's weights its column walk touches.
//!
//! ```text
//! cargo run --release -p slimnet-prune --example batch1_layers -- [MODEL_FILE] [SPARSITY]
//! ```
//! `MODEL_FILE` (default `target/slimnet/lenet300.safetensors`, written by
//! `cargo run --release --example train_lenet -- --model lenet300`) is pruned by global
//! magnitude to `SPARSITY` (default 0.925) without fine-tuning (which does not change the
//! timings) and converted to sparse layers. One thread.
//!
//! Part of the batch-1 gain comes from the inputs, not from pruning: the column walk skips the
//! columns of zero (or background) inputs whatever the weights. The `dense walk` column puts
//! that apart: the unpruned weights through the same column walk.

use std::time::Instant;

use slimnet_core::data::{mnist, Split};
use slimnet_core::layers::Linear;
use slimnet_core::rewrite::Selector;
use slimnet_core::{io, Graph, Layer, Tensor};
use slimnet_kernels::sparse::{CscMatrix, CsrMatrix, SparseWeight};
use slimnet_prune::criterion::Magnitude;
use slimnet_prune::sparse::SparseLinear;
use slimnet_prune::{convert, Pruner, Scope};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Each node's name with its input for every example (the model is a chain).
type NodeInputs = Vec<(String, Vec<Tensor>)>;

/// Microseconds per input, best of 9 rounds over `xs`.
fn per_input_us(layer: &dyn Layer, xs: &[Tensor]) -> Res<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..9 {
        let t = Instant::now();
        for x in xs {
            std::hint::black_box(layer.forward(x)?);
        }
        best = best.min(t.elapsed().as_secs_f64() / xs.len() as f64);
    }
    Ok(best * 1e6)
}

fn node_inputs(g: &Graph, xs: &[Tensor]) -> Res<NodeInputs> {
    let mut out = Vec::new();
    let mut cur: Vec<Tensor> = xs.to_vec();
    for node in g.nodes().iter().skip(1) {
        let layer = g
            .layer(&node.name)
            .ok_or("the model is not a chain of layers")?;
        let next = cur
            .iter()
            .map(|x| layer.forward(x))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((node.name.clone(), std::mem::replace(&mut cur, next)));
    }
    Ok(out)
}

/// "walked of stored" weights per input for a CSR layer, averaged over `xs`, and how many of
/// its columns the walk reads in dense form.
fn walked(layer: &dyn Layer, xs: &[Tensor]) -> String {
    let Some(weight) = layer.downcast_ref::<SparseLinear>().map(|l| l.weight()) else {
        return "-".into();
    };
    let SparseWeight::Csr(m) = weight else {
        return format!("{:?}, every weight", weight.format());
    };
    let c = CscMatrix::from_csr(m);
    let active: usize = xs
        .iter()
        .map(|x| {
            let v = x.as_slice().expect("contiguous");
            c.skip_value(v).map_or(c.nnz(), |s| c.active_nnz(v, s))
        })
        .sum();
    format!(
        "{:.0} of {} ({} of {} columns dense)",
        active as f64 / xs.len() as f64,
        c.nnz(),
        c.dense_columns(),
        c.cols()
    )
}

/// The unpruned model with every `Linear` on the sparse layer's column walk (all its weights
/// stored, as CSR with a column copy).
fn dense_walk(dense: &Graph) -> Res<Graph> {
    let mut g = dense.clone();
    let names: Vec<String> = g.nodes().iter().map(|n| n.name.clone()).collect();
    for name in names {
        let Some(l) = g.layer(&name).and_then(|l| l.downcast_ref::<Linear>()) else {
            continue;
        };
        let (rows, cols) = (l.config().out_features, l.config().in_features);
        let w: Vec<f32> = l.weight.value().iter().copied().collect();
        let bias = l.bias.as_ref().map(|b| b.value().iter().copied().collect());
        // a mask keeps every weight, zero or not
        let all = vec![true; rows * cols];
        let csr = CsrMatrix::from_dense(&w, rows, cols, Some(&all))?;
        let walk = SparseLinear::new(SparseWeight::Csr(csr), bias)?;
        g.replace_layer(&name, Box::new(walk))?;
    }
    Ok(g)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .map_or("target/slimnet/lenet300.safetensors", String::as_str);
    let sparsity: f32 = args.get(1).map_or(Ok(0.925), |s| s.parse())?;
    slimnet_kernels::threads::set_num_threads(1);
    let dense = io::load(path).map_err(|e| {
        format!(
            "{path}: {e} (train it with `cargo run --release --example train_lenet -- --model lenet300`)"
        )
    })?;
    let mut sparse = dense.clone();
    Pruner::new(Magnitude)
        .scope(Scope::Global)
        .prune(&mut sparse, sparsity)?;
    convert::to_sparse(&mut sparse, &[1, 1, 28, 28], Selector::All)?;
    let test = mnist(Split::Test)?;
    let xs: Vec<Tensor> = (0..200).map(|i| test.batch(&[i]).0).collect();
    let walk = dense_walk(&dense)?;

    // a sparse layer carries the ReLU that followed it; the dense column times the dense layer
    // of the same name alone, and the dense ReLUs get rows of their own
    println!(
        "{:<8} {:>14} {:>12} {:>12} {:>12}  weights walked",
        "layer", "sparse kind", "dense (us)", "dense walk", "sparse (us)"
    );
    let sparse_inputs = node_inputs(&sparse, &xs)?;
    for (name, dx) in node_inputs(&dense, &xs)? {
        let t_dense = per_input_us(dense.layer(&name).ok_or("a chain")?, &dx)?;
        let t_walk = per_input_us(walk.layer(&name).ok_or("a chain")?, &dx)?;
        match sparse_inputs.iter().find(|(n, _)| *n == name) {
            Some((_, sx)) => {
                let sl = sparse.layer(&name).ok_or("a chain")?;
                println!(
                    "{name:<8} {:>14} {t_dense:>12.2} {t_walk:>12.2} {:>12.2}  {}",
                    sl.kind(),
                    per_input_us(sl, sx)?,
                    walked(sl, sx)
                );
            }
            None => println!(
                "{name:<8} {:>14} {t_dense:>12.2} {t_walk:>12.2} {:>12}  -",
                "(fused)", "-"
            ),
        }
    }
    let (td, ts) = (per_input_us(&dense, &xs)?, per_input_us(&sparse, &xs)?);
    let tw = per_input_us(&walk, &xs)?;
    println!(
        "whole model: dense {td:.2} us, dense walk {tw:.2} us, sparse {ts:.2} us, speed-up {:.2} \
         (over the dense walk {:.2})",
        td / ts,
        tw / ts
    );
    Ok(())
}
