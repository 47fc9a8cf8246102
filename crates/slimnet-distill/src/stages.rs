//! Splitting a model into stages at cut points, composing stages back, and counting MACs
//! through nested graphs.

use slimnet_core::graph::{NodeId, Op};
use slimnet_core::{Graph, Layer};

use crate::error::{DistillError, Result};

/// Node indices of the cuts, validated: `[input, c1, ..., c(K-1), output]`.
fn cut_indices(graph: &Graph, cuts: &[&str]) -> Result<Vec<usize>> {
    let out = graph.output().index();
    let mut idx = vec![0];
    for (k, name) in cuts.iter().enumerate() {
        let stage = k + 1;
        let id = graph
            .node_id(name)
            .filter(|id| id.index() <= out)
            .ok_or_else(|| DistillError::UnknownCut {
                stage,
                name: name.to_string(),
            })?;
        let prev = *idx.last().expect("starts with the input");
        if id.index() <= prev {
            let before = &graph.nodes()[prev].name;
            return Err(DistillError::EmptyStage {
                stage,
                reason: format!("cut `{name}` does not come after `{before}`"),
            });
        }
        idx.push(id.index());
    }
    if *idx.last().expect("non-empty") == out && !cuts.is_empty() {
        return Err(DistillError::EmptyStage {
            stage: cuts.len() + 1,
            reason: format!(
                "the last cut `{}` is the output node, so nothing is left after it",
                cuts[cuts.len() - 1]
            ),
        });
    }
    if out == 0 {
        return Err(DistillError::EmptyStage {
            stage: 1,
            reason: "the model's output is its input".into(),
        });
    }
    idx.push(out);
    // A cut separates the graph when no node after it reads a node before it.
    let nodes = graph.nodes();
    for (k, &c) in idx.iter().enumerate().take(idx.len() - 1).skip(1) {
        for (j, node) in nodes.iter().enumerate().take(out + 1).skip(c + 1) {
            if let Some(i) = node.inputs.iter().find(|i| i.index() < c) {
                return Err(DistillError::NotACut {
                    stage: k,
                    name: nodes[c].name.clone(),
                    reader: nodes[j].name.clone(),
                    read: nodes[i.index()].name.clone(),
                });
            }
        }
    }
    Ok(idx)
}

/// Splits `graph` at the named cut nodes into `cuts.len() + 1` stages. Stage `k` reads the
/// value of cut `k - 1` (the model input for the first) and outputs the value of cut `k` (the
/// model output for the last); nodes keep their names, so parameter paths stay the same.
/// Composing the stages ([`compose`]) computes exactly what the model computes.
///
/// ```
/// use slimnet_core::{models, tensor, Layer};
/// use slimnet_distill::stages::{compose, split};
/// let teacher = models::resnet_small(&mut tensor::rng(0))?;
/// let stages = split(&teacher, &["block1_relu2", "block2_relu2"])?;
/// assert_eq!(stages.len(), 3);
/// assert_eq!(stages[1].output_shape(&[1, 16, 28, 28])?, vec![1, 32, 14, 14]);
/// let x = tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// let y = compose(&stages)?.forward(&x)?;
/// assert!(tensor::max_abs_diff(&y, &teacher.forward(&x)?) < 1e-5);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// [`DistillError::UnknownCut`] for a name that is no node (or comes after the output),
/// [`DistillError::EmptyStage`] for cuts out of order, repeated or at the output,
/// [`DistillError::NotACut`] when a connection bypasses a cut (e.g. a cut inside a residual block);
/// each names the stage.
pub fn split(graph: &Graph, cuts: &[&str]) -> Result<Vec<Graph>> {
    let idx = cut_indices(graph, cuts)?;
    let ids: Vec<NodeId> = idx
        .iter()
        .map(|&i| {
            graph
                .node_id(&graph.nodes()[i].name)
                .expect("a node of the graph")
        })
        .collect();
    let mut stages = Vec::with_capacity(idx.len() - 1);
    for (k, w) in ids.windows(2).enumerate() {
        let g = graph
            .slice(w[0], w[1])
            .map_err(DistillError::in_stage(k + 1))?;
        stages.push(g);
    }
    Ok(stages)
}

/// Chains stages into one model whose nodes `stage1`, `stage2`, ... are the stage graphs.
///
/// # Errors
/// [`DistillError::EmptyStage`] when there are no stages.
pub fn compose(stages: &[Graph]) -> Result<Graph> {
    if stages.is_empty() {
        return Err(DistillError::EmptyStage {
            stage: 1,
            reason: "no stages to compose".into(),
        });
    }
    let mut g = Graph::new();
    let mut last = g.input();
    for (k, s) in stages.iter().enumerate() {
        last = g
            .add_layer(&format!("stage{}", k + 1), s.clone(), last)
            .map_err(DistillError::in_stage(k + 1))?;
    }
    Ok(g)
}

/// The boundary shapes of a chain of stages for an input shape: `[input, after stage 1, ...]`.
///
/// # Errors
/// [`DistillError::InStage`] for the first stage that rejects its input.
pub fn boundary_shapes(stages: &[Graph], input: &[usize]) -> Result<Vec<Vec<usize>>> {
    let mut shapes = vec![input.to_vec()];
    for (k, s) in stages.iter().enumerate() {
        let next = s
            .output_shape(shapes.last().expect("non-empty"))
            .map_err(DistillError::in_stage(k + 1))?;
        shapes.push(next);
    }
    Ok(shapes)
}

/// Multiply-accumulates of one forward pass, counted like
/// [`slimnet_core::summary::Summary::macs`] (add and mul merges count one per output element)
/// and recursing into nested graphs, so a composed student and a flat teacher compare fairly.
///
/// # Errors
/// When the input shape does not fit.
pub fn macs(graph: &Graph, input: &[usize]) -> Result<usize> {
    let shapes = graph.shapes(input)?;
    let mut total = 0;
    for (i, n) in graph.nodes().iter().enumerate().skip(1) {
        total += match &n.op {
            Op::Layer(l) => {
                let x = &shapes[n.inputs[0].index()];
                match Graph::of(l.as_ref()) {
                    Some(inner) => macs(inner, x)?,
                    None => l.cost(x).map_err(|e| e.in_layer(&n.name))?.macs,
                }
            }
            op => op.merge_macs(&shapes[i], &shapes[n.inputs[0].index()]),
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::summary::Summary;
    use slimnet_core::{models, tensor};

    fn teacher() -> Graph {
        models::resnet_small(&mut tensor::rng(3)).unwrap()
    }

    #[test]
    fn composed_stages_reproduce_the_teacher() {
        let t = teacher();
        let x = tensor::uniform(&[3, 1, 28, 28], -1.0, 2.0, &mut tensor::rng(4));
        let want = t.forward(&x).unwrap();
        for cuts in [
            vec![],
            vec!["stem_relu"],
            vec!["block1_relu2", "block2_relu2", "block3_relu2"],
            vec![
                "stem_relu",
                "block1_relu2",
                "block2_relu2",
                "block3_relu2",
                "flatten",
            ],
        ] {
            let stages = split(&t, &cuts).unwrap();
            assert_eq!(stages.len(), cuts.len() + 1);
            let got = compose(&stages).unwrap().forward(&x).unwrap();
            assert!(tensor::max_abs_diff(&got, &want) < 1e-5, "{cuts:?}");
            // Every stage's output is the teacher's value at its cut.
            let mut v = x.clone();
            for (k, s) in stages.iter().enumerate() {
                v = s.forward(&v).unwrap();
                if let Some(c) = cuts.get(k) {
                    let mut prefix = t.clone();
                    prefix.set_output(t.node_id(c).unwrap()).unwrap();
                    assert!(tensor::max_abs_diff(&v, &prefix.forward(&x).unwrap()) < 1e-5);
                }
            }
        }
    }

    #[test]
    fn macs_agree_with_the_summary() {
        let t = teacher();
        let flat = Summary::of(&t, &[1, 1, 28, 28]).unwrap().macs();
        assert_eq!(macs(&t, &[1, 1, 28, 28]).unwrap(), flat);
        let stages = split(&t, &["block1_relu2", "block2_relu2"]).unwrap();
        assert_eq!(
            macs(&compose(&stages).unwrap(), &[1, 1, 28, 28]).unwrap(),
            flat
        );
    }

    #[test]
    fn bad_cuts_name_the_stage() {
        let t = teacher();
        let e = split(&t, &["block1_relu2", "nope"]).unwrap_err();
        assert!(
            matches!(e, DistillError::UnknownCut { stage: 2, .. }),
            "{e}"
        );
        let e = split(&t, &["block2_relu2", "block1_relu2"]).unwrap_err();
        assert!(
            matches!(e, DistillError::EmptyStage { stage: 2, .. }),
            "{e}"
        );
        let e = split(&t, &["block1_relu2", "block1_relu2"]).unwrap_err();
        assert!(
            matches!(e, DistillError::EmptyStage { stage: 2, .. }),
            "{e}"
        );
        let e = split(&t, &["block1_relu2", "fc"]).unwrap_err();
        assert!(
            matches!(e, DistillError::EmptyStage { stage: 3, .. }),
            "{e}"
        );
        let e = split(&t, &["input"]).unwrap_err();
        assert!(
            matches!(e, DistillError::EmptyStage { stage: 1, .. }),
            "{e}"
        );
        // Inside block 2 the shortcut bypasses the cut.
        let e = split(&t, &["block1_relu2", "block2_relu1"]).unwrap_err();
        assert!(matches!(e, DistillError::NotACut { stage: 2, .. }), "{e}");
        assert!(e.to_string().contains("block2_relu1"), "{e}");
        assert!(compose(&[]).is_err());
    }
}
