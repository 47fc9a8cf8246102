//! Where a graph runs in int8: which nodes become int8 layers, which run on u8 codes unchanged,
//! which ReLUs fuse into the int8 layer before them, and which values get quantized.

use std::collections::{BTreeMap, BTreeSet};

use slimnet_core::graph::{Graph, Op};
use slimnet_core::layers::{Conv2d, Dropout, Flatten, Linear, MaxPool2d};
use slimnet_core::Layer;

/// What a node becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The graph input (f32).
    Input,
    /// Stays an f32 op (merges, average pools, softmax, unknown or skipped layers).
    F32,
    /// An int8 Conv2d / Linear; `relu` when a ReLU is fused into it, `codes_out` when it writes
    /// u8 codes (else f32).
    Int8 {
        /// Fused ReLU.
        relu: bool,
        /// Writes u8 codes.
        codes_out: bool,
    },
    /// Runs unchanged on u8 codes (max-pool, flatten, dropout): order-preserving ops commute
    /// with a monotone quantizer.
    Transparent,
    /// A ReLU fused into the int8 layer before it; emits no node.
    FusedRelu,
}

/// The int8 plan of a graph.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub roles: Vec<Role>,
    /// For each int8 node writing codes: the node whose f32 value equals its dequantized output
    /// (itself, or the ReLU fused into it).
    pub code_node: BTreeMap<usize, usize>,
    /// f32 nodes read by int8 layers: a Quantize node goes after each.
    pub quantize_points: BTreeSet<usize>,
}

/// Whether a layer can run on the int8 kernels.
pub(crate) fn int8_capable(l: &dyn Layer) -> bool {
    if let Some(c) = l.downcast_ref::<Conv2d>() {
        let k = c.config();
        return k.groups == 1 || (k.groups == k.in_channels && k.groups == k.out_channels);
    }
    l.downcast_ref::<Linear>().is_some()
}

fn transparent(l: &dyn Layer) -> bool {
    l.downcast_ref::<MaxPool2d>().is_some()
        || l.downcast_ref::<Flatten>().is_some()
        || l.downcast_ref::<Dropout>().is_some()
}

/// Readers of every node.
pub(crate) fn consumers(g: &Graph) -> Vec<Vec<usize>> {
    let mut c = vec![Vec::new(); g.nodes().len()];
    for (i, n) in g.nodes().iter().enumerate() {
        for j in &n.inputs {
            c[j.index()].push(i);
        }
    }
    c
}

impl Plan {
    /// Plans `g` (BatchNorm already folded); nodes named in `skip` stay f32.
    pub(crate) fn new(g: &Graph, skip: &[String]) -> Self {
        let nodes = g.nodes();
        let readers = consumers(g);
        let mut roles = vec![Role::F32; nodes.len()];
        let mut fused = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let src_codes = |roles: &[Role]| {
                n.inputs
                    .first()
                    .is_some_and(|s| !matches!(roles[s.index()], Role::F32 | Role::Input))
            };
            roles[i] = match &n.op {
                Op::Input => Role::Input,
                Op::Layer(_) if skip.contains(&n.name) => Role::F32,
                Op::Layer(l) if int8_capable(l.as_ref()) => Role::Int8 {
                    relu: false,
                    codes_out: true,
                },
                Op::Layer(l) if src_codes(&roles) && transparent(l.as_ref()) => Role::Transparent,
                Op::Layer(l) if l.kind() == "ReLU" && src_codes(&roles) => {
                    match fusion_target(g, &readers, &roles, n.inputs[0].index()) {
                        Some(t) => {
                            roles[t] = Role::Int8 {
                                relu: true,
                                codes_out: true,
                            };
                            fused.insert(t, i);
                            Role::FusedRelu
                        }
                        None => Role::F32,
                    }
                }
                _ => Role::F32,
            };
        }
        // int8 layers whose readers all want f32 write f32 directly
        for i in 0..nodes.len() {
            if let Role::Int8 { relu, .. } = roles[i] {
                let wants_codes = readers[i]
                    .iter()
                    .any(|&c| !matches!(roles[c], Role::F32 | Role::Input));
                roles[i] = Role::Int8 {
                    relu,
                    codes_out: wants_codes,
                };
            }
        }
        let mut code_node = BTreeMap::new();
        let mut quantize_points = BTreeSet::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Role::Int8 { codes_out, .. } = roles[i] {
                if codes_out {
                    code_node.insert(i, fused.get(&i).copied().unwrap_or(i));
                }
                let src = n.inputs[0].index();
                if matches!(roles[src], Role::F32 | Role::Input) {
                    quantize_points.insert(src);
                }
            }
        }
        Self {
            roles,
            code_node,
            quantize_points,
        }
    }

    /// Values to calibrate: `(node index, key, apply ReLU)`. Keys are node names; an int8 layer
    /// writing codes is observed at its own output, after its fused ReLU.
    pub(crate) fn points(&self, g: &Graph) -> Vec<(usize, String, bool)> {
        let mut v: Vec<(usize, String, bool)> = self
            .quantize_points
            .iter()
            .map(|&i| (i, g.nodes()[i].name.clone(), false))
            .collect();
        for &j in self.code_node.keys() {
            let relu = matches!(self.roles[j], Role::Int8 { relu: true, .. });
            v.push((j, g.nodes()[j].name.clone(), relu));
        }
        v.sort();
        v
    }
}

/// The int8 node a ReLU reading `src` fuses into: back through single-reader transparent
/// nodes to a single-reader int8 node without a fused ReLU.
fn fusion_target(g: &Graph, readers: &[Vec<usize>], roles: &[Role], src: usize) -> Option<usize> {
    let mut k = src;
    loop {
        match roles[k] {
            Role::Transparent if readers[k].len() == 1 => k = g.nodes()[k].inputs[0].index(),
            Role::Int8 { relu: false, .. } if readers[k].len() == 1 => return Some(k),
            _ => return None,
        }
    }
}
