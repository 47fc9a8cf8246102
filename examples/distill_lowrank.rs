//! Low-rank decomposition recovered by the stage-wise teacher-student method: the small ResNet
//! teacher's 3x3 convolutions are factorised (Tucker-2 by default) at a MAC budget, and the
//! decomposed network is recovered two ways from the same starting point:
//!
//! - `stagewise`: each decomposed stage `Sk` learns to map the teacher's features `F(k-1)` to
//!   `F(k)` (phase 1), then the stages are stitched and fine-tuned end to end with
//!   cross-entropy + KD (phase 2);
//! - `finetune`: plain end-to-end fine-tuning with cross-entropy for the same wall-clock
//!   budget (the stage-wise run's seconds, or `--budget-seconds`).
//!
//! ```text
//! cargo run --release --example distill_lowrank -- [--method tucker2|channel|spatial|cp]
//!     [--mac-ratio F] [--stage-examples N] [--phase1-epochs N] [--phase1-lr F] [--epochs N]
//!     [--finetune-lr F] [--budget-seconds S] [--runs stagewise,finetune]
//!     [--dataset mnist|fashion] [--train-examples N] [--teacher-epochs N] [--threads N]
//!     [--seed N] [--out-dir DIR] [--validation N]
//! ```
//! The teacher is the one `distill_mnist` caches (trained here when missing). Clocks count
//! teacher inference and exclude test evaluations. Prints the per-layer decomposition report,
//! each run's accuracy curve, and one line per run:
//! `distill lowrank-<stagewise|finetune> <dataset> acc_before=<f> student_acc=<f>
//! teacher_acc=<f> seconds=<s> seconds_to_target=<s> student_macs=<n> teacher_macs=<n>`,
//! where the target is the fine-tune run's final accuracy.

use slimnet::core::loss::CrossEntropy;
use slimnet::core::rewrite::Selector;
use slimnet::core::{train, Graph};
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{decompose, ConvMethod, DecomposeReport, LowRank};
use slimnet::distill::stages::{boundary_shapes, compose, macs, split};
use slimnet::distill::stagewise::{StageWise, StudentStage};
use slimnet::distill::train::{fit, Clock};
use slimnet_testkit::distill::{self, Flags, Run, Setup, CUTS};
use slimnet_testkit::{Args, Res, Usage};

const USAGE: &str = "usage: distill_lowrank [--method tucker2|channel|spatial|cp] \
     [--mac-ratio F] [--stage-examples N] [--phase1-epochs N] [--phase1-lr F] [--epochs N] \
     [--finetune-lr F] [--budget-seconds S] [--runs stagewise,finetune]";

fn main() {
    slimnet_testkit::run(distill_lowrank);
}

fn distill_lowrank() -> Res<()> {
    let mut args = Args::parse(&format!("{USAGE} {}", distill::USAGE))?;
    let flags = Flags::take(&mut args)?;
    let method = match args.get("method", "tucker2".to_string())?.as_str() {
        "tucker2" => ConvMethod::Tucker2,
        "channel" => ConvMethod::Channel,
        "spatial" => ConvMethod::Spatial,
        "cp" => ConvMethod::Cp,
        other => {
            return Err(Usage(format!(
                "--method {other}: expected tucker2, channel, spatial or cp"
            ))
            .into())
        }
    };
    let mac_ratio = args.get("mac-ratio", 0.3f64)?;
    let stage_examples = args.get("stage-examples", 12_000usize)?;
    let phase1_epochs = args.get("phase1-epochs", 2usize)?;
    let phase1_lr = args.get("phase1-lr", 1e-3f32)?;
    let epochs = args.get("epochs", 1usize)?;
    let finetune_lr = args.get("finetune-lr", 0.01f32)?;
    let mut budget = args.get_opt::<f64>("budget-seconds")?;
    let runs = args.get_subset("runs", &["stagewise", "finetune"])?;
    args.finish()?;

    let Setup {
        train,
        test,
        teacher,
        teacher_acc,
        teacher_macs,
        input,
    } = distill::setup(&flags)?;
    let (stages, report) =
        decompose_stages(&split(teacher.graph(), &CUTS)?, &input, method, mac_ratio)?;
    println!("{report}");
    let student = compose(&stages)?;
    let student_macs = macs(&student, &input)?;
    let acc_before = train::accuracy(&student, &test)?;
    println!(
        "decomposed ({}, MAC ratio {mac_ratio} per layer): macs={student_macs} ({:.2}x fewer), \
         test_acc before recovery={acc_before:.4}",
        method.name(),
        teacher_macs as f64 / student_macs as f64
    );

    let mut results = Vec::new();
    for name in ["stagewise", "finetune"]
        .into_iter()
        .filter(|r| runs.iter().any(|run| run == r))
    {
        println!("\n== {name} ==");
        let run = if name == "stagewise" {
            // both phases on the first --stage-examples images
            let cfg = distill::stagewise_config(phase1_epochs, phase1_lr, epochs, flags.seed);
            let students = stages.iter().cloned().map(StudentStage::new).collect();
            let mut stagewise = StageWise::new(&teacher, &CUTS, students, &input[1..], cfg)?;
            let report = stagewise.run(&train.take(stage_examples), Some(&test))?;
            distill::print_stage_losses(&report);
            budget.get_or_insert(report.seconds);
            Run::stagewise(name, &report)
        } else {
            let budget = budget.ok_or(
                "the finetune run needs --budget-seconds when the stagewise run is not run",
            )?;
            println!("  wall-clock budget {budget:.1}s");
            // epochs only bound the run; the budget stops it and drives the decay
            let cfg = distill::student_fit(1000, flags.seed)
                .with_lr(finetune_lr)
                .with_evals_per_epoch(3)
                .with_time_budget(budget);
            let (clock, mut model) = (Clock::start(), student.clone());
            let points = fit(
                &mut model,
                &mut CrossEntropy,
                &train,
                Some(&test),
                &cfg,
                &clock,
                name,
            )?;
            Run::new(name, points, clock.seconds())
        };
        println!("{run}");
        results.push(run);
    }

    let target = results
        .iter()
        .find(|r| r.name == "finetune")
        .map(|r| r.final_acc);
    for r in &results {
        println!(
            "distill lowrank-{} {} acc_before={acc_before:.4} student_acc={:.4} \
             teacher_acc={teacher_acc:.4} seconds={:.1} seconds_to_target={} \
             student_macs={student_macs} teacher_macs={teacher_macs}",
            r.name,
            flags.eval_label(),
            r.final_acc,
            r.seconds,
            r.to_target(target)
        );
    }
    Ok(())
}

/// Decomposes the 3x3 convolutions of the residual blocks of every teacher stage (named
/// `*_conv1`, `*_conv2`); the stem (a 1-channel input leaves nothing to factorise), the 1x1
/// shortcut convolutions and the classifier stay.
fn decompose_stages(
    stages: &[Graph],
    input: &[usize],
    method: ConvMethod,
    mac_ratio: f64,
) -> Res<(Vec<Graph>, DecomposeReport)> {
    let rule = LowRank::new(method, RankPolicy::MacRatio(mac_ratio));
    let mut report = DecomposeReport::default();
    let mut out = Vec::with_capacity(stages.len());
    for (stage, shape) in stages.iter().zip(&boundary_shapes(stages, input)?) {
        let mut convs = Vec::new();
        stage.visit_layers(&mut |path, _| {
            if path.ends_with("_conv1") || path.ends_with("_conv2") {
                convs.push(path.to_string());
            }
        });
        let mut s = stage.clone();
        report
            .layers
            .extend(decompose(&mut s, shape, &Selector::Paths(convs), &rule)?.layers);
        out.push(s);
    }
    Ok((out, report))
}
