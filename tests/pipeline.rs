//! `slimnet::pipeline`: steps composed and measured, a layer of the user's own passed through
//! untouched, step orders refused before anything runs, and recipes equal to the API.

use slimnet::core::data::Dataset;
use slimnet::core::layers::{Activation, LinearConfig};
use slimnet::core::timing::TimingConfig;
use slimnet::core::{models, tensor, Graph, Layer, Param, Result, Sequential, Tensor};
use slimnet::pipeline::{
    Data, Decompose, FineTune, Method, Pipeline, PipelineError, Prune, Quantize, Rank, Recipe,
    Schedule, Scope, Step, ToSparse,
};

/// A layer of the user's own: a learnt gain per feature.
#[derive(Debug, Clone)]
struct Gain {
    gain: Param,
    input: Option<Tensor>,
}

impl Gain {
    fn new(n: usize) -> Self {
        let g = tensor::uniform(&[n], 0.5, 1.5, &mut tensor::rng(7));
        Self {
            gain: Param::new(g),
            input: None,
        }
    }
}

impl Layer for Gain {
    fn kind(&self) -> &'static str {
        "Gain"
    }
    /// `[N, F]` -> `[N, F]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x * self.gain.value())
    }
    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.input = Some(x.clone());
        self.forward(x)
    }
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let x = self.input.take().expect("forward_train first");
        let dg = (g * &x).sum_axis(ndarray::Axis(0));
        *self.gain.value_and_grad_mut().1 += &dg;
        Ok(g * self.gain.value())
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        f("gain", &self.gain)
    }
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("gain", &mut self.gain)
    }
}

/// Random images with labels, split into two sets of `n`.
fn data(n: usize) -> Data {
    let set = |seed| {
        let x = tensor::uniform(&[n, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(seed));
        Dataset::new(x, (0..n).map(|i| i % 10).collect(), 10).unwrap()
    };
    Data::new("random", set(1), set(2)).unwrap()
}

fn with_gain() -> Graph {
    let rng = &mut tensor::rng(0);
    Sequential::new()
        .push("flatten", slimnet::core::layers::Flatten::new())
        .push("fc1", LinearConfig::new(784, 64).init(rng).unwrap())
        .push("gain", Gain::new(64))
        .push("relu", Activation::relu())
        .push("fc2", LinearConfig::new(64, 10).init(rng).unwrap())
        .build()
        .unwrap()
}

fn quick(name: &str) -> Pipeline {
    Pipeline::new(name)
        .progress(false)
        .threads(1)
        .timing(TimingConfig::quick())
}

#[test]
fn a_layer_of_your_own_passes_through_every_step() {
    let data = data(64);
    let model = with_gain();
    let gain_before = model
        .find("gain")
        .unwrap()
        .downcast_ref::<Gain>()
        .unwrap()
        .gain
        .value()
        .clone();
    let out = quick("own layer")
        .step(Decompose::new(Method::Tucker2, Rank::Fixed(8)))
        .step(Prune::new(0.8).with_scope(Scope::Global))
        .step(ToSparse::default())
        .step(Quantize::new(32))
        .run(model, &data)
        .unwrap();
    let gain = out
        .model
        .find("gain")
        .expect("the Gain layer is still there");
    let gain = gain.downcast_ref::<Gain>().expect("still a Gain");
    assert_eq!(gain.gain.value(), &gain_before);
    assert!(gain.gain.mask().is_none(), "not pruned");
    let mut kinds = Vec::new();
    out.model
        .visit_layers(&mut |p, l| kinds.push(format!("{p}:{}", l.kind())));
    assert!(kinds.contains(&"gain:Gain".to_string()), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .any(|k| k.starts_with("fc1") && k.contains(":Q")),
        "{kinds:?}"
    );

    let r = &out.report;
    assert_eq!(r.steps.len(), 4);
    // each step starts where the one before ended
    for w in r.steps.windows(2) {
        assert_eq!(w[0].after, w[1].before);
    }
    assert_eq!(r.steps[0].before, r.base);
    // decomposing fc1 and fc2 at rank 8 cuts the parameters; the sparse file is smaller
    assert!(r.steps[0].after.params < r.base.params / 5, "{r}");
    assert!(r.steps[2].after.bytes < r.steps[1].after.bytes, "{r}");
    assert!(r.size_ratio() > 5.0, "{r}");
    assert!(
        r.summary_line().starts_with("compress own layer base_acc="),
        "{}",
        r.summary_line()
    );
    assert!(r.steps[0].details.contains("fc1"), "{}", r.steps[0].details);
}

#[test]
fn refused_orders_name_the_step_before_anything_runs() {
    let data = data(16);
    let model = models::lenet300(&mut tensor::rng(0)).unwrap();
    let order = |p: Pipeline| {
        let e = p.run(model.clone(), &data).unwrap_err();
        match PipelineError::from_error(e) {
            Ok(PipelineError::Order {
                index,
                step,
                reason,
            }) => format!("{index} {step}: {reason}"),
            other => panic!("{other:?}"),
        }
    };
    let e = order(
        quick("a")
            .step(Quantize::new(8))
            .step(Decompose::new(Method::Cp, Rank::Vbmf)),
    );
    assert!(
        e.starts_with("2 decompose: the model is int8 (made by step 1 `quantize`)"),
        "{e}"
    );
    assert!(e.contains("put it before the quantization"), "{e}");
    let e = order(
        quick("b")
            .step(Prune::new(0.5))
            .step(ToSparse::default())
            .step(FineTune::sgd(1, 0.01)),
    );
    assert!(
        e.starts_with(
            "3 fine_tune: the model holds sparse deploy layers (made by step 2 `to_sparse`)"
        ),
        "{e}"
    );
    let e = order(quick("c").step(ToSparse::default()));
    assert!(e.contains("run a `prune` step first"), "{e}");

    let e = quick("d")
        .step(
            Prune::new(0.5)
                .with_schedule(Schedule::Agp {
                    epochs: 0,
                    updates: 3,
                })
                .with_fine_tune(FineTune::default()),
        )
        .run(model.clone(), &data)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("step 1 `prune`: schedule.agp needs epochs"),
        "{e}"
    );
    // the data must fit the model
    let x = tensor::uniform(&[4, 3, 8, 8], 0.0, 1.0, &mut tensor::rng(0));
    let rgb = Dataset::new(x, vec![0, 1, 2, 3], 10).unwrap();
    let e = quick("f")
        .step(Prune::new(0.5))
        .run(model, &Data::new("rgb", rgb.clone(), rgb).unwrap())
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("data: the model does not take the rgb examples of shape [1, 3, 8, 8]"),
        "{e}"
    );
}

#[test]
fn a_recipe_runs_exactly_as_the_same_steps_through_the_api() {
    let data = data(128);
    let text = "name = \"same\"\nthreads = 1\n[measure]\nwarmup = 1\nruns = 2\nmin_time_ms = 0\n\
        [[step]]\nstep = \"decompose\"\nmethod = \"channel\"\nrank = { param_ratio = 0.5 }\n\
        layers = [\"fc1\"]\nfine_tune = { epochs = 1, lr = 0.02 }\n\
        [[step]]\nstep = \"prune\"\nsparsity = 0.8\nscope = \"global\"\n\
        schedule = { agp = { epochs = 1, updates = 2 } }\nfine_tune = { epochs = 1, lr = 0.01, weight_decay = 5e-4 }\n\
        [[step]]\nstep = \"to_sparse\"\n[[step]]\nstep = \"quantize\"\ncalibration = 64\n";
    let recipe = Recipe::from_toml(text, "same.toml").unwrap();
    let api = Pipeline::new("same")
        .threads(1)
        .step(
            Decompose::new(Method::Channel, Rank::ParamRatio(0.5))
                .with_layers(&["fc1"])
                .with_fine_tune(FineTune::sgd(1, 0.02)),
        )
        .step(
            Prune::new(0.8)
                .with_scope(Scope::Global)
                .with_schedule(Schedule::Agp {
                    epochs: 1,
                    updates: 2,
                })
                .with_fine_tune(FineTune::sgd(1, 0.01).with_weight_decay(5e-4)),
        )
        .step(ToSparse::default())
        .step(Quantize::new(64));
    let from_file = recipe.pipeline().progress(false);
    assert_eq!(from_file.steps, api.steps);
    let model = models::lenet300(&mut tensor::rng(3)).unwrap();
    let a = from_file.run(model.clone(), &data).unwrap();
    let b = api
        .progress(false)
        .timing(TimingConfig::quick())
        .run(model, &data)
        .unwrap();
    let x = data.validation.load(&[0, 1, 2]).unwrap().0;
    assert_eq!(a.model.forward(&x).unwrap(), b.model.forward(&x).unwrap());
    for (s, t) in a.report.steps.iter().zip(&b.report.steps) {
        assert_eq!(
            (s.after.accuracy, s.after.params, s.after.bytes),
            (t.after.accuracy, t.after.params, t.after.bytes)
        );
    }
}

#[test]
fn the_shipped_recipes_parse_and_compose_lenet_is_the_deep_compression_recipe() {
    let root = env!("CARGO_MANIFEST_DIR");
    let deep = Recipe::load(format!("{root}/recipes/lenet5_deep_compression.toml")).unwrap();
    assert_eq!(deep.name(), "lenet5_deep_compression");
    assert_eq!((deep.seed, deep.threads), (1, 2));
    let b = deep.baseline().unwrap();
    assert_eq!(
        (b.model.as_str(), b.data.as_str(), b.seed),
        ("lenet5", "mnist", 1)
    );
    // examples/compose_lenet.rs with its defaults
    let tune = |epochs| FineTune::sgd(epochs, 0.01).with_weight_decay(5e-4);
    let example: Vec<Step> = vec![
        Decompose::new(Method::Tucker2, Rank::MacRatio(0.3))
            .with_layers(&["conv2"])
            .with_fine_tune(tune(1))
            .into(),
        Prune::new(0.96)
            .with_scope(Scope::Global)
            .with_schedule(Schedule::Agp {
                epochs: 4,
                updates: 20,
            })
            .with_fine_tune(tune(4))
            .into(),
        ToSparse::default().into(),
        Quantize::new(2048).into(),
    ];
    assert_eq!(deep.pipeline().steps, example);
    deep.pipeline().check_steps().unwrap();

    let resnet = Recipe::load(format!("{root}/recipes/resnet_lowrank_int8.toml")).unwrap();
    resnet.pipeline().check_steps().unwrap();
    let model = models::resnet_small(&mut tensor::rng(0)).unwrap();
    let shapes = model.shapes(&[1, 1, 28, 28]).unwrap();
    assert!(!shapes.is_empty());
    for step in &resnet.steps {
        if let Step::Decompose(d) = step {
            for l in &d.layers {
                assert!(
                    model.find(l).is_some(),
                    "{l} is not a layer of resnet_small"
                );
            }
        }
    }
}

/// The character CNN's recipe is the PTQ path of `examples/hanzi_compress.rs` with its
/// defaults, on layers the model has.
#[test]
fn the_hanzi_recipe_is_the_example() {
    use slimnet::pipeline::FoldBn;
    let root = env!("CARGO_MANIFEST_DIR");
    let r = Recipe::load(format!("{root}/recipes/hanzi200_lowrank_sparse_int8.toml")).unwrap();
    let b = r.baseline().unwrap();
    assert_eq!((b.model.as_str(), b.seed), ("hanzi-200", 1));
    let tune = |epochs| FineTune::sgd(epochs, 0.005).with_weight_decay(5e-4);
    let example: Vec<Step> = vec![
        Decompose::new(Method::Tucker2, Rank::MacRatio(0.15))
            .with_layers(&["conv2", "conv3", "conv4"])
            .with_speed_check(1.05)
            .with_fine_tune(tune(1))
            .into(),
        Prune::new(0.9)
            .with_layers(&["fc1", "fc2"])
            .with_schedule(Schedule::Agp {
                epochs: 4,
                updates: 20,
            })
            .with_fine_tune(tune(4))
            .into(),
        FoldBn::default().into(),
        ToSparse::default().into(),
        Quantize::new(1024).with_weight_bits(7).into(),
    ];
    assert_eq!(r.pipeline().steps, example);
    r.pipeline().check_steps().unwrap();
    let model = models::by_name("hanzi-200", &mut tensor::rng(0)).unwrap();
    for l in ["conv2", "conv3", "conv4", "fc1", "fc2"] {
        assert!(model.find(l).is_some(), "{l} is not a layer of hanzi-200");
    }
}

#[test]
fn batchnorm_folding_and_quantization_aware_training() {
    use slimnet::core::layers::BatchNorm2d;
    use slimnet::pipeline::{FoldBn, Qat};
    let data = data(32);
    let model = models::resnet_small(&mut tensor::rng(0)).unwrap();
    let mut qat = Qat::default();
    qat.fine_tune = FineTune::sgd(1, 1e-3).with_batch_size(16);
    qat.freeze_after = Some(1);
    let out = quick("qat")
        .step(FoldBn::default())
        .step(qat)
        .run(model, &data)
        .unwrap();
    let mut bn = 0;
    out.model
        .visit_layers(&mut |_, l| bn += l.downcast_ref::<BatchNorm2d>().is_some() as usize);
    assert_eq!(bn, 0);
    assert!(slimnet::quant::ptq::f32_layers(&out.model).is_empty());
    let r = &out.report;
    assert_eq!(r.steps[0].kind, "fold_bn");
    assert!(
        r.steps[0].details.contains("BatchNorm2d"),
        "{}",
        r.steps[0].details
    );
    assert!(
        r.steps[1].details.contains("QConv2d"),
        "{}",
        r.steps[1].details
    );
    assert!(r.size_ratio() > 3.0, "{r}");
}

/// Mean over examples of the squared distance between two models' class probabilities.
fn probability_gap(a: &Graph, b: &Graph, x: &Tensor) -> f32 {
    let p = |m: &Graph| {
        let y = m.forward(x).unwrap();
        let mut p = y.clone();
        for (mut row, logits) in p.outer_iter_mut().zip(y.outer_iter()) {
            let top = logits.fold(f32::MIN, |m, &v| m.max(v));
            let sum: f32 = logits.iter().map(|v| (v - top).exp()).sum();
            row.zip_mut_with(&logits, |q, &v| *q = (v - top).exp() / sum);
        }
        p
    };
    let (pa, pb) = (p(a), p(b));
    (&pa - &pb).mapv(|d| d * d).sum() / x.shape()[0] as f32
}

/// A distilling fine-tuning pulls the pruned model's outputs back to those of the model the
/// pipeline was given; the same fine-tuning on the (random) labels alone does not.
#[test]
fn distilling_fine_tunes_towards_the_model_as_given() {
    use slimnet::pipeline::Distill;
    let data = data(256);
    let teacher = models::lenet300(&mut tensor::rng(5)).unwrap();
    let run = |tune: FineTune| {
        let out = quick("kd")
            .step(Prune::new(0.7))
            .step(tune.with_batch_size(32))
            .run(teacher.clone(), &data)
            .unwrap();
        (out.model, out.report)
    };
    let x = data
        .validation
        .load(&(0..256).collect::<Vec<_>>())
        .unwrap()
        .0;
    let pruned = quick("pruned")
        .step(Prune::new(0.7))
        .run(teacher.clone(), &data)
        .unwrap()
        .model;
    let (distilled, report) = run(FineTune::sgd(3, 0.05).with_distill(Distill::new(2.0, 1.0)));
    let (plain, _) = run(FineTune::sgd(3, 0.05));
    let before = probability_gap(&pruned, &teacher, &x);
    let kd = probability_gap(&distilled, &teacher, &x);
    let labels = probability_gap(&plain, &teacher, &x);
    assert!(kd < 0.5 * before, "gap {before} -> {kd} when distilling");
    assert!(
        kd < 0.5 * labels,
        "gap {kd} distilling, {labels} from the labels"
    );
    assert!(
        report.steps[1]
            .settings
            .ends_with("distilled at T=2 alpha=1"),
        "{}",
        report.steps[1].settings
    );

    // settings out of range are refused before anything runs, in a recipe as in code
    let text = "name = \"kd\"\n[[step]]\nstep = \"fine_tune\"\nepochs = 1\n\
        distill = { temperature = 0.0 }\n";
    let e = Recipe::from_toml(text, "kd.toml")
        .unwrap()
        .pipeline()
        .check_steps()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("distill.temperature must be a positive number, got 0"),
        "{e}"
    );
    let e = quick("kd")
        .step(FineTune::sgd(1, 0.01).with_distill(Distill::new(4.0, 1.5)))
        .run(teacher, &data)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("distill.alpha must be in [0, 1], got 1.5"),
        "{e}"
    );
}

/// With the teacher's term weighted 0, a distilling fine-tuning is the plain one: running
/// the teacher between the model's forward and backward passes changes nothing.
#[test]
fn distilling_with_alpha_zero_is_plain_fine_tuning() {
    use slimnet::pipeline::Distill;
    let data = data(128);
    let model = models::lenet5(&mut tensor::rng(2)).unwrap();
    let run = |tune: FineTune| {
        quick("kd0")
            .step(
                Decompose::new(Method::Tucker2, Rank::MacRatio(0.5))
                    .with_layers(&["conv2"])
                    .with_fine_tune(tune.with_batch_size(32)),
            )
            .run(model.clone(), &data)
            .unwrap()
            .model
    };
    let plain = run(FineTune::sgd(1, 0.05));
    let kd = run(FineTune::sgd(1, 0.05).with_distill(Distill::new(4.0, 0.0)));
    let x = data.validation.load(&[0, 1, 2, 3]).unwrap().0;
    assert_eq!(plain.forward(&x).unwrap(), kd.forward(&x).unwrap());
}
