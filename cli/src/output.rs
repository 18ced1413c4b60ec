//! How results are printed: aligned tables for people, JSON for scripts.

use std::io::{self, Write};

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
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
