//! Runs every ONNX backend node test (onnx 1.22.0) of the ops slimnet-onnx reads: prints one
//! line per case (`pass`, `FAIL` with the reason, or `out` with why it is out of scope) and
//! last `onnx_conformance passed=<n> of=<m>` over the cases in scope.
//!
//! `cargo run --release -p slimnet-onnx --example conformance [-- --verbose]`
//! (`--verbose` also lists the out-of-scope cases). The first run fetches the wheel with
//! `pip download` into slimnet's cache (see `slimnet_onnx::conformance`).

use slimnet_onnx::conformance::{node_tests_dir, run, scope, Case};

fn main() {
    let verbose = std::env::args().any(|a| a == "--verbose");
    let dir = node_tests_dir().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the node-test folder")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    names.sort();
    let (mut passed, mut total, mut out) = (0, 0, 0);
    for path in names {
        let case = match Case::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skip {}: {e}", path.display());
                continue;
            }
        };
        if !case.selected() {
            continue;
        }
        if let Some(why) = scope(&case) {
            out += 1;
            if verbose {
                println!("out  {:<60} {why}", case.name);
            }
            continue;
        }
        total += 1;
        match run(&case) {
            Ok(()) => {
                passed += 1;
                println!("pass {}", case.name);
            }
            Err(e) => println!("FAIL {:<60} {e}", case.name),
        }
    }
    println!("out of scope: {out} cases (list them with --verbose)");
    println!("onnx_conformance passed={passed} of={total}");
}
