//! What a pipeline measured: per step, the model before and after, as a table, a Markdown
//! report and SVG plots.

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::core::timing::{latency, TimingConfig};
use crate::core::{io, train, Graph, Layer};
use crate::Result;

use super::Data;

/// A model measured: accuracy on the validation set, cost, file size and batch-1 latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Validation accuracy.
    pub accuracy: f32,
    /// Stored values (non-zeros of sparse layers, codes of int8 ones).
    pub params: usize,
    /// Multiply-accumulates for one example.
    pub macs: usize,
    /// Bytes of the model file ([`io::to_bytes`]).
    pub bytes: usize,
    /// Median batch-1 latency of the frozen plan on one thread, microseconds.
    pub latency_us: f64,
}

/// Measures `model` on `data`: accuracy, cost and file size, and the batch-1 latency of its
/// frozen plan on one kernel thread, timed as `timing` says.
///
/// ```
/// use slimnet::core::{data::Dataset, models, tensor};
/// use slimnet::core::timing::TimingConfig;
/// use slimnet::pipeline::{measure, Data};
/// let x = tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(0));
/// let set = Dataset::new(x, (0..8).map(|i| i % 10).collect(), 10)?;
/// let data = Data::new("tiny", set.clone(), set)?;
/// let m = measure(&models::lenet5(&mut tensor::rng(0))?, &data, &TimingConfig::quick())?;
/// assert_eq!(m.params, 431_080);
/// assert!(m.bytes > 4 * m.params && m.latency_us > 0.0);
/// # Ok::<(), slimnet::Error>(())
/// ```
///
/// # Errors
/// A model that rejects the data's input shape, or cannot be written.
pub fn measure(model: &Graph, data: &Data, timing: &TimingConfig) -> Result<Metrics> {
    let accuracy = train::accuracy(model, &*data.validation)?;
    let cost = model.cost(&data.input)?;
    let bytes = io::to_bytes(model)?.len();
    let plan = model.freeze(&data.input)?;
    let time = crate::kernels::threads::with(1, || latency(&plan, &data.input, timing))?;
    Ok(Metrics {
        accuracy,
        params: cost.params,
        macs: cost.macs,
        bytes,
        latency_us: time.median_us,
    })
}

/// One step's record: its kind and settings, what it changed, the model before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Step number, from 1.
    pub index: usize,
    /// Step kind (`decompose`, `prune` ...).
    pub kind: String,
    /// The settings in one line.
    pub settings: String,
    /// What the step's method reported (per-layer changes), as text.
    pub details: String,
    /// The model before the step.
    pub before: Metrics,
    /// The model after the step.
    pub after: Metrics,
    /// Wall-clock seconds of the step (measuring excluded).
    pub seconds: f64,
}

/// What a pipeline run measured: the input model and every step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The pipeline's name.
    pub name: String,
    /// The data set's name.
    pub data: String,
    /// The model as given.
    pub base: Metrics,
    /// One record per step, in order.
    pub steps: Vec<StepRecord>,
}

impl Report {
    /// The model after the last step (the input model when there are no steps).
    pub fn last(&self) -> &Metrics {
        self.steps.last().map_or(&self.base, |s| &s.after)
    }

    /// File size of the input model over that of the result.
    pub fn size_ratio(&self) -> f64 {
        self.base.bytes as f64 / self.last().bytes as f64
    }

    /// Latency of the input model over that of the result.
    pub fn speedup(&self) -> f64 {
        self.base.latency_us / self.last().latency_us
    }

    /// The one-line summary
    /// `compress <name> base_acc=<f> acc=<f> size_ratio=<f> speedup=<f>`.
    pub fn summary_line(&self) -> String {
        format!(
            "compress {} base_acc={:.4} acc={:.4} size_ratio={:.1} speedup={:.2}",
            self.name,
            self.base.accuracy,
            self.last().accuracy,
            self.size_ratio(),
            self.speedup()
        )
    }

    /// The rows of the table: a name and the metrics, the input model first.
    fn rows(&self) -> Vec<(String, &Metrics)> {
        let mut rows = vec![("input".to_string(), &self.base)];
        for s in &self.steps {
            rows.push((format!("{} {}", s.index, s.kind), &s.after));
        }
        rows
    }

    /// The report in Markdown: the table, each step's settings and details, and the plots
    /// as files `plot_files` names (written by the caller from [`svg_size`](Self::svg_size)
    /// and [`svg_latency`](Self::svg_latency); none when `None`).
    pub fn to_markdown(&self, plot_files: Option<(&str, &str)>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Compression report: {}\n", self.name);
        let _ = writeln!(
            s,
            "Data: `{}`. Accuracy on the validation set; latency of the frozen plan at batch \
             1 on one thread (median); bytes of the model file.\n",
            self.data
        );
        let _ = writeln!(
            s,
            "| step | accuracy | params | MACs | file bytes | size x | latency us | speed x |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (name, m) in self.rows() {
            let _ = writeln!(
                s,
                "| {name} | {:.4} | {} | {} | {} | {:.1} | {:.1} | {:.2} |",
                m.accuracy,
                m.params,
                m.macs,
                m.bytes,
                self.base.bytes as f64 / m.bytes as f64,
                m.latency_us,
                self.base.latency_us / m.latency_us
            );
        }
        let _ = writeln!(s, "\n`{}`\n", self.summary_line());
        if let Some((size, lat)) = plot_files {
            let _ = writeln!(s, "![accuracy against file size]({size})\n");
            let _ = writeln!(s, "![accuracy against latency]({lat})\n");
        }
        let _ = writeln!(s, "## Steps\n");
        for st in &self.steps {
            let _ = writeln!(
                s,
                "### {} `{}`: {}\n\n{:.1} s; accuracy {:.4} -> {:.4}, file {} -> {} bytes, \
                 latency {:.1} -> {:.1} us.\n",
                st.index,
                st.kind,
                st.settings,
                st.seconds,
                st.before.accuracy,
                st.after.accuracy,
                st.before.bytes,
                st.after.bytes,
                st.before.latency_us,
                st.after.latency_us
            );
            if !st.details.trim().is_empty() {
                let _ = writeln!(s, "```text\n{}\n```\n", st.details.trim_end());
            }
        }
        s
    }

    /// Accuracy against file size (kB, log scale) per step, as an SVG line plot.
    pub fn svg_size(&self) -> String {
        let pts = self
            .rows()
            .into_iter()
            .map(|(n, m)| (n, m.bytes as f64 / 1000.0, m.accuracy as f64))
            .collect::<Vec<_>>();
        svg_plot(&pts, "file size (kB, log scale)", "validation accuracy")
    }

    /// Accuracy against batch-1 latency (us, log scale) per step, as an SVG line plot.
    pub fn svg_latency(&self) -> String {
        let pts = self
            .rows()
            .into_iter()
            .map(|(n, m)| (n, m.latency_us, m.accuracy as f64))
            .collect::<Vec<_>>();
        svg_plot(
            &pts,
            "batch-1 latency (us, log scale)",
            "validation accuracy",
        )
    }
}

impl fmt::Display for Report {
    /// The table: one row per step, the input model first; no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:>8} {:>10} {:>11} {:>11} {:>7} {:>11} {:>7}",
            "step", "accuracy", "params", "MACs", "file bytes", "size x", "latency us", "speed x"
        )?;
        let rows = self.rows();
        for (i, (name, m)) in rows.iter().enumerate() {
            write!(
                f,
                "{:<16} {:>8.4} {:>10} {:>11} {:>11} {:>7.1} {:>11.1} {:>7.2}",
                name,
                m.accuracy,
                m.params,
                m.macs,
                m.bytes,
                self.base.bytes as f64 / m.bytes as f64,
                m.latency_us,
                self.base.latency_us / m.latency_us
            )?;
            if i + 1 < rows.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line plot of labelled points `(label, x, y)` with x on a log scale.
fn svg_plot(points: &[(String, f64, f64)], xlabel: &str, ylabel: &str) -> String {
    const W: f64 = 640.0;
    const H: f64 = 400.0;
    const L: f64 = 70.0;
    const R: f64 = 90.0;
    const T: f64 = 20.0;
    const B: f64 = 50.0;
    let finite: Vec<_> = points
        .iter()
        .filter(|p| p.1.is_finite() && p.1 > 0.0 && p.2.is_finite())
        .collect();
    let (mut x0, mut x1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.1.log10()), b.max(p.1.log10()))
    });
    let (mut y0, mut y1) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.2), b.max(p.2)));
    if finite.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let padx = ((x1 - x0) * 0.1).max(0.05);
    let pady = ((y1 - y0) * 0.15).max(0.0005);
    (x0, x1, y0, y1) = (x0 - padx, x1 + padx, y0 - pady, (y1 + pady).min(1.0 + pady));
    let px = |x: f64| L + (x.log10() - x0) / (x1 - x0) * (W - L - R);
    let py = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<rect x=\"{L}\" y=\"{T}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
        W - L - R,
        H - T - B
    );
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.4}</text>",
            L - 6.0,
            py(y) + 4.0
        );
    }
    let ticks = (x0.floor() as i32..=x1.ceil() as i32)
        .flat_map(|d| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(d)))
        .filter(|x| (x0..=x1).contains(&x.log10()));
    for x in ticks {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#ddd\"/>\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{x}</text>",
            px(x),
            T,
            H - B,
            H - B + 16.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        L + (W - L - R) / 2.0,
        H - 12.0,
        esc(xlabel)
    );
    let _ = writeln!(
        s,
        "<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        T + (H - T - B) / 2.0,
        esc(ylabel)
    );
    let path: Vec<String> = finite
        .iter()
        .map(|p| format!("{:.1},{:.1}", px(p.1), py(p.2)))
        .collect();
    let _ = writeln!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    for p in &finite {
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#d62728\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            px(p.1),
            py(p.2),
            px(p.1) + 6.0,
            py(p.2) - 6.0,
            esc(&p.0)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(accuracy: f32, bytes: usize, latency_us: f64) -> Metrics {
        Metrics {
            accuracy,
            params: bytes / 4,
            macs: 1000,
            bytes,
            latency_us,
        }
    }

    fn report() -> Report {
        let step = |index, kind: &str, before: Metrics, after: Metrics| StepRecord {
            index,
            kind: kind.into(),
            settings: "s".into(),
            details: "layer fc1".into(),
            before,
            after,
            seconds: 1.0,
        };
        let (a, b, c) = (
            m(0.99, 4000, 100.0),
            m(0.985, 1000, 40.0),
            m(0.98, 250, 12.5),
        );
        Report {
            name: "r".into(),
            data: "mnist".into(),
            base: a.clone(),
            steps: vec![step(1, "prune", a, b.clone()), step(2, "quantize", b, c)],
        }
    }

    #[test]
    fn summary_table_markdown_and_plots() {
        let r = report();
        assert_eq!(
            r.summary_line(),
            "compress r base_acc=0.9900 acc=0.9800 size_ratio=16.0 speedup=8.00"
        );
        let table = r.to_string();
        assert_eq!(table.lines().count(), 4);
        assert!(
            table.lines().last().unwrap().starts_with("2 quantize"),
            "{table}"
        );
        let md = r.to_markdown(Some(("a.svg", "b.svg")));
        assert!(
            md.contains("| 1 prune | 0.9850 | 250 | 1000 | 1000 | 4.0 | 40.0 | 2.50 |"),
            "{md}"
        );
        assert!(md.contains("![accuracy against latency](b.svg)") && md.contains("layer fc1"));
        let svg = r.svg_latency();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        // ticks at 1-2-5 steps of the log axis
        for tick in [">20<", ">50<", ">100<"] {
            assert!(svg.contains(tick), "{tick} in {svg}");
        }
        assert!(r.svg_size().contains("2 quantize"));
    }
}
