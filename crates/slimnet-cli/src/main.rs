//! `slimnet`: the command line over the `slimnet` facade and its `pipeline` module.
//!
//! ```text
//! slimnet inspect MODEL [--input 1,1,28,28]            per-layer params, MACs, bytes, time
//! slimnet compress --recipe R [--model M] [--data D] [--out O]
//! slimnet eval MODEL [--data D]                         accuracy and latency
//! slimnet bench MODEL [MODEL2] [--threads N] [--batch N] latency percentiles, side by side
//! slimnet export MODEL --out O [--format onnx|safetensors]
//! slimnet sensitivity MODEL [--data D] [--sparsities 0.5,0.8,0.9]
//! slimnet train --model lenet5 [--data D] [--epochs N] [--out O]
//! ```
//! Every command takes `--json` (one JSON document on stdout, nothing else). Progress bars
//! are drawn only when stdout is a terminal. Errors print one line on stderr and exit with
//! the code of their class (see [`exit`]).
#![warn(missing_docs)]

mod bench;
mod common;
mod compress;
mod error;
mod inspect;
mod other;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use error::{exit, CliError};

/// Exit codes, as `--help` shows them.
const EXIT_CODES: &str = "Exit codes: 0 success; 1 internal error; 2 bad arguments; \
3 a file that cannot be read or written; 4 a recipe that does not parse (unknown key, wrong \
type, bad TOML); 5 a model file that is not a model (corrupt, unknown layer kind); 6 data that \
does not fit the model (input shape, classes, unknown data set); 7 steps that cannot run in \
that order or with those settings; 8 a step that failed while running.";

/// Compress and accelerate CNNs: inspect, compress with recipes, evaluate, benchmark, export.
#[derive(Debug, Parser)]
#[command(name = "slimnet", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The data sets `--data` names.
const DATA_HELP: &str =
    "Data set: mnist, fashion-mnist, hanzi-<classes> (validation = the test split), a folder \
with train_x.npy, train_y.npy, val_x.npy, val_y.npy, or a folder of PNG/JPEG images with one \
sub-folder per class (or train/ and val/ folders of those), read batch by batch";

#[derive(Debug, Subcommand)]
enum Command {
    /// Per-layer parameters, MACs, bytes and measured time (alone, and as a step of the frozen
    /// plan) of a model file.
    Inspect {
        /// Model file (safetensors or ONNX).
        model: PathBuf,
        /// Input shape, batch first.
        #[arg(long, value_delimiter = ',', default_value = "1,1,28,28")]
        input: Vec<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a compression recipe on a model and write the result and a report.
    Compress {
        /// The recipe (TOML).
        #[arg(long)]
        recipe: PathBuf,
        /// The model to compress (default: the recipe's model, a cached zoo baseline).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, help = DATA_HELP)]
        data: Option<String>,
        /// Where the compressed model goes (default `slimnet-out/<recipe>.safetensors`); the
        /// report and plots go beside it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use only the first N training examples.
        #[arg(long)]
        train_examples: Option<usize>,
        /// Use only the first N validation examples.
        #[arg(long)]
        validation_examples: Option<usize>,
        #[command(flatten)]
        images: common::ImageArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validation accuracy and batch-1 latency of a model.
    Eval {
        /// Model file.
        model: PathBuf,
        #[arg(long, default_value = "mnist", help = DATA_HELP)]
        data: String,
        /// Use only the first N validation examples.
        #[arg(long)]
        validation_examples: Option<usize>,
        #[command(flatten)]
        images: common::ImageArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Latency percentiles of one model, or of two side by side (dense vs compressed).
    Bench {
        /// Model file.
        model: PathBuf,
        /// A second model file, timed in alternation with the first.
        other: Option<PathBuf>,
        /// Kernel threads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
        threads: u64,
        /// Batch size.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65536))]
        batch: u64,
        /// Timed runs per model.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1000000))]
        runs: u64,
        /// Runs of one model in a row before the other model's turn: the two alternate in
        /// blocks, so a change of machine load hits both, while each runs with its own weights
        /// in cache as when served alone; 1 alternates call by call (each call then follows
        /// the other model's, whose weights may have pushed this one's out of the cache).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000000))]
        block: u64,
        /// Milliseconds each model runs untimed at the start of each of its turns (at least
        /// two runs), so its timed runs see it as when served alone: the first runs after the
        /// other model's turn refill the cache and, after AVX-512 code, run at a lower clock
        /// for a few milliseconds; 0 leaves two untimed runs.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=60000))]
        settle_ms: u64,
        /// Input shape of one example, without the batch.
        #[arg(long, value_delimiter = ',', default_value = "1,28,28")]
        example: Vec<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a model as ONNX or safetensors.
    Export {
        /// Model file.
        model: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Format (default: from the output's extension).
        #[arg(long, value_enum)]
        format: Option<other::Format>,
        /// Input shape, batch first.
        #[arg(long, value_delimiter = ',', default_value = "1,1,28,28")]
        input: Vec<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validation accuracy of each layer pruned alone to each sparsity.
    Sensitivity {
        /// Model file.
        model: PathBuf,
        #[arg(long, default_value = "mnist", help = DATA_HELP)]
        data: String,
        /// Sparsities to sweep, each in [0, 1).
        #[arg(long, value_delimiter = ',', default_value = "0.5,0.7,0.8,0.9,0.95")]
        sparsities: Vec<f32>,
        /// Use only the first N validation examples.
        #[arg(long, default_value_t = 2000)]
        validation_examples: usize,
        /// Also write the curves as an SVG plot.
        #[arg(long)]
        svg: Option<PathBuf>,
        #[command(flatten)]
        images: common::ImageArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train a zoo model (lenet5, lenet300, vgg, resnet) from scratch.
    Train {
        /// Zoo model.
        #[arg(long, default_value = "lenet5")]
        model: String,
        #[arg(long, default_value = "mnist", help = DATA_HELP)]
        data: String,
        /// Epochs (default: the zoo recipe's).
        #[arg(long)]
        epochs: Option<usize>,
        /// Peak learning rate (default: the zoo recipe's).
        #[arg(long)]
        lr: Option<f32>,
        /// Seed of the initial weights and the shuffle.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default `slimnet-out/<model>-<data>.safetensors`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use only the first N training examples.
        #[arg(long)]
        train_examples: Option<usize>,
        #[command(flatten)]
        images: common::ImageArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            // clap's message without its usage block, on one line
            let text = e.render().to_string();
            let message = text
                .split("\n\nUsage:")
                .next()
                .unwrap_or("error: bad arguments")
                .split("\n\nFor more information")
                .next()
                .unwrap_or_default();
            eprintln!("{} (see `slimnet --help`)", one_line(message));
            std::process::exit(exit::USAGE);
        }
    };
    if let Err(e) = run(cli.command) {
        eprintln!("error: {}", one_line(&e.message));
        std::process::exit(e.code);
    }
}

/// The text on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Inspect { model, input, json } => inspect::run(&model, &input, json),
        Command::Compress {
            recipe,
            model,
            data,
            out,
            train_examples,
            validation_examples,
            images,
            json,
        } => compress::run(compress::Args {
            recipe,
            model,
            data,
            out,
            train_examples,
            validation_examples,
            images,
            json,
        }),
        Command::Eval {
            model,
            data,
            validation_examples,
            images,
            json,
        } => other::eval(&model, &data, validation_examples, &images, json),
        Command::Bench {
            model,
            other,
            threads,
            batch,
            runs,
            block,
            settle_ms,
            example,
            json,
        } => bench::run(bench::Args {
            model,
            other,
            threads: threads as usize,
            batch: batch as usize,
            runs: runs as usize,
            block: block as usize,
            settle: std::time::Duration::from_millis(settle_ms),
            example,
            json,
        }),
        Command::Export {
            model,
            out,
            format,
            input,
            json,
        } => other::export(&model, &out, format, &input, json),
        Command::Sensitivity {
            model,
            data,
            sparsities,
            validation_examples,
            svg,
            images,
            json,
        } => other::sensitivity(
            &model,
            &data,
            &sparsities,
            validation_examples,
            svg.as_deref(),
            &images,
            json,
        ),
        Command::Train {
            model,
            data,
            epochs,
            lr,
            seed,
            out,
            train_examples,
            images,
            json,
        } => other::train(other::TrainArgs {
            model,
            data,
            epochs,
            lr,
            seed,
            out,
            train_examples,
            images,
            json,
        }),
    }
}
