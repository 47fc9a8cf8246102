//! Every in-scope ONNX backend node test of onnx 1.22.0 passes (the cases are fetched with
//! `pip download` into slimnet's cache on first use; see `slimnet_onnx::conformance`). The
//! example `conformance` prints the same run case by case.

use slimnet_onnx::conformance::{node_tests_dir, run, scope, Case};

/// The in-scope count of the last reviewed run; fewer means cases left scope unnoticed.
const MIN_IN_SCOPE: usize = 140;

#[test]
fn every_in_scope_node_test_passes() {
    let dir = node_tests_dir().unwrap_or_else(|e| panic!("{e}"));
    let mut failed = Vec::new();
    let mut total = 0;
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    paths.sort();
    for p in paths {
        let case = Case::load(&p).unwrap();
        if !case.selected() || scope(&case).is_some() {
            continue;
        }
        total += 1;
        if let Err(e) = run(&case) {
            failed.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(total >= MIN_IN_SCOPE, "only {total} cases in scope");
    println!("onnx_conformance passed={total} of={total}");
}
