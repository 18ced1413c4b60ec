//! How results are printed: aligned tables for people, JSON for scripts.
//!
//! Everything goes to stdout through functions that return the write's
//! error ([`outln!`] instead of `println!`, which panics): when the reader
//! of a pipe goes away (`conduit tap deploy/web | head`), the next write
//! fails with `BrokenPipe`, the command returns it, and `main` exits
//! quietly ([`is_broken_pipe`]), as kubectl does.

use std::fmt;
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

/// `println!` that returns the write's error instead of panicking on it.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

pub(crate) fn write_line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether `e` is stdout's reader having gone away: nothing left to say to
/// anyone, so no error either.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = match cause.downcast_ref::<serde_json::Error>() {
            Some(json) => json.io_error_kind(),
            None => cause.downcast_ref::<io::Error>().map(io::Error::kind),
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
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
    fn broken_pipes_are_recognized_through_context_and_json() {
        let pipe = || io::Error::from(io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::from(pipe()).context("printing the table");
        assert!(is_broken_pipe(&e));
        let json = serde_json::to_writer(BrokenPipe, &[1, 2, 3]).unwrap_err();
        assert!(is_broken_pipe(&json.into()));
        assert!(!is_broken_pipe(&anyhow::Error::from(io::Error::other(
            "disk full"
        ))));
    }

    /// A writer whose reader went away.
    struct BrokenPipe;

    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

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
