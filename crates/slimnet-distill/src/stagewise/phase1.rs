//! Phase 1: every student stage regresses the teacher's next boundary features from the
//! teacher's previous ones.

use ndarray::Axis;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use slimnet_core::data::Dataset;
use slimnet_core::loss::mse;
use slimnet_core::optim::{CosineLr, LrSchedule, Optimizer};
use slimnet_core::{Layer, Tensor};

use super::{FeatureSource, LossPoint, StageWise, StudentStage};
use crate::error::{DistillError, Result};
use crate::teacher::forward_chunked;
use crate::train::{epoch_bar, eval_point, Clock, TimePoint};

pub(super) struct Phase1Out {
    pub losses: Vec<Vec<LossPoint>>,
    pub timeline: Vec<TimePoint>,
    /// The teacher's outputs for every training example, when features were cached.
    pub logits: Option<Tensor>,
}

struct StageTrainer<'a> {
    stage: &'a mut StudentStage,
    /// A stage copied from the teacher: evaluated, not trained.
    frozen: bool,
    opt: Box<dyn Optimizer>,
    opt_adapter: Box<dyn Optimizer>,
    sum: f64,
    count: usize,
}

impl StageTrainer<'_> {
    /// One step on `x -> y`; returns the feature MSE.
    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f32) -> slimnet_core::Result<f32> {
        if self.frozen {
            let mut out = self.stage.net.forward(x)?;
            if let Some(a) = &self.stage.adapter {
                out = a.forward(&out)?;
            }
            return Ok(mse(&out, y)?.0);
        }
        let out = self.stage.net.forward_train(x)?;
        let (loss, grad) = match &mut self.stage.adapter {
            Some(a) => {
                let o = a.forward_train(&out)?;
                let (l, g) = mse(&o, y)?;
                (l, a.backward(&g)?)
            }
            None => mse(&out, y)?,
        };
        self.stage.net.backward(&grad)?;
        self.opt.set_lr(lr);
        self.opt.step(&mut self.stage.net)?;
        (&mut self.stage.net as &mut dyn Layer).zero_grad();
        if let Some(a) = &mut self.stage.adapter {
            self.opt_adapter.set_lr(lr);
            self.opt_adapter.step(a)?;
            (a as &mut dyn Layer).zero_grad();
        }
        Ok(loss)
    }
}

/// The teacher's boundary features `F1..FK` for `x` (`F0 = x` is not repeated).
fn teacher_features(sw: &StageWise, x: &Tensor, chunk: usize) -> Result<Vec<Tensor>> {
    let mut feats: Vec<Tensor> = Vec::with_capacity(sw.teacher_stages.len());
    for (k, t) in sw.teacher_stages.iter().enumerate() {
        let prev = if k == 0 { x } else { &feats[k - 1] };
        let f = forward_chunked(t, prev, chunk).map_err(|e| match e {
            DistillError::Core(c) => DistillError::InStage {
                stage: k + 1,
                source: c,
            },
            other => other,
        })?;
        feats.push(f);
    }
    Ok(feats)
}

pub(super) fn run(
    sw: &mut StageWise,
    train: &Dataset,
    test: Option<&Dataset>,
    clock: &Clock,
    frozen: &[bool],
) -> Result<Phase1Out> {
    let cfg = sw.cfg.phase1.clone();
    let log_every = sw.cfg.log_every;
    let pool = match sw.cfg.stage_threads {
        0 | 1 => None,
        n => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| {
                    DistillError::Config(format!("cannot start {n} stage threads: {e}"))
                })?,
        ),
    };
    let k_stages = sw.teacher_stages.len();
    let mut losses = vec![Vec::new(); k_stages];
    let mut timeline = Vec::new();
    if cfg.epochs == 0 {
        return Ok(Phase1Out {
            losses,
            timeline,
            logits: None,
        });
    }
    if cfg.batch_size == 0 || train.is_empty() {
        return Err(DistillError::Config(format!(
            "phase 1 needs a batch size ({}) and examples ({})",
            cfg.batch_size,
            train.len()
        )));
    }
    let cached = match sw.cfg.features {
        FeatureSource::Cached => Some(teacher_features(sw, &train.inputs, cfg.eval_batch)?),
        FeatureSource::OnTheFly => None,
    };
    let spe = train.len().div_ceil(cfg.batch_size);
    let evals = cfg.evals_per_epoch.clamp(1, spe);
    let schedule = CosineLr::new(cfg.lr, cfg.epochs);
    let mut rng = slimnet_core::tensor::rng(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut step = 0;
    let students = std::mem::take(&mut sw.students);
    let mut stages = students;
    let result = (|| -> Result<()> {
        let mut trainers: Vec<StageTrainer<'_>> = stages
            .iter_mut()
            .zip(frozen.iter().chain(std::iter::repeat(&false)))
            .map(|(stage, &frozen)| StageTrainer {
                stage,
                frozen,
                opt: cfg.optimizer(),
                opt_adapter: cfg.optimizer(),
                sum: 0.0,
                count: 0,
            })
            .collect();
        for epoch in 0..cfg.epochs {
            order.shuffle(&mut rng);
            let mut next_eval = 1;
            let bar = epoch_bar("phase1", epoch, cfg.epochs, spe);
            for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
                bar.inc(1);
                let (x, _) = train.batch(idx);
                let feats = match &cached {
                    Some(all) => all.iter().map(|f| f.select(Axis(0), idx)).collect(),
                    None => teacher_features(sw, &x, idx.len())?,
                };
                let lr = schedule.lr_at(step, spe);
                let work = |(k, t): (usize, &mut StageTrainer<'_>)| -> Result<f32> {
                    let input = if k == 0 { &x } else { &feats[k - 1] };
                    let l = t
                        .step(input, &feats[k], lr)
                        .map_err(DistillError::in_stage(k + 1))?;
                    if !l.is_finite() {
                        return Err(DistillError::InStage {
                            stage: k + 1,
                            source: slimnet_core::Error::NonFinite {
                                what: "phase-1 feature loss".into(),
                                value: l,
                                epoch,
                                batch: b,
                            },
                        });
                    }
                    Ok(l)
                };
                let ls: Vec<f32> = if let Some(pool) = &pool {
                    // the stages share the kernel threads instead of each starting a pool
                    // inside this one
                    let per_stage = (slimnet_kernels::threads::num_threads()
                        / pool.current_num_threads())
                    .max(1);
                    pool.install(|| {
                        trainers
                            .par_iter_mut()
                            .enumerate()
                            .map(|item| slimnet_kernels::threads::with(per_stage, || work(item)))
                            .collect::<Result<_>>()
                    })?
                } else {
                    trainers
                        .iter_mut()
                        .enumerate()
                        .map(work)
                        .collect::<Result<_>>()?
                };
                step += 1;
                for (t, l) in trainers.iter_mut().zip(&ls) {
                    t.sum += *l as f64;
                    t.count += 1;
                }
                if step % log_every == 0 || (epoch + 1 == cfg.epochs && b + 1 == spe) {
                    let seconds = clock.seconds();
                    for (curve, t) in losses.iter_mut().zip(trainers.iter_mut()) {
                        curve.push(LossPoint {
                            seconds,
                            step,
                            loss: (t.sum / t.count.max(1) as f64) as f32,
                        });
                        t.sum = 0.0;
                        t.count = 0;
                    }
                }
                if let Some(t) = test {
                    if b + 1 >= (spe * next_eval).div_ceil(evals) {
                        let nets: Vec<_> = trainers.iter().map(|t| t.stage.clone()).collect();
                        let stitched = StageWise::stitch_stages(&nets)?;
                        timeline.push(eval_point(&stitched, t, clock, step, "phase1")?);
                        next_eval += 1;
                    }
                }
            }
            bar.finish_and_clear();
        }
        Ok(())
    })();
    sw.students = stages;
    result?;
    Ok(Phase1Out {
        losses,
        timeline,
        logits: cached.and_then(|mut f| f.pop()),
    })
}
