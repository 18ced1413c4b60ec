//! How results are printed: aligned tables for people, JSON for scripts.

use std::io::{self, Write};

use conduit_api::json::Golden;
use serde::Serialize;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Aligned columns
    Table,
    /// Aligned columns with extra detail
    Wide,
    /// One JSON document
    Json,
}

/// Prints `value` as pretty JSON followed by a newline.
pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    // Stdout flushes at every newline; a thousand-row document written
    // piecewise was 15 000 write calls (30 ms), so it is written at once.
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    io::stdout().lock().write_all(&text)?;
    Ok(())
}

/// Prints `value` as one line of JSON (for streams: one event a line).
pub(crate) fn print_json_line(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A table printed with columns padded to their widest cell, like kubectl.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count() + 3;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }

    pub(crate) fn print(&self) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(self.render().as_bytes())?;
        Ok(())
    }
}

/// `98.50%`, or `-` without traffic.
pub(crate) fn success(m: Option<&Golden>) -> String {
    m.filter(|m| m.total() > 0)
        .map_or_else(|| "-".into(), |m| format!("{:.2}%", m.success_rate * 100.0))
}

/// `12.3rps`, or `-`.
pub(crate) fn rps(m: Option<&Golden>) -> String {
    m.map_or_else(|| "-".into(), |m| format!("{:.1}rps", m.rps))
}

/// A latency in milliseconds as `linkerd viz stat` prints it: `3ms`,
/// `0.5ms` below one millisecond, or `-`.
pub(crate) fn latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{}ms", ms.round()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(["NAME", "RPS"]);
        t.row(["web", "1.0rps"]);
        t.row(["voting-long", "-"]);
        assert_eq!(
            t.render(),
            "NAME          RPS\nweb           1.0rps\nvoting-long   -\n"
        );
    }

    #[test]
    fn numbers_read_like_linkerd() {
        let g = Golden {
            success_count: 197,
            failure_count: 3,
            success_rate: 0.985,
            rps: 3.333,
            latency_ms_p50: 0.4,
            latency_ms_p95: 12.6,
            latency_ms_p99: 40.0,
        };
        assert_eq!(success(Some(&g)), "98.50%");
        assert_eq!(rps(Some(&g)), "3.3rps");
        assert_eq!(latency(Some(g.latency_ms_p50)), "0.4ms");
        assert_eq!(latency(Some(g.latency_ms_p95)), "13ms");
        assert_eq!(success(None), "-");
    }
}
