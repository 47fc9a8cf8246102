//! Unstructured, block and N:M pruning with masks kept on each weight's [`Param`].

use std::fmt;

use slimnet_core::data::Dataset;
use slimnet_core::loss::softmax_cross_entropy;
use slimnet_core::rewrite::Selector;
use slimnet_core::{Graph, Layer, Tensor};

use crate::criterion::Criterion;
use crate::error::{PruneError, Result};
use crate::pattern::{self, LayerScores, Pattern};
use crate::walk;

/// Whether each layer reaches the sparsity on its own or one threshold spans all layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scope {
    /// Every selected layer is pruned to the sparsity.
    #[default]
    Layer,
    /// One score threshold across the selected layers; their total reaches the sparsity (scores
    /// must be comparable across layers, as magnitudes are).
    Global,
}

/// Prunes the `weight` of selected layers by a [`Criterion`], setting 0/1 masks on their
/// parameters. Masks hold during fine-tuning (optimizers zero masked weights and gradients) and
/// only grow: weights pruned before stay pruned.
///
/// ```
/// use slimnet_core::{models, tensor};
/// use slimnet_prune::{criterion::Magnitude, Pruner, Scope};
/// let mut model = models::lenet300(&mut tensor::rng(0))?;
/// let report = Pruner::new(Magnitude).scope(Scope::Global).prune(&mut model, 0.9)?;
/// assert!((report.sparsity() - 0.9).abs() < 1e-3);
/// println!("{report}");
/// # Ok::<(), slimnet_prune::PruneError>(())
/// ```
pub struct Pruner {
    criterion: Box<dyn Criterion>,
    selector: Selector,
    scope: Scope,
    pattern: Pattern,
}

impl fmt::Debug for Pruner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pruner")
            .field("criterion", &self.criterion.name())
            .field("selector", &self.selector)
            .field("scope", &self.scope)
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl Pruner {
    /// A pruner for every `Conv2d` and `Linear` layer, per-layer scope, single weights.
    pub fn new(criterion: impl Criterion + 'static) -> Self {
        Self {
            criterion: Box::new(criterion),
            selector: conv_and_linear(),
            scope: Scope::Layer,
            pattern: Pattern::Unstructured,
        }
    }

    /// Selects the layers to prune (by path, kind or predicate); only layers with a `weight` of
    /// rank >= 2 are ever pruned.
    pub fn select(mut self, selector: Selector) -> Self {
        self.selector = selector;
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Sets the pattern.
    pub fn pattern(mut self, pattern: Pattern) -> Self {
        self.pattern = pattern;
        self
    }

    /// The criterion.
    pub fn criterion(&self) -> &dyn Criterion {
        self.criterion.as_ref()
    }

    /// The selected layer paths of `graph`.
    ///
    /// # Errors
    /// A selected deploy layer (int8, sparse, shared weights) that has no float weight to
    /// mask.
    pub fn layers(&self, graph: &Graph) -> Result<Vec<String>> {
        walk::prunable_layers_checked(graph, &self.selector)
    }

    /// The masks pruning would set, as `(weight path, mask)` pairs, without touching `graph`.
    ///
    /// # Errors
    /// A sparsity outside `[0, 1)` (or, for N:M, other than `1 - n/m`), a pattern that does not
    /// fit a layer, a criterion that cannot score a layer, or a pruning that would empty a
    /// layer — each naming the layer; a selection without any layer to prune, or with a
    /// deploy layer that cannot be pruned.
    pub fn masks(&self, graph: &Graph, sparsity: f32) -> Result<Vec<(String, Tensor)>> {
        let paths = self.layers(graph)?;
        if paths.is_empty() {
            // say where the weights went when the model holds deploy layers
            walk::prunable_layers_checked(graph, &Selector::All)?;
            return Err(PruneError::unsupported(
                "",
                format!(
                    "no selected layer has a weight to prune (selector {:?})",
                    self.selector
                ),
            ));
        }
        compute_masks(
            graph,
            &paths,
            self.criterion.as_ref(),
            self.scope,
            self.pattern,
            sparsity,
        )
    }

    /// Computes the masks and sets them; returns the sparsity of the selected layers after.
    ///
    /// # Errors
    /// As [`masks`](Self::masks).
    pub fn prune(&self, graph: &mut Graph, sparsity: f32) -> Result<SparsityReport> {
        let masks = self.masks(graph, sparsity)?;
        apply_masks(graph, &masks)?;
        Ok(sparsity_report(graph, &self.selector))
    }
}

/// The masks of the layers at `paths` for one criterion, scope, pattern and sparsity.
pub(crate) fn compute_masks(
    graph: &Graph,
    paths: &[String],
    criterion: &dyn Criterion,
    scope: Scope,
    pattern: Pattern,
    sparsity: f32,
) -> Result<Vec<(String, Tensor)>> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(PruneError::Sparsity {
            layer: paths.join(", "),
            sparsity,
        });
    }
    if let Pattern::NM { n, m } = pattern {
        let want = 1.0 - n as f32 / m as f32;
        if (sparsity - want).abs() > 1e-6 {
            return Err(PruneError::Sparsity {
                layer: format!("{} ({n}:{m} pattern fixes it at {want})", paths.join(", ")),
                sparsity,
            });
        }
    }
    let mut layers = Vec::with_capacity(paths.len());
    let mut shapes = Vec::with_capacity(paths.len());
    for path in paths {
        let l = walk::layer(graph, path).expect("listed by prunable_layers");
        let p = walk::weight_of(l).expect("prunable layers have a weight");
        let wpath = format!("{path}.weight");
        let s = criterion.weight_scores(&wpath, &p)?;
        if s.shape() != p.value().shape() {
            return Err(PruneError::MaskShape {
                layer: wpath,
                expected: p.value().shape().to_vec(),
                actual: s.shape().to_vec(),
            });
        }
        let rows = p.value().shape()[0];
        let cols = p.len() / rows.max(1);
        pattern::check_fit(pattern, &wpath, rows, cols)?;
        let mut scores: Vec<f32> = s.iter().copied().collect();
        if let Some(m) = p.mask() {
            for (s, k) in scores.iter_mut().zip(m.iter()) {
                if *k == 0.0 {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        // NaN scores would make the order meaningless; treat them as least important
        scores
            .iter_mut()
            .filter(|s| s.is_nan())
            .for_each(|s| *s = f32::NEG_INFINITY);
        shapes.push(p.value().shape().to_vec());
        layers.push(LayerScores {
            path: wpath,
            rows,
            cols,
            scores,
        });
    }
    let global = scope == Scope::Global;
    let keeps: Vec<Vec<bool>> = match pattern {
        Pattern::Unstructured => pattern::lowest_keep(&layers, sparsity, global)?,
        Pattern::Block { rows, cols } => {
            let blocks: Vec<LayerScores> = layers
                .iter()
                .map(|l| pattern::block_scores(l, rows, cols))
                .collect();
            let bk = pattern::lowest_keep(&blocks, sparsity, global)?;
            layers
                .iter()
                .zip(&bk)
                .map(|(l, k)| pattern::expand_blocks(k, l, rows, cols))
                .collect()
        }
        Pattern::NM { n, m } => layers.iter().map(|l| pattern::nm_keep(l, n, m)).collect(),
    };
    let mut out = Vec::with_capacity(layers.len());
    for ((l, keep), shape) in layers.iter().zip(keeps).zip(shapes) {
        if !keep.iter().any(|&k| k) {
            return Err(PruneError::EmptyLayer {
                layer: l.path.clone(),
                what: "weights",
                total: keep.len(),
            });
        }
        let data = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        let mask = slimnet_core::tensor::from_vec(&shape, data)?;
        out.push((l.path.clone(), mask));
    }
    Ok(out)
}

/// Sets masks given as `(parameter path, mask)` pairs (`fc1.weight`, `block.conv1.weight`),
/// zeroing the masked weights.
///
/// # Errors
/// A path that names no parameter, a mask of the wrong shape, or a mask with values other than
/// 0 and 1 — naming the parameter.
pub fn apply_masks(graph: &mut Graph, masks: &[(String, Tensor)]) -> Result<()> {
    for (path, mask) in masks {
        let (layer_path, pname) = path.rsplit_once('.').ok_or_else(|| {
            PruneError::unsupported(path, "not a parameter path (`layer.weight`)")
        })?;
        let layer = walk::layer_mut(graph, layer_path)
            .ok_or_else(|| PruneError::unsupported(path, "no such layer"))?;
        let mut result: Option<Result<()>> = None;
        layer.visit_params_mut(&mut |name, p| {
            if name != pname {
                return;
            }
            result = Some(if mask.shape() != p.value().shape() {
                Err(PruneError::MaskShape {
                    layer: path.clone(),
                    expected: p.value().shape().to_vec(),
                    actual: mask.shape().to_vec(),
                })
            } else {
                p.set_mask(mask.clone())
                    .map_err(|e| PruneError::unsupported(path, e.to_string()))
            });
        });
        result.unwrap_or_else(|| Err(PruneError::unsupported(path, "no such parameter")))?;
    }
    Ok(())
}

/// Removes every mask of the selected layers (weights keep their values, zeros included).
pub fn clear_masks(graph: &mut Graph, selector: &Selector) {
    for path in walk::prunable_layers(graph, selector) {
        if let Some(l) = walk::layer_mut(graph, &path) {
            l.visit_params_mut(&mut |_, p| p.clear_mask());
        }
    }
}

/// Non-zero weights of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSparsity {
    /// Layer path.
    pub path: String,
    /// Weights in the layer's `weight` parameter.
    pub total: usize,
    /// Non-zero weights.
    pub nonzero: usize,
}

/// Non-zero weights per layer, with totals; printable as a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparsityReport {
    /// One row per layer, in graph order.
    pub layers: Vec<LayerSparsity>,
}

impl SparsityReport {
    /// Total weights.
    pub fn total(&self) -> usize {
        self.layers.iter().map(|l| l.total).sum()
    }

    /// Total non-zero weights.
    pub fn nonzero(&self) -> usize {
        self.layers.iter().map(|l| l.nonzero).sum()
    }

    /// Fraction of zero weights.
    pub fn sparsity(&self) -> f64 {
        1.0 - self.nonzero() as f64 / self.total().max(1) as f64
    }

    /// `total / nonzero`: how many times fewer non-zero weights.
    pub fn compression(&self) -> f64 {
        self.total() as f64 / self.nonzero().max(1) as f64
    }
}

impl fmt::Display for SparsityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>10} {:>10} {:>9}",
            "layer", "weights", "non-zero", "sparsity"
        )?;
        for l in &self.layers {
            let s = 1.0 - l.nonzero as f64 / l.total.max(1) as f64;
            writeln!(
                f,
                "{:<24} {:>10} {:>10} {:>9.4}",
                l.path, l.total, l.nonzero, s
            )?;
        }
        write!(
            f,
            "{:<24} {:>10} {:>10} {:>9.4}  ({:.1}x fewer non-zeros)",
            "total",
            self.total(),
            self.nonzero(),
            self.sparsity(),
            self.compression()
        )
    }
}

/// Counts the non-zero weights of the selected layers (`weight` parameters of rank >= 2).
pub fn sparsity_report(graph: &Graph, selector: &Selector) -> SparsityReport {
    let layers = walk::prunable_layers(graph, selector)
        .into_iter()
        .filter_map(|path| {
            let p = walk::weight_of(walk::layer(graph, &path)?)?;
            Some(LayerSparsity {
                total: p.len(),
                nonzero: p.nonzeros(),
                path,
            })
        })
        .collect();
    SparsityReport { layers }
}

/// Fills every parameter's gradient with the cross-entropy gradient summed over the first
/// `batches` batches of `data` (no optimizer step), for gradient-based criteria such as
/// [`Taylor`](crate::criterion::Taylor). Gradients are zeroed first.
///
/// # Errors
/// A batch size of 0, an empty dataset, or a model that rejects the inputs.
pub fn accumulate_gradients(
    model: &mut Graph,
    data: &Dataset,
    batch_size: usize,
    batches: usize,
) -> Result<()> {
    if batch_size == 0 || data.is_empty() {
        return Err(PruneError::Core(slimnet_core::Error::Invalid(format!(
            "gradients need a positive batch size (got {batch_size}) and examples (got {})",
            data.len()
        ))));
    }
    (model as &mut dyn Layer).zero_grad();
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch_size).take(batches.max(1)) {
        let (x, y) = data.batch(chunk);
        let out = model.forward_train(&x)?;
        let (_, grad) = softmax_cross_entropy(&out, &y)?;
        model.backward(&grad)?;
    }
    Ok(())
}

/// The default selection: every Conv2d and Linear layer (compared by type).
fn conv_and_linear() -> Selector {
    Selector::Predicate(Box::new(|_, l| {
        l.downcast_ref::<slimnet_core::layers::Conv2d>().is_some()
            || l.downcast_ref::<slimnet_core::layers::Linear>().is_some()
    }))
}
