//! One model shared by many threads: `forward` from 8 threads at once gives, every time, what
//! one thread gives (dense, sparse, int8 and low-rank models; the layers' prepared-weight caches
//! and the kernels' scratch are safe to share).

use std::sync::Arc;

use slimnet::core::rewrite::Selector;
use slimnet::core::{models, tensor, Graph, Layer, Tensor};
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{decompose, ConvMethod, LowRank};
use slimnet::prune::{convert, criterion::Magnitude, Pruner, Scope};
use slimnet::quant::ptq::{quantize_static, PtqConfig};

const THREADS: usize = 8;
const RUNS: usize = 10_000;

fn models() -> Vec<(&'static str, Graph)> {
    let input = [1, 1, 28, 28];
    let dense = models::lenet5(&mut tensor::rng(1)).unwrap();
    let mut low_rank = dense.clone();
    decompose(
        &mut low_rank,
        &input,
        &Selector::Paths(vec!["conv2".into(), "fc1".into()]),
        &LowRank::new(ConvMethod::Tucker2, RankPolicy::MacRatio(0.3)),
    )
    .unwrap();
    let mut sparse = models::lenet300(&mut tensor::rng(2)).unwrap();
    Pruner::new(Magnitude)
        .scope(Scope::Global)
        .prune(&mut sparse, 0.9)
        .unwrap();
    convert::to_sparse(&mut sparse, &input, Selector::All).unwrap();
    let calib = (0..2).map(|i| tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(i)));
    let int8 = quantize_static(&dense, calib, &PtqConfig::default()).unwrap();
    vec![
        ("dense", dense),
        ("low-rank", low_rank),
        ("sparse", sparse),
        ("int8", int8),
    ]
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn forward_from_eight_threads_matches_one() {
    assert_send_sync::<Graph>();
    assert_send_sync::<slimnet::core::graph::Plan>();
    // a few different inputs, so a thread that read another's scratch would show
    let inputs: Arc<Vec<Tensor>> = Arc::new(
        (0..4)
            .map(|i| tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(100 + i)))
            .collect(),
    );
    for (name, model) in models() {
        let want: Arc<Vec<Tensor>> =
            Arc::new(inputs.iter().map(|x| model.forward(x).unwrap()).collect());
        let model = Arc::new(model);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (model, inputs, want) = (model.clone(), inputs.clone(), want.clone());
                std::thread::spawn(move || {
                    for r in 0..RUNS {
                        let k = (r + t) % inputs.len();
                        let y = model.forward(&inputs[k]).unwrap();
                        assert_eq!(y, want[k], "{name}: thread {t}, run {r}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a thread failed");
        }
    }
}
