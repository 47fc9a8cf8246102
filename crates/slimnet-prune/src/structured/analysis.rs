//! Channel analysis: which channels of which nodes are the same channels, so that removing a
//! filter removes its channel everywhere it flows.

use slimnet_core::graph::{Graph, Op};
use slimnet_core::layers::{ActivationKind, Conv2d};

use crate::error::{PruneError, Result};

/// A run of `len` channels that are channels `0..len` of group `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    pub group: usize,
    pub len: usize,
}

/// The channel layout of a node's output: axis-1 segments, and for flattened outputs the number
/// of features per channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Layout {
    pub segs: Vec<Seg>,
    pub spatial: Option<usize>,
}

/// How a layer node treats channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A one-group convolution: new output channels, input channels consumed.
    Conv,
    /// A depthwise convolution: one filter per channel, channels pass through.
    Depthwise,
    /// BatchNorm2d: per-channel parameters, channels pass through.
    BatchNorm,
    /// Linear: input features consumed, outputs fixed.
    Linear,
    /// No per-channel state: channels pass through (activations, pools, dropout).
    PassThrough,
    /// Flatten: channels become runs of features.
    Flatten,
    /// Anything else whose input channels are all fixed.
    Opaque,
}

/// The analysis: groups (union-find), per-node layouts and roles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Analysis {
    parent: Vec<usize>,
    pub group_len: Vec<usize>,
    fixed: Vec<bool>,
    /// Producer layer names per group (before union).
    producers: Vec<Vec<String>>,
    pub layouts: Vec<Layout>,
    pub roles: Vec<Option<Role>>,
}

impl Analysis {
    fn new_group(&mut self, len: usize, fixed: bool, producer: Option<&str>) -> usize {
        let id = self.parent.len();
        self.parent.push(id);
        self.group_len.push(len);
        self.fixed.push(fixed);
        self.producers
            .push(producer.map(|p| vec![p.to_string()]).unwrap_or_default());
        id
    }

    pub fn root(&self, mut g: usize) -> usize {
        while self.parent[g] != g {
            g = self.parent[g];
        }
        g
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.parent[rb] = ra;
            self.fixed[ra] |= self.fixed[rb];
            let moved = std::mem::take(&mut self.producers[rb]);
            self.producers[ra].extend(moved);
        }
    }

    fn fix(&mut self, segs: &[Seg]) {
        for s in segs {
            let r = self.root(s.group);
            self.fixed[r] = true;
        }
    }

    fn any_prunable(&self, segs: &[Seg]) -> bool {
        segs.iter().any(|s| !self.fixed[self.root(s.group)])
    }

    /// Root groups that may be pruned, with their producers.
    pub fn prunable_groups(&self) -> Vec<(usize, Vec<String>)> {
        (0..self.parent.len())
            .filter(|&g| self.parent[g] == g && !self.fixed[g] && !self.producers[g].is_empty())
            .map(|g| (g, self.producers[g].clone()))
            .collect()
    }
}

fn fixed_layout(a: &mut Analysis, shape: &[usize]) -> Layout {
    let c = shape.get(1).copied().unwrap_or(0);
    Layout {
        segs: vec![Seg {
            group: a.new_group(c, true, None),
            len: c,
        }],
        spatial: None,
    }
}

/// Analyses a graph for an input shape. `pass_through` lists extra kinds that treat channels
/// independently and hold no per-channel state.
pub(crate) fn analyse(graph: &Graph, input: &[usize], pass_through: &[String]) -> Result<Analysis> {
    let shapes = graph.shapes(input)?;
    let mut a = Analysis::default();
    for (i, node) in graph.nodes().iter().enumerate() {
        let ins: Vec<Layout> = node
            .inputs
            .iter()
            .map(|j| a.layouts[j.index()].clone())
            .collect();
        let (layout, role) = match &node.op {
            Op::Input => (fixed_layout(&mut a, &shapes[i]), None),
            Op::Layer(l) => {
                let inp = &ins[0];
                let role = role_of(l.as_ref(), pass_through);
                let layout = match role {
                    Some(Role::Conv) => {
                        let c = shapes[i][1];
                        if inp.spatial.is_some() {
                            a.fix(&inp.segs);
                        }
                        Layout {
                            segs: vec![Seg {
                                group: a.new_group(c, false, Some(&node.name)),
                                len: c,
                            }],
                            spatial: None,
                        }
                    }
                    Some(Role::Depthwise | Role::BatchNorm | Role::PassThrough) => inp.clone(),
                    Some(Role::Flatten) => {
                        let s = &shapes[node.inputs[0].index()];
                        match inp.spatial {
                            Some(_) => inp.clone(),
                            None => Layout {
                                segs: inp.segs.clone(),
                                spatial: Some(s[2..].iter().product()),
                            },
                        }
                    }
                    Some(Role::Linear) => fixed_layout(&mut a, &shapes[i]),
                    Some(Role::Opaque) | None => {
                        if a.any_prunable(&inp.segs) {
                            if role.is_none() {
                                return Err(PruneError::UnknownKind {
                                    layer: node.name.clone(),
                                    kind: l.kind().to_string(),
                                });
                            }
                            a.fix(&inp.segs);
                        }
                        fixed_layout(&mut a, &shapes[i])
                    }
                };
                (layout, role)
            }
            Op::Add | Op::Mul => {
                let (x, y) = (&ins[0], &ins[1]);
                let aligned = x.spatial == y.spatial
                    && x.segs.len() == y.segs.len()
                    && x.segs.iter().zip(&y.segs).all(|(p, q)| p.len == q.len);
                if aligned {
                    for (p, q) in x.segs.iter().zip(&y.segs) {
                        a.union(p.group, q.group);
                    }
                    (x.clone(), None)
                } else {
                    // broadcast over channels or misaligned runs: keep every channel
                    a.fix(&x.segs);
                    a.fix(&y.segs);
                    let wide = if shapes[node.inputs[0].index()].get(1) == shapes[i].get(1) {
                        x.clone()
                    } else {
                        y.clone()
                    };
                    (wide, None)
                }
            }
            Op::Concat => {
                let mut segs = Vec::new();
                for l in &ins {
                    if l.spatial.is_some() {
                        a.fix(&l.segs);
                    }
                    segs.extend(l.segs.iter().copied());
                }
                (
                    Layout {
                        segs,
                        spatial: None,
                    },
                    None,
                )
            }
            _ => {
                return Err(PruneError::UnknownKind {
                    layer: node.name.clone(),
                    kind: node.op.name().to_string(),
                })
            }
        };
        a.layouts.push(layout);
        a.roles.push(role);
    }
    let out = a.layouts[graph.output().index()].segs.clone();
    a.fix(&out);
    Ok(a)
}

fn role_of(l: &dyn slimnet_core::Layer, pass_through: &[String]) -> Option<Role> {
    if let Some(c) = l.downcast_ref::<Conv2d>() {
        let cfg = c.config();
        return Some(if cfg.groups == 1 {
            Role::Conv
        } else if cfg.groups == cfg.in_channels && cfg.out_channels == cfg.in_channels {
            Role::Depthwise
        } else {
            Role::Opaque
        });
    }
    let kind = l.kind();
    Some(match kind {
        "BatchNorm2d" => Role::BatchNorm,
        "Linear" => Role::Linear,
        "Flatten" => Role::Flatten,
        "MaxPool2d" | "AvgPool2d" | "GlobalAvgPool" | "Dropout" => Role::PassThrough,
        k if ActivationKind::NAMES.contains(&k) => Role::PassThrough,
        k if pass_through.iter().any(|p| p == k) => Role::PassThrough,
        _ => return None,
    })
}
