//! Layer-wise teacher-student training for any graph: skip connections, concatenations and
//! dense (image-to-image) outputs included.
//!
//! [`stagewise`](crate::stagewise) cuts a chain into stages, so it needs cut points that
//! separate the network, which encoder-decoder networks with skip connections (FlowNet, U-Net)
//! do not have. Here the sub-tasks are the teacher's convolution *units* instead: a
//! convolution or transposed convolution with the BatchNorm and activation that follow it.
//! [`lighten`] replaces every unit by a light block with the same input and output shapes
//! (depthwise-separable), so the student keeps the teacher's graph, skips included, and every
//! student block has a sub-task of its own: map the teacher's input of the unit to the
//! teacher's output of the unit. [`train_units`] runs the teacher once over the training inputs,
//! keeps each unit's input and output, and trains every block on its pair with a mean squared
//! error, blocks side by side; the student is then fine-tuned end to end on the task's own loss
//! by the caller. With [`UnitInputs::Student`] each block learns instead from the student's own
//! feature map at its input (the blocks before it trained first), so that the stitched
//! student's errors do not add up along the graph.
//!
//! ```
//! use slimnet_core::{models, tensor, Layer};
//! use slimnet_distill::layerwise::{lighten, train_units, LayerwiseConfig};
//! let teacher = models::flownet_simple(&mut tensor::rng(0))?;
//! let light = lighten(&teacher, &[2, 32, 32], &mut tensor::rng(1))?;
//! let (mut student, units) = (light.student, light.units);
//! assert_eq!(units.len(), 11); // 6 convolutions, 4 up-convolutions, the flow predictor
//! assert!(light.kept.is_empty());
//! let macs = |g| slimnet_distill::stages::macs(g, &[1, 2, 64, 64]);
//! assert!(macs(&student)? * 5 < macs(&teacher)?);
//! let x = tensor::uniform(&[8, 2, 32, 32], 0.0, 1.0, &mut tensor::rng(2));
//! let cfg = LayerwiseConfig::default().with_epochs(2).with_batch_size(4);
//! let losses = train_units(&teacher, &mut student, &units, &x, &cfg)?;
//! assert!(losses.iter().all(|l| l.last < l.first));
//! assert_eq!(student.forward(&x)?.shape(), &[8, 2, 32, 32]);
//! # Ok::<(), slimnet_distill::DistillError>(())
//! ```

use std::f32::consts::PI;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Axis;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use slimnet_core::graph::Graph;
use slimnet_core::layers::{
    Activation, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d,
    ConvTransposeConfig,
};
use slimnet_core::loss::mse;
use slimnet_core::optim::{Adam, Optimizer};
use slimnet_core::tensor::SlimRng;
use slimnet_core::{Layer, Tensor, Value};

use crate::error::{DistillError, Result};

/// One convolution unit of the teacher and the student block that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The unit's convolution node in the teacher, and the student's block node of the same
    /// name.
    pub name: String,
    /// The teacher nodes after the convolution that belong to the unit (its BatchNorm and
    /// activation, in order); the student's block ends with its own and has none of these.
    pub tail: Vec<String>,
    /// The teacher node whose output is the unit's output (the last of `tail`, or `name`).
    pub output: String,
}

/// What [`lighten`] made.
#[derive(Debug, Clone)]
pub struct Light {
    /// The teacher's graph with each unit collapsed into one node named after its
    /// convolution; the other nodes and their weights copied.
    pub student: Graph,
    /// The units replaced, in graph order.
    pub units: Vec<Unit>,
    /// Nodes left as they are that a reader might expect replaced, with the reason.
    pub kept: Vec<(String, String)>,
}

/// Replaces every unit of `teacher` (a convolution with more than one tap and one group, or
/// a transposed convolution with one group, with the BatchNorm and activation that follow it
/// alone) by a depthwise-separable block of the same input and output shapes:
///
/// - a convolution `cin -> cout`: a depthwise convolution with the teacher's kernel, stride,
///   padding and dilation, BatchNorm (and the unit's activation), then a pointwise `1x1`
///   `cin -> cout`, then the unit's own BatchNorm and activation (a bias when it has no
///   BatchNorm);
/// - a transposed convolution: the pointwise `cin -> cout` first, at the lower resolution,
///   BatchNorm (and activation), then a depthwise transposed convolution with the teacher's
///   geometry, then the unit's BatchNorm and activation.
///
/// `example` is the shape of one input without the batch axis. Convolutions that are not
/// units (`1x1`, grouped or depthwise ones) and nested graphs (inline them first) stay as they
/// are and are listed in [`Light::kept`] with the reason.
///
/// # Errors
/// An input shape the teacher rejects, or a teacher without a unit to replace.
pub fn lighten(teacher: &Graph, example: &[usize], rng: &mut SlimRng) -> Result<Light> {
    let mut input = vec![1];
    input.extend_from_slice(example);
    teacher.output_shape(&input).map_err(DistillError::Core)?;
    let mut student = teacher.clone();
    let mut units = Vec::new();
    let mut kept = Vec::new();
    for node in teacher.nodes() {
        let Some(layer) = teacher.layer(&node.name) else {
            continue;
        };
        let block = if let Some(c) = layer.downcast_ref::<Conv2d>() {
            let cfg = c.config();
            if cfg.groups != 1 || cfg.kernel == [1, 1] {
                let why = if cfg.groups != 1 { "grouped" } else { "1x1" };
                kept.push((node.name.clone(), format!("a {why} convolution")));
                continue;
            }
            Kind::Conv(cfg.clone())
        } else if let Some(c) = layer.downcast_ref::<ConvTranspose2d>() {
            let (w, cfg) = (c.weight.value().shape(), c.config());
            if cfg.groups != 1 {
                kept.push((node.name.clone(), "a grouped transposed convolution".into()));
                continue;
            }
            Kind::Up {
                cin: w[0],
                cout: w[1],
                kernel: [w[2], w[3]],
                cfg: *cfg,
            }
        } else {
            if Graph::of(layer).is_some() {
                kept.push((node.name.clone(), "a nested graph (inline it first)".into()));
            }
            continue;
        };
        let tail = unit_tail(teacher, &node.name);
        let has_bn = tail
            .first()
            .and_then(|t| teacher.layer(t))
            .is_some_and(|l| l.downcast_ref::<BatchNorm2d>().is_some());
        let act = tail
            .iter()
            .filter_map(|t| teacher.layer(t))
            .find(|l| l.downcast_ref::<Activation>().is_some())
            .map(|l| l.clone_box());
        let net = block
            .build(has_bn, act, rng)
            .map_err(DistillError::in_stage(units.len() + 1))?;
        student
            .replace_layer(&node.name, Box::new(net))
            .map_err(DistillError::Core)?;
        for t in &tail {
            student.bypass(t).map_err(DistillError::Core)?;
        }
        units.push(Unit {
            output: tail.last().cloned().unwrap_or_else(|| node.name.clone()),
            name: node.name.clone(),
            tail,
        });
    }
    if units.is_empty() {
        return Err(DistillError::Config(
            "the teacher has no convolution unit to make light".into(),
        ));
    }
    student.output_shape(&input).map_err(DistillError::Core)?;
    Ok(Light {
        student,
        units,
        kept,
    })
}

/// The BatchNorm and activation nodes that follow `conv` alone (each the only reader of the
/// node before it).
fn unit_tail(g: &Graph, conv: &str) -> Vec<String> {
    let mut tail = Vec::new();
    let mut at = conv.to_string();
    for want_bn in [true, false] {
        let Some(id) = g.node_id(&at) else { break };
        let readers = g.consumers(id);
        let [next] = readers.as_slice() else { break };
        let name = g.nodes()[next.index()].name.clone();
        let Some(layer) = g.layer(&name) else { break };
        let is_bn = layer.downcast_ref::<BatchNorm2d>().is_some();
        let is_act = layer.downcast_ref::<Activation>().is_some();
        if (want_bn && is_bn) || is_act {
            tail.push(name.clone());
            at = name;
            if is_act {
                break;
            }
        }
    }
    tail
}

/// What a unit's convolution is.
enum Kind {
    Conv(Conv2dConfig),
    Up {
        cin: usize,
        cout: usize,
        kernel: [usize; 2],
        cfg: ConvTransposeConfig,
    },
}

impl Kind {
    /// The light block: nodes `dw`, `pw` (and `up`), each followed by `*_bn` and `*_act` as
    /// described at [`lighten`].
    fn build(
        &self,
        has_bn: bool,
        act: Option<Box<dyn Layer>>,
        rng: &mut SlimRng,
    ) -> slimnet_core::Result<Graph> {
        let mut g = Graph::new();
        let x = g.input();
        let norm_act = |g: &mut Graph, name: &str, c: usize, from, bn: bool| {
            let mut at = from;
            if bn {
                at = g.add_layer(&format!("{name}_bn"), BatchNormConfig::new(c).init()?, at)?;
            }
            if let Some(a) = &act {
                at = g.add_boxed(&format!("{name}_act"), a.clone(), at)?;
            }
            Ok::<_, slimnet_core::Error>(at)
        };
        match self {
            Kind::Conv(c) => {
                let (cin, cout) = (c.in_channels, c.out_channels);
                let mut dw = Conv2dConfig::new(cin, cin, 1)
                    .with_groups(cin)
                    .with_bias(false);
                dw.kernel = c.kernel;
                dw.stride = c.stride;
                dw.padding = c.padding;
                dw.dilation = c.dilation;
                let a = g.add_layer("dw", dw.init(rng)?, x)?;
                let a = norm_act(&mut g, "dw", cin, a, true)?;
                let pw = Conv2dConfig::new(cin, cout, 1).with_bias(!has_bn);
                let b = g.add_layer("pw", pw.init(rng)?, a)?;
                norm_act(&mut g, "pw", cout, b, has_bn)?;
            }
            Kind::Up {
                cin,
                cout,
                kernel,
                cfg,
            } => {
                if kernel[0] != kernel[1] {
                    return Err(slimnet_core::Error::config(format!(
                        "a transposed convolution with a {}x{} kernel is not made light \
                         (square kernels only)",
                        kernel[0], kernel[1]
                    )));
                }
                let pw = Conv2dConfig::new(*cin, *cout, 1).with_bias(false);
                let a = g.add_layer("pw", pw.init(rng)?, x)?;
                let a = norm_act(&mut g, "pw", *cout, a, true)?;
                let up = cfg.with_groups(*cout);
                let b = g.add_layer("up", up.init(*cout, *cout, kernel[0], rng)?, a)?;
                norm_act(&mut g, "up", *cout, b, has_bn)?;
            }
        }
        Ok(g)
    }
}

/// Settings of [`train_units`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LayerwiseConfig {
    /// Passes over the inputs for every block.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam's learning rate at the start (cosine decay to 0 over the epochs).
    pub lr: f32,
    /// Seed of the shuffles.
    pub seed: u64,
    /// Examples per teacher batch while its features are collected.
    pub teacher_batch: usize,
    /// Threads that train blocks side by side (each block's kernels get an equal share of
    /// `slimnet_kernels::threads::num_threads()`); 1 trains them one after the other.
    pub unit_threads: usize,
    /// Whether to draw a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Where each block's training input comes from.
    pub inputs: UnitInputs,
}

/// The feature map a block learns from; its target is always the teacher's unit output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitInputs {
    /// The teacher's input of the unit. Blocks are independent sub-tasks and train side by
    /// side, but once stitched each block reads the (imperfect) output of the student blocks
    /// before it, not the teacher's, so the errors add up along the graph.
    Teacher,
    /// The student's own feature map at the block's input, the blocks before it (in graph
    /// order) already trained: each block learns to map what it will read in the stitched
    /// student to the teacher's output, undoing part of the earlier blocks' errors. Blocks
    /// train one after the other ([`LayerwiseConfig::unit_threads`] is not used), and the
    /// student runs over the inputs once per block.
    Student,
}

impl Default for LayerwiseConfig {
    /// 5 epochs of batch 32 at learning rate 3e-3, seed 0, teacher batches of 64, blocks
    /// trained two at a time on the teacher's inputs ([`UnitInputs::Teacher`]), with a
    /// progress bar.
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 32,
            lr: 3e-3,
            seed: 0,
            teacher_batch: 64,
            unit_threads: 2,
            progress: true,
            inputs: UnitInputs::Teacher,
        }
    }
}

impl LayerwiseConfig {
    /// Sets the epochs.
    pub fn with_epochs(mut self, e: usize) -> Self {
        self.epochs = e;
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, b: usize) -> Self {
        self.batch_size = b;
        self
    }

    /// Sets the learning rate.
    pub fn with_lr(mut self, lr: f32) -> Self {
        self.lr = lr;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }

    /// Sets how many blocks train side by side.
    pub fn with_unit_threads(mut self, n: usize) -> Self {
        self.unit_threads = n;
        self
    }

    /// Turns the progress bar on or off.
    pub fn with_progress(mut self, p: bool) -> Self {
        self.progress = p;
        self
    }

    /// Sets where the blocks' training inputs come from.
    pub fn with_inputs(mut self, i: UnitInputs) -> Self {
        self.inputs = i;
        self
    }
}

/// The feature loss of one block: mean squared error against the teacher's unit output,
/// averaged over the first and over the last epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitLoss {
    /// The unit's name.
    pub name: String,
    /// Mean loss of the first epoch.
    pub first: f32,
    /// Mean loss of the last epoch.
    pub last: f32,
}

/// Trains every block of `student` (made by [`lighten`], or any student with one node per
/// unit that maps the unit's input to its output) on its unit's input and output in
/// `teacher`, collected by running the teacher once over `inputs` in inference mode (with
/// [`UnitInputs::Student`], the inputs are the student's own, see there). Blocks train
/// independently, [`LayerwiseConfig::unit_threads`] at a time, each with its own Adam.
///
/// # Errors
/// No inputs, a batch size or epoch count of 0, a unit missing from either graph, a block
/// that rejects its unit's shapes or whose loss becomes NaN or infinite (each named by its
/// 1-based unit number).
pub fn train_units(
    teacher: &Graph,
    student: &mut Graph,
    units: &[Unit],
    inputs: &Tensor,
    cfg: &LayerwiseConfig,
) -> Result<Vec<UnitLoss>> {
    let n = inputs.shape().first().copied().unwrap_or(0);
    if n == 0 || cfg.batch_size == 0 || cfg.epochs == 0 || cfg.teacher_batch == 0 {
        return Err(DistillError::Config(format!(
            "layer-wise training needs inputs ({n}), epochs ({}), a batch size ({}) and a \
             teacher batch ({})",
            cfg.epochs, cfg.batch_size, cfg.teacher_batch
        )));
    }
    for (k, u) in units.iter().enumerate() {
        if teacher.node_id(&u.output).is_none() || student.layer(&u.name).is_none() {
            return Err(DistillError::Config(format!(
                "unit {} `{}` is not in both the teacher and the student",
                k + 1,
                u.name
            )));
        }
    }
    let pairs = unit_features(teacher, units, inputs, cfg.teacher_batch)?;
    let mut blocks: Vec<Box<dyn Layer>> = units
        .iter()
        .map(|u| student.layer(&u.name).expect("checked above").clone_box())
        .collect();
    let bar = if cfg.progress {
        ProgressBar::new((units.len() * cfg.epochs) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("layer-wise {bar:30} {pos}/{len} epochs {elapsed_precise}")
            .expect("valid template"),
    );
    let work = |k: usize, block: &mut Box<dyn Layer>, (x, y): (&Tensor, &Tensor)| {
        train_block(
            block.as_mut(),
            x,
            y,
            cfg,
            cfg.seed.wrapping_add(k as u64),
            &bar,
        )
        .map(|(first, last)| UnitLoss {
            name: units[k].name.clone(),
            first,
            last,
        })
        .map_err(DistillError::in_stage(k + 1))
    };
    if cfg.inputs == UnitInputs::Student {
        let mut losses = Vec::with_capacity(units.len());
        for (k, (u, (_, y))) in units.iter().zip(&pairs).enumerate() {
            let x = taps(student, &[Tap::Input(&u.name)], inputs, cfg.teacher_batch)?;
            let mut block = blocks[k].clone_box();
            losses.push(work(k, &mut block, (&x[0], y))?);
            student
                .replace_layer(&u.name, block)
                .map_err(DistillError::Core)?;
        }
        bar.finish_and_clear();
        return Ok(losses);
    }
    let losses: Vec<UnitLoss> = if cfg.unit_threads > 1 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.unit_threads)
            .build()
            .map_err(|e| {
                DistillError::Config(format!(
                    "cannot start {} unit threads: {e}",
                    cfg.unit_threads
                ))
            })?;
        let per_unit = (slimnet_kernels::threads::num_threads() / cfg.unit_threads).max(1);
        pool.install(|| {
            blocks
                .par_iter_mut()
                .zip(pairs.par_iter())
                .enumerate()
                .map(|(k, (b, (x, y)))| {
                    slimnet_kernels::threads::with(per_unit, || work(k, b, (x, y)))
                })
                .collect::<Result<_>>()
        })?
    } else {
        blocks
            .iter_mut()
            .zip(&pairs)
            .enumerate()
            .map(|(k, (b, (x, y)))| work(k, b, (x, y)))
            .collect::<Result<_>>()?
    };
    bar.finish_and_clear();
    for (u, b) in units.iter().zip(blocks) {
        student
            .replace_layer(&u.name, b)
            .map_err(DistillError::Core)?;
    }
    Ok(losses)
}

/// A unit's input and output features.
type Pair = (Tensor, Tensor);

/// Each unit's input (what the teacher's convolution reads) and output, over all `inputs`.
fn unit_features(
    teacher: &Graph,
    units: &[Unit],
    inputs: &Tensor,
    chunk: usize,
) -> Result<Vec<Pair>> {
    let wanted: Vec<Tap> = units
        .iter()
        .flat_map(|u| [Tap::Input(&u.name), Tap::Output(&u.output)])
        .collect();
    let mut maps = taps(teacher, &wanted, inputs, chunk)?.into_iter();
    let mut pairs = Vec::with_capacity(units.len());
    while let (Some(x), Some(y)) = (maps.next(), maps.next()) {
        pairs.push((x, y));
    }
    Ok(pairs)
}

/// A feature map of a graph node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tap<'a> {
    /// The node's (first) input.
    Input(&'a str),
    /// The node's output.
    Output(&'a str),
}

/// The feature maps `wanted` of `graph` over all `inputs`, run in inference mode `chunk`
/// examples at a time; one tensor per tap, in order.
fn taps(graph: &Graph, wanted: &[Tap], inputs: &Tensor, chunk: usize) -> Result<Vec<Tensor>> {
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); wanted.len()];
    let n = inputs.shape()[0];
    for start in (0..n).step_by(chunk) {
        let x = inputs
            .slice_axis(Axis(0), (start..(start + chunk).min(n)).into())
            .to_owned();
        graph
            .forward_tapped(&x, &mut |path, vals, out| {
                for (tap, part) in wanted.iter().zip(parts.iter_mut()) {
                    match *tap {
                        Tap::Input(name) if name == path => {
                            let v = vals.first().copied().cloned().map(Value::into_f32);
                            part.push(v.ok_or_else(|| {
                                slimnet_core::Error::Graph(format!("`{path}` has no input"))
                            })?);
                        }
                        Tap::Output(name) if name == path => part.push(out.clone().into_f32()),
                        _ => {}
                    }
                }
                Ok(())
            })
            .map_err(DistillError::Core)?;
    }
    parts
        .into_iter()
        .map(|p| {
            let views: Vec<_> = p.iter().map(|t| t.view()).collect();
            ndarray::concatenate(Axis(0), &views)
                .map_err(|e| DistillError::Config(format!("cannot join feature maps: {e}")))
        })
        .collect()
}

/// Trains `block` on `x -> y`; returns the mean loss of the first and the last epoch.
fn train_block(
    block: &mut dyn Layer,
    x: &Tensor,
    y: &Tensor,
    cfg: &LayerwiseConfig,
    seed: u64,
    bar: &ProgressBar,
) -> slimnet_core::Result<(f32, f32)> {
    let mut opt = Adam::new(cfg.lr);
    let mut rng = slimnet_core::tensor::rng(seed);
    let mut order: Vec<usize> = (0..x.shape()[0]).collect();
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        opt.set_lr(cfg.lr * 0.5 * (1.0 + (PI * epoch as f32 / cfg.epochs as f32).cos()));
        let mut sum = 0.0f64;
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            let out = block.forward_train(&x.select(Axis(0), idx))?;
            let (loss, grad) = mse(&out, &y.select(Axis(0), idx))?;
            if !loss.is_finite() {
                return Err(slimnet_core::Error::NonFinite {
                    what: "layer-wise feature loss".into(),
                    value: loss,
                    epoch,
                    batch: b,
                });
            }
            block.backward(&grad)?;
            opt.step(block)?;
            block.zero_grad();
            sum += loss as f64 * idx.len() as f64;
        }
        let mean = (sum / order.len() as f64) as f32;
        if epoch == 0 {
            first = mean;
        }
        last = mean;
        bar.inc(1);
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::{models, tensor};

    /// LeNet-5's convolutions (followed by pooling, not BatchNorm) become blocks with a bias
    /// and no tail; the rest of the graph is the teacher's, weights included.
    #[test]
    fn units_without_batchnorm_keep_the_rest_of_the_graph() {
        let teacher = models::lenet5(&mut tensor::rng(0)).unwrap();
        let light = lighten(&teacher, &[1, 28, 28], &mut tensor::rng(1)).unwrap();
        let (student, units) = (light.student, light.units);
        let names: Vec<_> = units
            .iter()
            .map(|u| (u.name.as_str(), u.tail.len()))
            .collect();
        assert_eq!(names, [("conv1", 0), ("conv2", 0)]);
        assert_eq!(student.nodes().len(), teacher.nodes().len());
        let block = Graph::of(student.layer("conv2").unwrap()).unwrap();
        let kinds: Vec<_> = block.nodes()[1..]
            .iter()
            .map(|n| block.layer(&n.name).unwrap().kind())
            .collect();
        assert_eq!(kinds, ["Conv2d", "BatchNorm2d", "Conv2d"]);
        let fc = |g: &Graph| {
            let mut w = Vec::new();
            g.visit_params(&mut |path, p| {
                if path.starts_with("fc") {
                    w.extend(p.value().iter().copied())
                }
            });
            w
        };
        assert_eq!(fc(&student), fc(&teacher));
        let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(2));
        assert_eq!(student.forward(&x).unwrap().shape(), &[2, 10]);
    }

    /// A 1x1 convolution and a depthwise one are kept and listed, not replaced.
    #[test]
    fn convolutions_that_are_not_units_are_listed() {
        let mut r = tensor::rng(0);
        let teacher = slimnet_core::Sequential::new()
            .push(
                "conv",
                Conv2dConfig::new(3, 8, 3)
                    .with_padding(1)
                    .init(&mut r)
                    .unwrap(),
            )
            .push(
                "dw",
                Conv2dConfig::new(8, 8, 3)
                    .with_padding(1)
                    .with_groups(8)
                    .init(&mut r)
                    .unwrap(),
            )
            .push("pw", Conv2dConfig::new(8, 4, 1).init(&mut r).unwrap())
            .build()
            .unwrap();
        let light = lighten(&teacher, &[3, 8, 8], &mut r).unwrap();
        assert_eq!(light.units.len(), 1);
        assert_eq!(
            light.kept,
            [
                ("dw".to_string(), "a grouped convolution".to_string()),
                ("pw".to_string(), "a 1x1 convolution".to_string())
            ]
        );
    }

    #[test]
    fn a_teacher_without_convolutions_is_refused() {
        let teacher = models::lenet300(&mut tensor::rng(0)).unwrap();
        let e = lighten(&teacher, &[1, 28, 28], &mut tensor::rng(1)).unwrap_err();
        assert!(e.to_string().contains("no convolution unit"), "{e}");
        let e = lighten(&teacher, &[3, 5], &mut tensor::rng(1)).unwrap_err();
        assert!(matches!(e, DistillError::Core(_)), "{e}");
    }

    #[test]
    fn bad_units_and_settings_are_named() {
        let teacher = models::lenet5(&mut tensor::rng(0)).unwrap();
        let light = lighten(&teacher, &[1, 28, 28], &mut tensor::rng(1)).unwrap();
        let (mut student, mut units) = (light.student, light.units);
        let x = tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(2));
        let cfg = LayerwiseConfig::default().with_progress(false);
        let e = train_units(
            &teacher,
            &mut student,
            &units,
            &x,
            &cfg.clone().with_epochs(0),
        );
        assert!(e.unwrap_err().to_string().contains("epochs (0)"));
        units[1].name = "conv9".into();
        let e = train_units(&teacher, &mut student, &units, &x, &cfg).unwrap_err();
        assert!(e.to_string().contains("unit 2 `conv9`"), "{e}");
    }

    /// Trained alone or side by side, the blocks end with the same weights (each has its own
    /// seed and optimizer), and training moves them towards the teacher.
    #[test]
    fn blocks_train_the_same_one_at_a_time_or_side_by_side() {
        let teacher = models::lenet5(&mut tensor::rng(0)).unwrap();
        let light = lighten(&teacher, &[1, 28, 28], &mut tensor::rng(1)).unwrap();
        let (student, units) = (light.student, light.units);
        let x = tensor::uniform(&[32, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(2));
        let cfg = LayerwiseConfig::default()
            .with_epochs(10)
            .with_batch_size(8)
            .with_lr(1e-2)
            .with_progress(false);
        let run = |threads| {
            let mut s = student.clone();
            let cfg = cfg.clone().with_unit_threads(threads);
            // one kernel thread per block either way (results depend on the thread count)
            let l = slimnet_kernels::threads::with(threads, || {
                train_units(&teacher, &mut s, &units, &x, &cfg).unwrap()
            });
            (s, l)
        };
        let ((a, la), (b, lb)) = (run(1), run(2));
        assert_eq!(la, lb);
        assert!(la.iter().all(|l| l.last < 0.6 * l.first), "{la:?}");
        let w = |g: &Graph| {
            let mut all = Vec::new();
            g.visit_params(&mut |_, p| all.extend(p.value().iter().copied()));
            all
        };
        assert_eq!(w(&a), w(&b));
        assert_ne!(w(&a), w(&student));
    }

    /// With the student's own inputs the first block (which reads the graph input either way)
    /// trains as with the teacher's, and the next block learns from what it reads once
    /// stitched: the stitched student's last unit output ends closer to the teacher's.
    #[test]
    fn student_inputs_train_blocks_on_what_they_will_read() {
        let teacher = models::lenet5(&mut tensor::rng(0)).unwrap();
        let light = lighten(&teacher, &[1, 28, 28], &mut tensor::rng(1)).unwrap();
        let (student, units) = (light.student, light.units);
        let x = tensor::uniform(&[64, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(2));
        let run = |inputs| {
            let cfg = LayerwiseConfig::default()
                .with_epochs(10)
                .with_batch_size(8)
                .with_lr(1e-2)
                .with_unit_threads(1)
                .with_inputs(inputs)
                .with_progress(false);
            let mut s = student.clone();
            let l = slimnet_kernels::threads::with(1, || {
                train_units(&teacher, &mut s, &units, &x, &cfg).unwrap()
            });
            (s, l)
        };
        let ((a, la), (b, lb)) = (run(UnitInputs::Teacher), run(UnitInputs::Student));
        assert_eq!(la[0], lb[0]);
        assert_ne!(la[1], lb[1]);
        let (first, last) = (&units[0], &units[units.len() - 1]);
        let y = |g: &Graph, tap| taps(g, &[tap], &x, 16).unwrap().remove(0);
        assert_eq!(
            y(&a, Tap::Output(&first.name)),
            y(&b, Tap::Output(&first.name))
        );
        let target = y(&teacher, Tap::Output(&last.output));
        let err = |g: &Graph| mse(&y(g, Tap::Output(&last.name)), &target).unwrap().0;
        let (ea, eb) = (err(&a), err(&b));
        assert!(eb < 0.9 * ea, "teacher inputs {ea}, student inputs {eb}");
    }
}
