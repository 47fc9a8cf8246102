//! Stage-wise multi-layer teacher-student training.
//!
//! The teacher is split at K-1 cut points into stages `T1..TK` ([`crate::stages::split`]); the
//! student has one stage `Sk` per teacher stage with the same boundary shapes (or an adapter
//! after it that restores them). Phase 1 trains every `Sk` on the sub-task "teacher features
//! `F(k-1)` -> teacher features `F(k)`" with a mean squared error, the targets coming from the
//! frozen teacher (cached once or computed per batch); the stages do not depend on each other,
//! so they train in parallel. Phase 2 stitches `S1..SK` and fine-tunes end to end with
//! cross-entropy plus Hinton KD. The report holds each stage's feature-loss curve and the
//! stitched student's test accuracy against wall-clock time.

mod phase1;

use slimnet_core::data::Dataset;
use slimnet_core::layers::BatchNorm2d;
use slimnet_core::{Graph, Layer};

use crate::designer::Student;
use crate::error::{DistillError, Result};
use crate::loss::{CachedKdLoss, KdConfig, KdLoss};
use crate::stages::{boundary_shapes, split};
use crate::teacher::{forward_chunked, FrozenTeacher};
use crate::train::{eval_point, fit, Clock, FitConfig, OptimizerKind, TimePoint};

/// Where phase 1 gets the teacher's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FeatureSource {
    /// Run the teacher once over the training set and keep every boundary's features in memory
    /// (fast for several epochs; memory grows with the training set).
    #[default]
    Cached,
    /// Run the teacher on every batch (no memory cost; the teacher runs every epoch).
    OnTheFly,
}

/// Settings of a stage-wise run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StageWiseConfig {
    /// Phase 1 (per-stage feature regression): epochs, batch, optimizer, learning rate; its
    /// `evals_per_epoch` sets how often the stitched student is evaluated.
    pub phase1: FitConfig,
    /// Phase 2 (end-to-end fine-tuning with cross-entropy + KD); 0 epochs skips it.
    pub phase2: FitConfig,
    /// Distillation settings of phase 2.
    pub kd: KdConfig,
    /// Where the teacher's features come from.
    pub features: FeatureSource,
    /// Threads that train the stages of phase 1 side by side (a rayon pool); 1 trains them one
    /// after the other. Each stage's kernels still use
    /// `slimnet_kernels::threads::num_threads()` threads.
    pub stage_threads: usize,
    /// Steps between points of the per-stage loss curves.
    pub log_every: usize,
    /// Start a student stage (without adapter) that has exactly its teacher stage's structure
    /// (same nodes, layer kinds and hyper-parameters, e.g. a shared pooling + classifier head)
    /// from a copy of the teacher stage: the exact minimizer of its feature loss, so phase 1
    /// leaves it as it is (phase 2 fine-tunes it with the rest).
    pub copy_identical_stages: bool,
    /// Phase 1 learns from the first this-many training examples only (the stage sub-tasks
    /// need fewer examples than the end-to-end task); phase 2 uses the whole training set.
    /// `None`: both phases use every example.
    pub phase1_examples: Option<usize>,
    /// Batches (of the phase-2 batch size) the stitched student runs in training mode, without
    /// any weight update, between the phases, so its BatchNorm running statistics describe the
    /// features its own stages produce rather than the teacher's features each stage was
    /// trained on. 0 skips it.
    pub bn_recalibration_batches: usize,
}

impl Default for StageWiseConfig {
    /// Phase 1: 1 epoch, Adam lr 2e-3; phase 2: 1 epoch, SGD lr 0.01; KD T=4, alpha=0.5;
    /// cached features; stages trained one after the other (1 thread, so timings compare with
    /// single-threaded training); a loss point every 50 steps; stages identical to the
    /// teacher's copied.
    fn default() -> Self {
        Self {
            phase1: FitConfig::default()
                .with_optimizer(OptimizerKind::Adam)
                .with_lr(2e-3)
                .with_weight_decay(0.0),
            phase2: FitConfig::default().with_lr(0.01),
            kd: KdConfig::new(4.0, 0.5),
            features: FeatureSource::Cached,
            stage_threads: 1,
            log_every: 50,
            copy_identical_stages: true,
            phase1_examples: None,
            bn_recalibration_batches: 0,
        }
    }
}

/// One student stage: the network and an optional adapter that maps its output to the
/// teacher's boundary shape (the adapter stays in the stitched student).
#[derive(Debug, Clone)]
pub struct StudentStage {
    /// The stage network.
    pub net: Graph,
    /// Adapter from the network's output to the teacher's boundary shape.
    pub adapter: Option<Graph>,
}

impl StudentStage {
    /// A stage without adapter.
    pub fn new(net: Graph) -> Self {
        Self { net, adapter: None }
    }

    /// A stage with an adapter after it.
    pub fn with_adapter(net: Graph, adapter: Graph) -> Self {
        Self {
            net,
            adapter: Some(adapter),
        }
    }
}

/// A point of a stage's feature-loss curve.
#[derive(Debug, Clone, PartialEq)]
pub struct LossPoint {
    /// Seconds since the run started.
    pub seconds: f64,
    /// Phase-1 steps so far.
    pub step: usize,
    /// Mean feature MSE over the steps since the previous point.
    pub loss: f32,
}

/// What a stage-wise run did.
#[derive(Debug, Clone)]
pub struct StageWiseReport {
    /// Per stage, its phase-1 feature-loss curve.
    pub stage_losses: Vec<Vec<LossPoint>>,
    /// Test accuracy of the stitched student against time (phase 1, then phase 2).
    pub timeline: Vec<TimePoint>,
    /// Seconds spent in phase 1 (teacher features included; evaluations excluded, as everywhere).
    pub phase1_seconds: f64,
    /// Seconds of the whole run.
    pub seconds: f64,
    /// Stages (1-based) that started as a copy of their teacher stage
    /// ([`StageWiseConfig::copy_identical_stages`]).
    pub copied_stages: Vec<usize>,
    /// The trained, stitched student.
    pub student: Graph,
}

/// A teacher split into stages and a student with one stage per teacher stage.
#[derive(Debug, Clone)]
pub struct StageWise {
    teacher: FrozenTeacher,
    teacher_stages: Vec<Graph>,
    students: Vec<StudentStage>,
    cfg: StageWiseConfig,
}

impl StageWise {
    /// Pairs the teacher, split at `cuts`, with the student stages, checking every boundary
    /// for examples of shape `example` (without the batch axis).
    ///
    /// # Errors
    /// Bad cuts (as [`split`]); a number of student stages other than `cuts.len() + 1`; an
    /// empty student stage ([`DistillError::EmptyStage`]); a student stage that rejects the teacher's
    /// input boundary or does not reach its output boundary, adapter included
    /// ([`DistillError::BoundaryShape`]); each naming the stage.
    pub fn new(
        teacher: &FrozenTeacher,
        cuts: &[&str],
        students: Vec<StudentStage>,
        example: &[usize],
        cfg: StageWiseConfig,
    ) -> Result<Self> {
        let teacher_stages = split(teacher.graph(), cuts)?;
        if students.len() != teacher_stages.len() {
            return Err(DistillError::Config(format!(
                "{} cut points make {} teacher stages, but {} student stages were given",
                cuts.len(),
                teacher_stages.len(),
                students.len()
            )));
        }
        let mut input = vec![1];
        input.extend_from_slice(example);
        let shapes = boundary_shapes(&teacher_stages, &input)?;
        for (k, s) in students.iter().enumerate() {
            let stage = k + 1;
            if s.net.nodes().len() <= 1 {
                return Err(DistillError::EmptyStage {
                    stage,
                    reason: "the student stage is an empty graph".into(),
                });
            }
            let out = s
                .net
                .output_shape(&shapes[k])
                .map_err(|e| DistillError::BoundaryShape {
                    stage,
                    side: "input",
                    expected: shapes[k].clone(),
                    actual: vec![],
                    source: Some(Box::new(e)),
                })?;
            let out = match &s.adapter {
                Some(a) => a
                    .output_shape(&out)
                    .map_err(|e| DistillError::BoundaryShape {
                        stage,
                        side: "output",
                        expected: shapes[k + 1].clone(),
                        actual: out.clone(),
                        source: Some(Box::new(e)),
                    })?,
                None => out,
            };
            if out != shapes[k + 1] {
                return Err(DistillError::BoundaryShape {
                    stage,
                    side: "output",
                    expected: shapes[k + 1].clone(),
                    actual: out,
                    source: None,
                });
            }
        }
        if cfg.log_every == 0 {
            return Err(DistillError::Config("log_every must be positive".into()));
        }
        Ok(Self {
            teacher: teacher.clone(),
            teacher_stages,
            students,
            cfg,
        })
    }

    /// [`new`](Self::new) with the stages of a designed [`Student`].
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_student(
        teacher: &FrozenTeacher,
        cuts: &[&str],
        student: Student,
        example: &[usize],
        cfg: StageWiseConfig,
    ) -> Result<Self> {
        let stages = student.stages.into_iter().map(StudentStage::new).collect();
        Self::new(teacher, cuts, stages, example, cfg)
    }

    /// The teacher's stages.
    pub fn teacher_stages(&self) -> &[Graph] {
        &self.teacher_stages
    }

    /// The student's stages.
    pub fn student_stages(&self) -> &[StudentStage] {
        &self.students
    }

    /// The student stages chained into one model: nodes `stage1`, (`adapter1`,) `stage2`, ...
    ///
    /// # Errors
    /// Never for a validated `StageWise`; kept for uniformity.
    pub fn stitch(&self) -> Result<Graph> {
        Self::stitch_stages(&self.students)
    }

    fn stitch_stages(students: &[StudentStage]) -> Result<Graph> {
        let mut g = Graph::new();
        let mut last = g.input();
        for (k, s) in students.iter().enumerate() {
            last = g.add_layer(&format!("stage{}", k + 1), s.net.clone(), last)?;
            if let Some(a) = &s.adapter {
                last = g.add_layer(&format!("adapter{}", k + 1), a.clone(), last)?;
            }
        }
        Ok(g)
    }

    /// Runs phase 1 and phase 2 on `train` (phase 1 on its first
    /// [`phase1_examples`](StageWiseConfig::phase1_examples)), evaluating the stitched student
    /// on `test`.
    ///
    /// # Errors
    /// A stage that fails to train (named), or errors of the training loop.
    pub fn run(&mut self, train: &Dataset, test: Option<&Dataset>) -> Result<StageWiseReport> {
        let clock = Clock::start();
        let copied_stages = if self.cfg.copy_identical_stages {
            self.copy_identical_stages()
        } else {
            Vec::new()
        };
        let frozen: Vec<bool> = (1..=self.students.len())
            .map(|k| copied_stages.contains(&k))
            .collect();
        let subset;
        let p1_train = match self.cfg.phase1_examples {
            Some(n) if n < train.len() => {
                subset = train.take(n);
                &subset
            }
            _ => train,
        };
        let p1 = phase1::run(self, p1_train, test, &clock, &frozen)?;
        let phase1_seconds = clock.seconds();
        let mut timeline = p1.timeline;
        let mut student = self.stitch()?;
        if self.cfg.bn_recalibration_batches > 0 {
            recalibrate_batchnorm(
                &mut student,
                train,
                self.cfg.bn_recalibration_batches,
                self.cfg.phase2.batch_size,
            )?;
            if let Some(t) = test {
                timeline.push(eval_point(&student, t, &clock, 0, "recalibrated")?);
            }
        }
        if self.cfg.phase2.epochs > 0 {
            let logits = match p1.logits {
                // Teacher logits of the examples phase 1 did not see.
                Some(head) if head.shape()[0] < train.len() => {
                    let rest = train
                        .inputs
                        .slice_axis(ndarray::Axis(0), (head.shape()[0]..train.len()).into())
                        .to_owned();
                    let tail =
                        forward_chunked(self.teacher.graph(), &rest, self.cfg.phase2.eval_batch)?;
                    Some(
                        ndarray::concatenate(ndarray::Axis(0), &[head.view(), tail.view()])
                            .map_err(|e| {
                                DistillError::Config(format!("cannot join teacher logits: {e}"))
                            })?,
                    )
                }
                other => other,
            };
            let pts = match logits {
                Some(logits) => {
                    let mut obj = CachedKdLoss::new(logits, self.cfg.kd)?;
                    fit(
                        &mut student,
                        &mut obj,
                        train,
                        test,
                        &self.cfg.phase2,
                        &clock,
                        "phase2",
                    )?
                }
                None => {
                    let mut obj = KdLoss::new(self.teacher.clone(), self.cfg.kd)?;
                    fit(
                        &mut student,
                        &mut obj,
                        train,
                        test,
                        &self.cfg.phase2,
                        &clock,
                        "phase2",
                    )?
                }
            };
            timeline.extend(pts);
            self.unstitch(&student)?;
        } else if let Some(t) = test {
            if timeline.is_empty() {
                timeline.push(eval_point(&student, t, &clock, 0, "phase1")?);
            }
        }
        Ok(StageWiseReport {
            stage_losses: p1.losses,
            timeline,
            phase1_seconds,
            seconds: clock.seconds(),
            copied_stages,
            student,
        })
    }

    /// Replaces every adapter-less student stage whose structure is its teacher stage's by a
    /// copy of the teacher stage; returns the stages replaced (1-based).
    fn copy_identical_stages(&mut self) -> Vec<usize> {
        let mut copied = Vec::new();
        for (k, (s, t)) in self
            .students
            .iter_mut()
            .zip(&self.teacher_stages)
            .enumerate()
        {
            if s.adapter.is_none() && same_structure(&s.net, t) {
                s.net = t.clone();
                copied.push(k + 1);
            }
        }
        copied
    }

    /// Copies the stitched student's trained stages back into `self`.
    fn unstitch(&mut self, stitched: &Graph) -> Result<()> {
        for (k, s) in self.students.iter_mut().enumerate() {
            let get = |name: String| {
                stitched
                    .layer(&name)
                    .and_then(|l| Graph::of(l))
                    .cloned()
                    .ok_or_else(|| DistillError::EmptyStage {
                        stage: k + 1,
                        reason: format!("`{name}` missing from the stitched student"),
                    })
            };
            s.net = get(format!("stage{}", k + 1))?;
            if s.adapter.is_some() {
                s.adapter = Some(get(format!("adapter{}", k + 1))?);
            }
        }
        Ok(())
    }
}

/// Re-estimates the BatchNorm running statistics of `net` from `batches` batches of `batch`
/// training examples (from the start of `train`, wrapping): each batch runs in training mode
/// with momentum `1 / (b + 1)`, so the statistics end as the plain average over the batches;
/// the momenta are restored afterwards. Weights do not change.
fn recalibrate_batchnorm(
    net: &mut Graph,
    train: &Dataset,
    batches: usize,
    batch: usize,
) -> Result<()> {
    let n = train.len();
    if n == 0 || batch == 0 {
        return Ok(());
    }
    let mut momenta = Vec::new();
    net.visit_layers_mut(&mut |_, l| {
        if let Some(bn) = l.downcast_mut::<BatchNorm2d>() {
            momenta.push(bn.config().momentum);
        }
    });
    let set = |net: &mut Graph, m: &dyn Fn(usize) -> f32| -> Result<()> {
        let mut i = 0;
        let mut res = Ok(());
        net.visit_layers_mut(&mut |_, l| {
            if let Some(bn) = l.downcast_mut::<BatchNorm2d>() {
                if res.is_ok() {
                    res = bn.set_momentum(m(i));
                }
                i += 1;
            }
        });
        res.map_err(DistillError::from)
    };
    for b in 0..batches {
        set(net, &|_| 1.0 / (b + 1) as f32)?;
        let idx: Vec<usize> = (0..batch).map(|i| (b * batch + i) % n).collect();
        let (x, _) = train.batch(&idx);
        net.forward_train(&x)?;
    }
    set(net, &|i| momenta[i])
}

/// Whether two graphs compute the same function family: the same nodes in the same order with
/// the same inputs, layer kinds and hyper-parameters (weights aside).
fn same_structure(a: &Graph, b: &Graph) -> bool {
    use slimnet_core::graph::Op;
    a.nodes().len() == b.nodes().len()
        && a.output().index() == b.output().index()
        && a.nodes().iter().zip(b.nodes()).all(|(x, y)| {
            x.inputs == y.inputs
                && match (&x.op, &y.op) {
                    (Op::Layer(l), Op::Layer(m)) => {
                        l.kind() == m.kind() && l.config_json() == m.config_json()
                    }
                    (p, q) => p.name() == q.name(),
                }
        })
}

#[cfg(test)]
mod tests;
