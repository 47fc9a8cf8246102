//! The per-layer report of a decomposition pass.

use std::fmt;

/// What happened to one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    /// Dotted layer path.
    pub path: String,
    /// Method name (`svd`, `spatial-svd`, `channel-svd`, `tucker2`, `cp`).
    pub method: String,
    /// Ranks chosen (`[r_out, r_in]` for Tucker-2).
    pub ranks: Vec<usize>,
    /// Parameters before and after.
    pub params: (usize, usize),
    /// MACs before and after, for the pass's input shape.
    pub macs: (usize, usize),
    /// Measured microseconds before and after (batch 1, one thread), when checked.
    pub time_us: Option<(f64, f64)>,
    /// Relative Frobenius error of the approximated weight.
    pub rel_error: f64,
    /// Whether the replacement was kept (false when the speed check rejected it).
    pub kept: bool,
    /// Solver notes (sweeps, convergence, speed-check verdict).
    pub note: String,
}

/// The report of [`decompose`](super::decompose): the low-rank details of each layer, and the
/// rewrite report every pass of slimnet gives (kinds, parameters, MACs and bytes before and
/// after).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecomposeReport {
    /// One entry per decomposed layer, in graph order.
    pub layers: Vec<LayerReport>,
    /// The rewrite report.
    pub rewrite: slimnet_core::rewrite::Report,
}

impl DecomposeReport {
    /// Total (before, after) parameters over the kept rewrites.
    pub fn params(&self) -> (usize, usize) {
        self.layers
            .iter()
            .filter(|l| l.kept)
            .fold((0, 0), |a, l| (a.0 + l.params.0, a.1 + l.params.1))
    }

    /// Total (before, after) MACs over the kept rewrites.
    pub fn macs(&self) -> (usize, usize) {
        self.layers
            .iter()
            .filter(|l| l.kept)
            .fold((0, 0), |a, l| (a.0 + l.macs.0, a.1 + l.macs.1))
    }
}

impl fmt::Display for DecomposeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<18} {:<12} {:>9} {:>20} {:>24} {:>22} {:>9} {:>5}  note",
            "layer", "method", "rank", "params", "MACs", "time us", "rel_err", "kept"
        )?;
        for l in &self.layers {
            let ranks: Vec<String> = l.ranks.iter().map(ToString::to_string).collect();
            let time = l
                .time_us
                .map_or_else(|| "-".to_string(), |(a, b)| format!("{a:.1} -> {b:.1}"));
            writeln!(
                f,
                "{:<18} {:<12} {:>9} {:>20} {:>24} {:>22} {:>9.4} {:>5}  {}",
                l.path,
                l.method,
                ranks.join("x"),
                format!("{} -> {}", l.params.0, l.params.1),
                format!("{} -> {}", l.macs.0, l.macs.1),
                time,
                l.rel_error,
                if l.kept { "yes" } else { "no" },
                l.note
            )?;
        }
        let (p, m) = (self.params(), self.macs());
        write!(
            f,
            "{:<18} {:<12} {:>9} {:>20} {:>24}",
            "total (kept)",
            "",
            "",
            format!("{} -> {}", p.0, p.1),
            format!("{} -> {}", m.0, m.1)
        )
    }
}
