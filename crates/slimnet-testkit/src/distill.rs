//! What the distillation examples (`distill_mnist`, `distill_lowrank`, `distill_quant`,
//! `resnet_stagewise`) share:
//! their common flags ([`Flags`]), the data and the cached small-ResNet teacher ([`setup`]),
//! the light student ([`student`]), the training recipes ([`student_fit`],
//! [`stagewise_config`]), end-to-end runs ([`train_end_to_end`]), and runs recorded as
//! accuracy against time ([`Run`], [`write_plots`]).

use std::fmt;
use std::path::PathBuf;

use slimnet_core::data::hanzi::{hanzi, HanziConfig, Part};
use slimnet_core::data::{self, Dataset, Split};
use slimnet_core::loss::{CrossEntropy, Loss};
use slimnet_core::{io, models, tensor, train, Graph};
use slimnet_distill::designer::{design_student, Student, StudentSpec};
use slimnet_distill::loss::{CachedKdLoss, KdConfig};
use slimnet_distill::report::{line_chart, Series};
use slimnet_distill::stages::macs;
use slimnet_distill::stagewise::{StageWiseConfig, StageWiseReport};
use slimnet_distill::train::{fit, seconds_to, Clock, FitConfig, OptimizerKind, TimePoint};
use slimnet_distill::FrozenTeacher;

use crate::{Args, Res, Usage};

/// Where the small ResNet teacher is cut into four stages.
pub const CUTS: [&str; 3] = ["block1_relu2", "block2_relu2", "block3_relu2"];

/// The usage text of the flags every distillation example takes.
pub const USAGE: &str =
    "[--dataset mnist|fashion|hanzi] [--train-examples N] [--teacher-epochs N] \
                         [--threads N] [--seed N] [--out-dir DIR] [--validation N]";

/// The flags every distillation example takes.
#[derive(Debug, Clone)]
pub struct Flags {
    /// `mnist`, `fashion` or `hanzi` (`--dataset`; default `mnist`, or the example's own).
    /// `hanzi` is the 200-class set of rendered characters ([`HanziConfig::quick`]; 32x32,
    /// test fonts unseen in training).
    pub dataset: String,
    /// Training images used, the first N (`--train-examples`, default all).
    pub train_examples: usize,
    /// Epochs of the teacher when it is not cached yet (`--teacher-epochs`, default 4; 20 for
    /// `hanzi`, whose 200 classes and 8,000 training images take longer: 0.13 test accuracy
    /// after 4 epochs, 0.96 after 20).
    pub teacher_epochs: usize,
    /// Kernel threads (`--threads`, default 1, so runs time alike).
    pub threads: usize,
    /// Seed of initializations and shuffles (`--seed`, default 1).
    pub seed: u64,
    /// Where the teacher, plots and models go (`--out-dir`, default `target/slimnet`).
    pub out_dir: PathBuf,
    /// When non-zero, the last this-many training images replace the test set for evaluation
    /// (to choose settings without looking at the test set); the teacher still trains on all
    /// of them (`--validation`, default 0).
    pub validation: usize,
}

impl Flags {
    /// Takes the common flags from `args`.
    ///
    /// # Errors
    /// A bad value, or a dataset other than `mnist`, `fashion` and `hanzi`.
    pub fn take(args: &mut Args) -> Result<Self, Usage> {
        Self::take_for(args, "mnist")
    }

    /// Takes the common flags from `args`, with `dataset` when `--dataset` is not given.
    ///
    /// # Errors
    /// As [`Flags::take`].
    pub fn take_for(args: &mut Args, dataset: &str) -> Result<Self, Usage> {
        let dataset: String = args.get("dataset", dataset.to_string())?;
        let teacher_epochs = if dataset == "hanzi" { 20 } else { 4 };
        let f = Self {
            dataset,
            train_examples: args.get("train-examples", usize::MAX)?,
            teacher_epochs: args.get("teacher-epochs", teacher_epochs)?,
            threads: args.get("threads", 1)?,
            seed: args.get("seed", 1)?,
            out_dir: args.get("out-dir", PathBuf::from("target/slimnet"))?,
            validation: args.get("validation", 0)?,
        };
        if !["mnist", "fashion", "hanzi"].contains(&f.dataset.as_str()) {
            return Err(Usage(format!(
                "--dataset {}: expected mnist, fashion or hanzi",
                f.dataset
            )));
        }
        Ok(f)
    }

    /// The shape of one input image of the dataset, `[1, 1, H, W]`.
    pub fn input(&self) -> [usize; 4] {
        match self.dataset.as_str() {
            "hanzi" => {
                let s = HanziConfig::quick().size;
                [1, 1, s, s]
            }
            _ => [1, 1, 28, 28],
        }
    }

    /// The name of the evaluation set in output lines: the dataset, with `-validation`
    /// appended when `--validation` replaced the test set.
    pub fn eval_label(&self) -> String {
        if self.validation > 0 {
            format!("{}-validation", self.dataset)
        } else {
            self.dataset.clone()
        }
    }
}

/// What every distillation example starts from: the data, the teacher and its figures.
pub struct Setup {
    /// Training images (the first `--train-examples`, less the validation images).
    pub train: Dataset,
    /// Test images (or the validation images).
    pub test: Dataset,
    /// The teacher network.
    pub teacher: FrozenTeacher,
    /// Its accuracy on `test`.
    pub teacher_acc: f32,
    /// Its MACs per image.
    pub teacher_macs: usize,
    /// The shape of one input image, `[1, 1, H, W]`.
    pub input: [usize; 4],
}

/// Sets the kernel thread count, loads the datasets and the teacher (training it when it is
/// not cached), holds out the validation images, and prints the teacher's accuracy and MACs.
///
/// # Errors
/// Data, training or file errors, or a validation set that leaves no training images.
pub fn setup(flags: &Flags) -> Res<Setup> {
    slimnet_kernels::threads::set_num_threads(flags.threads);
    let load = |split| match flags.dataset.as_str() {
        "fashion" => data::fashion_mnist(split),
        "hanzi" => hanzi(
            &HanziConfig::quick(),
            if split == Split::Train {
                Part::Train
            } else {
                Part::Test
            },
        ),
        _ => data::mnist(split),
    };
    let mut train = load(Split::Train)?.take(flags.train_examples);
    let mut test = load(Split::Test)?;
    let graph = teacher(flags, &train, &test)?;
    if flags.validation > 0 {
        if flags.validation >= train.len() {
            return Err(format!(
                "--validation {} leaves no training images out of {}",
                flags.validation,
                train.len()
            )
            .into());
        }
        (train, test) = train.split_at(train.len() - flags.validation);
        println!(
            "validation mode: students train on the first {} images and are evaluated on the \
             last {} training images, not on the test set (the teacher trained on all of them)",
            train.len(),
            test.len()
        );
    }
    let teacher_acc = train::accuracy(&graph, &test)?;
    let input = flags.input();
    let teacher_macs = macs(&graph, &input)?;
    let set = if flags.validation > 0 {
        "validation"
    } else {
        "test"
    };
    println!("teacher: {set}_acc={teacher_acc:.4} macs={teacher_macs}");
    Ok(Setup {
        train,
        test,
        teacher: FrozenTeacher::new(graph)?,
        teacher_acc,
        teacher_macs,
        input,
    })
}

/// The cached teacher (`<out-dir>/distill_teacher_<dataset>.safetensors`), or a freshly
/// trained `resnet_small_classes` for the dataset's classes (distillation's [`FitConfig`]
/// default recipe for `--teacher-epochs`), saved for the next run.
///
/// # Errors
/// Training or file errors.
pub fn teacher(flags: &Flags, train: &Dataset, test: &Dataset) -> Res<Graph> {
    let path = flags
        .out_dir
        .join(format!("distill_teacher_{}.safetensors", flags.dataset));
    if path.exists() {
        println!("teacher: loading {}", path.display());
        return Ok(io::load(&path)?);
    }
    println!(
        "teacher: training resnet_small ({} classes) for {} epochs (cached to {})",
        train.classes,
        flags.teacher_epochs,
        path.display()
    );
    let mut g = models::resnet_small_classes(train.classes, &mut tensor::rng(flags.seed))?;
    let cfg = FitConfig::default()
        .with_epochs(flags.teacher_epochs)
        .with_seed(flags.seed);
    let clock = Clock::start();
    let points = fit(
        &mut g,
        &mut CrossEntropy,
        train,
        Some(test),
        &cfg,
        &clock,
        "teacher",
    )?;
    println!("{}", Run::new("teacher", points, clock.seconds()));
    std::fs::create_dir_all(&flags.out_dir)?;
    io::save(&g, &path)?;
    Ok(g)
}

/// The light student of the examples: the widest depthwise-separable student within a fifth of
/// the teacher's MACs (on images of shape `input`), one stage per teacher stage, initialized
/// from `seed` (the same network for the same seed).
///
/// # Errors
/// A teacher the designer cannot map.
pub fn student(teacher: &Graph, input: &[usize], seed: u64) -> Res<Student> {
    let teacher_macs = macs(teacher, input)?;
    Ok(design_student(
        teacher,
        &CUTS,
        input,
        &StudentSpec::mac_budget(teacher_macs / 5),
        &mut tensor::rng(seed + 7),
    )?)
}

/// The end-to-end recipe of the students: SGD (Nesterov 0.9), lr 0.05, weight decay 1e-4, two
/// evaluations per epoch.
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

/// One training run: its accuracy against wall-clock time. Prints as a table of its points.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run's name.
    pub name: String,
    /// Accuracy against wall-clock time.
    pub points: Vec<TimePoint>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Accuracy at the last point (0 without points).
    pub final_acc: f32,
}

impl Run {
    /// A run named `name` that took `seconds`.
    pub fn new(name: &str, points: Vec<TimePoint>, seconds: f64) -> Self {
        let final_acc = points.last().map_or(0.0, |p| p.test_accuracy);
        Self {
            name: name.to_string(),
            points,
            seconds,
            final_acc,
        }
    }

    /// The stitched student's accuracy against time in a stage-wise run.
    pub fn stagewise(name: &str, report: &StageWiseReport) -> Self {
        Self::new(name, report.timeline.clone(), report.seconds)
    }

    /// The `seconds_to_target=` value of a summary line: when the run first reached `target`
    /// (`inf` when it never did, or without a target).
    pub fn to_target(&self, target: Option<f32>) -> String {
        target
            .and_then(|t| seconds_to(&self.points, t))
            .map_or("inf".to_string(), |s| format!("{s:.1}"))
    }

    /// Seconds until the run first reached `target` (infinite when it never did).
    pub fn seconds_to(&self, target: f32) -> f64 {
        seconds_to(&self.points, target).unwrap_or(f64::INFINITY)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  {:<8} {:>7} {:>9} {:>9}",
            "phase", "step", "seconds", "test_acc"
        )?;
        for p in &self.points {
            write!(
                f,
                "\n  {:<8} {:>7} {:>9.1} {:>9.4}",
                p.phase, p.step, p.seconds, p.test_accuracy
            )?;
        }
        Ok(())
    }
}

/// Trains `student` end to end on `train` with `fit_cfg`, evaluated on `test`: with
/// cross-entropy, or with Hinton KD from `teacher` when `kd` is given (the teacher's logits for
/// every training image computed once, on the run's clock). Prints the run's table.
///
/// # Errors
/// Training errors.
pub fn train_end_to_end(
    name: &str,
    student: &mut Graph,
    teacher: &FrozenTeacher,
    kd: Option<KdConfig>,
    train: &Dataset,
    test: &Dataset,
    fit_cfg: &FitConfig,
) -> Res<Run> {
    let clock = Clock::start();
    let mut loss: Box<dyn Loss> = match kd {
        Some(kd) => {
            let loss = CachedKdLoss::from_teacher(teacher, &train.inputs, kd)?;
            println!(
                "  teacher logits cached in {:.1}s (T={} alpha={})",
                clock.seconds(),
                kd.temperature,
                kd.alpha
            );
            Box::new(loss)
        }
        None => Box::new(CrossEntropy),
    };
    let points = fit(
        student,
        loss.as_mut(),
        train,
        Some(test),
        fit_cfg,
        &clock,
        name,
    )?;
    let run = Run::new(name, points, clock.seconds());
    println!("{run}");
    Ok(run)
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

/// Writes `<out-dir>/<prefix>_<label>.svg`, the runs' accuracy against time (a dashed line at
/// `target`; points more than 3 points below it clamped to the floor), and, given a stage-wise
/// report, `<out-dir>/<prefix>_<label>_stages.svg`, its per-stage feature losses in phase 1.
/// `<prefix>` names the example (e.g. `distill`), `<label>` is [`Flags::eval_label`].
///
/// # Errors
/// A file that cannot be written.
pub fn write_plots(
    flags: &Flags,
    prefix: &str,
    runs: &[Run],
    stages: Option<&StageWiseReport>,
    target: Option<f32>,
) -> Res<()> {
    let label = flags.eval_label();
    std::fs::create_dir_all(&flags.out_dir)?;
    let series: Vec<Series> = runs
        .iter()
        .map(|r| Series::accuracy(&r.name, &r.points))
        .collect();
    let y_label = if flags.validation > 0 {
        "validation accuracy (%)"
    } else {
        "test accuracy (%)"
    };
    let plot = flags.out_dir.join(format!("{prefix}_{label}.svg"));
    let svg = line_chart(
        &format!("student accuracy vs wall-clock ({label})"),
        "seconds",
        y_label,
        &series,
        target.map(|t| 100.0 * t as f64 - 3.0),
        target.map(|t| 100.0 * t as f64),
    );
    std::fs::write(&plot, svg)?;
    println!("\nwrote {}", plot.display());
    if let Some(r) = stages {
        let series: Vec<Series> = r
            .stage_losses
            .iter()
            .enumerate()
            .map(|(k, c)| Series::loss(&format!("stage {}", k + 1), c))
            .collect();
        let plot = flags.out_dir.join(format!("{prefix}_{label}_stages.svg"));
        let svg = line_chart(
            "phase 1 feature MSE per stage",
            "seconds",
            "MSE",
            &series,
            None,
            None,
        );
        std::fs::write(&plot, svg)?;
        println!("wrote {}", plot.display());
    }
    Ok(())
}
