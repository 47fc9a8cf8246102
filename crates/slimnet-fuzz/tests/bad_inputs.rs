//! The bad-input suite: one test per bad input, each asserting that the error's text names
//! the problem and where it is (file, layer, tensor, stage, example). Run it with
//! `cargo test -p slimnet-fuzz --test bad_inputs` (the count of passed tests is the count of
//! cases).

use std::collections::HashMap;
use std::fmt::Display;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use slimnet::core::data::Dataset;
use slimnet::core::layers::{Conv2dConfig, LinearConfig};
use slimnet::core::rewrite::Selector;
use slimnet::core::serde_json::{self, json, Value};
use slimnet::core::train::{TrainConfig, Trainer};
use slimnet::core::{io, models, tensor, Graph, Layer, Tensor};

/// Asserts that `r` failed with a message holding every needle.
fn check<T, E: Display>(r: Result<T, E>, needles: &[&str]) {
    match r {
        Ok(_) => panic!("expected an error holding {needles:?}, got Ok"),
        Err(e) => {
            let s = e.to_string();
            for n in needles {
                assert!(s.contains(n), "error `{s}` does not hold `{n}`");
            }
        }
    }
}

fn lenet() -> Graph {
    models::lenet5(&mut tensor::rng(0)).unwrap()
}

fn lenet_bytes() -> Vec<u8> {
    io::to_bytes(&lenet()).unwrap()
}

fn load(bytes: &[u8]) -> slimnet::core::Result<Graph> {
    io::from_bytes(bytes, &slimnet::registry())
}

/// The tensors and metadata of a file, to rebuild it edited.
type Parts = (
    Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    HashMap<String, String>,
);

fn parts(bytes: &[u8]) -> Parts {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    (tensors, meta.metadata().clone().unwrap_or_default())
}

fn build(p: &Parts, with_meta: bool) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> =
        p.0.iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
    safetensors::serialize(views, with_meta.then(|| p.1.clone())).unwrap()
}

/// The file with its graph JSON edited.
fn edit_graph(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut p = parts(bytes);
    let mut g: Value = serde_json::from_str(&p.1[io::GRAPH_KEY]).unwrap();
    f(&mut g);
    p.1.insert(io::GRAPH_KEY.into(), g.to_string());
    build(&p, true)
}

fn node<'a>(g: &'a mut Value, name: &str) -> &'a mut Value {
    g["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["name"] == name)
        .unwrap()
}

/// The file with one f32 value of tensor `name` replaced.
fn poke(bytes: &[u8], name: &str, index: usize, v: f32) -> Vec<u8> {
    let mut p = parts(bytes);
    let t = p.0.iter_mut().find(|t| t.0 == name).unwrap();
    t.3[4 * index..4 * index + 4].copy_from_slice(&v.to_le_bytes());
    build(&p, true)
}

fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slimnet-bad-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn x28() -> Tensor {
    tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(3))
}

// ---- model files ----

#[test]
fn file_missing() {
    check(
        slimnet::load("/nonexistent/dir/model.safetensors"),
        &["/nonexistent/dir/model.safetensors", "No such file"],
    );
}

#[test]
fn file_empty() {
    let p = temp("empty.safetensors", &[]);
    check(
        slimnet::load(&p),
        &["empty.safetensors", "not a safetensors file"],
    );
}

#[test]
fn file_truncated() {
    let b = lenet_bytes();
    let p = temp("truncated.safetensors", &b[..b.len() / 2]);
    check(
        slimnet::load(&p),
        &["truncated.safetensors", "not a safetensors file"],
    );
}

#[test]
fn file_random_bytes() {
    let mut r = slimnet_fuzz::Rng::new(5);
    let b: Vec<u8> = (0..4096).map(|_| r.next_u64() as u8).collect();
    let p = temp("random.safetensors", &b);
    check(slimnet::load(&p), &["random.safetensors"]);
}

#[test]
fn file_without_graph_metadata() {
    let b = build(&parts(&lenet_bytes()), false);
    check(load(&b), &["no metadata", "not a slimnet model file"]);
}

#[test]
fn file_with_other_format_version() {
    let b = edit_graph(&lenet_bytes(), |g| g["format_version"] = json!(99));
    check(load(&b), &["format version Some(99)", "this build reads 1"]);
}

#[test]
fn tensor_missing() {
    let mut p = parts(&lenet_bytes());
    p.0.retain(|t| t.0 != "conv2.weight");
    check(load(&build(&p, true)), &["missing tensor `conv2.weight`"]);
}

#[test]
fn tensor_extra() {
    let mut p = parts(&lenet_bytes());
    p.0.push(("stray.weight".into(), Dtype::F32, vec![1], vec![0; 4]));
    check(
        load(&build(&p, true)),
        &["tensor `stray.weight` belongs to no layer"],
    );
}

#[test]
fn tensor_wrong_dtype() {
    let mut p = parts(&lenet_bytes());
    let t = p.0.iter_mut().find(|t| t.0 == "fc1.bias").unwrap();
    t.1 = Dtype::I32;
    check(
        load(&build(&p, true)),
        &["tensor `fc1.bias` has dtype I32, expected F32"],
    );
}

#[test]
fn tensor_wrong_shape() {
    let mut p = parts(&lenet_bytes());
    let t = p.0.iter_mut().find(|t| t.0 == "conv1.weight").unwrap();
    t.2 = vec![20, 1, 25, 1];
    check(
        load(&build(&p, true)),
        &[
            "conv1",
            "weight of shape [20, 1, 25, 1]",
            "expected [20, 1, 5, 5]",
        ],
    );
}

#[test]
fn tensor_nan_weight() {
    let b = poke(&lenet_bytes(), "conv2.weight", 7, f32::NAN);
    check(
        load(&b),
        &["tensor `conv2.weight` holds a non-finite value (NaN) at index 7"],
    );
}

#[test]
fn tensor_infinite_bias() {
    let b = poke(&lenet_bytes(), "fc2.bias", 3, f32::NEG_INFINITY);
    check(
        load(&b),
        &["tensor `fc2.bias` holds a non-finite value (-inf) at index 3"],
    );
}

#[test]
fn graph_huge_declared_conv_weight() {
    // channels of 2^20 each: a weight of 2^40 * 25 values, refused before allocating
    let b = edit_graph(&lenet_bytes(), |g| {
        let c = &mut node(g, "conv2")["config"];
        c["in_channels"] = json!(1 << 20);
        c["out_channels"] = json!(1 << 20);
    });
    check(
        load(&b),
        &["conv2", "weight of shape [1048576, 1048576, 5, 5]", "limit"],
    );
}

#[test]
fn graph_huge_padding_fails_on_forward_not_with_an_abort() {
    // a padding of 20,000 keeps the weight, but the output would be 6 x 40024 x 40024 floats
    let b = edit_graph(&lenet_bytes(), |g| {
        node(g, "conv1")["config"]["padding"] = json!([20000, 20000]);
    });
    let g = load(&b).unwrap();
    check(
        g.forward(&x28()),
        &[
            "conv1",
            "convolution output of shape [1, 20, 40024, 40024]",
            "limit",
        ],
    );
}

#[test]
fn graph_huge_linear_features() {
    let b = edit_graph(&lenet_bytes(), |g| {
        node(g, "fc1")["config"]["in_features"] = json!(1u64 << 40);
    });
    check(
        load(&b),
        &["fc1", "features 1099511627776x500 must be in 1..=2^28"],
    );
}

#[test]
fn graph_cyclic_edge() {
    // conv1 reads relu3, which comes later: nodes may only read nodes before them
    let b = edit_graph(&lenet_bytes(), |g| {
        node(g, "conv1")["inputs"] = json!(["relu3"]);
    });
    check(load(&b), &["node `conv1`: unknown input \"relu3\""]);
}

#[test]
fn graph_dangling_edge() {
    let b = edit_graph(&lenet_bytes(), |g| {
        node(g, "fc2")["inputs"] = json!(["ghost"]);
    });
    check(load(&b), &["node `fc2`: unknown input \"ghost\""]);
}

#[test]
fn graph_unknown_kind() {
    let b = edit_graph(&lenet_bytes(), |g| {
        node(g, "conv2")["kind"] = json!("Conv3d");
    });
    check(load(&b), &["unknown layer kind `Conv3d` at `conv2`"]);
}

#[test]
fn graph_duplicate_names() {
    let b = edit_graph(&lenet_bytes(), |g| {
        node(g, "relu2")["name"] = json!("relu1");
    });
    check(load(&b), &["duplicate node name `relu1`"]);
}

#[test]
fn graph_output_is_its_input() {
    let b = edit_graph(&lenet_bytes(), |g| g["output"] = json!("input"));
    check(load(&b), &["output is its input `input`"]);
}

#[test]
fn graph_kind_and_config_disagree() {
    let b = edit_graph(&lenet_bytes(), |g| {
        node(g, "relu1")["kind"] = json!("Sigmoid");
    });
    check(
        load(&b),
        &[
            "layer `relu1`",
            "kind is `Sigmoid` but its config describes a `ReLU`",
        ],
    );
}

#[test]
fn graph_unknown_output() {
    let b = edit_graph(&lenet_bytes(), |g| g["output"] = json!("logits"));
    check(load(&b), &["output `logits` is not a node"]);
}

#[test]
fn weight_only_huge_linear() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    slimnet::quant::ptq::quantize_weights(
        &mut g,
        &[1, 1, 28, 28],
        Selector::All,
        slimnet::quant::scheme::QScheme::affine(4).unwrap(),
    )
    .unwrap();
    let b = edit_graph(&io::to_bytes(&g).unwrap(), |g| {
        let c = &mut node(g, "fc1")["config"]["config"];
        c["in_features"] = json!(1u64 << 27);
        c["out_features"] = json!(1u64 << 27);
    });
    check(
        load(&b),
        &[
            "fc1",
            "weight of shape [134217728, 134217728] needs",
            "more than the limit",
        ],
    );
}

#[test]
fn sparse_linear_huge_in_features_loads_without_a_huge_copy() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    slimnet::prune::Pruner::new(slimnet::prune::criterion::Magnitude)
        .prune(&mut g, 0.9)
        .unwrap();
    slimnet::prune::convert::to_sparse(&mut g, &[1, 1, 28, 28], Selector::All).unwrap();
    let b = edit_graph(&io::to_bytes(&g).unwrap(), |g| {
        node(g, "fc1")["config"]["in_features"] = json!(4_000_000_000u64);
    });
    // the layer is legal (a huge, nearly empty sparse weight); it just cannot read 784 inputs
    let g = load(&b).unwrap();
    check(
        g.forward(&x28()),
        &["fc1", "expected input of shape [N, 4000000000]", "[1, 784]"],
    );
}

// ---- forward ----

#[test]
fn forward_wrong_rank() {
    check(
        lenet().forward(&tensor::zeros(&[1, 28, 28])),
        &["conv1", "[1, 28, 28]"],
    );
}

#[test]
fn forward_wrong_channels() {
    check(
        lenet().forward(&tensor::zeros(&[1, 3, 28, 28])),
        &["conv1", "[1, 3, 28, 28]"],
    );
}

#[test]
fn forward_spatial_size_too_small() {
    check(
        lenet().forward(&tensor::zeros(&[1, 1, 4, 4])),
        &["conv1", "smaller than the 5x5 kernel"],
    );
}

#[test]
fn forward_spatial_size_wrong_for_the_classifier() {
    check(
        lenet().forward(&tensor::zeros(&[1, 1, 32, 32])),
        &["fc1", "[N, 800]", "[1, 1250]"],
    );
}

#[test]
fn forward_batch_zero() {
    check(
        lenet().forward(&tensor::zeros(&[0, 1, 28, 28])),
        &[
            "input: expected input of shape a batch of at least one example",
            "[0, 1, 28, 28]",
        ],
    );
}

#[test]
fn forward_checked_nan_input() {
    let mut x = x28();
    x[[0, 0, 3, 4]] = f32::NAN;
    check(
        lenet().forward_checked(&x),
        &["input holds a non-finite value (NaN) at flat index 88"],
    );
}

#[test]
fn forward_checked_names_the_first_layer_with_non_finite_output() {
    let mut g = lenet();
    g.layer_mut("conv2").unwrap().visit_params_mut(&mut |n, p| {
        if n == "bias" {
            p.value_mut()[2] = f32::INFINITY;
        }
    });
    check(
        g.forward_checked(&x28()),
        &["conv2: output holds a non-finite value (inf)"],
    );
}

// ---- training ----

fn data(n: usize, labels: usize) -> (Tensor, Vec<usize>) {
    (
        tensor::uniform(&[n, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1)),
        (0..labels).map(|i| i % 10).collect(),
    )
}

#[test]
fn dataset_label_out_of_range() {
    let (x, mut y) = data(4, 4);
    y[2] = 10;
    check(
        Dataset::new(x, y, 10),
        &["label 10 of example 2 out of range for 10 classes"],
    );
}

#[test]
fn dataset_more_labels_than_inputs() {
    let (x, y) = data(4, 6);
    check(
        Dataset::new(x, y, 10),
        &["6 labels for inputs of shape [4, 1, 28, 28]"],
    );
}

#[test]
fn dataset_edited_after_construction_is_rejected_by_fit() {
    let (x, y) = data(4, 4);
    let mut d = Dataset::new(x, y, 10).unwrap();
    d.labels.push(3);
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = Trainer::new(TrainConfig::default().with_epochs(1).with_batch_size(2))
        .fit(&mut g, &d, None);
    check(r, &["5 labels for inputs of shape [4, 1, 28, 28]"]);
    check(slimnet::core::train::evaluate(&g, &d, 2), &["5 labels"]);
}

#[test]
fn training_on_an_empty_dataset() {
    let d = Dataset::new(tensor::zeros(&[0, 1, 28, 28]), vec![], 10).unwrap();
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = Trainer::new(TrainConfig::default().with_epochs(1)).fit(&mut g, &d, None);
    check(r, &["examples (got 0)"]);
}

#[test]
fn training_with_a_nan_learning_rate() {
    let (x, y) = data(8, 8);
    let d = Dataset::new(x, y, 10).unwrap();
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = Trainer::new(TrainConfig::default().with_epochs(1).with_batch_size(4))
        .optimizer(slimnet::core::optim::Sgd::new(f32::NAN))
        .fit(&mut g, &d, None);
    check(r, &["learning rate"]);
}

// ---- decompose ----

fn matrix() -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_fn((6, 4), |(i, j)| ((i * 7 + j * 3) % 5) as f32 - 2.0)
}

#[test]
fn svd_rank_zero() {
    check(
        slimnet::decompose::svd::truncated_svd(matrix().view(), 0),
        &["rank 0", "6x4"],
    );
}

#[test]
fn svd_rank_above_the_matrix_rank() {
    check(
        slimnet::decompose::svd::truncated_svd(matrix().view(), 5),
        &["rank 5", "6x4"],
    );
}

#[test]
fn svd_nan_weights() {
    let mut a = matrix();
    a[[2, 1]] = f32::NAN;
    check(
        slimnet::decompose::svd::truncated_svd(a.view(), 2),
        &["matrix holds a non-finite value (NaN) at flat index 9"],
    );
}

#[test]
fn randomized_svd_huge_oversampling_is_no_panic() {
    let cfg = slimnet::decompose::svd::RandomizedSvdConfig::default().with_oversample(usize::MAX);
    let s = slimnet::decompose::svd::randomized_svd(matrix().view(), 2, &cfg).unwrap();
    assert_eq!(s.s.len(), 2);
}

fn energy(e: f64) -> Result<usize, slimnet::decompose::DecomposeError> {
    let s = [3.0, 2.0, 1.0];
    slimnet::decompose::rank::select_rank(
        &s,
        &slimnet::decompose::rank::RankPolicy::Energy(e),
        &|r| (r, r),
        (3, 3),
    )
}

#[test]
fn energy_above_one() {
    check(energy(1.5), &["energy", "1.5"]);
}

#[test]
fn energy_zero() {
    check(energy(0.0), &["energy", "0"]);
}

// ---- prune ----

#[test]
fn sparsity_one() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = slimnet::prune::Pruner::new(slimnet::prune::criterion::Magnitude).prune(&mut g, 1.0);
    check(r, &["sparsity 1 is outside [0, 1)"]);
}

#[test]
fn sparsity_negative() {
    let mut g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = slimnet::prune::Pruner::new(slimnet::prune::criterion::Magnitude).prune(&mut g, -0.1);
    check(r, &["sparsity -0.1 is outside [0, 1)"]);
}

#[test]
fn n_m_pattern_that_does_not_divide_the_columns() {
    let mut g = lenet();
    let r = slimnet::prune::Pruner::new(slimnet::prune::criterion::Magnitude)
        .pattern(slimnet::prune::Pattern::NM { n: 2, m: 4 })
        .prune(&mut g, 0.5);
    check(r, &["conv1", "25"]);
}

#[test]
fn structured_pruning_of_every_channel() {
    let mut g = lenet();
    let r = slimnet::prune::structured::StructuredPruner::new(slimnet::prune::criterion::Magnitude)
        .prune(&mut g, &[1, 1, 28, 28], 1.0);
    check(r, &["1"]);
}

// ---- quant ----

fn batches(n: usize) -> Vec<Tensor> {
    (0..n)
        .map(|i| tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(i as u64)))
        .collect()
}

#[test]
fn calibration_set_empty() {
    let g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = slimnet::quant::ptq::quantize_static(&g, Vec::<Tensor>::new(), &Default::default());
    check(r, &["calibration needs at least one batch"]);
}

#[test]
fn calibration_on_constant_activations() {
    let g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let r = slimnet::quant::ptq::quantize_static(
        &g,
        vec![Tensor::from_elem(vec![4, 1, 28, 28], 0.5)],
        &Default::default(),
    );
    check(
        r,
        &["fc1: every calibration value of the layer's input was 0.5"],
    );
}

#[test]
fn calibration_data_with_nan() {
    let g = models::lenet300(&mut tensor::rng(0)).unwrap();
    let mut b = batches(1);
    b[0][[1, 0, 5, 5]] = f32::NAN;
    let r = slimnet::quant::ptq::quantize_static(&g, b, &Default::default());
    check(r, &["fc1", "NaN"]);
}

#[test]
fn bit_width_unsupported() {
    check(
        slimnet::quant::scheme::QScheme::symmetric(1),
        &["bit width 1 is outside 2..=8"],
    );
    check(
        slimnet::quant::scheme::QScheme::affine(9),
        &["bit width 9 is outside 2..=8"],
    );
}

#[test]
fn zero_bit_scheme_built_by_hand() {
    let mut s = slimnet::quant::scheme::QScheme::default();
    s.bits = 0;
    // the getters do not panic; every quantizer rejects the scheme
    assert_eq!(s.qmax(), 1);
    check(
        slimnet::quant::scheme::quantize(&tensor::zeros(&[2, 2]), s),
        &["bit width 0 is outside 2..=8"],
    );
}

// ---- distill ----

#[test]
fn adapter_of_incompatible_shapes() {
    let r = slimnet::distill::adapter::make_adapter(
        &[1, 8, 14, 14],
        &[1, 8, 28, 28],
        &Default::default(),
        &mut tensor::rng(0),
    );
    check(
        r,
        &[
            "no adapter from [1, 8, 14, 14] to [1, 8, 28, 28]",
            "only keep or lower",
        ],
    );
}

#[test]
fn adapter_between_empty_shapes() {
    let r =
        slimnet::distill::adapter::make_adapter(&[], &[], &Default::default(), &mut tensor::rng(0));
    check(r, &["no adapter from [] to []", "rank 2 or 4"]);
}

#[test]
fn stage_splits_that_do_not_match_keep_the_cause() {
    use slimnet::distill::stagewise::{StageWise, StageWiseConfig, StudentStage};
    let t = slimnet::distill::FrozenTeacher::new(lenet()).unwrap();
    // stage 1 (conv1..relu1 of the teacher) gets a student that expects 3 channels
    let mut s1 = Graph::new();
    let x = s1.input();
    s1.add_layer(
        "c",
        Conv2dConfig::new(3, 20, 5)
            .init(&mut tensor::rng(0))
            .unwrap(),
        x,
    )
    .unwrap();
    let mut s2 = Graph::new();
    let x = s2.input();
    s2.add_layer(
        "fc",
        LinearConfig::new(800, 10)
            .init(&mut tensor::rng(0))
            .unwrap(),
        x,
    )
    .unwrap();
    let stages = vec![StudentStage::new(s1), StudentStage::new(s2)];
    let r = StageWise::new(
        &t,
        &["relu1"],
        stages,
        &[1, 28, 28],
        StageWiseConfig::default(),
    );
    check(
        r,
        &[
            "stage 1",
            "rejects the teacher's input shape",
            "c: expected input of shape [N, 3, H, W]",
        ],
    );
}
