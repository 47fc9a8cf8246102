//! ResNet teacher-student, stage-wise by residual stages (the thesis's ResNet verification): a
//! thin ResNet student (the teacher's stage boundaries, each basic block's middle convolution
//! at `--width` times the teacher's channels) trained three ways on Fashion-MNIST (or
//! `--dataset mnist`, or `--dataset hanzi`: 200 classes of rendered characters, 32x32, tested
//! on fonts training never saw) — from scratch, with Hinton KD, and stage-wise on the
//! teacher's features after each residual stage — and timed.
//!
//! ```text
//! cargo run --release --example resnet_stagewise -- [--dataset fashion|mnist|hanzi] [--width F]
//!     [--epochs N] [--stage-examples N] [--phase1-epochs N] [--phase2-epochs N]
//!     [--phase2-lr F] [--runs scratch,kd,stagewise]
//!     [--train-examples N] [--teacher-epochs N] [--threads N] [--seed N] [--out-dir DIR]
//!     [--validation N]
//! ```
//! The teacher is `models::resnet_small_classes` (stem, three basic blocks at 16, 32 and 64
//! channels, a classifier for the dataset's classes), trained once and cached under the output
//! directory (shared with `distill_mnist`); it is cut
//! after each residual stage (`block1_relu2`, `block2_relu2`, `block3_relu2`). Every run uses
//! one kernel thread (`--threads`), the same student and initialization, and counts its
//! wall-clock from its own start, teacher inference included (teacher training and test
//! evaluations excluded). It prints a table per run, writes `resnet_stagewise_<dataset>.svg`
//! (test accuracy against time) and `resnet_stagewise_<dataset>_stages.svg` (per-stage feature
//! losses), and ends with `resnet_stagewise scratch_acc=<f> stagewise_acc=<f> time_ratio=<f>`:
//! time_ratio is the time the stage-wise run took to first reach scratch's final accuracy over
//! scratch's whole time (`inf` when it never did; printed only when both runs ran).

use slimnet::core::tensor;
use slimnet::distill::blocks::BlockKind;
use slimnet::distill::designer::{design_student, StudentSpec};
use slimnet::distill::loss::KdConfig;
use slimnet::distill::stagewise::StageWise;
use slimnet_testkit::distill::{self, Flags, Run, Setup, CUTS};
use slimnet_testkit::{Args, Res, Usage};

const USAGE: &str = "usage: resnet_stagewise [--width F] [--epochs N] [--stage-examples N] \
     [--phase1-epochs N] [--phase2-epochs N] [--phase2-lr F] [--runs scratch,kd,stagewise]";

fn main() {
    slimnet_testkit::run(resnet_stagewise);
}

fn resnet_stagewise() -> Res<()> {
    let mut args = Args::parse(&format!("{USAGE} {}", distill::USAGE))?;
    let flags = Flags::take_for(&mut args, "fashion")?;
    let width = args.get("width", 0.5f32)?;
    let epochs = args.get("epochs", 3usize)?;
    let stage_examples = args.get("stage-examples", 12_000usize)?;
    let phase1_epochs = args.get("phase1-epochs", 2usize)?;
    let phase2_epochs = args.get("phase2-epochs", 1usize)?;
    let phase2_lr = args.get("phase2-lr", 0.01f32)?;
    let runs = args.get_subset("runs", &["scratch", "kd", "stagewise"])?;
    args.finish()?;
    if !(width > 0.0 && width <= 1.0) {
        return Err(Usage(format!("--width {width}: expected a multiplier in (0, 1]")).into());
    }

    let Setup {
        train,
        test,
        teacher,
        teacher_acc,
        teacher_macs,
        input,
    } = distill::setup(&flags)?;

    // The student: one thin basic block per residual stage of the teacher, ending on the
    // teacher's boundary shapes, so each stage can learn "teacher features in -> out".
    let spec = StudentSpec::width(width)
        .with_block(BlockKind::Basic)
        .with_blocks_per_stage(1);
    let design = || {
        let rng = &mut tensor::rng(flags.seed + 7);
        design_student(teacher.graph(), &CUTS, &input, &spec, rng)
    };
    let student_macs = design()?.macs(&input)?;
    println!(
        "student: thin ResNet, width x{width}, macs={student_macs} ({:.2}x fewer than the \
         teacher's {teacher_macs}; teacher test_acc={teacher_acc:.4}), cuts {CUTS:?}",
        teacher_macs as f64 / student_macs as f64
    );
    let student_fit = distill::student_fit(epochs, flags.seed);

    let mut results: Vec<Run> = Vec::new();
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
                // distill_mnist's KD settings, chosen there on a validation split
                (name == "kd").then_some(KdConfig::new(6.0, 0.95)),
                &train,
                &test,
                &student_fit,
            )?,
            _ => {
                // phase 1: each stage regresses the teacher's features on the first
                // --stage-examples images; phase 2: --phase2-epochs end to end with KD
                let mut cfg =
                    distill::stagewise_config(phase1_epochs, 5e-3, phase2_epochs, flags.seed);
                cfg.phase1_examples = Some(stage_examples);
                cfg.phase2 = cfg.phase2.with_evals_per_epoch(8).with_lr(phase2_lr);
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

    let find = |name: &str| results.iter().find(|r| r.name == name);
    let target = find("scratch").map(|r| r.final_acc);
    distill::write_plots(
        &flags,
        "resnet_stagewise",
        &results,
        stage_report.as_ref(),
        target,
    )?;
    println!();
    for r in &results {
        println!(
            "  {:<9} final_acc={:.4} seconds={:.1} seconds_to_scratch_acc={}",
            r.name,
            r.final_acc,
            r.seconds,
            r.to_target(target)
        );
    }
    if let (Some(scratch), Some(stagewise)) = (find("scratch"), find("stagewise")) {
        println!(
            "resnet_stagewise scratch_acc={:.4} stagewise_acc={:.4} time_ratio={:.3}",
            scratch.final_acc,
            stagewise.final_acc,
            stagewise.seconds_to(scratch.final_acc) / scratch.seconds
        );
    }
    Ok(())
}
