//! The student designer: one light student stage per teacher stage, with the teacher's boundary
//! shapes, so each student stage can learn the teacher's `F(k-1) -> F(k)` and the stages stitch.

use slimnet_core::graph::Op;
use slimnet_core::layers::{Activation, Conv2d, Flatten, GlobalAvgPool, LinearConfig};
use slimnet_core::tensor::SlimRng;
use slimnet_core::Graph;

use crate::adapter::{make_adapter, AdapterConfig};
use crate::blocks::{basic, BlockKind};
use crate::error::{DistillError, Result};
use crate::stages::{boundary_shapes, compose, macs, split};

/// How wide the student is.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Width {
    /// Interior channels = multiplier x the widest convolution of the teacher stage.
    Multiplier(f32),
    /// The widest student whose MACs (per example, counted by [`macs`]) fit the budget.
    MacBudget(usize),
}

/// What student to build.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StudentSpec {
    /// The light block every stage is made of.
    pub block: BlockKind,
    /// Width multiplier or MAC budget.
    pub width: Width,
    /// Blocks per stage (at least one per factor-2 resolution drop of the teacher stage).
    pub blocks_per_stage: usize,
    /// Smallest interior width.
    pub min_channels: usize,
}

impl Default for StudentSpec {
    /// Depthwise-separable blocks, two per stage, width multiplier 0.5, at least 4 channels.
    fn default() -> Self {
        Self {
            block: BlockKind::DepthwiseSeparable,
            width: Width::Multiplier(0.5),
            blocks_per_stage: 2,
            min_channels: 4,
        }
    }
}

impl StudentSpec {
    /// The default spec with a width multiplier.
    pub fn width(multiplier: f32) -> Self {
        Self {
            width: Width::Multiplier(multiplier),
            ..Self::default()
        }
    }

    /// The default spec with a MAC budget per example.
    pub fn mac_budget(macs: usize) -> Self {
        Self {
            width: Width::MacBudget(macs),
            ..Self::default()
        }
    }

    /// Sets the block kind.
    pub fn with_block(mut self, block: BlockKind) -> Self {
        self.block = block;
        self
    }

    /// Sets the number of blocks per stage.
    pub fn with_blocks_per_stage(mut self, n: usize) -> Self {
        self.blocks_per_stage = n;
        self
    }
}

/// A designed student: one graph per teacher stage.
#[derive(Debug, Clone)]
pub struct Student {
    /// The stages, in order.
    pub stages: Vec<Graph>,
    /// The width multiplier used (chosen by the search for a MAC budget).
    pub multiplier: f32,
}

impl Student {
    /// The stages chained into one model ([`compose`]).
    ///
    /// # Errors
    /// As [`compose`].
    pub fn stitch(&self) -> Result<Graph> {
        compose(&self.stages)
    }

    /// MACs of one forward pass for an input shape.
    ///
    /// # Errors
    /// When the input does not fit.
    pub fn macs(&self, input: &[usize]) -> Result<usize> {
        macs(&self.stitch()?, input)
    }
}

/// What the designer reads from a teacher stage.
struct StageInfo {
    input: Vec<usize>,
    output: Vec<usize>,
    widest_conv: Option<usize>,
    /// Resolution of the last convolution's output.
    last_spatial: Option<(usize, usize)>,
    boundary_act: Option<Activation>,
}

fn analyse(stage: &Graph, input: &[usize]) -> slimnet_core::Result<StageInfo> {
    let shapes = stage.shapes(input)?;
    let mut widest = None;
    let mut last_spatial = None;
    for (node, shape) in stage.nodes().iter().zip(&shapes) {
        if let Op::Layer(l) = &node.op {
            if let Some(c) = l.as_ref().downcast_ref::<Conv2d>() {
                widest = widest.max(Some(c.config().out_channels));
                last_spatial = Some((shape[2], shape[3]));
            }
        }
    }
    let out = stage.output();
    let boundary_act = match &stage.nodes()[out.index()].op {
        Op::Layer(l) => l.as_ref().downcast_ref::<Activation>().cloned(),
        _ => None,
    };
    Ok(StageInfo {
        input: input.to_vec(),
        output: shapes[out.index()].clone(),
        widest_conv: widest,
        last_spatial,
        boundary_act,
    })
}

fn build_stage(
    info: &StageInfo,
    spec: &StudentSpec,
    multiplier: f32,
    rng: &mut SlimRng,
) -> Result<Graph> {
    let (inp, out) = (&info.input, &info.output);
    let mut g = Graph::new();
    let mut last = g.input();
    match (inp.len(), out.len(), info.widest_conv) {
        (2, 2, _) => {
            g.add_layer("fc", LinearConfig::new(inp[1], out[1]).init(rng)?, last)?;
            return Ok(g);
        }
        (4, _, None) => {
            // No convolution to make lighter: a fresh pooling / 1x1 / linear mapping.
            if out.len() == 2 {
                last = g.add_layer("gap", GlobalAvgPool::new(), last)?;
                last = g.add_layer("flatten", Flatten::new(), last)?;
                g.add_layer("fc", LinearConfig::new(inp[1], out[1]).init(rng)?, last)?;
            } else {
                let a = make_adapter(inp, out, &AdapterConfig::default(), rng)?;
                if a.nodes().len() > 1 {
                    last = g.add_layer("map", a, last)?;
                }
                if let Some(act) = &info.boundary_act {
                    g.add_layer("out_act", act.clone(), last)?;
                }
            }
            return Ok(g);
        }
        (4, 2 | 4, Some(widest)) => {
            let (hi, wi) = (inp[2], inp[3]);
            let (hl, wl) = info.last_spatial.unwrap_or((hi, wi));
            let factor = hi / hl.max(1);
            if hl == 0
                || hi % hl != 0
                || wi % wl.max(1) != 0
                || wi / wl.max(1) != factor
                || !factor.is_power_of_two()
            {
                return Err(DistillError::Config(format!(
                    "the teacher stage goes from {hi}x{wi} to {hl}x{wl}; the designer handles power-of-two reductions"
                )));
            }
            let downs = factor.trailing_zeros() as usize;
            let m = spec.block.channel_multiple();
            let hidden = ((widest as f32 * multiplier).round() as usize)
                .max(spec.min_channels)
                .div_ceil(m)
                * m;
            let n = spec.blocks_per_stage.max(downs).max(1);
            let mut cin = inp[1];
            for b in 0..n {
                let stride = if b < downs { 2 } else { 1 };
                let cout = if b + 1 == n && out.len() == 4 {
                    out[1]
                } else {
                    hidden
                };
                let name = format!("b{}", b + 1);
                last = match spec.block {
                    // a thin ResNet: the middle convolution of each block at the interior width
                    BlockKind::Basic => basic(&mut g, &name, last, cin, hidden, cout, stride, rng)?,
                    block => block.append(&mut g, &name, last, cin, cout, stride, rng)?,
                };
                cin = cout;
            }
            if out.len() == 2 {
                last = g.add_layer("gap", GlobalAvgPool::new(), last)?;
                last = g.add_layer("flatten", Flatten::new(), last)?;
                g.add_layer("fc", LinearConfig::new(hidden, out[1]).init(rng)?, last)?;
            } else if let Some(act) = &info.boundary_act {
                g.add_layer("out_act", act.clone(), last)?;
            }
            return Ok(g);
        }
        _ => {}
    }
    Err(DistillError::Config(format!(
        "the designer maps [N, C, H, W] or [N, F] stages; this one maps {inp:?} to {out:?}"
    )))
}

fn build(infos: &[StageInfo], spec: &StudentSpec, w: f32, rng: &mut SlimRng) -> Result<Vec<Graph>> {
    infos
        .iter()
        .enumerate()
        .map(|(k, info)| {
            build_stage(info, spec, w, rng).map_err(|e| match e {
                DistillError::Core(c) => DistillError::InStage {
                    stage: k + 1,
                    source: c,
                },
                DistillError::Config(r) => DistillError::InStage {
                    stage: k + 1,
                    source: slimnet_core::Error::config(r),
                },
                other => other,
            })
        })
        .collect()
}

/// Builds a light student for `teacher` split at `cuts`: stage `k` maps the teacher's boundary
/// shape `k - 1` to boundary shape `k` (checked), with `spec.block` blocks whose interior width
/// is the multiplier times the teacher stage's widest convolution; resolution drops become
/// stride-2 blocks; a stage that ends in an activation in the teacher ends in the same one.
/// For a [`Width::MacBudget`] the widest multiplier that fits is found by bisection.
///
/// # Errors
/// Bad cuts (as [`split`]), a stage the designer cannot map (named), or a budget smaller than
/// the thinnest student.
pub fn design_student(
    teacher: &Graph,
    cuts: &[&str],
    input: &[usize],
    spec: &StudentSpec,
    rng: &mut SlimRng,
) -> Result<Student> {
    let t_stages = split(teacher, cuts)?;
    let shapes = boundary_shapes(&t_stages, input)?;
    let infos = t_stages
        .iter()
        .zip(&shapes)
        .enumerate()
        .map(|(k, (s, shape))| analyse(s, shape).map_err(DistillError::in_stage(k + 1)))
        .collect::<Result<Vec<_>>>()?;
    let multiplier = match spec.width {
        Width::Multiplier(w) if w > 0.0 && w.is_finite() => w,
        Width::Multiplier(w) => {
            return Err(DistillError::Config(format!(
                "width multiplier {w} must be positive"
            )))
        }
        Width::MacBudget(budget) => {
            let cost = |w: f32| -> Result<usize> {
                let stages = build(&infos, spec, w, &mut slimnet_core::tensor::rng(0))?;
                macs(&compose(&stages)?, input)
            };
            let (mut lo, mut hi) = (1.0 / 64.0, 8.0f32);
            let smallest = cost(lo)?;
            if smallest > budget {
                return Err(DistillError::Config(format!(
                    "a MAC budget of {budget} is below the thinnest student ({smallest} MACs)"
                )));
            }
            if cost(hi)? <= budget {
                lo = hi;
            }
            for _ in 0..20 {
                let mid = 0.5 * (lo + hi);
                if cost(mid)? <= budget {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        }
    };
    let stages = build(&infos, spec, multiplier, rng)?;
    let got = boundary_shapes(&stages, input)?;
    for (k, (g, t)) in got.iter().zip(&shapes).enumerate().skip(1) {
        if g != t {
            return Err(DistillError::BoundaryShape {
                stage: k,
                side: "output",
                expected: t.clone(),
                actual: g.clone(),
                source: None,
            });
        }
    }
    Ok(Student { stages, multiplier })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::{models, tensor, Layer};

    const CUTS: [&str; 3] = ["block1_relu2", "block2_relu2", "block3_relu2"];

    #[test]
    fn student_boundaries_match_the_teacher_for_every_block() {
        let teacher = models::resnet_small(&mut tensor::rng(0)).unwrap();
        let t_shapes = boundary_shapes(&split(&teacher, &CUTS).unwrap(), &[2, 1, 28, 28]).unwrap();
        for block in [
            BlockKind::DepthwiseSeparable,
            BlockKind::InvertedResidual { expansion: 2 },
            BlockKind::Shuffle { groups: 2 },
            BlockKind::Fire,
            BlockKind::Basic,
        ] {
            for cuts in [&CUTS[..], &CUTS[1..2], &["stem_relu", "flatten"][..]] {
                let spec = StudentSpec::width(0.5).with_block(block);
                let s = design_student(&teacher, cuts, &[2, 1, 28, 28], &spec, &mut tensor::rng(1))
                    .unwrap();
                assert_eq!(s.stages.len(), cuts.len() + 1);
                let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(2));
                assert_eq!(s.stitch().unwrap().forward(&x).unwrap().shape(), &[2, 10]);
                if cuts.len() == 3 {
                    let got = boundary_shapes(&s.stages, &[2, 1, 28, 28]).unwrap();
                    assert_eq!(got, t_shapes, "{block:?}");
                }
            }
        }
    }

    #[test]
    fn a_basic_student_is_a_thin_resnet() {
        let teacher = models::resnet_small(&mut tensor::rng(0)).unwrap();
        let spec = StudentSpec::width(0.5)
            .with_block(BlockKind::Basic)
            .with_blocks_per_stage(1);
        let s =
            design_student(&teacher, &CUTS, &[1, 1, 28, 28], &spec, &mut tensor::rng(1)).unwrap();
        let adds: Vec<usize> = s
            .stages
            .iter()
            .map(|g| g.nodes().iter().filter(|n| matches!(n.op, Op::Add)).count())
            .collect();
        assert_eq!(
            adds,
            vec![1, 1, 1, 0],
            "one residual block per teacher stage"
        );
        // the middle convolutions at half the teacher's width: block 2 maps 16 -> 16 -> 32
        let mids: Vec<usize> = s.stages[..3]
            .iter()
            .map(|g| {
                let c = g.layer("b1_c1").unwrap().as_any().downcast_ref::<Conv2d>();
                c.unwrap().config().out_channels
            })
            .collect();
        assert_eq!(mids, vec![8, 16, 32]);
        let (t, m) = (
            macs(&teacher, &[1, 1, 28, 28]).unwrap(),
            s.macs(&[1, 1, 28, 28]).unwrap(),
        );
        assert!(2 * m < t, "{m} MACs against the teacher's {t}");
    }

    #[test]
    fn a_mac_budget_is_met_and_used() {
        let teacher = models::resnet_small(&mut tensor::rng(0)).unwrap();
        let t = macs(&teacher, &[1, 1, 28, 28]).unwrap();
        let budget = t / 6;
        let s = design_student(
            &teacher,
            &CUTS,
            &[1, 1, 28, 28],
            &StudentSpec::mac_budget(budget),
            &mut tensor::rng(1),
        )
        .unwrap();
        let m = s.macs(&[1, 1, 28, 28]).unwrap();
        assert!(
            m <= budget && m * 10 > budget * 7,
            "{m} for a budget of {budget}"
        );
        let wider = design_student(
            &teacher,
            &CUTS,
            &[1, 1, 28, 28],
            &StudentSpec::width(s.multiplier * 1.3),
            &mut tensor::rng(1),
        )
        .unwrap();
        assert!(wider.macs(&[1, 1, 28, 28]).unwrap() > budget);
        let e = design_student(
            &teacher,
            &CUTS,
            &[1, 1, 28, 28],
            &StudentSpec::mac_budget(1000),
            &mut tensor::rng(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("budget"), "{e}");
    }
}
