//! Sensitivity analysis: prune one layer at a time over a range of sparsities and measure
//! validation accuracy, as a table and an SVG plot. Layers whose curve stays flat can be pruned
//! harder.
//!
//! ```
//! use slimnet_core::{models, rewrite::Selector, tensor, train, Layer};
//! use slimnet_core::data::Dataset;
//! use slimnet_prune::{criterion::Magnitude, sensitivity::sensitivity};
//! let model = models::lenet300(&mut tensor::rng(0))?;
//! let x = tensor::uniform(&[20, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! let val = Dataset::new(x, (0..20).map(|i| i % 10).collect(), 10)?;
//! let s = sensitivity(&model, &Selector::All, &Magnitude, &[0.5, 0.9], &mut |g| {
//!     train::accuracy(g, &val)
//! })?;
//! assert_eq!(s.curves.len(), 3);
//! println!("{s}");
//! assert!(s.to_svg().starts_with("<svg"));
//! # Ok::<(), slimnet_prune::PruneError>(())
//! ```

use std::fmt::{self, Write as _};
use std::path::Path;

use slimnet_core::rewrite::Selector;
use slimnet_core::Graph;

use crate::criterion::Criterion;
use crate::error::Result;
use crate::pattern::Pattern;
use crate::pruner::{apply_masks, compute_masks, Scope};
use crate::walk;

/// Accuracy of one layer pruned to each sparsity.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Layer path.
    pub layer: String,
    /// `(sparsity, accuracy)` points, in the order swept.
    pub points: Vec<(f32, f32)>,
}

/// Per-layer sensitivity curves and the unpruned accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensitivity {
    /// Accuracy of the model as given.
    pub baseline: f32,
    /// One curve per selected layer.
    pub curves: Vec<Curve>,
}

/// Prunes each selected layer alone (unstructured, by `criterion`) to every sparsity in
/// `sparsities` on a copy of `graph`, and records `eval` of the copy (e.g. validation accuracy).
///
/// # Errors
/// A sparsity outside `[0, 1)` or a criterion error (naming the layer), or an error of `eval`.
pub fn sensitivity(
    graph: &Graph,
    selector: &Selector,
    criterion: &dyn Criterion,
    sparsities: &[f32],
    eval: &mut dyn FnMut(&Graph) -> slimnet_core::Result<f32>,
) -> Result<Sensitivity> {
    let baseline = eval(graph)?;
    let mut curves = Vec::new();
    for layer in walk::prunable_layers_checked(graph, selector)? {
        let mut points = Vec::with_capacity(sparsities.len());
        for &s in sparsities {
            let paths = [layer.clone()];
            let masks = compute_masks(
                graph,
                &paths,
                criterion,
                Scope::Layer,
                Pattern::Unstructured,
                s,
            )?;
            let mut g = graph.clone();
            apply_masks(&mut g, &masks)?;
            points.push((s, eval(&g)?));
        }
        curves.push(Curve { layer, points });
    }
    Ok(Sensitivity { baseline, curves })
}

impl Sensitivity {
    /// For each layer, the largest swept sparsity whose accuracy is within `max_drop` of the
    /// baseline (0 when none is).
    pub fn max_sparsity(&self, max_drop: f32) -> Vec<(String, f32)> {
        self.curves
            .iter()
            .map(|c| {
                let best = c
                    .points
                    .iter()
                    .filter(|(_, a)| self.baseline - a <= max_drop)
                    .map(|p| p.0)
                    .fold(0.0f32, f32::max);
                (c.layer.clone(), best)
            })
            .collect()
    }

    /// The curves as an SVG line plot: sparsity on x, accuracy on y, one line per layer.
    pub fn to_svg(&self) -> String {
        const W: f32 = 640.0;
        const H: f32 = 400.0;
        const L: f32 = 60.0;
        const R: f32 = 170.0;
        const T: f32 = 20.0;
        const B: f32 = 50.0;
        const COLORS: [&str; 8] = [
            "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        ];
        let all = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1));
        let lo = all
            .clone()
            .chain([self.baseline])
            .fold(f32::INFINITY, f32::min);
        let hi = all.chain([self.baseline]).fold(f32::NEG_INFINITY, f32::max);
        let (lo, hi) = if hi - lo < 1e-6 {
            (lo - 0.01, hi + 0.01)
        } else {
            (lo, hi)
        };
        let x = |s: f32| L + s.clamp(0.0, 1.0) * (W - L - R);
        let y = |a: f32| T + (hi - a) / (hi - lo) * (H - T - B);
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
             font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        for i in 0..=5 {
            let s = i as f32 / 5.0;
            let a = lo + (hi - lo) * i as f32 / 5.0;
            let _ = writeln!(
                out,
                "<line x1=\"{0:.1}\" y1=\"{T}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{s:.1}</text>",
                x(s),
                H - B,
                H - B + 16.0
            );
            let _ = writeln!(
                out,
                "<line x1=\"{L}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{a:.4}</text>",
                y(a),
                W - R,
                L - 6.0,
                y(a) + 4.0
            );
        }
        let _ = writeln!(
            out,
            "<line x1=\"{L}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"black\" \
             stroke-dasharray=\"4 3\"/>",
            y(self.baseline),
            W - R
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">sparsity</text>\
             <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">accuracy</text>",
            (L + W - R) / 2.0,
            H - 12.0,
            (T + H - B) / 2.0
        );
        for (i, c) in self.curves.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<String> = c
                .points
                .iter()
                .map(|&(s, a)| format!("{:.1},{:.1}", x(s), y(a)))
                .collect();
            let _ = writeln!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                pts.join(" ")
            );
            let ly = T + 10.0 + 18.0 * i as f32;
            let _ = writeln!(
                out,
                "<line x1=\"{0:.1}\" y1=\"{ly:.1}\" x2=\"{1:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" \
                 stroke-width=\"2\"/><text x=\"{2:.1}\" y=\"{3:.1}\">{4}</text>",
                W - R + 10.0,
                W - R + 30.0,
                W - R + 36.0,
                ly + 4.0,
                escape(&c.layer)
            );
        }
        out.push_str("</svg>\n");
        out
    }

    /// Writes [`to_svg`](Self::to_svg) to a file.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        std::fs::write(path, self.to_svg()).map_err(slimnet_core::Error::from)?;
        Ok(())
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<20}", "layer \\ sparsity")?;
        if let Some(c) = self.curves.first() {
            for (s, _) in &c.points {
                write!(f, " {s:>7.2}")?;
            }
        }
        writeln!(f)?;
        for c in &self.curves {
            write!(f, "{:<20}", c.layer)?;
            for (_, a) in &c.points {
                write!(f, " {a:>7.4}")?;
            }
            writeln!(f)?;
        }
        write!(f, "baseline accuracy {:.4}", self.baseline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::{models, tensor, Layer};

    #[test]
    fn sweeps_each_layer_alone_and_plots() {
        let g = models::lenet300(&mut tensor::rng(0)).unwrap();
        let mut seen = Vec::new();
        // the "accuracy" is the fraction of non-zero weights, so the curve is known exactly
        let s = sensitivity(
            &g,
            &Selector::Paths(vec!["fc2".into(), "fc3".into()]),
            &crate::criterion::Magnitude,
            &[0.0, 0.5, 0.9],
            &mut |m: &Graph| {
                let r = crate::sparsity_report(m, &Selector::All);
                seen.push((m as &dyn Layer).num_params());
                Ok(r.nonzero() as f32 / r.total() as f32)
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 7);
        assert_eq!(s.baseline, 1.0);
        let fc2 = &s.curves[0];
        assert_eq!(fc2.layer, "fc2");
        let want = 1.0 - 0.9 * 30_000.0 / 266_200.0;
        assert!((fc2.points[2].1 - want).abs() < 1e-4, "{s}");
        let limits = s.max_sparsity(0.01);
        assert_eq!(limits, vec![("fc2".into(), 0.0), ("fc3".into(), 0.9)]);
        let svg = s.to_svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">fc3</text>"));
        let e = sensitivity(
            &g,
            &Selector::All,
            &crate::criterion::Magnitude,
            &[1.0],
            &mut |_| Ok(0.0),
        );
        assert!(e.unwrap_err().to_string().starts_with("fc1: sparsity 1"));
    }
}
