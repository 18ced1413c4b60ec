//! Plots for RESULTS.md as standalone SVG files, so the figures can be
//! seen on any Markdown viewer without a plotting dependency.

use std::fmt::Write;

pub(crate) const PERCENTILES: [f64; 6] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

const COLORS: [&str; 6] = [
    "#555555", "#2b7bb9", "#d9822b", "#3a9d5d", "#8e44ad", "#c0392b",
];

/// `series`: (name, latency in µs at each of [`PERCENTILES`]).
pub(crate) fn percentiles(title: &str, series: &[(String, Vec<f64>)]) -> String {
    let (w, h, left, top, bottom, right) = (720.0, 400.0, 70.0, 40.0, 50.0, 230.0);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.1;
    let x = |i: usize| left + (w - left - right) * i as f64 / (PERCENTILES.len() - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let mut svg = canvas(w, h, title);
    for step in 0..=4 {
        let v = max * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{:.0} µs</text>",
            w - right,
            y(v),
            y(v),
            left - 6.0,
            y(v) + 4.0,
            v
        );
    }
    for (i, p) in PERCENTILES.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.0}\" text-anchor=\"middle\">p{p}</text>",
            x(i),
            h - bottom + 20.0
        );
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let points = values.iter().enumerate().map(|(i, v)| (x(i), y(*v)));
        let legend = (w - right + 15.0, top + 20.0 * k as f64);
        line(
            &mut svg,
            COLORS[k % COLORS.len()],
            2.0,
            points,
            legend,
            name,
        );
    }
    svg + "</svg>\n"
}

pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
}

/// An SVG bar chart; `unit` follows each value.
pub(crate) fn bars(title: &str, unit: &str, bars: &[Bar]) -> String {
    let max = bars
        .iter()
        .map(|b| b.value)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let (w, row, left) = (640.0, 34.0, 200.0);
    let h = 50.0 + row * bars.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let len = (w - left - 120.0) * b.value / max;
        svg += &format!(
            "<text x=\"10\" y=\"{:.0}\">{}</text>\n<rect x=\"{left}\" y=\"{y:.0}\" width=\"{len:.1}\" height=\"22\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{} {}</text>\n",
            y + 16.0,
            escape(&b.label),
            if i == 0 { "#2b7bb9" } else { "#9aa5b1" },
            left + len + 6.0,
            y + 16.0,
            pretty(b.value),
            escape(unit)
        );
    }
    svg + "</svg>\n"
}

/// `series`: (name, (seconds since the start, value) points), one line
/// each over a shared time axis; for figures followed through a run.
pub(crate) fn over_time(title: &str, unit: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h, left, top, bottom, right) = (760.0, 420.0, 80.0, 40.0, 50.0, 250.0);
    let points = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let max_x = points().map(|(t, _)| t).fold(1.0f64, f64::max);
    let max_y = points().map(|(_, v)| v).fold(f64::MIN_POSITIVE, f64::max) * 1.1;
    let x = |t: f64| left + (w - left - right) * t / max_x;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max_y);
    let mut svg = canvas(w, h, title);
    for step in 0..=4 {
        let v = max_y * f64::from(step) / 4.0;
        let t = max_x * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{} {}</text>\
             <text x=\"{:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text>",
            w - right,
            y(v),
            y(v),
            left - 6.0,
            y(v) + 4.0,
            pretty(v),
            escape(unit),
            x(t),
            h - bottom + 20.0,
            minutes(t)
        );
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let points = values.iter().map(|&(t, v)| (x(t), y(v)));
        let legend = (w - right + 15.0, top + 18.0 * k as f64);
        let color = LINE_COLORS[k % LINE_COLORS.len()];
        line(&mut svg, color, 1.5, points, legend, name);
    }
    svg + "</svg>\n"
}

/// Enough distinct colours for every process of the demo mesh.
const LINE_COLORS: [&str; 14] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
];

fn minutes(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}

/// A plot's white canvas and title.
fn canvas(w: f64, h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    )
}

/// One series: its line through `points`, and its legend entry at
/// `legend`.
fn line(
    svg: &mut String,
    color: &str,
    width: f64,
    points: impl Iterator<Item = (f64, f64)>,
    legend: (f64, f64),
    name: &str,
) {
    let points: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" points=\"{}\"/>\
         <rect x=\"{:.0}\" y=\"{:.0}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
         <text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
        points.join(" "),
        legend.0,
        legend.1,
        legend.0 + 17.0,
        legend.1 + 10.0,
        escape(name)
    );
}

pub(crate) fn pretty(v: f64) -> String {
    if v >= 100.0 {
        format!("{:.0}", v)
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
