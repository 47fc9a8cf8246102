//! Distillation on MNIST or Fashion-MNIST: a light student (>= 5x fewer MACs than the small
//! ResNet teacher) trained three ways — from scratch, with Hinton KD, and stage-wise on the
//! teacher's intermediate features — and timed.
//!
//! ```text
//! cargo run --release --example distill_mnist -- [--dataset mnist|fashion] [--epochs N]
//!     [--stage-examples N] [--phase1-epochs N] [--phase1-lr F] [--phase1-batch N]
//!     [--phase2-evals N] [--bn-recalibration N] [--kd-temperature F] [--kd-alpha F]
//!     [--teacher-epochs N] [--threads N] [--seed N] [--runs scratch,kd,stagewise]
//!     [--out-dir DIR] [--teacher-only] [--train-examples N] [--validation N] [--target ACC]
//! ```
//! `--target ACC` sets the accuracy `seconds_to_target` is timed to when the scratch run is not
//! part of the invocation (otherwise scratch's final accuracy is the target).
//! `--kd-temperature` and `--kd-alpha` (defaults 6 and 0.95, chosen with `--validation 10000`)
//! set the KD run's loss; the stage-wise run's phase 2 keeps its own (T = 4, alpha = 0.7).
//! `--validation N` evaluates every run on the last N training images instead of the test set
//! and trains the students on the rest, so settings can be chosen without the test set; the
//! output lines then name the dataset `<dataset>-validation`.
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

mod common;

use common::{CommonArgs, Res, CUTS, INPUT};
use slimnet::core::loss::CrossEntropy;
use slimnet::distill::loss::{CachedKdLoss, KdConfig};
use slimnet::distill::report::{line_chart, Series};
use slimnet::distill::stagewise::{StageWise, StageWiseReport};
use slimnet::distill::train::{fit, Clock};
use slimnet::distill::FrozenTeacher;

struct Args {
    common: CommonArgs,
    epochs: usize,
    stage_examples: usize,
    phase1_epochs: usize,
    phase1_lr: f32,
    phase1_batch: usize,
    phase2_evals: usize,
    bn_recalibration: usize,
    kd: KdConfig,
    target: Option<f32>,
    runs: Vec<String>,
    teacher_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let (mut epochs, mut stage_examples, mut phase1_epochs, mut phase1_lr) = (3, 12_000, 2, 5e-3);
    let (mut phase1_batch, mut phase2_evals) = (32, 8);
    let mut bn_recalibration = 0;
    // chosen on a validation split (docs/results.md, "Choosing the KD settings")
    let mut kd = KdConfig::new(6.0, 0.95);
    let mut target = None;
    let mut runs: Vec<String> = vec!["scratch".into(), "kd".into(), "stagewise".into()];
    let mut teacher_only = false;
    let common = common::parse_args(
        "distill_mnist [--epochs N] [--stage-examples N] [--phase1-epochs N] [--phase1-lr F] \
         [--phase1-batch N] [--phase2-evals N] [--bn-recalibration N] [--kd-temperature F] \
         [--kd-alpha F] [--target ACC] [--runs scratch,kd,stagewise] [--teacher-only]",
        |flag, val| {
            match flag {
                "--epochs" => epochs = common::num(flag, val()?)?,
                "--stage-examples" => stage_examples = common::num(flag, val()?)?,
                "--phase1-epochs" => phase1_epochs = common::num(flag, val()?)?,
                "--phase1-lr" => phase1_lr = common::num(flag, val()?)?,
                "--phase1-batch" => phase1_batch = common::num(flag, val()?)?,
                "--phase2-evals" => phase2_evals = common::num(flag, val()?)?,
                "--bn-recalibration" => bn_recalibration = common::num(flag, val()?)?,
                "--kd-temperature" => kd.temperature = common::num(flag, val()?)?,
                "--kd-alpha" => kd.alpha = common::num(flag, val()?)?,
                "--target" => target = Some(common::num(flag, val()?)?),
                "--runs" => runs = val()?.split(',').map(str::to_string).collect(),
                "--teacher-only" => teacher_only = true,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    if let Some(r) = runs
        .iter()
        .find(|r| !["scratch", "kd", "stagewise"].contains(&r.as_str()))
    {
        return Err(format!("--runs: unknown run `{r}`"));
    }
    kd.validate().map_err(|e| e.to_string())?;
    if let Some(t) = target.filter(|t: &f32| !(0.0..=1.0).contains(t)) {
        return Err(format!("--target {t}: expected an accuracy in [0, 1]"));
    }
    Ok(Args {
        common,
        epochs,
        stage_examples,
        phase1_epochs,
        phase1_lr,
        phase1_batch,
        phase2_evals,
        bn_recalibration,
        kd,
        target,
        runs,
        teacher_only,
    })
}

fn main() {
    common::main_with(parse_args(), run);
}

fn run(args: &Args) -> Res<()> {
    let c = &args.common;
    let common::Setup {
        train,
        test,
        teacher: t_graph,
        teacher_acc,
        teacher_macs,
    } = common::setup(c)?;
    if args.teacher_only {
        return Ok(());
    }
    let teacher = FrozenTeacher::new(t_graph)?;

    // One student architecture for all runs, built from the same seed each time.
    let design = || common::design(teacher.graph(), c.seed);
    let student_macs = design()?.macs(&INPUT)?;
    println!(
        "student: width x{:.3}, macs={student_macs} ({:.2}x fewer), cuts {CUTS:?}",
        design()?.multiplier,
        teacher_macs as f64 / student_macs as f64
    );
    let student_fit = common::student_fit(args.epochs, c.seed);

    let mut results: Vec<common::RunResult> = Vec::new();
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
                    &student_fit,
                    &clock,
                    name,
                )?;
                let acc = pts.last().map_or(0.0, |p| p.test_accuracy);
                (pts, acc, clock.seconds())
            }
            "kd" => {
                let mut m = design()?.stitch()?;
                let mut kd = CachedKdLoss::from_teacher(&teacher, &train.inputs, args.kd)?;
                println!(
                    "  teacher logits cached in {:.1}s (T={} alpha={})",
                    clock.seconds(),
                    args.kd.temperature,
                    args.kd.alpha
                );
                let pts = fit(
                    &mut m,
                    &mut kd,
                    &train,
                    Some(&test),
                    &student_fit,
                    &clock,
                    name,
                )?;
                let acc = pts.last().map_or(0.0, |p| p.test_accuracy);
                (pts, acc, clock.seconds())
            }
            _ => {
                // Phase 1 on the first --stage-examples images at --phase1-batch; phase 2 one
                // epoch over the whole training set, evaluated often enough to time the target.
                let mut cfg =
                    common::stagewise_config(args.phase1_epochs, args.phase1_lr, 1, c.seed);
                cfg.phase1 = cfg.phase1.with_batch_size(args.phase1_batch);
                cfg.phase1_examples = Some(args.stage_examples);
                cfg.phase2 = cfg.phase2.with_evals_per_epoch(args.phase2_evals);
                cfg.bn_recalibration_batches = args.bn_recalibration;
                let mut sw = StageWise::from_student(&teacher, &CUTS, design()?, &INPUT[1..], cfg)?;
                let r = sw.run(&train, Some(&test))?;
                let pts = r.timeline.clone();
                let acc = pts.last().map_or(0.0, |p| p.test_accuracy);
                common::print_stage_losses(&r);
                let secs = r.seconds;
                stage_report = Some(r);
                (pts, acc, secs)
            }
        };
        common::print_points(&points);
        results.push(common::RunResult {
            name,
            seconds,
            points,
            final_acc,
        });
    }

    let target = results
        .iter()
        .find(|r| r.name == "scratch")
        .map(|r| r.final_acc)
        .or(args.target);
    std::fs::create_dir_all(&c.out_dir)?;
    let series: Vec<Series> = results
        .iter()
        .map(|r| Series::accuracy(r.name, &r.points))
        .collect();
    let plot = c.out_dir.join(format!("distill_{}.svg", c.eval_label()));
    // Show the last few points below the target; earlier points are clamped to the floor.
    let floor = target.map(|t| 100.0 * t as f64 - 3.0);
    std::fs::write(
        &plot,
        line_chart(
            &format!("student accuracy vs wall-clock ({})", c.eval_label()),
            "seconds",
            if c.validation > 0 {
                "validation accuracy (%)"
            } else {
                "test accuracy (%)"
            },
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
        let p = c
            .out_dir
            .join(format!("distill_{}_stages.svg", c.eval_label()));
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
        let to_target = common::to_target(&r.points, target);
        println!(
            "distill {} {} student_acc={:.4} teacher_acc={teacher_acc:.4} seconds={:.1} seconds_to_target={to_target} student_macs={student_macs} teacher_macs={teacher_macs}",
            r.name,
            c.eval_label(),
            r.final_acc,
            r.seconds
        );
    }
    Ok(())
}
