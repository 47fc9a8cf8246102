//! Structured pruning: remove whole convolution filters and the channels they feed, giving a
//! smaller dense model.
//!
//! Channels are followed through the graph: BatchNorm2d, activations, pooling, dropout and
//! depthwise convolutions carry them (their per-channel state is sliced too); a one-group
//! convolution or a Linear after Flatten consumes them (its input slices are removed); residual
//! adds tie the channels of both operands, so they are pruned together; concat lays channel runs
//! side by side. Channels that reach the graph output, a channel-broadcasting merge or a
//! grouped convolution are kept. Any other layer kind that meets prunable channels is an
//! error ([`PruneError::UnknownKind`]) unless declared with
//! [`StructuredPruner::pass_through`].
//!
//! ```
//! use slimnet_core::{models, tensor, Layer};
//! use slimnet_prune::{criterion::L1Norm, structured::StructuredPruner};
//! let mut model = models::resnet_small(&mut tensor::rng(0))?;
//! let macs = model.cost(&[1, 1, 28, 28])?.macs;
//! let report = StructuredPruner::new(L1Norm).prune(&mut model, &[1, 1, 28, 28], 0.5)?;
//! assert_eq!(model.forward(&tensor::zeros(&[2, 1, 28, 28]))?.shape(), &[2, 10]);
//! assert!(report.macs.1 * 3 < macs);
//! # Ok::<(), slimnet_prune::PruneError>(())
//! ```

mod analysis;
mod surgery;

use std::fmt;

use slimnet_core::rewrite::Selector;
use slimnet_core::{Graph, Layer};

use crate::criterion::Criterion;
use crate::error::{PruneError, Result};
use crate::walk;

/// Channels that must be pruned together: the output channels of one or more convolutions whose
/// outputs meet in residual adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelGroup {
    /// The convolutions producing these channels (node names).
    pub producers: Vec<String>,
    /// Channels before.
    pub before: usize,
    /// Channels after.
    pub after: usize,
}

/// What a structured pass removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredReport {
    /// Every prunable channel group.
    pub groups: Vec<ChannelGroup>,
    /// Parameters (before, after).
    pub params: (usize, usize),
    /// MACs for the input shape (before, after).
    pub macs: (usize, usize),
}

impl fmt::Display for StructuredReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<44} {:>8} {:>8}", "channel group", "before", "after")?;
        for g in &self.groups {
            writeln!(
                f,
                "{:<44} {:>8} {:>8}",
                g.producers.join(" + "),
                g.before,
                g.after
            )?;
        }
        write!(
            f,
            "params {} -> {}, MACs {} -> {} ({:.2}x fewer)",
            self.params.0,
            self.params.1,
            self.macs.0,
            self.macs.1,
            self.macs.0 as f64 / self.macs.1.max(1) as f64
        )
    }
}

/// Removes the least important output channels of selected convolutions, and every slice of
/// every layer those channels flow into.
pub struct StructuredPruner {
    criterion: Box<dyn Criterion>,
    selector: Selector,
    pass_through: Vec<String>,
}

impl fmt::Debug for StructuredPruner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StructuredPruner")
            .field("criterion", &self.criterion.name())
            .field("selector", &self.selector)
            .field("pass_through", &self.pass_through)
            .finish()
    }
}

impl StructuredPruner {
    /// A pruner of every convolution's filters, scored by `criterion`'s filter scores.
    pub fn new(criterion: impl Criterion + 'static) -> Self {
        Self {
            criterion: Box::new(criterion),
            selector: Selector::All,
            pass_through: Vec::new(),
        }
    }

    /// Selects the convolutions whose filters may go (a group tied by adds is pruned when any
    /// of its producers is selected).
    pub fn select(mut self, selector: Selector) -> Self {
        self.selector = selector;
        self
    }

    /// Declares a layer kind that acts on every channel independently and holds no per-channel
    /// state, so channels pass through it.
    pub fn pass_through(mut self, kind: &str) -> Self {
        self.pass_through.push(kind.to_string());
        self
    }

    /// The prunable channel groups of `graph` for an input shape, unchanged.
    ///
    /// # Errors
    /// A layer kind without a propagation rule on prunable channels, or an input shape the
    /// graph rejects.
    pub fn groups(&self, graph: &Graph, input: &[usize]) -> Result<Vec<ChannelGroup>> {
        let a = analysis::analyse(graph, input, &self.pass_through)?;
        Ok(a.prunable_groups()
            .into_iter()
            .map(|(g, producers)| ChannelGroup {
                producers,
                before: a.group_len[g],
                after: a.group_len[g],
            })
            .collect())
    }

    /// Removes `ratio` of the channels of every selected group (rounded down, at least one
    /// channel kept), lowest filter scores first; the scores of tied producers are normalised
    /// to sum to one each and added.
    ///
    /// # Errors
    /// A ratio outside `[0, 1)`; a layer kind without a propagation rule (naming it); a
    /// criterion that cannot score filters; a group that would lose every channel.
    pub fn prune(
        &self,
        graph: &mut Graph,
        input: &[usize],
        ratio: f32,
    ) -> Result<StructuredReport> {
        let before = graph.cost(input)?;
        let a = analysis::analyse(graph, input, &self.pass_through)?;
        let groups = a.prunable_groups();
        if !(0.0..1.0).contains(&ratio) {
            let names: Vec<String> = groups.iter().flat_map(|g| g.1.clone()).collect();
            return Err(PruneError::Sparsity {
                layer: names.join(", "),
                sparsity: ratio,
            });
        }
        let mut keep: Vec<Option<Vec<usize>>> = vec![None; a.group_len.len()];
        let mut report = Vec::new();
        for (g, producers) in groups {
            let len = a.group_len[g];
            let selected = producers
                .iter()
                .any(|p| walk::layer(graph, p).is_some_and(|l| self.selector.matches(p, l)));
            let remove = if selected {
                (ratio as f64 * len as f64).floor() as usize
            } else {
                0
            };
            if remove >= len {
                return Err(PruneError::EmptyLayer {
                    layer: producers.join(" + "),
                    what: "channels",
                    total: len,
                });
            }
            if remove > 0 {
                let scores = self.group_scores(graph, &producers, len)?;
                let mut order: Vec<usize> = (0..len).collect();
                order.sort_by(|&x, &y| scores[x].total_cmp(&scores[y]).then(x.cmp(&y)));
                let mut kept: Vec<usize> = order[remove..].to_vec();
                kept.sort_unstable();
                keep[g] = Some(kept);
            }
            report.push(ChannelGroup {
                producers,
                before: len,
                after: len - remove,
            });
        }
        surgery::apply(graph, &a, &keep)?;
        let after = graph.cost(input)?;
        Ok(StructuredReport {
            groups: report,
            params: (before.params, after.params),
            macs: (before.macs, after.macs),
        })
    }

    fn group_scores(&self, graph: &Graph, producers: &[String], len: usize) -> Result<Vec<f32>> {
        let mut total = vec![0.0f32; len];
        for p in producers {
            let w = walk::layer(graph, p)
                .and_then(walk::weight_of)
                .ok_or_else(|| PruneError::unsupported(p, "producer without a weight"))?;
            let s = self.criterion.filter_scores(&format!("{p}.weight"), &w)?;
            if s.len() != len {
                return Err(PruneError::unsupported(
                    p,
                    format!("criterion gave {} filter scores for {len} filters", s.len()),
                ));
            }
            let norm: f32 = s
                .iter()
                .map(|v| v.abs())
                .sum::<f32>()
                .max(f32::MIN_POSITIVE);
            let scale = if producers.len() > 1 { 1.0 / norm } else { 1.0 };
            for (t, v) in total.iter_mut().zip(&s) {
                *t += v * scale;
            }
        }
        Ok(total)
    }
}
