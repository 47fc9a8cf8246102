//! Runs every ONNX backend test case (onnx 1.22.0) of the ops slimnet-onnx reads, in the three
//! suites of `slimnet_onnx::conformance::Suite`: the node tests, and the models PyTorch's
//! exporter wrote (`pytorch-converted`, `pytorch-operator`). Prints one line per case (`pass`,
//! `FAIL` with the reason, or `out` with why it is out of scope), one line per suite, and last
//! `onnx_conformance passed=<n> of=<m>` over the cases in scope of all three.
//!
//! `cargo run --release -p slimnet-onnx --example conformance [-- --verbose]`
//! (`--verbose` also lists the out-of-scope cases). The first run fetches the wheel with
//! `pip download` into slimnet's cache (see `slimnet_onnx::conformance`).

use slimnet_onnx::conformance::{run, scope, selected_cases, Suite};

fn main() {
    let verbose = std::env::args().any(|a| a == "--verbose");
    let (mut passed, mut total) = (0, 0);
    for suite in Suite::ALL {
        let cases = selected_cases(suite).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        });
        let (mut p, mut t, mut out) = (0, 0, 0);
        for case in &cases {
            if let Some(why) = scope(case) {
                out += 1;
                if verbose {
                    println!("out  {:<60} {why}", case.name);
                }
                continue;
            }
            t += 1;
            match run(case) {
                Ok(()) => {
                    p += 1;
                    println!("pass {}", case.name);
                }
                Err(e) => println!("FAIL {:<60} {e}", case.name),
            }
        }
        println!(
            "suite {} passed={p} of={t} out_of_scope={out} (list them with --verbose)",
            suite.folder()
        );
        passed += p;
        total += t;
    }
    println!("onnx_conformance passed={passed} of={total}");
}
