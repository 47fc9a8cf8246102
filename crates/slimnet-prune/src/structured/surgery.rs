//! Slicing layers once the kept channels of every group are known.

use ndarray::Axis;
use slimnet_core::graph::Graph;
use slimnet_core::layers::{BatchNorm2d, Conv2d, Linear};
use slimnet_core::{Layer, Param, Tensor};

use super::analysis::{Analysis, Layout, Role};
use crate::error::{PruneError, Result};

/// Kept channel indices of a layout, and whether any channel goes.
fn kept(a: &Analysis, layout: &Layout, keep: &[Option<Vec<usize>>]) -> (Vec<usize>, bool) {
    let (mut out, mut changed, mut offset) = (Vec::new(), false, 0);
    for s in &layout.segs {
        match &keep[a.root(s.group)] {
            Some(k) => {
                out.extend(k.iter().map(|c| offset + c));
                changed = true;
            }
            None => out.extend(offset..offset + s.len),
        }
        offset += s.len;
    }
    (out, changed)
}

/// A parameter with its value (and mask) restricted to `idx` along `axis`.
fn slice_param(p: &Param, axis: usize, idx: &[usize]) -> (Tensor, Option<Tensor>) {
    (
        p.value().select(Axis(axis), idx),
        p.mask().map(|m| m.select(Axis(axis), idx)),
    )
}

fn with_mask(path: &str, p: &mut Param, mask: Option<Tensor>) -> Result<()> {
    if let Some(m) = mask {
        p.set_mask(m)
            .map_err(|e| PruneError::unsupported(path, e.to_string()))?;
    }
    Ok(())
}

fn conv(path: &str, c: &Conv2d, inp: &[usize], out: &[usize], depthwise: bool) -> Result<Conv2d> {
    let mut cfg = c.config().clone();
    let (w, wm) = slice_param(&c.weight, 0, out);
    let (w, wm) = if depthwise {
        cfg.groups = out.len();
        (w, wm)
    } else {
        (w.select(Axis(1), inp), wm.map(|m| m.select(Axis(1), inp)))
    };
    cfg.in_channels = inp.len();
    cfg.out_channels = out.len();
    let b = c.bias.as_ref().map(|b| b.value().select(Axis(0), out));
    let mut n = Conv2d::from_parts(cfg, w, b).map_err(|e| e.in_layer(path))?;
    with_mask(path, &mut n.weight, wm)?;
    Ok(n)
}

fn batchnorm(path: &str, bn: &BatchNorm2d, k: &[usize]) -> Result<BatchNorm2d> {
    let mut cfg = bn.config().clone();
    cfg.num_features = k.len();
    let sel = |t: &Tensor| t.select(Axis(0), k);
    let bn = BatchNorm2d::from_parts(
        cfg,
        sel(bn.weight.value()),
        sel(bn.bias.value()),
        sel(&bn.running_mean),
        sel(&bn.running_var),
    );
    Ok(bn.map_err(|e| e.in_layer(path))?)
}

fn linear(path: &str, l: &Linear, cols: &[usize]) -> Result<Linear> {
    let mut cfg = l.config().clone();
    cfg.in_features = cols.len();
    let (w, wm) = slice_param(&l.weight, 1, cols);
    let b = l.bias.as_ref().map(|b| b.value().clone());
    let mut n = Linear::from_parts(cfg, w, b).map_err(|e| e.in_layer(path))?;
    with_mask(path, &mut n.weight, wm)?;
    Ok(n)
}

fn wrong_type(path: &str, kind: &str) -> PruneError {
    PruneError::UnknownKind {
        layer: path.to_string(),
        kind: kind.to_string(),
    }
}

/// Replaces every layer whose channels change.
pub(crate) fn apply(graph: &mut Graph, a: &Analysis, keep: &[Option<Vec<usize>>]) -> Result<()> {
    let mut edits: Vec<(String, Box<dyn Layer>)> = Vec::new();
    for (i, node) in graph.nodes().iter().enumerate() {
        let slimnet_core::graph::Op::Layer(l) = &node.op else {
            continue;
        };
        let Some(role) = a.roles[i] else { continue };
        let path = node.name.as_str();
        let in_layout = &a.layouts[node.inputs[0].index()];
        let (inp, in_changed) = kept(a, in_layout, keep);
        let (out, out_changed) = kept(a, &a.layouts[i], keep);
        let new: Box<dyn Layer> = match role {
            Role::Conv | Role::Depthwise if in_changed || out_changed => {
                let c = l
                    .downcast_ref::<Conv2d>()
                    .ok_or_else(|| wrong_type(path, l.kind()))?;
                Box::new(conv(path, c, &inp, &out, role == Role::Depthwise)?)
            }
            Role::BatchNorm if out_changed => {
                let bn = l
                    .downcast_ref::<BatchNorm2d>()
                    .ok_or_else(|| wrong_type(path, l.kind()))?;
                Box::new(batchnorm(path, bn, &out)?)
            }
            Role::Linear if in_changed => {
                let lin = l
                    .downcast_ref::<Linear>()
                    .ok_or_else(|| wrong_type(path, l.kind()))?;
                let cols: Vec<usize> = match in_layout.spatial {
                    Some(s) => inp.iter().flat_map(|&c| c * s..(c + 1) * s).collect(),
                    None => inp,
                };
                Box::new(linear(path, lin, &cols)?)
            }
            _ => continue,
        };
        edits.push((node.name.clone(), new));
    }
    for (name, layer) in edits {
        graph.replace_layer(&name, layer)?;
    }
    Ok(())
}
