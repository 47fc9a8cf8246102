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

use slimnet::distill::loss::KdConfig;
use slimnet::distill::stagewise::StageWise;
use slimnet_testkit::distill::{self, Flags, Run, Setup, CUTS};
use slimnet_testkit::{Args, Res, Usage};

const USAGE: &str = "usage: distill_mnist [--epochs N] [--stage-examples N] [--phase1-epochs N] \
     [--phase1-lr F] [--phase1-batch N] [--phase2-evals N] [--bn-recalibration N] \
     [--kd-temperature F] [--kd-alpha F] [--target ACC] [--runs scratch,kd,stagewise] \
     [--teacher-only]";

fn main() {
    slimnet_testkit::run(distill_mnist);
}

fn distill_mnist() -> Res<()> {
    let mut args = Args::parse(&format!("{USAGE} {}", distill::USAGE))?;
    let flags = Flags::take(&mut args)?;
    let epochs = args.get("epochs", 3usize)?;
    let stage_examples = args.get("stage-examples", 12_000usize)?;
    let phase1_epochs = args.get("phase1-epochs", 2usize)?;
    let phase1_lr = args.get("phase1-lr", 5e-3f32)?;
    let phase1_batch = args.get("phase1-batch", 32usize)?;
    let phase2_evals = args.get("phase2-evals", 8usize)?;
    let bn_recalibration = args.get("bn-recalibration", 0usize)?;
    // chosen on a validation split (docs/results.md, "Choosing the KD settings")
    let kd = KdConfig::new(
        args.get("kd-temperature", 6.0)?,
        args.get("kd-alpha", 0.95)?,
    );
    let target = args.get_opt::<f32>("target")?;
    let runs = args.get_subset("runs", &["scratch", "kd", "stagewise"])?;
    let teacher_only = args.switch("teacher-only")?;
    args.finish()?;
    kd.validate().map_err(|e| Usage(e.to_string()))?;
    if let Some(t) = target.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(Usage(format!("--target {t}: expected an accuracy in [0, 1]")).into());
    }

    let Setup {
        train,
        test,
        teacher,
        teacher_acc,
        teacher_macs,
        input,
    } = distill::setup(&flags)?;
    if teacher_only {
        return Ok(());
    }
    // one student architecture for all runs, built from the same seed each time
    let design = || distill::student(teacher.graph(), &input, flags.seed);
    let student_macs = design()?.macs(&input)?;
    println!(
        "student: width x{:.3}, macs={student_macs} ({:.2}x fewer), cuts {CUTS:?}",
        design()?.multiplier,
        teacher_macs as f64 / student_macs as f64
    );
    let student_fit = distill::student_fit(epochs, flags.seed);

    let mut results = Vec::new();
    let mut stage_report = None;
    for name in ["scratch", "kd", "stagewise"]
        .into_iter()
        .filter(|r| runs.iter().any(|run| run == r))
    {
        println!("\n== {name} ==");
        let run = match name {
            "scratch" | "kd" => distill::train_end_to_end(
                name,
                &mut design()?.stitch()?,
                &teacher,
                (name == "kd").then_some(kd),
                &train,
                &test,
                &student_fit,
            )?,
            _ => {
                // phase 1 on the first --stage-examples images at --phase1-batch; phase 2 one
                // epoch over the whole training set, evaluated often enough to time the target
                let mut cfg = distill::stagewise_config(phase1_epochs, phase1_lr, 1, flags.seed);
                cfg.phase1 = cfg.phase1.with_batch_size(phase1_batch);
                cfg.phase1_examples = Some(stage_examples);
                cfg.phase2 = cfg.phase2.with_evals_per_epoch(phase2_evals);
                cfg.bn_recalibration_batches = bn_recalibration;
                let mut stagewise =
                    StageWise::from_student(&teacher, &CUTS, design()?, &input[1..], cfg)?;
                let report = stagewise.run(&train, Some(&test))?;
                distill::print_stage_losses(&report);
                let run = Run::stagewise(name, &report);
                println!("{run}");
                stage_report = Some(report);
                run
            }
        };
        results.push(run);
    }

    let scratch = results.iter().find(|r| r.name == "scratch");
    let target = scratch.map(|r| r.final_acc).or(target);
    distill::write_plots(&flags, "distill", &results, stage_report.as_ref(), target)?;
    for r in &results {
        println!(
            "distill {} {} student_acc={:.4} teacher_acc={teacher_acc:.4} seconds={:.1} \
             seconds_to_target={} student_macs={student_macs} teacher_macs={teacher_macs}",
            r.name,
            flags.eval_label(),
            r.final_acc,
            r.seconds,
            r.to_target(target)
        );
    }
    Ok(())
}
