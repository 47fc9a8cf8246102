//! A light student trained with fake quantization against the teacher's features, stage by
//! stage, then converted to int8 deploy layers.
//!
//! 1. f32 stage-wise: the `distill_mnist` student (>= 5x fewer MACs than the small ResNet
//!    teacher) learns each teacher stage `F(k-1) -> F(k)`, then is stitched and fine-tuned with
//!    cross-entropy + KD.
//! 2. QAT stage-wise: every student stage is prepared for quantization-aware training
//!    (`slimnet::quant::qat::prepare`: BatchNorm folded, weights fake-quantized, activations
//!    fake-quantized where the int8 graph quantizes them) and trained again on the teacher's
//!    features `F(k-1) -> F(k)` (Adam at a small rate, `--qat-lr`, so it refines the f32
//!    solution), then stitched and fine-tuned end to end with cross-entropy + KD (Adam,
//!    `--qat-finetune-lr`: BatchNorm is folded, and SGD at the f32 rate blew the unnormalized
//!    network up), the observers learning their ranges throughout.
//! 3. The observers are frozen, each stage is converted to int8 (`qat::convert`), and the stages
//!    are composed.
//!
//! ```text
//! cargo run --release --example distill_quant -- [--stage-examples N] [--phase1-epochs N]
//!     [--epochs N] [--qat-phase1-epochs N] [--qat-epochs N] [--qat-lr F] [--qat-finetune-lr F]
//!     [--dataset mnist|fashion] [--train-examples N] [--teacher-epochs N] [--threads N]
//!     [--seed N] [--out-dir DIR]
//! ```
//! Prints the accuracy of the f32, fake-quantized and int8 students, their file sizes (saved
//! under the output directory; the int8 file is loaded back and checked), and one last line:
//! `distill quant-stagewise <dataset> f32_acc=<f> fakequant_acc=<f> int8_acc=<f> teacher_acc=<f>
//! seconds=<s> f32_bytes=<n> int8_bytes=<n> student_macs=<n> teacher_macs=<n>` (seconds: both
//! stage-wise runs, teacher inference included, test evaluations excluded).

mod common;

use common::{CommonArgs, Res, CUTS, INPUT};
use slimnet::core::{io, tensor, Graph, Layer};
use slimnet::distill::stages::compose;
use slimnet::distill::stagewise::{StageWise, StudentStage};
use slimnet::distill::train::OptimizerKind;
use slimnet::distill::FrozenTeacher;
use slimnet::quant::qat;

struct Args {
    common: CommonArgs,
    stage_examples: usize,
    phase1_epochs: usize,
    epochs: usize,
    qat_phase1_epochs: usize,
    qat_epochs: usize,
    qat_lr: f32,
    qat_finetune_lr: f32,
}

fn parse_args() -> Result<Args, String> {
    let (mut stage_examples, mut phase1_epochs, mut epochs) = (12_000, 2, 1);
    let (mut qat_phase1_epochs, mut qat_epochs) = (1, 1);
    let (mut qat_lr, mut qat_finetune_lr) = (2e-4, 1e-4);
    let common = common::parse_args(
        "distill_quant [--stage-examples N] [--phase1-epochs N] [--epochs N] \
         [--qat-phase1-epochs N] [--qat-epochs N] [--qat-lr F] [--qat-finetune-lr F]",
        |flag, val| {
            match flag {
                "--stage-examples" => stage_examples = common::num(flag, val()?)?,
                "--phase1-epochs" => phase1_epochs = common::num(flag, val()?)?,
                "--epochs" => epochs = common::num(flag, val()?)?,
                "--qat-phase1-epochs" => qat_phase1_epochs = common::num(flag, val()?)?,
                "--qat-epochs" => qat_epochs = common::num(flag, val()?)?,
                "--qat-lr" => qat_lr = common::num(flag, val()?)?,
                "--qat-finetune-lr" => qat_finetune_lr = common::num(flag, val()?)?,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    Ok(Args {
        common,
        stage_examples,
        phase1_epochs,
        epochs,
        qat_phase1_epochs,
        qat_epochs,
        qat_lr,
        qat_finetune_lr,
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
    let teacher = FrozenTeacher::new(t_graph)?;
    let design = common::design(teacher.graph(), c.seed)?;
    let student_macs = design.macs(&INPUT)?;
    println!(
        "student: width x{:.3}, macs={student_macs} ({:.2}x fewer), cuts {CUTS:?}",
        design.multiplier,
        teacher_macs as f64 / student_macs as f64
    );
    let subset = train.take(args.stage_examples);

    println!("\n== f32 stage-wise ==");
    let cfg = common::stagewise_config(args.phase1_epochs, 5e-3, args.epochs, c.seed);
    let mut sw = StageWise::from_student(&teacher, &CUTS, design, &INPUT[1..], cfg)?;
    let r32 = sw.run(&subset, Some(&test))?;
    common::print_stage_losses(&r32);
    common::print_points(&r32.timeline);
    let f32_model = r32.student;
    let f32_acc = common::accuracy(&f32_model, &test)?;

    println!("\n== QAT stage-wise ==");
    let mut shape = INPUT.to_vec();
    let mut stage_inputs = Vec::new();
    for s in sw.student_stages() {
        stage_inputs.push(shape.clone());
        shape = s.net.output_shape(&shape)?;
    }
    let qat_stages = sw
        .student_stages()
        .iter()
        .zip(&stage_inputs)
        .map(|(s, shape)| {
            Ok(StudentStage::new(qat::prepare(
                &s.net,
                shape,
                &qat::QatConfig::default(),
            )?))
        })
        .collect::<Res<Vec<_>>>()?;
    let mut cfg =
        common::stagewise_config(args.qat_phase1_epochs, args.qat_lr, args.qat_epochs, c.seed);
    // BatchNorm is folded in the QAT graph, so plain SGD at the f32 rate can blow the
    // unnormalized activations up; Adam's steps stay near the rate whatever the scale.
    cfg.phase2 = cfg
        .phase2
        .with_optimizer(OptimizerKind::Adam)
        .with_weight_decay(0.0)
        .with_lr(args.qat_finetune_lr);
    let mut swq = StageWise::new(&teacher, &CUTS, qat_stages, &INPUT[1..], cfg)?;
    let rq = swq.run(&subset, Some(&test))?;
    common::print_stage_losses(&rq);
    let mut qat_model = rq.student;
    let points = rq.timeline;
    // The observers tracked the stitched student's own activations during phase 2; freeze the
    // ranges they learned for the conversion.
    for k in 1..=CUTS.len() + 1 {
        let name = format!("stage{k}");
        let stage = qat_model
            .layer_mut(&name)
            .and_then(|l| Graph::of_mut(l.as_mut()))
            .ok_or(format!("the stitched QAT student has no stage `{name}`"))?;
        qat::freeze(stage);
    }
    let qat_seconds = rq.seconds;
    common::print_points(&points);
    let fq_acc = common::accuracy(&qat_model, &test)?;

    let int8_stages = (1..=CUTS.len() + 1)
        .map(|k| {
            let name = format!("stage{k}");
            let stage = qat_model
                .layer(&name)
                .and_then(|l| Graph::of(l))
                .ok_or(format!("the stitched QAT student has no stage `{name}`"))?;
            Ok(qat::convert(stage, &stage_inputs[k - 1])?)
        })
        .collect::<Res<Vec<_>>>()?;
    let int8_model = compose(&int8_stages)?;
    let int8_acc = common::accuracy(&int8_model, &test)?;

    std::fs::create_dir_all(&c.out_dir)?;
    let save = |g: &Graph, what: &str| -> Res<(std::path::PathBuf, u64)> {
        let p = c
            .out_dir
            .join(format!("distill_quant_{}_{what}.safetensors", c.dataset));
        io::save(g, &p)?;
        Ok((p.clone(), std::fs::metadata(&p)?.len()))
    };
    let (_, f32_bytes) = save(&f32_model, "f32")?;
    let (int8_path, int8_bytes) = save(&int8_model, "int8")?;
    let back = slimnet::load(&int8_path)?;
    let x = tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(9));
    if back.forward(&x)? != int8_model.forward(&x)? {
        return Err(format!("{} does not reload to the same model", int8_path.display()).into());
    }
    println!(
        "\nwrote {} (reloads to identical outputs)",
        int8_path.display()
    );

    println!(
        "\n{:<20} {:>9} {:>11} {:>10}",
        "model", "test_acc", "file bytes", "MACs"
    );
    println!(
        "{:<20} {:>9.4} {:>11} {:>10}",
        "teacher (f32)",
        teacher_acc,
        common::file_bytes(teacher.graph())?,
        teacher_macs
    );
    println!(
        "{:<20} {:>9.4} {:>11} {:>10}",
        "student f32", f32_acc, f32_bytes, student_macs
    );
    println!(
        "{:<20} {:>9.4} {:>11} {:>10}",
        "student fake-quant", fq_acc, "", student_macs
    );
    println!(
        "{:<20} {:>9.4} {:>11} {:>10}",
        "student int8", int8_acc, int8_bytes, student_macs
    );
    println!(
        "seconds: f32 stage-wise {:.1}, QAT stage-wise {qat_seconds:.1}",
        r32.seconds
    );
    println!(
        "distill quant-stagewise {} f32_acc={f32_acc:.4} fakequant_acc={fq_acc:.4} int8_acc={int8_acc:.4} teacher_acc={teacher_acc:.4} seconds={:.1} f32_bytes={f32_bytes} int8_bytes={int8_bytes} student_macs={student_macs} teacher_macs={teacher_macs}",
        c.eval_label(),
        r32.seconds + qat_seconds
    );
    Ok(())
}
