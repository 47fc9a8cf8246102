//! A short, deterministic run of every fuzz target (the long run is the `fuzz` binary; see the
//! crate docs). Any panic fails the test and names the inputs, which `slimnet_fuzz::input`
//! makes again from the seed and index; an out-of-memory abort of the guard allocator fails
//! the test binary.

use slimnet_fuzz::{run_in_process, target, GuardAlloc};

#[global_allocator]
static GUARD: GuardAlloc = GuardAlloc;

fn short(name: &str, execs: u64) {
    let t = target(name).unwrap();
    std::panic::set_hook(Box::new(|_| {}));
    let s = run_in_process(&t, 1, 0, execs);
    let _ = std::panic::take_hook();
    assert_eq!(s.execs, execs);
    assert!(
        s.panics.is_empty(),
        "{name}: {} of {execs} inputs panicked, first {:?} (seed 1)",
        s.panics.len(),
        &s.panics[..s.panics.len().min(10)]
    );
    eprintln!(
        "{name}: {execs} execs, slowest #{} {:?}",
        s.slowest.0, s.slowest.1
    );
}

#[test]
fn model_files() {
    short("model", 3000);
}

#[test]
fn idx_files() {
    short("idx", 20_000);
}

#[test]
fn onnx_files() {
    short("onnx", 3000);
}

#[test]
fn kernels() {
    short("kernels", 20_000);
}
