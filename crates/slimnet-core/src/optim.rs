//! Optimizers (SGD with momentum and Nesterov, Adam, AdamW) and learning-rate schedules.
//!
//! Optimizers keep their state per parameter path and respect sparsity masks: masked gradients
//! are zeroed before the update and masked weights after it, so pruned weights stay zero.
//!
//! Momenta and moment estimates below the smallest normal `f32` are set to zero. A pruned
//! weight's momentum decays by the momentum factor at every step with no gradient to renew it,
//! and would settle on a subnormal for good (0.9 times a few units of the last place rounds
//! back to the same value); arithmetic on subnormals takes a slow microcode path on x86, so a
//! model with millions of pruned weights trained several times slower per epoch the longer it
//! fine-tuned on its masks (a 90%-sparse 8 M-parameter classifier: 30% of each step in the
//! SGD update).

use std::collections::HashMap;

use slimnet_kernels::threads;

use crate::buffers::cut;
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::param::Param;
use crate::tensor::Tensor;

/// Updates parameters from their accumulated gradients.
pub trait Optimizer: Send {
    /// One update of every parameter of `model`. Gradients are not cleared.
    ///
    /// # Errors
    /// When a parameter changed shape since the optimizer last saw it.
    fn step(&mut self, model: &mut dyn Layer) -> Result<()>;
    /// The current learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate (schedules call this).
    fn set_lr(&mut self, lr: f32);

    /// The state a resumed run needs (momenta, moment estimates, step counts) as named tensors,
    /// for checkpoints. The default has none.
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Restores a state given by [`state`](Self::state).
    ///
    /// # Errors
    /// An entry this optimizer does not know.
    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(Error::Invalid(format!(
                "optimizer state `{name}` for an optimizer without state"
            ))),
        }
    }
}

/// `v`, or zero when it is subnormal (see the module docs).
#[inline]
fn flush(v: f32) -> f32 {
    if v.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        v
    }
}

/// `f(w, g, states)` over matching runs of a parameter's values `w`, its gradient `g` and its
/// optimizer states (each of `w`'s shape), one run per kernel thread for large parameters:
/// each value's update is the same wherever it runs, so the result does not depend on the
/// thread count.
fn update<const K: usize>(
    w: &mut Tensor,
    g: &Tensor,
    states: [&mut Tensor; K],
    f: impl Fn(&mut [f32], &[f32], [&mut [f32]; K]) + Sync,
) {
    let standard = w.is_standard_layout()
        && g.is_standard_layout()
        && states.iter().all(|s| s.is_standard_layout());
    if !standard {
        // not met by the layers' own parameters: update copies in standard layout
        let mut wc = w.as_standard_layout().into_owned();
        let gc = g.as_standard_layout().into_owned();
        let mut sc = states
            .each_ref()
            .map(|s| s.as_standard_layout().into_owned());
        update_runs(&mut wc, &gc, sc.each_mut(), &f);
        w.assign(&wc);
        for (s, c) in states.into_iter().zip(&sc) {
            s.assign(c);
        }
        return;
    }
    update_runs(w, g, states, &f);
}

/// [`update`] of tensors in standard layout.
fn update_runs<const K: usize>(
    w: &mut Tensor,
    g: &Tensor,
    states: [&mut Tensor; K],
    f: &(impl Fn(&mut [f32], &[f32], [&mut [f32]; K]) + Sync),
) {
    let in_order = "a tensor in standard layout";
    let (ws, gs) = (
        w.as_slice_mut().expect(in_order),
        g.as_slice().expect(in_order),
    );
    let ranges = threads::ranges(ws.len(), ws.len());
    let mut cuts = states.map(|s| cut(s.as_slice_mut().expect(in_order), 1, &ranges).into_iter());
    let parts: Vec<_> = (ranges.iter().cloned().zip(cut(ws, 1, &ranges)))
        .map(|(r, w)| {
            let st = cuts.each_mut().map(|c| c.next().expect("a part a range"));
            (r, w, st)
        })
        .collect();
    threads::run_parts(parts, |(r, w, st)| f(w, &gs[r], st));
}

/// The entries of `map` named `<prefix>.<path>`, in a fixed order.
fn named(prefix: &str, map: &HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = map
        .iter()
        .map(|(k, t)| (format!("{prefix}.{k}"), t.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn state<'a>(
    map: &'a mut HashMap<String, Tensor>,
    path: &str,
    p: &Param,
) -> Result<&'a mut Tensor> {
    let t = map
        .entry(path.to_string())
        .or_insert_with(|| Tensor::zeros(p.value().raw_dim()));
    if t.shape() != p.value().shape() {
        return Err(Error::Invalid(format!(
            "parameter `{path}` changed shape from {:?} to {:?}; make a new optimizer after reshaping a model",
            t.shape(),
            p.value().shape()
        )));
    }
    Ok(t)
}

/// Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.
#[derive(Debug, Clone)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    velocity: HashMap<String, Tensor>,
}

impl Sgd {
    /// Plain SGD.
    pub fn new(lr: f32) -> Self {
        Self {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            velocity: HashMap::new(),
        }
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }

    /// Uses Nesterov momentum.
    pub fn with_nesterov(mut self, yes: bool) -> Self {
        self.nesterov = yes;
        self
    }

    /// Sets the L2 weight decay (added to the gradient).
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut dyn Layer) -> Result<()> {
        let (lr, mom, nest, wd) = (self.lr, self.momentum, self.nesterov, self.weight_decay);
        let mut err = None;
        let vel = &mut self.velocity;
        model.visit_params_mut(&mut |path, p| {
            if err.is_some() {
                return;
            }
            p.apply_mask();
            if mom == 0.0 {
                let (w, g) = p.value_mut_and_grad();
                update(w, g, [], |w, g, []| {
                    for (w, &g) in w.iter_mut().zip(g) {
                        *w -= lr * (g + wd * *w);
                    }
                });
            } else {
                let v = match state(vel, path, p) {
                    Ok(v) => v,
                    Err(e) => {
                        err = Some(e);
                        return;
                    }
                };
                let (w, g) = p.value_mut_and_grad();
                update(w, g, [v], |w, g, [v]| {
                    for ((w, &g), v) in w.iter_mut().zip(g).zip(v) {
                        let g = g + wd * *w;
                        *v = flush(mom * *v + g);
                        *w -= lr * if nest { g + mom * *v } else { *v };
                    }
                });
            }
            p.apply_mask();
        });
        err.map_or(Ok(()), Err)
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    /// The velocities, as `velocity.<path>` (none without momentum).
    fn state(&self) -> Vec<(String, Tensor)> {
        named("velocity", &self.velocity)
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.velocity.clear();
        for (name, t) in state {
            let Some(path) = name.strip_prefix("velocity.") else {
                return Err(Error::Invalid(format!("SGD state `{name}` is unknown")));
            };
            self.velocity.insert(path.to_string(), t);
        }
        Ok(())
    }
}

/// Adam, and AdamW when weight decay is decoupled.
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
    t: i32,
}

impl Adam {
    /// Adam with betas (0.9, 0.999) and eps 1e-8.
    pub fn new(lr: f32) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            m: HashMap::new(),
            v: HashMap::new(),
            t: 0,
        }
    }

    /// AdamW: Adam with decoupled weight decay `wd`.
    pub fn adamw(lr: f32, wd: f32) -> Self {
        Self {
            weight_decay: wd,
            decoupled: true,
            ..Self::new(lr)
        }
    }

    /// Sets the betas.
    pub fn with_betas(mut self, b1: f32, b2: f32) -> Self {
        self.beta1 = b1;
        self.beta2 = b2;
        self
    }

    /// Sets L2 weight decay added to the gradient (coupled, as in classic Adam).
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self.decoupled = false;
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self, model: &mut dyn Layer) -> Result<()> {
        self.t += 1;
        let (lr, b1, b2, eps, wd, dec) = (
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
            self.decoupled,
        );
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        let (ms, vs) = (&mut self.m, &mut self.v);
        let mut err = None;
        model.visit_params_mut(&mut |path, p| {
            if err.is_some() {
                return;
            }
            p.apply_mask();
            let (m, v) = match (state(ms, path, p), state(vs, path, p)) {
                (Ok(m), Ok(v)) => (m, v),
                (Err(e), _) | (_, Err(e)) => {
                    err = Some(e);
                    return;
                }
            };
            let (w, g) = p.value_mut_and_grad();
            update(w, g, [m, v], |w, g, [m, v]| {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                    let g = if dec { g } else { g + wd * *w };
                    *m = flush(b1 * *m + (1.0 - b1) * g);
                    *v = flush(b2 * *v + (1.0 - b2) * g * g);
                    let upd = (*m / c1) / ((*v / c2).sqrt() + eps);
                    if dec {
                        *w -= lr * wd * *w;
                    }
                    *w -= lr * upd;
                }
            });
            p.apply_mask();
        });
        err.map_or(Ok(()), Err)
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = named("m", &self.m);
        v.extend(named("v", &self.v));
        // the step count, exact in an f32 up to 2^24 steps; split in two beyond
        let t = self.t as u32;
        let parts = vec![(t & 0xffff) as f32, (t >> 16) as f32];
        v.push((
            "t".into(),
            Tensor::from_shape_vec(vec![2], parts).expect("2 values"),
        ));
        v
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.m.clear();
        self.v.clear();
        for (name, t) in state {
            if name == "t" {
                let p: Vec<f32> = t.iter().copied().collect();
                if p.len() != 2 || p.iter().any(|v| !(0.0..65536.0).contains(v)) {
                    return Err(Error::Invalid(
                        "Adam step count must be two 16-bit halves".into(),
                    ));
                }
                self.t = (p[0] as u32 | ((p[1] as u32) << 16)) as i32;
            } else if let Some(path) = name.strip_prefix("m.") {
                self.m.insert(path.to_string(), t);
            } else if let Some(path) = name.strip_prefix("v.") {
                self.v.insert(path.to_string(), t);
            } else {
                return Err(Error::Invalid(format!("Adam state `{name}` is unknown")));
            }
        }
        Ok(())
    }
}

/// A learning rate as a function of training progress.
pub trait LrSchedule: Send {
    /// The learning rate at global step `step` (0-based), with `steps_per_epoch` steps an epoch.
    fn lr_at(&self, step: usize, steps_per_epoch: usize) -> f32;
}

/// A constant learning rate.
#[derive(Debug, Clone, Copy)]
pub struct ConstantLr(pub f32);

impl LrSchedule for ConstantLr {
    fn lr_at(&self, _: usize, _: usize) -> f32 {
        self.0
    }
}

/// Multiplies the rate by `gamma` every `every_epochs` epochs.
#[derive(Debug, Clone, Copy)]
pub struct StepLr {
    /// Initial rate.
    pub base: f32,
    /// Epochs between decays.
    pub every_epochs: usize,
    /// Decay factor.
    pub gamma: f32,
}

impl LrSchedule for StepLr {
    fn lr_at(&self, step: usize, spe: usize) -> f32 {
        let epoch = step / spe.max(1);
        self.base * self.gamma.powi((epoch / self.every_epochs.max(1)) as i32)
    }
}

/// Cosine decay from `base` to `min` over `epochs`, after an optional linear warm-up, updated
/// every step.
#[derive(Debug, Clone, Copy)]
pub struct CosineLr {
    /// Peak rate.
    pub base: f32,
    /// Final rate.
    pub min: f32,
    /// Total epochs of the schedule.
    pub epochs: usize,
    /// Warm-up epochs (linear from 0 to `base`).
    pub warmup_epochs: usize,
}

impl CosineLr {
    /// Cosine decay to zero over `epochs`, without warm-up.
    pub fn new(base: f32, epochs: usize) -> Self {
        Self {
            base,
            min: 0.0,
            epochs,
            warmup_epochs: 0,
        }
    }
}

impl LrSchedule for CosineLr {
    fn lr_at(&self, step: usize, spe: usize) -> f32 {
        let spe = spe.max(1);
        let warm = self.warmup_epochs * spe;
        if step < warm {
            return self.base * (step + 1) as f32 / warm as f32;
        }
        let total = (self.epochs * spe).saturating_sub(warm).max(1);
        let t = ((step - warm) as f32 / total as f32).min(1.0);
        self.min + 0.5 * (self.base - self.min) * (1.0 + (std::f32::consts::PI * t).cos())
    }
}
