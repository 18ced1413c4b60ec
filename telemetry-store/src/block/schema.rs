//! The Arrow schemas of a block's files and the block's `meta.json`.
//!
//! - `chunks.arrow`: one row per (series, time slice): `series`, `min_t`,
//!   `max_t`, `samples`, the row of `timestamps.arrow` holding its
//!   timestamps, and its compressed `values` (see [`crate::encoding::columns`]),
//!   sorted by series then time.
//! - `timestamps.arrow`: compressed timestamp columns, each stored once
//!   however many series share it: every series of a scrape target (or
//!   of a proxy's report) has the same timestamps, so this costs about as
//!   much as one series per target. Version 1 blocks kept the timestamps
//!   in `chunks.arrow` instead.
//! - `windows.arrow`: histogram windows, one row each, sorted by series
//!   then time.
//! - `index.arrow`: one row per series: its label set, kind, and where its
//!   rows start in the file above.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

pub(crate) const CHUNKS_FILE: &str = "chunks.arrow";
pub(crate) const TIMESTAMPS_FILE: &str = "timestamps.arrow";
pub(crate) const WINDOWS_FILE: &str = "windows.arrow";
pub(crate) const INDEX_FILE: &str = "index.arrow";
pub(crate) const META_FILE: &str = "meta.json";
/// Rows per record batch in every file; only the last batch is shorter.
pub(crate) const BATCH_ROWS: usize = 1024;

pub(crate) fn chunks() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::UInt32, false),
        Field::new("min_t", DataType::Int64, false),
        Field::new("max_t", DataType::Int64, false),
        Field::new("samples", DataType::UInt32, false),
        Field::new("timestamps_row", DataType::UInt32, false),
        Field::new("values", DataType::Binary, false),
    ]))
}

/// `chunks.arrow` of version 1 blocks: timestamps inline.
pub(crate) fn chunks_v1() -> SchemaRef {
    let mut fields: Vec<Field> = chunks().fields().iter().map(|f| (**f).clone()).collect();
    fields[4] = Field::new("timestamps", DataType::Binary, false);
    Arc::new(Schema::new(fields))
}

pub(crate) fn timestamps() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "timestamps",
        DataType::Binary,
        false,
    )]))
}

pub(crate) fn windows() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::UInt32, false),
        Field::new("start_t", DataType::Int64, false),
        Field::new("end_t", DataType::Int64, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("sum", DataType::Float64, false),
        Field::new("scale", DataType::Float64, false),
        Field::new("buckets", DataType::Binary, false),
    ]))
}

pub(crate) fn index() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("labels", DataType::Binary, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("first_row", DataType::UInt64, false),
        Field::new("rows", DataType::UInt32, false),
    ]))
}

/// What a block holds, written last so a block without it is incomplete.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Meta {
    pub(crate) version: u32,
    /// Inclusive.
    pub(crate) min_t: i64,
    /// Exclusive.
    pub(crate) max_t: i64,
    pub(crate) series: u64,
    pub(crate) samples: u64,
    pub(crate) windows: u64,
    /// 1 for a block cut from the head, +1 per compaction.
    pub(crate) level: u32,
    /// Total size of the block's files.
    pub(crate) bytes: u64,
    /// 0 for raw data; the step of a rollup (see `downsample`).
    #[serde(default)]
    pub(crate) resolution_ms: i64,
    /// CRC-32 of each data file, checked before any of it is decoded:
    /// Arrow's reader trusts lengths read from the file (a damaged LZ4
    /// frame can ask for exabytes). Blocks written before have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) checksums: BTreeMap<String, u32>,
}

/// The data files of a block, each with a checksum in its meta.
pub(crate) const DATA_FILES: [&str; 4] = [CHUNKS_FILE, TIMESTAMPS_FILE, WINDOWS_FILE, INDEX_FILE];

/// CRC-32 of a file, read in pieces.
pub(crate) fn checksum(path: &std::path::Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// 2: grid timestamps, shared between series, and bit-packed integers
/// (see [`crate::encoding::columns`], whose format it is).
pub(crate) const VERSION: u32 = crate::encoding::columns::LATEST;
/// Blocks of these versions are read.
pub(crate) const READABLE: std::ops::RangeInclusive<u32> = 1..=VERSION;
