//! Trains a model on MNIST, saves it as one safetensors file, and prints its summary table.
//!
//! ```text
//! cargo run --release --example train_lenet -- [--model lenet5|lenet300|resnet] [--epochs N]
//!     [--lr F] [--threads N] [--seed N] [--out PATH]
//! ```
//! Each model has its recipe (`slimnet::pipeline::FineTune::zoo`: LeNet-5 15 epochs from
//! lr 0.01, LeNet-300-100 20 from 0.05, ResNet-small 8 from 0.05); `--epochs` and `--lr`
//! override it. The last line reads
//! `train <model> mnist test_accuracy=<f> epochs=<n> seconds=<s> params=<n>`.

use std::time::Instant;

use slimnet::core::data::{self, Split};
use slimnet::core::summary::Summary;
use slimnet::core::{models, optim, tensor, train, Layer};
use slimnet::pipeline::FineTune;
use slimnet_testkit::{Args, PrintEpochs, Res};

const USAGE: &str = "usage: train_lenet [--model lenet5|lenet300|resnet] [--epochs N] [--lr F] \
                     [--threads N] [--seed N] [--out PATH]";

fn main() {
    slimnet_testkit::run(train);
}

fn train() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let name = args.get("model", "lenet5".to_string())?;
    let recipe = FineTune::zoo(&name);
    let epochs = args.get("epochs", recipe.epochs)?;
    let lr = args.get("lr", recipe.lr)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.get("threads", cores)?;
    let seed = args.get("seed", 1u64)?;
    let out = args.get("out", format!("target/slimnet/{name}.safetensors"))?;
    args.finish()?;
    slimnet::kernels::threads::set_num_threads(threads);

    let mut model = models::by_name(&name, &mut tensor::rng(seed))?;
    let train_set = data::mnist(Split::Train)?;
    let test_set = data::mnist(Split::Test)?;

    // SGD with Nesterov momentum and weight decay, cosine decay from `lr`, batch 64
    let start = Instant::now();
    let history = train::Trainer::new(
        train::TrainConfig::default()
            .with_epochs(epochs)
            .with_batch_size(64)
            .with_seed(seed),
    )
    .optimizer(
        optim::Sgd::new(lr)
            .with_momentum(0.9)
            .with_nesterov(true)
            .with_weight_decay(recipe.weight_decay),
    )
    .schedule(optim::CosineLr::new(lr, epochs))
    .callback(PrintEpochs::new())
    .fit(&mut model, &train_set, Some(&test_set))?;
    let seconds = start.elapsed().as_secs_f64();

    slimnet::save(&model, &out)?;
    println!("{}", Summary::of(&model, &[1, 1, 28, 28])?);
    println!("saved {out} ({} bytes)", std::fs::metadata(&out)?.len());
    let acc = history.last().and_then(|h| h.test_accuracy).unwrap_or(0.0);
    println!(
        "train {name} mnist test_accuracy={acc:.4} epochs={epochs} seconds={seconds:.1} params={}",
        (&model as &dyn Layer).num_params()
    );
    Ok(())
}
