use super::*;
use crate::adapter::{make_adapter, AdapterConfig};
use crate::designer::{design_student, StudentSpec};
use slimnet_core::{models, tensor};

const CUTS: [&str; 3] = ["block1_relu2", "block2_relu2", "block3_relu2"];

fn teacher() -> FrozenTeacher {
    FrozenTeacher::new(models::resnet_small(&mut tensor::rng(0)).unwrap()).unwrap()
}

fn student(w: f32) -> Student {
    design_student(
        teacher().graph(),
        &CUTS,
        &[1, 1, 28, 28],
        &StudentSpec::width(w),
        &mut tensor::rng(1),
    )
    .unwrap()
}

fn data(n: usize, seed: u64) -> Dataset {
    let x = tensor::uniform(&[n, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(seed));
    Dataset::new(x, (0..n).map(|i| i % 10).collect(), 10).unwrap()
}

fn quick() -> StageWiseConfig {
    let mut cfg = StageWiseConfig::default();
    cfg.phase1 = cfg.phase1.with_epochs(3).with_batch_size(16).with_lr(3e-3);
    cfg.phase2 = cfg.phase2.with_epochs(1).with_batch_size(16);
    cfg.log_every = 4;
    cfg
}

#[test]
fn bad_students_are_rejected_naming_the_stage() {
    let t = teacher();
    let s = student(0.5);
    let mut stages: Vec<StudentStage> = s.stages.iter().cloned().map(StudentStage::new).collect();
    let e = StageWise::new(&t, &CUTS, stages[..3].to_vec(), &[1, 28, 28], quick()).unwrap_err();
    assert!(matches!(e, DistillError::Config(_)), "{e}");

    let mut empty = stages.clone();
    empty[2] = StudentStage::new(Graph::new());
    let e = StageWise::new(&t, &CUTS, empty, &[1, 28, 28], quick()).unwrap_err();
    assert!(
        matches!(e, DistillError::EmptyStage { stage: 3, .. }),
        "{e}"
    );

    // Stage 2 of a different split outputs 32 x 14 x 14, not stage 2's 16 x 28 x 28 input.
    let mut swapped = stages.clone();
    swapped.swap(1, 2);
    let e = StageWise::new(&t, &CUTS, swapped, &[1, 28, 28], quick()).unwrap_err();
    assert!(
        matches!(e, DistillError::BoundaryShape { stage: 2, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("stage 2"), "{e}");

    // A stage 2 that outputs 8 channels at 28 x 28 needs an adapter to reach 32 x 14 x 14.
    let mut narrow = Graph::new();
    let x0 = narrow.input();
    crate::blocks::depthwise_separable(&mut narrow, "b", x0, 16, 8, 1, &mut tensor::rng(2))
        .unwrap();
    stages[1] = StudentStage::new(narrow.clone());
    let e = StageWise::new(&t, &CUTS, stages.clone(), &[1, 28, 28], quick()).unwrap_err();
    assert!(
        matches!(
            e,
            DistillError::BoundaryShape {
                stage: 2,
                side: "output",
                ..
            }
        ),
        "{e}"
    );
    let a = make_adapter(
        &[1, 8, 28, 28],
        &[1, 32, 14, 14],
        &AdapterConfig::default(),
        &mut tensor::rng(3),
    )
    .unwrap();
    stages[1] = StudentStage::with_adapter(narrow, a);
    let sw = StageWise::new(&t, &CUTS, stages, &[1, 28, 28], quick()).unwrap();
    let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(4));
    assert_eq!(sw.stitch().unwrap().forward(&x).unwrap().shape(), &[2, 10]);
}

#[test]
fn phase_one_lowers_every_stage_loss_and_cached_equals_on_the_fly() {
    let t = teacher();
    let train = data(96, 5);
    let mut curves = Vec::new();
    for features in [FeatureSource::Cached, FeatureSource::OnTheFly] {
        let mut cfg = quick();
        cfg.features = features;
        cfg.stage_threads = if features == FeatureSource::Cached {
            3
        } else {
            1
        };
        cfg.phase1 = cfg.phase1.with_epochs(4).with_batch_size(8);
        cfg.phase2 = cfg.phase2.with_epochs(0);
        // The head stage is learned here, not copied from the teacher.
        cfg.copy_identical_stages = false;
        let mut sw = StageWise::from_student(&t, &CUTS, student(0.5), &[1, 28, 28], cfg).unwrap();
        let r = sw.run(&train, None).unwrap();
        assert_eq!(r.stage_losses.len(), 4);
        for (k, c) in r.stage_losses.iter().enumerate() {
            let (first, last) = (c[0].loss, c[c.len() - 1].loss);
            assert!(last < 0.9 * first, "stage {}: {first} -> {last}", k + 1);
        }
        curves.push(r.stage_losses);
    }
    for (a, b) in curves[0].iter().zip(&curves[1]) {
        for (p, q) in a.iter().zip(b) {
            assert!(
                (p.loss - q.loss).abs() <= 1e-4 * p.loss.abs().max(1e-3),
                "{} vs {}",
                p.loss,
                q.loss
            );
        }
    }
}

#[test]
fn a_full_run_reports_accuracy_over_time_and_keeps_trained_stages() {
    let t = teacher();
    let (train, test) = (data(32, 6), data(20, 7));
    let mut cfg = quick();
    cfg.phase1 = cfg.phase1.with_epochs(1).with_evals_per_epoch(2);
    let mut sw = StageWise::from_student(&t, &CUTS, student(0.5), &[1, 28, 28], cfg).unwrap();
    let r = sw.run(&train, Some(&test)).unwrap();
    let phases: Vec<&str> = r.timeline.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(phases, ["phase1", "phase1", "phase2"]);
    assert!(r.phase1_seconds <= r.seconds);
    let x = tensor::uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(8));
    let a = r.student.forward(&x).unwrap();
    let b = sw.stitch().unwrap().forward(&x).unwrap();
    assert!(tensor::max_abs_diff(&a, &b) < 1e-6);
}

#[test]
fn stages_identical_to_the_teacher_start_as_its_copy() {
    let t = teacher();
    let train = data(32, 9);
    let mut cfg = quick();
    cfg.phase1 = cfg.phase1.with_epochs(1);
    cfg.phase2 = cfg.phase2.with_epochs(0);
    // The designer's head (pooling, flatten, fresh classifier) has the teacher head's structure;
    // the convolution stages are lighter and stay the student's.
    let mut sw = StageWise::from_student(&t, &CUTS, student(0.5), &[1, 28, 28], cfg).unwrap();
    let r = sw.run(&train, None).unwrap();
    assert_eq!(r.copied_stages, vec![4]);
    assert!(
        r.stage_losses[3].iter().all(|p| p.loss < 1e-10),
        "{:?}",
        r.stage_losses[3]
    );
    assert!(r.stage_losses[0][0].loss > 1e-4);
    let x = tensor::uniform(&[2, 64, 7, 7], 0.0, 1.0, &mut tensor::rng(10));
    let head = &sw.teacher_stages()[3];
    let got = sw.student_stages()[3].net.forward(&x).unwrap();
    assert!(tensor::max_abs_diff(&got, &head.forward(&x).unwrap()) < 1e-6);
    assert!(!same_structure(
        &sw.student_stages()[0].net,
        &sw.teacher_stages()[0]
    ));
}

#[test]
fn phase_one_can_learn_from_fewer_examples_than_phase_two() {
    let t = teacher();
    let (train, test) = (data(48, 11), data(10, 12));
    let mut cfg = quick();
    cfg.phase1 = cfg.phase1.with_epochs(2);
    cfg.phase1_examples = Some(16);
    let mut runs = Vec::new();
    for features in [FeatureSource::Cached, FeatureSource::OnTheFly] {
        let mut cfg = cfg.clone();
        cfg.features = features;
        let mut sw = StageWise::from_student(&t, &CUTS, student(0.5), &[1, 28, 28], cfg).unwrap();
        let r = sw.run(&train, Some(&test)).unwrap();
        let steps = |phase: &str| {
            r.timeline
                .iter()
                .filter(|p| p.phase == phase)
                .map(|p| p.step)
                .max()
        };
        // 16 examples at batch 16 for 2 epochs, then 48 at batch 16 for 1 epoch.
        assert_eq!((steps("phase1"), steps("phase2")), (Some(2), Some(3)));
        runs.push(r.student);
    }
    // Cached teacher logits (phase-1 examples joined with the rest) give the same phase 2 as
    // the teacher run on the fly.
    let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(13));
    let (a, b) = (runs[0].forward(&x).unwrap(), runs[1].forward(&x).unwrap());
    assert!(tensor::max_abs_diff(&a, &b) < 1e-3);
}

/// Recalibration leaves every BatchNorm's running mean at the plain average of its batch means
/// (the mean of the data when the batches cover it evenly), keeps the momenta and the weights.
#[test]
fn batchnorm_recalibration_averages_the_batches_and_restores_momenta() {
    use slimnet_core::layers::{BatchNormConfig, Conv2dConfig};
    let conv = Conv2dConfig::new(1, 3, 3)
        .init(&mut tensor::rng(5))
        .unwrap();
    let bn = BatchNormConfig::new(3).init().unwrap();
    let mut inner = slimnet_core::Sequential::new()
        .push("conv", conv.clone())
        .push("bn", bn)
        .build()
        .unwrap();
    inner.visit_layers_mut(&mut |_, l| {
        if let Some(b) = l.downcast_mut::<BatchNorm2d>() {
            b.set_momentum(0.25).unwrap();
        }
    });
    // nested, as stages are in a stitched student
    let mut net = slimnet_core::Sequential::new()
        .push("stage1", inner)
        .build()
        .unwrap();
    let train = data(8, 9);
    recalibrate_batchnorm(&mut net, &train, 2, 4).unwrap();
    let y = conv.forward(&train.inputs).unwrap();
    let mut seen = 0;
    net.visit_layers(&mut |_, l| {
        if let Some(b) = l.downcast_ref::<BatchNorm2d>() {
            seen += 1;
            assert_eq!(b.config().momentum, 0.25);
            for ch in 0..3 {
                let lane = y.index_axis(ndarray::Axis(1), ch);
                let want = lane.mean().unwrap();
                assert!(
                    (b.running_mean[ch] - want).abs() < 1e-5,
                    "channel {ch}: {} vs {want}",
                    b.running_mean[ch]
                );
            }
        }
    });
    assert_eq!(seen, 1);
}
