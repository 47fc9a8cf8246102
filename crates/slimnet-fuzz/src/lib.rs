//! Mutation fuzzing of slimnet's loaders and kernels, on the stable toolchain.
//!
//! Each [`Target`] has seeds (real files made in-process: model files of every layer family,
//! IDX files plain and gzipped, ONNX exports; for the kernels, byte strings that the target
//! reads as shapes) and a `run` that must return (an error is fine) and never panic, abort,
//! hang or ask for absurd memory. Input `i` of a run is a deterministic mutation of a seed,
//! made from `(seed, i)` alone ([`input`]), so any input of any run can be made again from its
//! index.
//!
//! - `cargo test -p slimnet-fuzz` runs every target a few thousand times in-process
//!   ([`run_in_process`], panics caught and counted; the test fails on any).
//! - `cargo run --release -p slimnet-fuzz --bin fuzz -- --target model --execs 1000000` is the
//!   long run: a supervisor starts a worker process that runs the inputs, restarts it after a
//!   crash, an out-of-memory abort or a hang (killed after `--hang-ms`), saves each such input
//!   under `--out`, and reports executions, panics, crashes, out-of-memory aborts, hangs, inputs
//!   over 1 s and the slowest input.
//!
//! The memory ceiling of `slimnet_core::limits` is lowered to [`FUZZ_MAX_TENSOR_BYTES`] for
//! fuzzing, its work ceiling set to [`FUZZ_MAX_LAYER_MACS`], and the fuzz binary's allocator refuses single allocations over
//! [`ALLOC_LIMIT`] bytes (an abort counted as out-of-memory), so a size that escapes the checks
//! shows up as a finding instead of swapping the machine.
#![warn(missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use slimnet::core::rewrite::Selector;
use slimnet::core::{io, layers, limits, models, tensor, Graph, Layer, Sequential, Tensor};

mod kernels;
mod mutate;

pub use mutate::{mutate, Rng};

/// The memory ceiling set for fuzzing (64 MiB per tensor, 64 times the largest tensor of the
/// seed models): a file may still make every layer allocate that much, and a model of a dozen
/// layers then spends a few hundred milliseconds just writing such tensors.
pub const FUZZ_MAX_TENSOR_BYTES: usize = 64 << 20;
/// The work ceiling set for fuzzing: 2^27 multiply-adds per layer call (a few milliseconds on
/// the f32 kernels, 100 times what the seed models need; a legal layer that asks for more is
/// refused instead of running for seconds on each of the inputs a model file is run on).
pub const FUZZ_MAX_LAYER_MACS: usize = 1 << 27;
/// The largest single allocation the fuzz binary grants (1 GiB): more is an out-of-memory
/// finding.
pub const ALLOC_LIMIT: usize = 1 << 30;

/// A fuzz target.
pub struct Target {
    /// Its name (`model`, `idx`, `onnx`, `kernels`).
    pub name: &'static str,
    /// Seed inputs.
    pub seeds: Vec<Vec<u8>>,
    /// Runs one input (returns normally whether or not the input was accepted).
    pub run: fn(&[u8]),
    /// Largest input a mutation may produce.
    pub max_len: usize,
}

/// The names of every target.
pub const TARGETS: [&str; 4] = ["model", "idx", "onnx", "kernels"];

/// The target called `name`.
///
/// # Errors
/// An unknown name, or a seed that could not be made.
pub fn target(name: &str) -> Result<Target, String> {
    limits::set_max_tensor_bytes(Some(FUZZ_MAX_TENSOR_BYTES));
    limits::set_max_layer_macs(Some(FUZZ_MAX_LAYER_MACS));
    Ok(match name {
        "model" => Target {
            name: "model",
            seeds: model_seeds()?.into_iter().map(|(_, b)| b).collect(),
            run: run_model,
            max_len: 1 << 20,
        },
        "idx" => Target {
            name: "idx",
            seeds: idx_seeds(),
            run: run_idx,
            max_len: 1 << 16,
        },
        "onnx" => Target {
            name: "onnx",
            seeds: onnx_seeds()?,
            run: run_onnx,
            max_len: 1 << 20,
        },
        "kernels" => Target {
            name: "kernels",
            seeds: kernels::seeds(),
            run: kernels::run,
            max_len: 256,
        },
        other => return Err(format!("unknown target `{other}` (one of {TARGETS:?})")),
    })
}

/// Input `index` of a run with `seed`: the seed file chosen by the index, mutated by a
/// generator seeded with both (index 0.. of each seed file is also kept unmutated once).
pub fn input(t: &Target, seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let base = &t.seeds[(index % t.seeds.len() as u64) as usize];
    if index < t.seeds.len() as u64 {
        return base.clone();
    }
    let other = &t.seeds[rng.below(t.seeds.len())];
    mutate(&mut rng, base, other, t.max_len)
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Inputs run.
    pub execs: u64,
    /// Inputs that panicked (their indices).
    pub panics: Vec<u64>,
    /// Inputs that took over 1 s (their indices).
    pub slow: Vec<u64>,
    /// The slowest input: index and time.
    pub slowest: (u64, Duration),
}

/// Runs inputs `start..end` of a run with `seed` in this process, catching panics.
pub fn run_in_process(t: &Target, seed: u64, start: u64, end: u64) -> Stats {
    let mut s = Stats::default();
    for i in start..end {
        let bytes = input(t, seed, i);
        let t0 = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(|| (t.run)(&bytes))).is_ok();
        let dt = t0.elapsed();
        s.execs += 1;
        if !ok {
            s.panics.push(i);
        }
        if dt > Duration::from_secs(1) {
            s.slow.push(i);
        }
        if dt > s.slowest.1 {
            s.slowest = (i, dt);
        }
    }
    s
}

/// A seed model: its name, the graph and the input shape it runs on.
pub type SeedModel = (&'static str, Graph, Vec<usize>);

/// Small models of every layer family that model files hold, with their input shapes:
/// dense (conv, BN, pools, linear, activations, a residual add and concat), sparse (pruned and
/// converted), int8 (static PTQ), dynamic int8, weight-only, weight sharing and QAT.
///
/// # Errors
/// When a model cannot be built (a bug in a method crate).
pub fn seed_models() -> Result<Vec<SeedModel>, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let input = vec![1, 1, 12, 12];
    let mut rng = tensor::rng(7);
    let conv = |i, o, k| layers::Conv2dConfig::new(i, o, k).with_padding(1);
    let mut g = Graph::new();
    let x = g.input();
    let c1 = g
        .add_layer("conv1", conv(1, 4, 3).init(&mut rng).map_err(|x| e(&x))?, x)
        .map_err(|x| e(&x))?;
    let bn = g
        .add_layer(
            "bn1",
            layers::BatchNormConfig::new(4).init().map_err(|x| e(&x))?,
            c1,
        )
        .map_err(|x| e(&x))?;
    let r = g
        .add_layer("relu1", layers::Activation::relu(), bn)
        .map_err(|x| e(&x))?;
    let c2 = g
        .add_layer(
            "conv2",
            conv(4, 4, 3)
                .with_groups(4)
                .init(&mut rng)
                .map_err(|x| e(&x))?,
            r,
        )
        .map_err(|x| e(&x))?;
    let s = g.add("skip", c2, r).map_err(|x| e(&x))?;
    let cat = g.concat("cat", &[s, r]).map_err(|x| e(&x))?;
    let p = g
        .add_layer(
            "pool",
            layers::MaxPool2d::new(layers::PoolConfig::new(2)).map_err(|x| e(&x))?,
            cat,
        )
        .map_err(|x| e(&x))?;
    let f = g
        .add_layer("flatten", layers::Flatten::new(), p)
        .map_err(|x| e(&x))?;
    let fc = g
        .add_layer(
            "fc",
            layers::LinearConfig::new(8 * 6 * 6, 10)
                .init(&mut rng)
                .map_err(|x| e(&x))?,
            f,
        )
        .map_err(|x| e(&x))?;
    g.add_layer("softmax", layers::Softmax::new(), fc)
        .map_err(|x| e(&x))?;
    let dense = g;

    let mlp = Sequential::new()
        .push("flatten", layers::Flatten::new())
        .push(
            "fc1",
            layers::LinearConfig::new(144, 32)
                .init(&mut rng)
                .map_err(|x| e(&x))?,
        )
        .push("relu1", layers::Activation::relu())
        .push(
            "fc2",
            layers::LinearConfig::new(32, 10)
                .init(&mut rng)
                .map_err(|x| e(&x))?,
        )
        .build()
        .map_err(|x| e(&x))?;
    let mut sparse = mlp.clone();
    slimnet::prune::Pruner::new(slimnet::prune::criterion::Magnitude)
        .prune(&mut sparse, 0.9)
        .map_err(|x| e(&x))?;
    slimnet::prune::convert::to_sparse(&mut sparse, &input, Selector::All).map_err(|x| e(&x))?;
    let mut sparse_conv = models::lenet5(&mut rng).map_err(|x| e(&x))?;
    slimnet::prune::Pruner::new(slimnet::prune::criterion::Magnitude)
        .prune(&mut sparse_conv, 0.8)
        .map_err(|x| e(&x))?;
    slimnet::prune::convert::to_sparse(&mut sparse_conv, &[1, 1, 28, 28], Selector::All)
        .map_err(|x| e(&x))?;
    let calib = (0..2).map(|i| tensor::uniform(&input, 0.0, 1.0, &mut tensor::rng(i)));
    let int8 = slimnet::quant::ptq::quantize_static(
        &dense_for_int8(&mut rng)?,
        calib,
        &slimnet::quant::ptq::PtqConfig::default(),
    )
    .map_err(|x| e(&x))?;
    let mut dynamic = mlp.clone();
    slimnet::quant::ptq::quantize_dynamic(&mut dynamic, &input, Selector::All)
        .map_err(|x| e(&x))?;
    let mut weight_only = dense.clone();
    slimnet::quant::ptq::quantize_weights(
        &mut weight_only,
        &input,
        Selector::All,
        slimnet::quant::scheme::QScheme::affine(4).map_err(|x| e(&x))?,
    )
    .map_err(|x| e(&x))?;
    let mut shared = mlp.clone();
    slimnet::quant::share::share_weights(
        &mut shared,
        &input,
        Selector::All,
        &slimnet::quant::share::ShareConfig::new(3)
            .map_err(|x| e(&x))?
            .with_huffman(true),
    )
    .map_err(|x| e(&x))?;
    let qat = slimnet::quant::qat::prepare(
        &dense_for_int8(&mut rng)?,
        &input,
        &slimnet::quant::qat::QatConfig::default(),
    )
    .map_err(|x| e(&x))?;
    Ok(vec![
        ("dense", dense, input.clone()),
        ("mlp", mlp, input.clone()),
        ("sparse", sparse, input.clone()),
        ("sparse-conv", sparse_conv, vec![1, 1, 28, 28]),
        ("int8", int8, input.clone()),
        ("dynamic", dynamic, input.clone()),
        ("weight-only", weight_only, input.clone()),
        ("shared", shared, input.clone()),
        ("qat", qat, input),
    ])
}

/// A small conv net of the layers static quantization makes int8.
fn dense_for_int8(rng: &mut tensor::SlimRng) -> Result<Graph, String> {
    let e = |e: slimnet::core::Error| e.to_string();
    Sequential::new()
        .push(
            "conv1",
            layers::Conv2dConfig::new(1, 4, 3)
                .with_padding(1)
                .init(rng)
                .map_err(e)?,
        )
        .push("relu1", layers::Activation::relu())
        .push(
            "pool",
            layers::MaxPool2d::new(layers::PoolConfig::new(2)).map_err(e)?,
        )
        .push("flatten", layers::Flatten::new())
        .push(
            "fc",
            layers::LinearConfig::new(4 * 6 * 6, 10)
                .init(rng)
                .map_err(e)?,
        )
        .build()
        .map_err(e)
}

/// The model seeds as files.
///
/// # Errors
/// As [`seed_models`], or a model that cannot be written.
pub fn model_seeds() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    seed_models()?
        .into_iter()
        .map(|(n, g, _)| Ok((n, io::to_bytes(&g).map_err(|e| format!("{n}: {e}"))?)))
        .collect()
}

/// The inputs a loaded model is run on: the seeds' shapes.
const INPUTS: [[usize; 4]; 2] = [[1, 1, 12, 12], [1, 1, 28, 28]];

/// Loads a model file with every slimnet kind, then runs it (checked and unchecked) on the
/// seeds' input shapes and on a shape made from the file's length.
pub fn run_model(bytes: &[u8]) {
    let Ok(g) = io::from_bytes(bytes, &slimnet::registry()) else {
        return;
    };
    for shape in INPUTS {
        let x = tensor::uniform(&shape, 0.0, 1.0, &mut tensor::rng(1));
        let _ = g.forward(&x);
        let _ = g.forward_checked(&x);
    }
    let _ = g.forward(&tensor::zeros(&[2, 1, 12, 12]));
    let _ = io::to_bytes(&g);
}

/// IDX files: images and labels, plain and gzipped.
pub fn idx_seeds() -> Vec<Vec<u8>> {
    use std::io::Write;
    let idx = |dims: &[u32], data: &[u8]| {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    };
    let images = idx(
        &[3, 4, 4],
        &(0..48).map(|i| (i * 5) as u8).collect::<Vec<_>>(),
    );
    let labels = idx(&[3], &[1, 7, 9]);
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).expect("in memory");
        e.finish().expect("in memory")
    };
    vec![gz(&images), gz(&labels), images, labels]
}

/// Parses an IDX file (plain or gzipped); when it holds images and labels of one count, makes
/// a dataset of them.
pub fn run_idx(bytes: &[u8]) {
    let Ok(a) = slimnet::core::data::idx::parse_idx(bytes, "fuzz") else {
        return;
    };
    if a.dims.len() >= 2 && a.dims.iter().all(|&d| d > 0) {
        let data: Vec<f32> = a.data.iter().map(|&b| b as f32 / 255.0).collect();
        if let Ok(x) = slimnet::core::tensor::from_vec(&a.dims, data) {
            let labels: Vec<usize> = (0..a.dims[0]).map(|i| i % 10).collect();
            let _ = slimnet::core::data::Dataset::new(x, labels, 10);
        }
    }
}

/// ONNX exports of the seed models that ONNX can hold.
///
/// # Errors
/// As [`seed_models`], or a failed export.
pub fn onnx_seeds() -> Result<Vec<Vec<u8>>, String> {
    let reg = slimnet::export_registry();
    let mut out = Vec::new();
    for (name, g, input) in seed_models()? {
        if matches!(name, "qat" | "weight-only" | "shared" | "dynamic") {
            continue;
        }
        out.push(
            slimnet::onnx::writer::to_bytes(&g, &input, &reg)
                .map_err(|e| format!("{name}: {e}"))?,
        );
    }
    Ok(out)
}

/// Reads ONNX bytes and runs the imported graph on its input shape (when it is small).
pub fn run_onnx(bytes: &[u8]) {
    let opts = slimnet::onnx::ImportOptions::new().with_int8(slimnet::int8_import());
    let Ok(m) = slimnet::onnx::from_bytes_with(bytes, &opts) else {
        return;
    };
    let n = m
        .input_shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    if n.is_some_and(|n| n <= 1 << 16) {
        let x = Tensor::from_elem(m.input_shape.clone(), 0.5);
        let _ = m.graph.forward(&x);
    }
}

/// A guard for the fuzz binary and tests: the system allocator, refusing any single
/// allocation over [`ALLOC_LIMIT`] (the process then aborts with "memory allocation of N
/// bytes failed", counted as out-of-memory).
pub struct GuardAlloc;

// SAFETY: forwards to the system allocator; a refused request returns null, as an allocator
// may.
unsafe impl std::alloc::GlobalAlloc for GuardAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > ALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > ALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` or `alloc_zeroed` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        if new > ALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `dealloc`; the new size is the caller's.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}
