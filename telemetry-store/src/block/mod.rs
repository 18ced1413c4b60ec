//! Blocks: immutable, columnar (Arrow IPC) files holding a time range of
//! every series, cut from the head once it spans more than a block range,
//! then compacted into larger ones and deleted by retention. The rows'
//! compressed columns are [`crate::encoding::columns`]; this module is
//! the files, their index and their lifecycle.
//!
//! A block's index is loaded into memory as postings (the same structure
//! as the head's) so selection never scans; chunk data is read on demand,
//! one record batch at a time. A rollup's index is loaded only when first
//! needed: rollups answer only for times before the raw blocks, so most of
//! them are never read before compaction or retention replaces them.

pub(crate) mod compact;
pub(crate) mod schema;
pub(crate) mod writer;

use std::fs::{self, File};
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_ipc::reader::FileReader;
use conduit_api::Labels;

use crate::encoding::columns;
use crate::encoding::varint::get_uvarint;
use crate::head::{CompactLabels, LabelInterner};
use crate::model::{Kind, Sample, Window};
use crate::series::{Index, Matcher};
pub(crate) use schema::Meta;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BlockError {
    #[error("block I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("block file: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("block {0}: {1}")]
    Corrupt(PathBuf, String),
}

/// Runs `read` over a block's files, turning a panic into an error. Arrow's
/// IPC reader trusts buffer offsets and lengths read from the file and
/// panics on some damaged ones; a damaged block must be skipped with an
/// error, not stop the store from starting.
fn undamaged<T>(
    path: &Path,
    read: impl FnOnce() -> Result<T, BlockError>,
) -> Result<T, BlockError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(BlockError::Corrupt(
            path.to_path_buf(),
            format!("undecodable: {why}"),
        ))
    })
}

pub(crate) fn dir_name(min_t: i64, max_t: i64, resolution_ms: i64) -> String {
    if resolution_ms == 0 {
        format!("block-{min_t}-{max_t}")
    } else {
        format!("rollup{resolution_ms}-{min_t}-{max_t}")
    }
}

struct BlockSeries {
    /// Shared with the head and the other blocks (most series are in all
    /// of them): a store keeps every block's label sets in memory.
    labels: CompactLabels,
    kind: Kind,
    first_row: u64,
    rows: u32,
}

/// What a block holds in memory: its series and their postings.
struct BlockIndex {
    series: Vec<BlockSeries>,
    floats: Index<u32>,
    histograms: Index<u32>,
}

/// A random-access reader over one Arrow file with a one-batch cache.
/// Every batch but the last holds exactly [`schema::BATCH_ROWS`] rows, so
/// a row's batch is a division away.
struct Rows {
    reader: FileReader<BufReader<File>>,
    /// For errors.
    path: PathBuf,
    cached: Option<(usize, RecordBatch)>,
}

pub(crate) struct Block {
    pub(crate) dir: PathBuf,
    pub(crate) meta: Meta,
    index: OnceLock<BlockIndex>,
    /// Where a lazily loaded index interns its label sets.
    interner: Arc<LabelInterner>,
    chunks: Mutex<Rows>,
    /// `timestamps.arrow`; version 1 blocks have none.
    timestamps: Option<Mutex<Rows>>,
    windows: Mutex<Rows>,
}

impl Block {
    /// Opens the block in `dir`; a raw block's index is read now, a
    /// rollup's on first use.
    pub(crate) fn open(dir: &Path, interner: &Arc<LabelInterner>) -> Result<Self, BlockError> {
        undamaged(dir, || Self::open_files(dir, interner))
    }

    fn open_files(dir: &Path, interner: &Arc<LabelInterner>) -> Result<Self, BlockError> {
        let corrupt = |msg: String| BlockError::Corrupt(dir.to_path_buf(), msg);
        let meta: Meta = serde_json::from_slice(&fs::read(dir.join(schema::META_FILE))?)
            .map_err(|e| corrupt(format!("meta.json: {e}")))?;
        if !schema::READABLE.contains(&meta.version) {
            return Err(corrupt(format!(
                "unsupported block version {}",
                meta.version
            )));
        }
        for (file, want) in &meta.checksums {
            if !schema::DATA_FILES.contains(&file.as_str()) {
                return Err(corrupt(format!("meta.json: a checksum of {file:?}")));
            }
            let got = schema::checksum(&dir.join(file))?;
            if got != *want {
                return Err(corrupt(format!(
                    "{file}: checksum {got:08x}, meta.json says {want:08x}"
                )));
            }
        }
        let block = Self {
            chunks: Mutex::new(Rows::open(
                &dir.join(schema::CHUNKS_FILE),
                &(if meta.version == 1 {
                    schema::chunks_v1()
                } else {
                    schema::chunks()
                }),
            )?),
            timestamps: if meta.version == 1 {
                None
            } else {
                Some(Mutex::new(Rows::open(
                    &dir.join(schema::TIMESTAMPS_FILE),
                    &schema::timestamps(),
                )?))
            },
            windows: Mutex::new(Rows::open(
                &dir.join(schema::WINDOWS_FILE),
                &schema::windows(),
            )?),
            dir: dir.to_path_buf(),
            meta,
            index: OnceLock::new(),
            interner: interner.clone(),
        };
        if block.meta.resolution_ms == 0 {
            block.index()?;
        }
        Ok(block)
    }

    /// The block's index, read from its index file the first time.
    fn index(&self) -> Result<&BlockIndex, BlockError> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        // Two first readers may both read it; one copy is kept.
        let _ = self.index.set(undamaged(&self.dir, || self.read_index())?);
        Ok(self.index.get().expect("set above"))
    }

    fn read_index(&self) -> Result<BlockIndex, BlockError> {
        let corrupt = |msg: String| BlockError::Corrupt(self.dir.clone(), msg);
        // Sized by the rows actually read, not by the count meta.json
        // claims: a damaged one must not reserve memory for 2^64 series.
        let mut series = Vec::new();
        let mut floats = Index::default();
        let mut histograms = Index::default();
        let index = FileReader::try_new(
            BufReader::new(File::open(self.dir.join(schema::INDEX_FILE))?),
            None,
        )?;
        for batch in index {
            let batch = batch?;
            let labels = batch.column(0).as_binary::<i32>();
            let kinds = batch.column(1).as_primitive::<UInt8Type>();
            let first = batch.column(2).as_primitive::<UInt64Type>();
            let rows = batch.column(3).as_primitive::<UInt32Type>();
            series.reserve(batch.num_rows());
            let mut pairs = Vec::new();
            for i in 0..batch.num_rows() {
                // Borrowed from the batch: opening a block allocates no
                // `String`s per series.
                decode_labels(labels.value(i), &mut pairs)
                    .ok_or_else(|| corrupt("bad label set".into()))?;
                let labels = self.interner.intern(pairs.as_slice());
                let kind = if kinds.value(i) == 1 {
                    Kind::Histogram
                } else {
                    Kind::Float
                };
                let id = u32::try_from(series.len())
                    .map_err(|_| corrupt("more than 2^32 series".into()))?;
                match kind {
                    Kind::Float => floats.add(id, &labels),
                    Kind::Histogram => histograms.add(id, &labels),
                }
                series.push(BlockSeries {
                    labels,
                    kind,
                    first_row: first.value(i),
                    rows: rows.value(i),
                });
            }
        }
        floats.shrink_to_fit();
        histograms.shrink_to_fit();
        Ok(BlockIndex {
            series,
            floats,
            histograms,
        })
    }

    /// Checks that the index reads; a lazily loaded one is read and
    /// dropped again, one already loaded is not read twice.
    pub(crate) fn check_index(&self) -> Result<(), BlockError> {
        if self.index.get().is_some() {
            return Ok(());
        }
        self.read_index().map(drop)
    }

    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_t <= maxt && self.meta.max_t > mint
    }

    /// Label sets of the series of `kind` that match.
    pub(crate) fn labels(
        &self,
        kind: Kind,
        matchers: &[Matcher],
    ) -> Result<Vec<Labels>, BlockError> {
        let index = self.index()?;
        let postings = match kind {
            Kind::Float => &index.floats,
            Kind::Histogram => &index.histograms,
        };
        Ok(postings
            .select(matchers)
            .into_iter()
            .map(|id| index.series[id as usize].labels.labels())
            .collect())
    }

    pub(crate) fn label_names(
        &self,
        matchers: &[Matcher],
        out: &mut std::collections::BTreeSet<String>,
    ) -> Result<(), BlockError> {
        self.index()?.floats.label_names(matchers, out);
        Ok(())
    }

    pub(crate) fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        out: &mut std::collections::BTreeSet<String>,
    ) -> Result<(), BlockError> {
        self.index()?.floats.label_values(name, matchers, out);
        Ok(())
    }

    /// Float samples in `[mint, maxt]` of the matching series.
    #[cfg(test)]
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, BlockError> {
        let mut out = Vec::new();
        for (labels, id) in self.matching(Kind::Float, matchers)? {
            let mut samples = Vec::new();
            self.samples_of(id, mint, maxt, &mut samples)?;
            if !samples.is_empty() {
                out.push((labels, samples));
            }
        }
        Ok(out)
    }

    /// The matching series of `kind`: their label sets and ids, without
    /// reading any of their data.
    pub(crate) fn matching(
        &self,
        kind: Kind,
        matchers: &[Matcher],
    ) -> Result<Vec<(Labels, u32)>, BlockError> {
        let index = self.index()?;
        let postings = match kind {
            Kind::Float => &index.floats,
            Kind::Histogram => &index.histograms,
        };
        Ok(postings
            .select(matchers)
            .into_iter()
            .map(|id| (index.series[id as usize].labels.labels(), id))
            .collect())
    }

    /// Appends float series `id`'s samples in `[mint, maxt]` to `out`.
    pub(crate) fn samples_of(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), BlockError> {
        let s = &self.index()?.series[id as usize];
        let mut rows = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let mut timestamps = self.lock_timestamps();
        let samples = rows.samples(
            s.first_row..s.first_row + s.rows as u64,
            (mint, maxt),
            timestamps.as_deref_mut(),
            self,
        )?;
        out.extend(samples);
        Ok(())
    }

    /// Appends histogram series `id`'s windows ending in `(after, until]`
    /// to `out`.
    pub(crate) fn windows_of(
        &self,
        id: u32,
        after: i64,
        until: i64,
        out: &mut Vec<Window>,
    ) -> Result<(), BlockError> {
        let s = &self.index()?.series[id as usize];
        let mut rows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(rows.windows(s.first_row..s.first_row + s.rows as u64, after, until)?);
        Ok(())
    }

    /// Every series' label set and kind, in id order.
    pub(crate) fn series(&self) -> Result<Vec<(Labels, Kind)>, BlockError> {
        Ok(self
            .index()?
            .series
            .iter()
            .map(|s| (s.labels.labels(), s.kind))
            .collect())
    }

    /// All samples or windows of one series.
    pub(crate) fn data(&self, id: usize) -> Result<(Vec<Sample>, Vec<Window>), BlockError> {
        let s = &self.index()?.series[id];
        let range = s.first_row..s.first_row + s.rows as u64;
        Ok(match s.kind {
            Kind::Float => (
                self.chunks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .samples(
                        range,
                        (i64::MIN, i64::MAX),
                        self.lock_timestamps().as_deref_mut(),
                        self,
                    )?,
                Vec::new(),
            ),
            Kind::Histogram => (
                Vec::new(),
                self.windows
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .windows(range, i64::MIN, i64::MAX)?,
            ),
        })
    }

    /// Taken after `chunks`, never before.
    fn lock_timestamps(&self) -> Option<std::sync::MutexGuard<'_, Rows>> {
        self.timestamps
            .as_ref()
            .map(|t| t.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Rows {
    /// Opens `path`, refusing a file whose column types are not
    /// `expected` (reading one would fail deep inside a query).
    fn open(path: &Path, expected: &arrow_schema::SchemaRef) -> Result<Self, BlockError> {
        let reader = FileReader::try_new(BufReader::new(File::open(path)?), None)?;
        let types = |s: &arrow_schema::Schema| -> Vec<arrow_schema::DataType> {
            s.fields().iter().map(|f| f.data_type().clone()).collect()
        };
        if types(&reader.schema()) != types(expected) {
            return Err(BlockError::Corrupt(
                path.to_path_buf(),
                "unexpected column types".into(),
            ));
        }
        Ok(Self {
            reader,
            path: path.to_path_buf(),
            cached: None,
        })
    }

    fn batch(&mut self, i: usize) -> Result<&RecordBatch, BlockError> {
        if self.cached.as_ref().is_none_or(|(c, _)| *c != i) {
            let reader = &mut self.reader;
            let batch = undamaged(&self.path, || {
                reader.set_index(i)?;
                reader.next().transpose()?.ok_or_else(|| {
                    arrow_schema::ArrowError::IpcError(format!("missing batch {i}")).into()
                })
            })?;
            self.cached = Some((i, batch));
        }
        Ok(&self.cached.as_ref().expect("cached above").1)
    }

    /// Calls `f(batch, row)` for each global row in `range`.
    fn for_rows(
        &mut self,
        range: Range<u64>,
        mut f: impl FnMut(&RecordBatch, usize) -> Result<bool, BlockError>,
    ) -> Result<(), BlockError> {
        for row in range {
            let b = (row / schema::BATCH_ROWS as u64) as usize;
            if b >= self.reader.num_batches() {
                return Err(arrow_schema::ArrowError::IpcError(format!(
                    "row {row} beyond the file"
                ))
                .into());
            }
            let i = (row % schema::BATCH_ROWS as u64) as usize;
            let batch = self.batch(b)?;
            if i >= batch.num_rows() {
                return Err(arrow_schema::ArrowError::IpcError(format!(
                    "row {row} beyond its batch"
                ))
                .into());
            }
            if !f(batch, i)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The `BINARY` value at global `row` of column `col`.
    fn binary(&mut self, row: u64, col: usize) -> Result<&[u8], BlockError> {
        let beyond = |what: &str| -> BlockError {
            arrow_schema::ArrowError::IpcError(format!("row {row} beyond {what}")).into()
        };
        let b = (row / schema::BATCH_ROWS as u64) as usize;
        if b >= self.reader.num_batches() {
            return Err(beyond("the file"));
        }
        let i = (row % schema::BATCH_ROWS as u64) as usize;
        let values = self.batch(b)?.column(col).as_binary::<i32>();
        if i >= values.len() {
            return Err(beyond("its batch"));
        }
        Ok(values.value(i))
    }

    /// Samples in `mint..=maxt` of the chunk rows in `range`; their
    /// timestamps are in `timestamps` (version 2) or inline (version 1).
    fn samples(
        &mut self,
        range: Range<u64>,
        (mint, maxt): (i64, i64),
        mut timestamps: Option<&mut Rows>,
        block: &Block,
    ) -> Result<Vec<Sample>, BlockError> {
        let mut out = Vec::new();
        self.for_rows(range, |batch, i| {
            let min_t = batch.column(1).as_primitive::<Int64Type>().value(i);
            let max_t = batch.column(2).as_primitive::<Int64Type>().value(i);
            if min_t > maxt {
                return Ok(false);
            }
            if max_t < mint {
                return Ok(true);
            }
            let count = batch.column(3).as_primitive::<UInt32Type>().value(i) as usize;
            let ts = match timestamps.as_deref_mut() {
                None => batch.column(4).as_binary::<i32>().value(i),
                Some(t) => {
                    let row = batch.column(4).as_primitive::<UInt32Type>().value(i);
                    t.binary(row.into(), 0)?
                }
            };
            let vs = batch.column(5).as_binary::<i32>().value(i);
            columns::decode(block.meta.version, ts, vs, count, mint, maxt, &mut out)
                .map_err(|e| BlockError::Corrupt(block.dir.clone(), e.to_string()))?;
            Ok(true)
        })?;
        Ok(out)
    }

    fn windows(
        &mut self,
        range: Range<u64>,
        after: i64,
        until: i64,
    ) -> Result<Vec<Window>, BlockError> {
        let mut out = Vec::new();
        self.for_rows(range, |batch, i| {
            let end_ms = batch.column(2).as_primitive::<Int64Type>().value(i);
            if end_ms > until {
                return Ok(false);
            }
            if end_ms <= after {
                return Ok(true);
            }
            out.push(Window {
                start_ms: batch.column(1).as_primitive::<Int64Type>().value(i),
                end_ms,
                count: batch.column(3).as_primitive::<UInt64Type>().value(i),
                sum: batch.column(4).as_primitive::<Float64Type>().value(i),
                scale: batch.column(5).as_primitive::<Float64Type>().value(i),
                buckets: batch
                    .column(6)
                    .as_binary::<i32>()
                    .value(i)
                    .to_vec()
                    .into_boxed_slice(),
            });
            Ok(true)
        })?;
        Ok(out)
    }
}

/// Decodes an index entry's label set into `pairs`, checking that it is
/// a valid one (UTF-8, valid names in strictly increasing order): a
/// corrupt block must not become a label set that later fails to parse.
fn decode_labels<'a>(mut buf: &'a [u8], pairs: &mut Vec<(&'a str, &'a str)>) -> Option<()> {
    pairs.clear();
    while !buf.is_empty() {
        let mut take = || -> Option<&'a str> {
            let n = get_uvarint(&mut buf).ok()? as usize;
            let (head, rest) = (buf.get(..n)?, buf.get(n..)?);
            buf = rest;
            std::str::from_utf8(head).ok()
        };
        let name = take()?;
        let value = take()?;
        let ordered = pairs.last().is_none_or(|&(last, _)| last < name);
        if !ordered || !conduit_api::labels::is_valid_name(name) {
            return None;
        }
        pairs.push((name, value));
    }
    Some(())
}

/// Opens every complete block under `dir`, oldest first; leftovers of an
/// interrupted write (`*.tmp`) are removed.
pub(crate) fn open_all(
    dir: &Path,
    interner: &Arc<LabelInterner>,
) -> Result<Vec<Block>, BlockError> {
    fs::create_dir_all(dir)?;
    let mut blocks = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            tracing::info!(path = %path.display(), "removing an unfinished block");
            fs::remove_dir_all(&path)?;
            continue;
        }
        if !name.starts_with("block-") && !name.starts_with("rollup") {
            continue;
        }
        match Block::open(&path, interner).and_then(|b| b.check_index().map(|()| b)) {
            Ok(b) => blocks.push(b),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable block");
            }
        }
    }
    blocks.sort_by_key(|b| b.meta.min_t);
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use writer::BlockWriter;

    #[test]
    fn written_blocks_read_back_by_matchers_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(dir.path(), 0, 100_000, 1, 0).unwrap();
        let mut all = Vec::new();
        for i in 0..600 {
            let labels = Labels::try_from_pairs([
                ("__name__", "request_total".to_string()),
                ("namespace", "demo".to_string()),
                ("deployment", format!("d{:04}", i % 50)),
                ("pod", format!("p{i:05}")),
            ])
            .unwrap();
            all.push(labels);
        }
        all.sort();
        // Pods p00000..p00299 are scraped on the second, the others a
        // millisecond later: two distinct timestamp columns.
        for (i, labels) in all.iter().enumerate() {
            let pod: i64 = labels.get("pod").unwrap()[1..].parse().unwrap();
            let offset = i64::from(pod >= 300);
            let samples: Vec<Sample> = (0..500)
                .map(|t| (t * 1000 + offset, (t * i as i64) as f64))
                .collect();
            w.add(labels, Kind::Float, &samples, &[]).unwrap();
        }
        let (path, meta) = w.finish().unwrap();
        assert_eq!(meta.series, 600);
        assert_eq!(meta.samples, 300_000);
        assert!(meta.bytes < 300_000, "{} bytes", meta.bytes);
        let timestamp_rows: usize = FileReader::try_new(
            File::open(path.join(schema::TIMESTAMPS_FILE)).unwrap(),
            None,
        )
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
        assert_eq!(timestamp_rows, 2, "each distinct timestamp column once");

        let block = Block::open(&path, &Arc::default()).unwrap();
        let got = block
            .select(&[Matcher::equal("deployment", "d0007")], 10_000, 12_000)
            .unwrap();
        assert_eq!(got.len(), 12);
        for (labels, samples) in got {
            assert_eq!(labels.get("deployment"), Some("d0007"));
            let pod: i64 = labels.get("pod").unwrap()[1..].parse().unwrap();
            let offset = i64::from(pod >= 300);
            assert_eq!(
                samples.iter().map(|s| s.0).collect::<Vec<_>>(),
                [10_000, 11_000, 12_000]
                    .map(|t| t + offset)
                    .into_iter()
                    .filter(|&t| t <= 12_000)
                    .collect::<Vec<_>>(),
                "{labels}"
            );
        }
        let blocks = open_all(dir.path(), &Arc::default()).unwrap();
        assert_eq!(blocks.len(), 1);
    }

    #[test]
    fn a_rollup_reads_its_index_on_first_use_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(dir.path(), 0, 600_000, 1, 60_000).unwrap();
        for pod in ["a", "b"] {
            let labels = Labels::try_from_pairs([
                ("__name__", "request_total".to_string()),
                ("pod", pod.to_string()),
            ])
            .unwrap();
            let samples: Vec<Sample> = (0..10).map(|m| (m * 60_000, m as f64)).collect();
            w.add(&labels, Kind::Float, &samples, &[]).unwrap();
        }
        let (path, _) = w.finish().unwrap();

        let block = Block::open(&path, &Arc::default()).unwrap();
        assert!(block.index.get().is_none(), "a rollup's index waits");
        let got = block
            .select(&[Matcher::equal("pod", "b")], 0, 600_000)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 10);
        assert!(block.index.get().is_some(), "and is kept once read");

        std::fs::write(path.join(schema::INDEX_FILE), b"not arrow").unwrap();
        let err = Block::open(&path, &Arc::default()).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // A block written before checksums finds out on first use.
        let meta_path = path.join(schema::META_FILE);
        let mut meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        meta.checksums.clear();
        std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        let lazy = Block::open(&path, &Arc::default()).unwrap();
        let err = lazy.select(&[], 0, 600_000).map(|_| ()).unwrap_err();
        assert!(matches!(err, BlockError::Arrow(_)), "{err}");
        let blocks = open_all(dir.path(), &Arc::default()).unwrap();
        assert!(blocks.is_empty(), "start-up skips a block it cannot index");
    }
}
