//! Helpers shared by the distillation examples (`distill_mnist`, `distill_lowrank`,
//! `distill_quant`): common flags, datasets, the cached teacher, the student design, the
//! stage-wise recipe and printing. Each example uses a subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::str::FromStr;

use slimnet::core::data::{self, Dataset, Split};
use slimnet::core::loss::CrossEntropy;
use slimnet::core::{io, models, tensor, train::evaluate, Graph, Layer};
use slimnet::distill::designer::{design_student, Student, StudentSpec};
use slimnet::distill::loss::KdConfig;
use slimnet::distill::stagewise::{StageWiseConfig, StageWiseReport};
use slimnet::distill::train::{fit, seconds_to, Clock, FitConfig, OptimizerKind, TimePoint};

/// The error type of the examples.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Where the small ResNet teacher is cut into four stages.
pub const CUTS: [&str; 3] = ["block1_relu2", "block2_relu2", "block3_relu2"];

/// The input shape of one example.
pub const INPUT: [usize; 4] = [1, 1, 28, 28];

/// Flags every distillation example takes.
#[derive(Debug, Clone)]
pub struct CommonArgs {
    /// `mnist` or `fashion`.
    pub dataset: String,
    /// Training images used (the first N).
    pub train_examples: usize,
    /// Epochs of the teacher when it is not cached yet.
    pub teacher_epochs: usize,
    /// Kernel threads.
    pub threads: usize,
    /// Seed of initializations and shuffles.
    pub seed: u64,
    /// Where the teacher, plots and models go.
    pub out_dir: PathBuf,
    /// When non-zero, the last this-many training images replace the test set for evaluation
    /// (for choosing settings without looking at the test set); the teacher still trains on
    /// all of them.
    pub validation: usize,
}

impl CommonArgs {
    /// The name of the evaluation set in the output lines: the dataset, with `-validation`
    /// appended when `--validation` replaced the test set.
    pub fn eval_label(&self) -> String {
        if self.validation > 0 {
            format!("{}-validation", self.dataset)
        } else {
            self.dataset.clone()
        }
    }
}

/// Usage text of the common flags.
pub const COMMON_USAGE: &str = "[--dataset mnist|fashion] [--train-examples N] \
    [--teacher-epochs N] [--threads N] [--seed N] [--out-dir DIR] [--validation N]";

/// Parses a number for `flag`.
pub fn num<T: FromStr>(flag: &str, v: String) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| format!("{flag} {v}: {e}"))
}

/// Parses the command line: the common flags here, the others by `extra`, which gets the flag
/// and a function that takes its value, and returns whether it knew the flag.
pub fn parse_args<F>(usage: &str, mut extra: F) -> Result<CommonArgs, String>
where
    F: FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<bool, String>,
{
    let mut a = CommonArgs {
        dataset: "mnist".into(),
        train_examples: usize::MAX,
        teacher_epochs: 4,
        threads: 1,
        seed: 1,
        out_dir: PathBuf::from("target/slimnet"),
        validation: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dataset" => a.dataset = val()?,
            "--train-examples" => a.train_examples = num(&flag, val()?)?,
            "--teacher-epochs" => a.teacher_epochs = num(&flag, val()?)?,
            "--threads" => a.threads = num(&flag, val()?)?,
            "--seed" => a.seed = num(&flag, val()?)?,
            "--out-dir" => a.out_dir = PathBuf::from(val()?),
            "--validation" => a.validation = num(&flag, val()?)?,
            "-h" | "--help" => return Err(format!("usage: {usage} {COMMON_USAGE}")),
            other => {
                if !extra(other, &mut val)? {
                    return Err(format!("unknown option {other}; see --help"));
                }
            }
        }
    }
    if a.dataset != "mnist" && a.dataset != "fashion" {
        return Err(format!(
            "--dataset {}: expected mnist or fashion",
            a.dataset
        ));
    }
    Ok(a)
}

/// Runs an example's body: exit code 2 for bad flags, 1 for a failed run.
pub fn main_with<A>(args: Result<A, String>, run: impl FnOnce(&A) -> Res<()>) {
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The training set (its first `--train-examples` images) and the test set.
pub fn datasets(args: &CommonArgs) -> Res<(Dataset, Dataset)> {
    let load = |split| -> Res<Dataset> {
        Ok(match args.dataset.as_str() {
            "fashion" => data::fashion_mnist(split)?,
            _ => data::mnist(split)?,
        })
    };
    Ok((
        load(Split::Train)?.take(args.train_examples),
        load(Split::Test)?,
    ))
}

/// Test accuracy of a model.
pub fn accuracy(model: &dyn Layer, test: &Dataset) -> Res<f32> {
    Ok(evaluate(model, test, 500)?.1)
}

/// The cached teacher (`<out-dir>/distill_teacher_<dataset>.safetensors`), or a freshly trained
/// `resnet_small` (saved for the next run).
pub fn teacher(args: &CommonArgs, train: &Dataset, test: &Dataset) -> Res<Graph> {
    let path = args
        .out_dir
        .join(format!("distill_teacher_{}.safetensors", args.dataset));
    if path.exists() {
        println!("teacher: loading {}", path.display());
        return Ok(io::load(&path)?);
    }
    println!(
        "teacher: training resnet_small for {} epochs (cached to {})",
        args.teacher_epochs,
        path.display()
    );
    let mut g = models::resnet_small(&mut tensor::rng(args.seed))?;
    let cfg = FitConfig::default()
        .with_epochs(args.teacher_epochs)
        .with_seed(args.seed);
    let pts = fit(
        &mut g,
        &mut CrossEntropy,
        train,
        Some(test),
        &cfg,
        &Clock::start(),
        "teacher",
    )?;
    print_points(&pts);
    std::fs::create_dir_all(&args.out_dir)?;
    io::save(&g, &path)?;
    Ok(g)
}

/// What every distillation example starts from: the data, the teacher and its figures.
pub struct Setup {
    /// Training images (`--train-examples` of them).
    pub train: Dataset,
    /// Test images.
    pub test: Dataset,
    /// The teacher network.
    pub teacher: Graph,
    /// Its test accuracy.
    pub teacher_acc: f32,
    /// Its MACs per image.
    pub teacher_macs: usize,
}

/// Sets the kernel thread count, loads the datasets and the teacher (training it when it is
/// not cached), and prints the teacher's accuracy and MACs.
pub fn setup(args: &CommonArgs) -> Res<Setup> {
    slimnet::kernels::threads::set_num_threads(args.threads);
    let (mut train, mut test) = datasets(args)?;
    let teacher = teacher(args, &train, &test)?;
    if args.validation > 0 {
        if args.validation >= train.len() {
            return Err(format!(
                "--validation {} leaves no training images out of {}",
                args.validation,
                train.len()
            )
            .into());
        }
        (train, test) = train.split_at(train.len() - args.validation);
        println!(
            "validation mode: students train on the first {} images and are evaluated on the \
             last {} training images, not on the test set (the teacher trained on all of them)",
            train.len(),
            test.len()
        );
    }
    let teacher_acc = accuracy(&teacher, &test)?;
    let teacher_macs = slimnet::distill::stages::macs(&teacher, &INPUT)?;
    let set = if args.validation > 0 {
        "validation"
    } else {
        "test"
    };
    println!("teacher: {set}_acc={teacher_acc:.4} macs={teacher_macs}");
    Ok(Setup {
        train,
        test,
        teacher,
        teacher_acc,
        teacher_macs,
    })
}

/// One training run's outcome, for the summary table and plot.
pub struct RunResult {
    /// The run's name.
    pub name: &'static str,
    /// Test accuracy against wall-clock time.
    pub points: Vec<TimePoint>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Final test accuracy.
    pub final_acc: f32,
}

/// The light student of the examples: the widest depthwise-separable student within a fifth of
/// the teacher's MACs, one stage per teacher stage, initialized from `seed`.
pub fn design(teacher: &Graph, seed: u64) -> Res<Student> {
    let teacher_macs = slimnet::distill::stages::macs(teacher, &INPUT)?;
    Ok(design_student(
        teacher,
        &CUTS,
        &INPUT,
        &StudentSpec::mac_budget(teacher_macs / 5),
        &mut tensor::rng(seed + 7),
    )?)
}

/// The end-to-end recipe of the students: SGD (Nesterov 0.9), lr 0.05, weight decay 1e-4,
/// two evaluations per epoch.
pub fn student_fit(epochs: usize, seed: u64) -> FitConfig {
    FitConfig::default()
        .with_epochs(epochs)
        .with_lr(0.05)
        .with_weight_decay(1e-4)
        .with_optimizer(OptimizerKind::Sgd { momentum: 0.9 })
        .with_seed(seed)
        .with_evals_per_epoch(2)
}

/// The stage-wise recipe: phase 1 Adam (lr `phase1_lr`, batch 32, one evaluation per epoch),
/// phase 2 the student recipe at lr 0.01 for `phase2_epochs` with three evaluations an epoch,
/// KD T=4 alpha=0.7, a loss point every 10 steps.
pub fn stagewise_config(
    phase1_epochs: usize,
    phase1_lr: f32,
    phase2_epochs: usize,
    seed: u64,
) -> StageWiseConfig {
    let mut cfg = StageWiseConfig::default();
    cfg.phase1 = cfg
        .phase1
        .with_epochs(phase1_epochs)
        .with_lr(phase1_lr)
        .with_batch_size(32)
        .with_seed(seed)
        .with_evals_per_epoch(1);
    cfg.phase2 = student_fit(phase2_epochs, seed)
        .with_lr(0.01)
        .with_evals_per_epoch(3);
    cfg.kd = KdConfig::new(4.0, 0.7);
    cfg.log_every = 10;
    cfg
}

/// Prints the points of a run.
pub fn print_points(pts: &[TimePoint]) {
    println!(
        "  {:<8} {:>7} {:>9} {:>9}",
        "phase", "step", "seconds", "test_acc"
    );
    for p in pts {
        println!(
            "  {:<8} {:>7} {:>9.1} {:>9.4}",
            p.phase, p.step, p.seconds, p.test_accuracy
        );
    }
}

/// Prints phase 1's duration and each stage's first and last feature MSE.
pub fn print_stage_losses(r: &StageWiseReport) {
    println!(
        "  phase 1 took {:.1}s; per-stage feature MSE (first -> last):",
        r.phase1_seconds
    );
    for (k, c) in r.stage_losses.iter().enumerate() {
        if let (Some(a), Some(b)) = (c.first(), c.last()) {
            println!(
                "  stage {}: {:.5} -> {:.5} ({} points)",
                k + 1,
                a.loss,
                b.loss,
                c.len()
            );
        }
    }
}

/// `seconds_to_target=` value of a summary line: the first time `points` reached `target`.
pub fn to_target(points: &[TimePoint], target: Option<f32>) -> String {
    target
        .and_then(|t| seconds_to(points, t))
        .map_or("inf".to_string(), |s| format!("{s:.1}"))
}

/// The size of a model's file in bytes.
pub fn file_bytes(model: &Graph) -> Res<usize> {
    Ok(io::to_bytes(model)?.len())
}
