//! The methods compose on one model: a decomposed, pruned network quantized as a whole ends
//! with every convolution and fully-connected layer in int8 (the low-rank chain dense, the
//! pruned layers sparse), passes u8 codes from layer to layer, and survives a file round trip.

use slimnet::core::data::{self, Split};
use slimnet::core::rewrite::Selector;
use slimnet::core::{models, optim, tensor, train, Graph, Layer};
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{decompose, ConvMethod, LowRank};
use slimnet::prune::criterion::Magnitude;
use slimnet::prune::{Pruner, Scope};
use slimnet::quant::ptq::{f32_layers, quantize_static, PtqConfig};
use slimnet::quant::qat;

const INPUT: [usize; 4] = [1, 1, 28, 28];

#[test]
fn decompose_prune_quantize_save_load() {
    let train_set = data::mnist(Split::Train).unwrap().take(3000);
    let test = data::mnist(Split::Test).unwrap().take(500);
    let mut model = models::lenet5(&mut tensor::rng(3)).unwrap();
    let fit = |m: &mut Graph| {
        train::Trainer::new(
            train::TrainConfig::default()
                .with_epochs(1)
                .with_progress(false),
        )
        .optimizer(optim::Sgd::new(0.02).with_momentum(0.9))
        .fit(m, &train_set, None)
        .unwrap();
    };
    fit(&mut model);

    // low-rank conv2 (a nested chain graph), then every weight pruned, then fine-tuned
    let rule = LowRank::new(ConvMethod::Tucker2, RankPolicy::MacRatio(0.3));
    let sel = Selector::Paths(vec!["conv2".into()]);
    let r = decompose(&mut model, &INPUT, &sel, &rule).unwrap();
    assert_eq!(r.rewrite.changes().count(), 1);
    Pruner::new(Magnitude)
        .scope(Scope::Global)
        .prune(&mut model, 0.9)
        .unwrap();
    fit(&mut model);
    let acc_f32 = train::accuracy(&model, &test).unwrap();
    assert!(acc_f32 > 0.85, "{acc_f32}");

    // the whole network in int8: nothing left in f32, nothing silently skipped
    let calib = train_set.take(256);
    let int8 = quantize_static(&model, calib.batches(64), &PtqConfig::default()).unwrap();
    assert!(f32_layers(&int8).is_empty(), "{:?}", f32_layers(&int8));
    let mut kinds = Vec::new();
    int8.visit_layers(&mut |p, l| kinds.push(format!("{p}:{}", l.kind())));
    for want in [
        "conv1:QConv2d",
        "conv2/reduce:QConv2d",
        "conv2/restore:QConv2d",
        "fc1:QSparseLinear",
        "fc2:QSparseLinear",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} not in {kinds:?}");
    }
    assert!(
        kinds.iter().any(|k| k.starts_with("conv2/core:Q")),
        "{kinds:?}"
    );
    // u8 codes flow from conv1 to fc2: the only conversion is the input's
    assert_eq!(int8.freeze(&INPUT).unwrap().conversions(), 1);
    let acc_int8 = train::accuracy(&int8, &test).unwrap();
    assert!((acc_f32 - acc_int8).abs() < 0.02, "{acc_f32} vs {acc_int8}");

    // one file at its compact size, loaded back to the same outputs
    let path = std::env::temp_dir().join(format!(
        "slimnet-compose-{}.safetensors",
        std::process::id()
    ));
    slimnet::save(&int8, &path).unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len() as usize;
    let dense = slimnet::core::io::to_bytes(&models::lenet5(&mut tensor::rng(0)).unwrap())
        .unwrap()
        .len();
    assert!(bytes * 20 < dense, "{bytes} vs {dense}");
    let back = slimnet::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let x = test.batch(&[0, 1, 2, 3]).0;
    assert_eq!(back.forward(&x).unwrap(), int8.forward(&x).unwrap());

    // a pass after int8 does not pretend: pruning or decomposing it is an error naming a layer
    let mut after = int8.clone();
    let e = Pruner::new(Magnitude).prune(&mut after, 0.5).unwrap_err();
    assert!(e.to_string().contains("conv1"), "{e}");
    let e = decompose(&mut after, &INPUT, &Selector::All, &rule).unwrap_err();
    assert!(
        e.to_string()
            .contains("conv1: a QConv2d layer has no float weight"),
        "{e}"
    );

    // QAT on the same pruned model ends in the same kinds
    let mut q = qat::prepare(&model, &[64, 1, 28, 28], &qat::QatConfig::default()).unwrap();
    q.forward_train(&calib.batch(&(0..64).collect::<Vec<_>>()).0)
        .unwrap();
    let int8 = qat::convert(&q, &INPUT).unwrap();
    assert!(f32_layers(&int8).is_empty());
}
