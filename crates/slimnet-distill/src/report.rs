//! Plots as standalone SVG text (no plotting dependency): test accuracy against wall-clock
//! time, and per-stage feature-loss curves.

use std::fmt::Write as _;

use crate::stagewise::LossPoint;
use crate::train::TimePoint;

/// A named polyline of `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Test accuracy (in %) against seconds.
    pub fn accuracy(name: &str, points: &[TimePoint]) -> Self {
        Self {
            name: name.to_string(),
            points: points
                .iter()
                .map(|p| (p.seconds, 100.0 * p.test_accuracy as f64))
                .collect(),
        }
    }

    /// A stage's feature loss against seconds.
    pub fn loss(name: &str, points: &[LossPoint]) -> Self {
        Self {
            name: name.to_string(),
            points: points.iter().map(|p| (p.seconds, p.loss as f64)).collect(),
        }
    }
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart of `series` with axes, ticks, labels and a legend, as SVG text. The y range
/// spans the data (from `y_min` when given); a horizontal dashed line marks `y_ref` when given
/// (e.g. the target accuracy).
///
/// ```
/// use slimnet_distill::report::{line_chart, Series};
/// let s = Series { name: "a".into(), points: vec![(0.0, 90.0), (10.0, 98.5)] };
/// let svg = line_chart("accuracy", "seconds", "test accuracy (%)", &[s], None, Some(98.0));
/// assert!(svg.starts_with("<svg") && svg.contains("polyline"));
/// ```
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_min: Option<f64>,
    y_ref: Option<f64>,
) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 170.0, 40.0, 50.0);
    let all = series.iter().flat_map(|s| s.points.iter());
    let finite: Vec<(f64, f64)> = all
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .copied()
        .collect();
    let x_max = finite.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let mut y_lo = finite.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut y_hi = finite.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if let Some(r) = y_ref {
        y_lo = y_lo.min(r);
        y_hi = y_hi.max(r);
    }
    if let Some(m) = y_min {
        y_lo = y_lo.max(m);
    }
    if !y_lo.is_finite() || !y_hi.is_finite() {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    if y_hi - y_lo < 1e-9 {
        y_hi = y_lo + 1.0;
    }
    let pw = w - left - right;
    let ph = h - top - bottom;
    let sx = |x: f64| left + pw * x / x_max;
    let sy = |y: f64| top + ph * (1.0 - (y.clamp(y_lo, y_hi) - y_lo) / (y_hi - y_lo));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    for i in 0..=5 {
        let fx = x_max * i as f64 / 5.0;
        let fy = y_lo + (y_hi - y_lo) * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{yb}" stroke="#eee"/><text x="{x}" y="{yt}" text-anchor="middle">{fx:.0}</text>"##,
            x = sx(fx),
            yb = top + ph,
            yt = top + ph + 16.0
        );
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y}" x2="{xr}" y2="{y}" stroke="#eee"/><text x="{xt}" y="{yl}" text-anchor="end">{fy:.2}</text>"##,
            y = sy(fy),
            xr = left + pw,
            xt = left - 6.0,
            yl = sy(fy) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        escape(y_label)
    );
    if let Some(r) = y_ref {
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{y}" x2="{xr}" y2="{y}" stroke="gray" stroke-dasharray="5 4"/>"#,
            y = sy(r),
            xr = left + pw
        );
    }
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = ser
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').expect("formatted as x,y");
            let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"#);
        }
        let ly = top + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{x1}" y1="{ly}" x2="{x2}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{xt}" y="{yt}">{}</text>"#,
            escape(&ser.name),
            x1 = left + pw + 10.0,
            x2 = left + pw + 30.0,
            xt = left + pw + 36.0,
            yt = ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_maps_points_into_the_plot_area() {
        let s = Series {
            name: "r<1>".into(),
            points: vec![(0.0, 50.0), (5.0, 75.0), (10.0, 100.0)],
        };
        let svg = line_chart("t", "x", "y", &[s], None, None);
        assert!(svg.contains("r&lt;1&gt;"));
        // First point at the bottom-left corner, last at the top-right of the plot area.
        assert!(
            svg.contains(r#"points="70.0,390.0 310.0,215.0 550.0,40.0""#),
            "{svg}"
        );
        let empty = line_chart("t", "x", "y", &[], None, Some(1.0));
        assert!(empty.ends_with("</svg>\n"));
    }
}
