//! Support for slimnet's examples and tests (not published): command-line flags ([`Args`]),
//! one line per training epoch ([`PrintEpochs`]), printed tables ([`Table`]), the accuracy / size / speed table of a
//! compression pipeline ([`Stages`]), batch-1 latency on real images ([`speed`]), analysis
//! sweeps ([`sweep`]), what the distillation examples share ([`distill`]), flow training
//! and pictures ([`flow`]), style-transfer losses, training and pictures ([`style`]), the training run both use
//! ([`fit`]), a Python
//! interpreter that can import what a test needs ([`python_with`]), ONNX Runtime as the peer
//! for outputs and latency ([`ort`]) and a model beside its ONNX file in both runtimes
//! ([`onnx_side`]), and real pretrained ONNX CNNs from a package registry
//! ([`pretrained`]).
//!
//! Examples stay top-down programs that read as documentation: the measurement and set-up
//! they all need lives here once.
#![warn(missing_docs)]

pub mod alloc;
mod args;
pub mod distill;
mod epochs;
pub mod fit;
pub mod flow;
pub mod onnx_side;
pub mod ort;
pub mod pretrained;
mod python;
pub mod speed;
mod stages;
pub mod style;
pub mod sweep;
mod table;

pub use args::{Args, Usage};
pub use epochs::PrintEpochs;
pub use python::python_with;
pub use stages::{Measured, Stages};
pub use table::Table;

/// The error type of examples: anything that prints.
pub type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs `main` and exits with status 1 after printing its error on one line, or 2 for a usage
/// error ([`Usage`]).
pub fn run(main: impl FnOnce() -> Res<()>) {
    if let Err(e) = main() {
        if e.downcast_ref::<args::Usage>().is_some() {
            eprintln!("{e}");
            std::process::exit(2);
        }
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
