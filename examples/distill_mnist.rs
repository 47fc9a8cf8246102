//! Distillation on MNIST or Fashion-MNIST: a light student (>= 5x fewer MACs than the small
//! ResNet teacher) trained three ways — from scratch, with Hinton KD, and stage-wise on the
//! teacher's intermediate features — and timed.
//!
//! ```text
//! cargo run --release --example distill_mnist -- [--dataset mnist|fashion] [--epochs N]
//!     [--stage-examples N] [--phase1-epochs N] [--teacher-epochs N] [--threads N] [--seed N]
//!     [--runs scratch,kd,stagewise] [--out-dir DIR] [--teacher-only] [--train-examples N]
//! ```
//! The teacher (`models::resnet_small`) is trained once and cached under the output directory.
//! Every run uses the same single-threaded kernels (`--threads`), the same student
//! architecture and initialization, and counts its wall-clock from its own start, teacher
//! inference included (teacher training excluded: it is shared; test evaluations excluded, so
//! runs evaluated at different rates compare fairly). It prints a table per run,
//! writes `distill_<dataset>.svg` (test accuracy against time) and
//! `distill_<dataset>_stages.svg` (per-stage feature losses), and ends with one line per run:
//! `distill <scratch|kd|stagewise> <dataset> student_acc=<f> teacher_acc=<f> seconds=<s>
//! seconds_to_target=<s> student_macs=<n> teacher_macs=<n>`, where the target is the scratch
//! run's final test accuracy.

use std::path::PathBuf;

use slimnet::core::data::{self, Dataset, Split};
use slimnet::core::loss::CrossEntropy;
use slimnet::core::{io, models, tensor, train::evaluate, Graph};
use slimnet::distill::designer::{design_student, StudentSpec};
use slimnet::distill::loss::{CachedKdLoss, KdConfig};
use slimnet::distill::report::{line_chart, Series};
use slimnet::distill::stages::macs;
use slimnet::distill::stagewise::{StageWise, StageWiseConfig, StageWiseReport};
use slimnet::distill::train::{fit, seconds_to, Clock, FitConfig, OptimizerKind, TimePoint};
use slimnet::distill::FrozenTeacher;

const CUTS: [&str; 3] = ["block1_relu2", "block2_relu2", "block3_relu2"];

struct Args {
    dataset: String,
    epochs: usize,
    stage_examples: usize,
    phase1_epochs: usize,
    teacher_epochs: usize,
    threads: usize,
    seed: u64,
    runs: Vec<String>,
    out_dir: PathBuf,
    teacher_only: bool,
    train_examples: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        dataset: "mnist".into(),
        epochs: 3,
        stage_examples: 12_000,
        phase1_epochs: 2,
        teacher_epochs: 4,
        threads: 1,
        seed: 1,
        runs: vec!["scratch".into(), "kd".into(), "stagewise".into()],
        out_dir: PathBuf::from("target/slimnet"),
        teacher_only: false,
        train_examples: usize::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--dataset" => a.dataset = val()?,
            "--epochs" => a.epochs = num(val()?)?,
            "--stage-examples" => a.stage_examples = num(val()?)?,
            "--phase1-epochs" => a.phase1_epochs = num(val()?)?,
            "--teacher-epochs" => a.teacher_epochs = num(val()?)?,
            "--threads" => a.threads = num(val()?)?,
            "--seed" => a.seed = num(val()?)? as u64,
            "--runs" => a.runs = val()?.split(',').map(str::to_string).collect(),
            "--out-dir" => a.out_dir = PathBuf::from(val()?),
            "--teacher-only" => a.teacher_only = true,
            "--train-examples" => a.train_examples = num(val()?)?,
            "-h" | "--help" => {
                return Err(
                    "usage: distill_mnist [--dataset mnist|fashion] [--epochs N] \
                            [--stage-examples N] [--phase1-epochs N] [--teacher-epochs N] \
                            [--threads N] [--seed N] [--runs scratch,kd,stagewise] \
                            [--out-dir DIR] [--teacher-only] [--train-examples N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    if a.dataset != "mnist" && a.dataset != "fashion" {
        return Err(format!(
            "--dataset {}: expected mnist or fashion",
            a.dataset
        ));
    }
    if let Some(r) = a
        .runs
        .iter()
        .find(|r| !["scratch", "kd", "stagewise"].contains(&r.as_str()))
    {
        return Err(format!("--runs: unknown run `{r}`"));
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
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

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn load(dataset: &str, split: Split) -> Res<Dataset> {
    Ok(match dataset {
        "fashion" => data::fashion_mnist(split)?,
        _ => data::mnist(split)?,
    })
}

/// The cached teacher, or a freshly trained one (saved for the next run).
fn teacher(args: &Args, train: &Dataset, test: &Dataset) -> Res<Graph> {
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
    io::save(&g, &path)?;
    Ok(g)
}

fn print_points(pts: &[TimePoint]) {
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

/// The training recipe of the scratch and KD students.
fn student_fit(args: &Args) -> FitConfig {
    FitConfig::default()
        .with_epochs(args.epochs)
        .with_lr(0.05)
        .with_weight_decay(1e-4)
        .with_optimizer(OptimizerKind::Sgd { momentum: 0.9 })
        .with_seed(args.seed)
        .with_evals_per_epoch(2)
}

struct RunResult {
    name: &'static str,
    points: Vec<TimePoint>,
    seconds: f64,
    final_acc: f32,
}

fn run(args: &Args) -> Res<()> {
    slimnet::kernels::threads::set_num_threads(args.threads);
    let train = load(&args.dataset, Split::Train)?.take(args.train_examples);
    let test = load(&args.dataset, Split::Test)?;
    let t_graph = teacher(args, &train, &test)?;
    let teacher_acc = evaluate(&t_graph, &test, 500)?.1;
    let input = [1, 1, 28, 28];
    let teacher_macs = macs(&t_graph, &input)?;
    println!("teacher: test_acc={teacher_acc:.4} macs={teacher_macs}");
    if args.teacher_only {
        return Ok(());
    }
    let teacher = FrozenTeacher::new(t_graph)?;

    // One student architecture for all runs: the widest depthwise-separable student within a
    // fifth of the teacher's MACs, built from the same seed each time.
    let spec = StudentSpec::mac_budget(teacher_macs / 5);
    let design = || {
        design_student(
            teacher.graph(),
            &CUTS,
            &input,
            &spec,
            &mut tensor::rng(args.seed + 7),
        )
    };
    let student_macs = design()?.macs(&input)?;
    println!(
        "student: width x{:.3}, macs={student_macs} ({:.2}x fewer), cuts {CUTS:?}",
        design()?.multiplier,
        teacher_macs as f64 / student_macs as f64
    );

    let mut results: Vec<RunResult> = Vec::new();
    let mut stage_report: Option<StageWiseReport> = None;
    for name in ["scratch", "kd", "stagewise"] {
        if !args.runs.iter().any(|r| r == name) {
            continue;
        }
        println!("\n== {name} ==");
        let clock = Clock::start();
        let (points, final_acc, seconds) = match name {
            "scratch" => {
                let mut m = design()?.stitch()?;
                let pts = fit(
                    &mut m,
                    &mut CrossEntropy,
                    &train,
                    Some(&test),
                    &student_fit(args),
                    &clock,
                    name,
                )?;
                let acc = pts.last().map_or(0.0, |p| p.test_accuracy);
                (pts, acc, clock.seconds())
            }
            "kd" => {
                let mut m = design()?.stitch()?;
                let mut kd =
                    CachedKdLoss::from_teacher(&teacher, &train.inputs, KdConfig::new(4.0, 0.7))?;
                println!("  teacher logits cached in {:.1}s", clock.seconds());
                let pts = fit(
                    &mut m,
                    &mut kd,
                    &train,
                    Some(&test),
                    &student_fit(args),
                    &clock,
                    name,
                )?;
                let acc = pts.last().map_or(0.0, |p| p.test_accuracy);
                (pts, acc, clock.seconds())
            }
            _ => {
                let subset = train.take(args.stage_examples);
                let mut cfg = StageWiseConfig::default();
                cfg.phase1 = cfg
                    .phase1
                    .with_epochs(args.phase1_epochs)
                    .with_lr(5e-3)
                    .with_batch_size(32)
                    .with_seed(args.seed)
                    .with_evals_per_epoch(1);
                cfg.phase2 = student_fit(args)
                    .with_epochs(1)
                    .with_lr(0.01)
                    .with_evals_per_epoch(3);
                cfg.kd = KdConfig::new(4.0, 0.7);
                cfg.log_every = 10;
                let mut sw = StageWise::from_student(&teacher, &CUTS, design()?, &input[1..], cfg)?;
                let r = sw.run(&subset, Some(&test))?;
                let pts = r.timeline.clone();
                let acc = pts.last().map_or(0.0, |p| p.test_accuracy);
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
                let secs = r.seconds;
                stage_report = Some(r);
                (pts, acc, secs)
            }
        };
        print_points(&points);
        results.push(RunResult {
            name,
            seconds,
            points,
            final_acc,
        });
    }

    let target = results
        .iter()
        .find(|r| r.name == "scratch")
        .map(|r| r.final_acc);
    std::fs::create_dir_all(&args.out_dir)?;
    let series: Vec<Series> = results
        .iter()
        .map(|r| Series::accuracy(r.name, &r.points))
        .collect();
    let plot = args.out_dir.join(format!("distill_{}.svg", args.dataset));
    // Show the last few points below the target; earlier points are clamped to the floor.
    let floor = target.map(|t| 100.0 * t as f64 - 3.0);
    std::fs::write(
        &plot,
        line_chart(
            &format!("student test accuracy vs wall-clock ({})", args.dataset),
            "seconds",
            "test accuracy (%)",
            &series,
            floor,
            target.map(|t| 100.0 * t as f64),
        ),
    )?;
    println!("\nwrote {}", plot.display());
    if let Some(r) = &stage_report {
        let s: Vec<Series> = r
            .stage_losses
            .iter()
            .enumerate()
            .map(|(k, c)| Series::loss(&format!("stage {}", k + 1), c))
            .collect();
        let p = args
            .out_dir
            .join(format!("distill_{}_stages.svg", args.dataset));
        std::fs::write(
            &p,
            line_chart(
                "phase 1 feature MSE per stage",
                "seconds",
                "MSE",
                &s,
                None,
                None,
            ),
        )?;
        println!("wrote {}", p.display());
    }
    for r in &results {
        let to_target = target
            .and_then(|t| seconds_to(&r.points, t))
            .map_or("inf".to_string(), |s| format!("{s:.1}"));
        println!(
            "distill {} {} student_acc={:.4} teacher_acc={teacher_acc:.4} seconds={:.1} seconds_to_target={to_target} student_macs={student_macs} teacher_macs={teacher_macs}",
            r.name, args.dataset, r.final_acc, r.seconds
        );
    }
    Ok(())
}
