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
//!     [--seed N] [--out-dir DIR]
//! ```
//! The teacher is the one `distill_mnist` caches (trained here when missing). Clocks count
//! teacher inference and exclude test evaluations. Prints the per-layer decomposition report,
//! each run's accuracy curve, a table, and one line per run:
//! `distill lowrank-<stagewise|finetune> <dataset> acc_before=<f> student_acc=<f>
//! teacher_acc=<f> seconds=<s> seconds_to_target=<s> student_macs=<n> teacher_macs=<n>`,
//! where the target is the fine-tune run's final accuracy.

mod common;

use common::{CommonArgs, Res, CUTS, INPUT};
use slimnet::core::loss::CrossEntropy;
use slimnet::core::rewrite::Selector;
use slimnet::core::Graph;
use slimnet::decompose::rank::RankPolicy;
use slimnet::decompose::rewrite::{decompose, ConvMethod, DecomposeReport, LowRank};
use slimnet::distill::stages::{boundary_shapes, compose, macs, split};
use slimnet::distill::stagewise::{StageWise, StudentStage};
use slimnet::distill::train::{fit, Clock};
use slimnet::distill::FrozenTeacher;

struct Args {
    common: CommonArgs,
    method: ConvMethod,
    mac_ratio: f64,
    stage_examples: usize,
    phase1_epochs: usize,
    phase1_lr: f32,
    epochs: usize,
    finetune_lr: f32,
    budget_seconds: Option<f64>,
    runs: Vec<String>,
}

fn parse_method(v: &str) -> Result<ConvMethod, String> {
    Ok(match v {
        "tucker2" => ConvMethod::Tucker2,
        "channel" => ConvMethod::Channel,
        "spatial" => ConvMethod::Spatial,
        "cp" => ConvMethod::Cp,
        other => {
            return Err(format!(
                "--method {other}: expected tucker2, channel, spatial or cp"
            ))
        }
    })
}

fn parse_args() -> Result<Args, String> {
    let mut method = ConvMethod::Tucker2;
    let (mut mac_ratio, mut budget_seconds) = (0.3, None);
    let (mut stage_examples, mut phase1_epochs, mut epochs) = (12_000, 2, 1);
    let (mut phase1_lr, mut finetune_lr) = (1e-3, 0.01);
    let mut runs: Vec<String> = vec!["stagewise".into(), "finetune".into()];
    let common = common::parse_args(
        "distill_lowrank [--method tucker2|channel|spatial|cp] [--mac-ratio F] \
         [--stage-examples N] [--phase1-epochs N] [--phase1-lr F] [--epochs N] \
         [--finetune-lr F] [--budget-seconds S] [--runs stagewise,finetune]",
        |flag, val| {
            match flag {
                "--method" => method = parse_method(&val()?)?,
                "--mac-ratio" => mac_ratio = common::num(flag, val()?)?,
                "--stage-examples" => stage_examples = common::num(flag, val()?)?,
                "--phase1-epochs" => phase1_epochs = common::num(flag, val()?)?,
                "--phase1-lr" => phase1_lr = common::num(flag, val()?)?,
                "--epochs" => epochs = common::num(flag, val()?)?,
                "--finetune-lr" => finetune_lr = common::num(flag, val()?)?,
                "--budget-seconds" => budget_seconds = Some(common::num(flag, val()?)?),
                "--runs" => runs = val()?.split(',').map(str::to_string).collect(),
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    if let Some(r) = runs
        .iter()
        .find(|r| !["stagewise", "finetune"].contains(&r.as_str()))
    {
        return Err(format!("--runs: unknown run `{r}`"));
    }
    Ok(Args {
        common,
        method,
        mac_ratio,
        stage_examples,
        phase1_epochs,
        phase1_lr,
        epochs,
        finetune_lr,
        budget_seconds,
        runs,
    })
}

fn main() {
    common::main_with(parse_args(), run);
}

/// Decomposes the 3x3 convolutions of every teacher stage except the stem (a 1-channel input
/// leaves nothing to factorise); shortcut 1x1 convolutions and the classifier stay.
fn decompose_stages(
    stages: &[Graph],
    method: ConvMethod,
    mac_ratio: f64,
) -> Res<(Vec<Graph>, DecomposeReport)> {
    let shapes = boundary_shapes(stages, &INPUT)?;
    let rule = LowRank::new(method, RankPolicy::MacRatio(mac_ratio));
    let mut report = DecomposeReport::default();
    let mut out = Vec::with_capacity(stages.len());
    for (stage, shape) in stages.iter().zip(&shapes) {
        let mut s = stage.clone();
        let select = Selector::Predicate(Box::new(|path: &str, _: &dyn slimnet::core::Layer| {
            path.ends_with("_conv1") || path.ends_with("_conv2")
        }));
        let r = decompose(&mut s, shape, &select, &rule)?;
        report.layers.extend(r.layers);
        out.push(s);
    }
    Ok((out, report))
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
    let teacher = FrozenTeacher::new(t_graph)?;

    let (decomposed, report) =
        decompose_stages(&split(teacher.graph(), &CUTS)?, args.method, args.mac_ratio)?;
    println!("{report}");
    let student = compose(&decomposed)?;
    let student_macs = macs(&student, &INPUT)?;
    let acc_before = common::accuracy(&student, &test)?;
    println!(
        "decomposed ({}, MAC ratio {} per layer): macs={student_macs} ({:.2}x fewer), test_acc before recovery={acc_before:.4}",
        args.method.name(),
        args.mac_ratio,
        teacher_macs as f64 / student_macs as f64
    );

    let mut results: Vec<common::RunResult> = Vec::new();
    let mut budget = args.budget_seconds;
    for name in ["stagewise", "finetune"] {
        if !args.runs.iter().any(|r| r == name) {
            continue;
        }
        println!("\n== {name} ==");
        let (points, seconds) = match name {
            "stagewise" => {
                let subset = train.take(args.stage_examples);
                let cfg = common::stagewise_config(
                    args.phase1_epochs,
                    args.phase1_lr,
                    args.epochs,
                    c.seed,
                );
                let stages = decomposed.iter().cloned().map(StudentStage::new).collect();
                let mut sw = StageWise::new(&teacher, &CUTS, stages, &INPUT[1..], cfg)?;
                let r = sw.run(&subset, Some(&test))?;
                common::print_stage_losses(&r);
                budget.get_or_insert(r.seconds);
                (r.timeline, r.seconds)
            }
            _ => {
                let budget = budget.ok_or(
                    "the finetune run needs --budget-seconds when the stagewise run is not run",
                )?;
                println!("  wall-clock budget {budget:.1}s");
                let clock = Clock::start();
                let mut m = student.clone();
                // Epochs only bound the run; the budget stops it and drives the decay.
                let cfg = common::student_fit(1000, c.seed)
                    .with_lr(args.finetune_lr)
                    .with_evals_per_epoch(3)
                    .with_time_budget(budget);
                let pts = fit(
                    &mut m,
                    &mut CrossEntropy,
                    &train,
                    Some(&test),
                    &cfg,
                    &clock,
                    name,
                )?;
                (pts, clock.seconds())
            }
        };
        common::print_points(&points);
        let final_acc = points.last().map_or(acc_before, |p| p.test_accuracy);
        results.push(common::RunResult {
            name,
            points,
            seconds,
            final_acc,
        });
    }

    println!(
        "\n{:<12} {:>10} {:>10} {:>9} {:>10}",
        "run", "acc_before", "acc_after", "seconds", "MACs"
    );
    println!(
        "{:<12} {:>10} {:>10.4} {:>9} {:>10}",
        "teacher", "", teacher_acc, "", teacher_macs
    );
    for r in &results {
        println!(
            "{:<12} {:>10.4} {:>10.4} {:>9.1} {:>10}",
            r.name, acc_before, r.final_acc, r.seconds, student_macs
        );
    }
    let target = results
        .iter()
        .find(|r| r.name == "finetune")
        .map(|r| r.final_acc);
    for r in &results {
        println!(
            "distill lowrank-{} {} acc_before={acc_before:.4} student_acc={:.4} teacher_acc={teacher_acc:.4} seconds={:.1} seconds_to_target={} student_macs={student_macs} teacher_macs={teacher_macs}",
            r.name,
            c.eval_label(),
            r.final_acc,
            r.seconds,
            common::to_target(&r.points, target)
        );
    }
    Ok(())
}
