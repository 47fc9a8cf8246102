//! Every in-scope ONNX backend test case of onnx 1.22.0 passes: the node tests, and the models
//! PyTorch's exporter wrote (the cases are fetched with `pip download` into slimnet's cache on
//! first use; see `slimnet_onnx::conformance`). The example `conformance` prints the same run
//! case by case.

use slimnet_onnx::conformance::{run, scope, selected_cases, Suite};

/// The in-scope counts of the last reviewed run, per suite; fewer means cases left scope
/// unnoticed.
fn min_in_scope(suite: Suite) -> usize {
    match suite {
        Suite::Node => 245,
        Suite::PytorchConverted => 54,
        Suite::PytorchOperator => 22,
    }
}

#[test]
fn every_in_scope_case_passes() {
    for suite in Suite::ALL {
        let cases = selected_cases(suite).unwrap_or_else(|e| panic!("{e}"));
        let mut failed = Vec::new();
        let mut total = 0;
        for case in cases.iter().filter(|c| scope(c).is_none()) {
            total += 1;
            if let Err(e) = run(case) {
                failed.push(format!("{}: {e}", case.name));
            }
        }
        let name = suite.folder();
        assert!(
            failed.is_empty(),
            "{name}: {} of {total} failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
        assert!(
            total >= min_in_scope(suite),
            "{name}: only {total} cases in scope"
        );
        println!("suite {name} passed={total} of={total}");
    }
}
