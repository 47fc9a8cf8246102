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
//!     [--seed N] [--out-dir DIR] [--validation N]
//! ```
//! Prints the accuracy, size and batch-1 latency of the teacher and of the f32, fake-quantized
//! and int8 students (both students saved under the output directory, the int8 one measured as
//! loaded back), and one last line:
//! `distill quant-stagewise <dataset> f32_acc=<f> fakequant_acc=<f> int8_acc=<f> teacher_acc=<f>
//! seconds=<s> f32_bytes=<n> int8_bytes=<n> student_macs=<n> teacher_macs=<n>` (seconds: both
//! stage-wise runs, teacher inference included, test evaluations excluded).

use slimnet::core::Graph;
use slimnet::distill::stages::{boundary_shapes, compose};
use slimnet::distill::stagewise::{StageWise, StudentStage};
use slimnet::distill::train::OptimizerKind;
use slimnet::quant::qat;
use slimnet_testkit::distill::{self, Flags, Run, Setup, CUTS};
use slimnet_testkit::{Args, Res, Stages};

const USAGE: &str = "usage: distill_quant [--stage-examples N] [--phase1-epochs N] [--epochs N] \
     [--qat-phase1-epochs N] [--qat-epochs N] [--qat-lr F] [--qat-finetune-lr F]";

fn main() {
    slimnet_testkit::run(distill_quant);
}

fn distill_quant() -> Res<()> {
    let mut args = Args::parse(&format!("{USAGE} {}", distill::USAGE))?;
    let flags = Flags::take(&mut args)?;
    let stage_examples = args.get("stage-examples", 12_000usize)?;
    let phase1_epochs = args.get("phase1-epochs", 2usize)?;
    let epochs = args.get("epochs", 1usize)?;
    let qat_phase1_epochs = args.get("qat-phase1-epochs", 1usize)?;
    let qat_epochs = args.get("qat-epochs", 1usize)?;
    let qat_lr = args.get("qat-lr", 2e-4f32)?;
    let qat_finetune_lr = args.get("qat-finetune-lr", 1e-4f32)?;
    args.finish()?;

    let Setup {
        train,
        test,
        teacher,
        teacher_acc,
        teacher_macs,
        input,
    } = distill::setup(&flags)?;
    let student = distill::student(teacher.graph(), &input, flags.seed)?;
    let student_macs = student.macs(&input)?;
    println!(
        "student: width x{:.3}, macs={student_macs} ({:.2}x fewer), cuts {CUTS:?}",
        student.multiplier,
        teacher_macs as f64 / student_macs as f64
    );
    let subset = train.take(stage_examples);

    println!("\n== f32 stage-wise ==");
    let cfg = distill::stagewise_config(phase1_epochs, 5e-3, epochs, flags.seed);
    let mut f32_stagewise = StageWise::from_student(&teacher, &CUTS, student, &input[1..], cfg)?;
    let f32_run = f32_stagewise.run(&subset, Some(&test))?;
    distill::print_stage_losses(&f32_run);
    println!("{}", Run::stagewise("f32", &f32_run));

    println!("\n== QAT stage-wise ==");
    let nets: Vec<Graph> = f32_stagewise
        .student_stages()
        .iter()
        .map(|s| s.net.clone())
        .collect();
    let shapes = boundary_shapes(&nets, &input)?;
    let (qat_cfg, mut qat_stages) = (qat::QatConfig::default(), Vec::new());
    for (net, shape) in nets.iter().zip(&shapes) {
        qat_stages.push(StudentStage::new(qat::prepare(net, shape, &qat_cfg)?));
    }
    let mut cfg = distill::stagewise_config(qat_phase1_epochs, qat_lr, qat_epochs, flags.seed);
    // BatchNorm is folded in the QAT graph, so plain SGD at the f32 rate can blow the
    // unnormalized activations up; Adam's steps stay near the rate whatever the scale.
    cfg.phase2 = cfg
        .phase2
        .with_optimizer(OptimizerKind::Adam)
        .with_weight_decay(0.0)
        .with_lr(qat_finetune_lr);
    let qat_run =
        StageWise::new(&teacher, &CUTS, qat_stages, &input[1..], cfg)?.run(&subset, Some(&test))?;
    distill::print_stage_losses(&qat_run);
    println!("{}", Run::stagewise("qat", &qat_run));
    // the observers tracked the stitched student's own activations during phase 2; freeze the
    // ranges they learned for the conversion
    let mut fake_quant = qat_run.student;
    qat::freeze(&mut fake_quant);

    // each stage to int8 deploy layers, on its own input shape, then composed
    let mut int8_stages = Vec::new();
    for (k, shape) in shapes.iter().take(nets.len()).enumerate() {
        let name = format!("stage{}", k + 1);
        let stage = fake_quant.layer(&name).and_then(Graph::of);
        let stage = stage.ok_or(format!("the stitched QAT student has no stage `{name}`"))?;
        int8_stages.push(qat::convert(stage, shape)?);
    }
    let int8 = compose(&int8_stages)?;

    let (dir, set) = (&flags.out_dir, &flags.dataset);
    let file = |what: &str| dir.join(format!("distill_quant_{set}_{what}.safetensors"));
    slimnet::save(&f32_run.student, file("f32"))?;
    slimnet::save(&int8, file("int8"))?;
    let mut stages = Stages::new(test.clone(), &input);
    stages.measure("teacher (f32)", teacher.graph())?;
    let f32_student = stages.measure("student f32", &f32_run.student)?.clone();
    let fq_acc = stages.measure("student fake-quant", &fake_quant)?.accuracy;
    let int8_student = stages
        .measure("student int8, loaded", &slimnet::load(file("int8"))?)?
        .clone();
    println!("\n{stages}");
    println!(
        "seconds: f32 stage-wise {:.1}, QAT stage-wise {:.1}",
        f32_run.seconds, qat_run.seconds
    );
    println!(
        "distill quant-stagewise {} f32_acc={:.4} fakequant_acc={fq_acc:.4} int8_acc={:.4} \
         teacher_acc={teacher_acc:.4} seconds={:.1} f32_bytes={} int8_bytes={} \
         student_macs={student_macs} teacher_macs={teacher_macs}",
        flags.eval_label(),
        f32_student.accuracy,
        int8_student.accuracy,
        f32_run.seconds + qat_run.seconds,
        f32_student.bytes,
        int8_student.bytes
    );
    Ok(())
}
