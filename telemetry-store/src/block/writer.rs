//! Writes a block from series given in label order, streaming: only one
//! batch of rows is in memory at a time (plus the distinct timestamp
//! columns seen so far, up to a bound).

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::BuildHasher;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int64Builder, UInt8Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};

use super::schema::{self, BATCH_ROWS, Meta};
use crate::encoding::columns;
use crate::encoding::varint::put_uvarint;
use crate::model::{Kind, Sample, Window};
use crate::series::hash::FastBuild;
use crate::series::labelset::LabelPairs;
use crate::wal::sync_dir;

/// Samples per row: a row is the unit a query decodes.
const ROW_SAMPLES: usize = 7200;

/// One data file being written.
type DataFile = FileWriter<BufWriter<Checksummed>>;

pub(crate) struct BlockWriter {
    tmp: PathBuf,
    dir: PathBuf,
    chunks: DataFile,
    timestamps: DataFile,
    windows: DataFile,
    index: DataFile,
    chunk_rows: ChunkRows,
    timestamp_rows: TimestampRows,
    window_rows: WindowRows,
    index_rows: IndexRows,
    next_chunk_row: u64,
    next_window_row: u64,
    meta: Meta,
}

#[derive(Default)]
struct ChunkRows {
    series: UInt32Builder,
    min_t: Int64Builder,
    max_t: Int64Builder,
    samples: UInt32Builder,
    timestamps_row: UInt32Builder,
    values: BinaryBuilder,
    len: usize,
}

/// Distinct timestamp columns: written once each, then referred to by row.
#[derive(Default)]
struct TimestampRows {
    column: BinaryBuilder,
    len: usize,
    next_row: u32,
    /// Columns written so far by hash, while they fit [`SEEN_BYTES`]; past
    /// that, new columns are written without being looked up again.
    seen: HashMap<u64, SameHash, FastBuild>,
    seen_bytes: usize,
}

/// (row, encoded column) of the written columns with one hash.
type SameHash = Vec<(u32, Box<[u8]>)>;

/// Memory for looking up repeated timestamp columns while writing a block.
const SEEN_BYTES: usize = 64 << 20;

#[derive(Default)]
struct WindowRows {
    series: UInt32Builder,
    start: Int64Builder,
    end: Int64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    scale: Float64Builder,
    buckets: BinaryBuilder,
    len: usize,
}

#[derive(Default)]
struct IndexRows {
    labels: BinaryBuilder,
    kind: UInt8Builder,
    first_row: UInt64Builder,
    rows: UInt32Builder,
    len: usize,
}

type Result<T> = std::result::Result<T, super::BlockError>;

impl BlockWriter {
    /// Starts `parent/<name>.tmp`; [`Self::finish`] renames it into place.
    pub(crate) fn create(
        parent: &Path,
        min_t: i64,
        max_t: i64,
        level: u32,
        resolution_ms: i64,
    ) -> Result<Self> {
        let name = super::dir_name(min_t, max_t, resolution_ms);
        let dir = parent.join(&name);
        let tmp = parent.join(format!("{name}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let open = |file: &str, schema: &arrow_schema::Schema| -> Result<DataFile> {
            let f = BufWriter::new(Checksummed::new(File::create(tmp.join(file))?));
            // LZ4 frames: label sets and row bounds shrink several
            // times, and a batch decompresses in well under a
            // millisecond.
            let options = IpcWriteOptions::default()
                .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))?;
            Ok(FileWriter::try_new_with_options(f, schema, options)?)
        };
        Ok(Self {
            chunks: open(schema::CHUNKS_FILE, &schema::chunks())?,
            timestamps: open(schema::TIMESTAMPS_FILE, &schema::timestamps())?,
            timestamp_rows: TimestampRows::default(),
            windows: open(schema::WINDOWS_FILE, &schema::windows())?,
            index: open(schema::INDEX_FILE, &schema::index())?,
            tmp,
            dir,
            chunk_rows: ChunkRows::default(),
            window_rows: WindowRows::default(),
            index_rows: IndexRows::default(),
            next_chunk_row: 0,
            next_window_row: 0,
            meta: Meta {
                version: schema::VERSION,
                min_t,
                max_t,
                series: 0,
                samples: 0,
                windows: 0,
                level,
                bytes: 0,
                resolution_ms,
                checksums: Default::default(),
            },
        })
    }

    /// Adds the next series; calls must come in label order.
    pub(crate) fn add(
        &mut self,
        labels: &(impl LabelPairs + ?Sized),
        kind: Kind,
        samples: &[Sample],
        windows: &[Window],
    ) -> Result<()> {
        if samples.is_empty() && windows.is_empty() {
            return Ok(());
        }
        let series = self.meta.series as u32;
        let (first_row, rows) = match kind {
            Kind::Float => {
                let first = self.next_chunk_row;
                for slice in samples.chunks(ROW_SAMPLES) {
                    self.push_chunk(series, slice)?;
                }
                (first, self.next_chunk_row - first)
            }
            Kind::Histogram => {
                let first = self.next_window_row;
                for w in windows {
                    self.push_window(series, w)?;
                }
                (first, self.next_window_row - first)
            }
        };
        let mut encoded = Vec::new();
        for (name, value) in labels.label_pairs() {
            put_uvarint(&mut encoded, name.len() as u64);
            encoded.extend_from_slice(name.as_bytes());
            put_uvarint(&mut encoded, value.len() as u64);
            encoded.extend_from_slice(value.as_bytes());
        }
        let ix = &mut self.index_rows;
        ix.labels.append_value(&encoded);
        ix.kind.append_value(match kind {
            Kind::Float => 0,
            Kind::Histogram => 1,
        });
        ix.first_row.append_value(first_row);
        ix.rows.append_value(rows as u32);
        ix.len += 1;
        if ix.len >= BATCH_ROWS {
            self.flush_index()?;
        }
        self.meta.series += 1;
        self.meta.samples += samples.len() as u64;
        self.meta.windows += windows.len() as u64;
        Ok(())
    }

    fn push_chunk(&mut self, series: u32, samples: &[Sample]) -> Result<()> {
        let timestamps_row = self.timestamps_row(columns::encode_timestamps(samples))?;
        let r = &mut self.chunk_rows;
        r.series.append_value(series);
        r.min_t.append_value(samples[0].0);
        r.max_t.append_value(samples[samples.len() - 1].0);
        r.samples.append_value(samples.len() as u32);
        r.timestamps_row.append_value(timestamps_row);
        r.values.append_value(columns::encode_values(samples));
        r.len += 1;
        self.next_chunk_row += 1;
        if r.len >= BATCH_ROWS {
            self.flush_chunks()?;
        }
        Ok(())
    }

    fn push_window(&mut self, series: u32, w: &Window) -> Result<()> {
        let r = &mut self.window_rows;
        r.series.append_value(series);
        r.start.append_value(w.start_ms);
        r.end.append_value(w.end_ms);
        r.count.append_value(w.count);
        r.sum.append_value(w.sum);
        r.scale.append_value(w.scale);
        r.buckets.append_value(&w.buckets);
        r.len += 1;
        self.next_window_row += 1;
        if r.len >= BATCH_ROWS {
            self.flush_windows()?;
        }
        Ok(())
    }

    /// The row of `timestamps.arrow` holding `encoded`, written now unless
    /// an earlier series had the same timestamps.
    fn timestamps_row(&mut self, encoded: Vec<u8>) -> Result<u32> {
        let t = &mut self.timestamp_rows;
        let hash = FastBuild::default().hash_one(&encoded);
        let earlier = t
            .seen
            .get(&hash)
            .and_then(|same_hash| same_hash.iter().find(|(_, e)| **e == *encoded));
        if let Some(&(row, _)) = earlier {
            return Ok(row);
        }
        let row = t.next_row;
        t.next_row += 1;
        t.column.append_value(&encoded);
        t.len += 1;
        if t.seen_bytes < SEEN_BYTES {
            t.seen_bytes += encoded.len();
            t.seen
                .entry(hash)
                .or_default()
                .push((row, encoded.into_boxed_slice()));
        }
        if t.len >= BATCH_ROWS {
            self.flush_timestamps()?;
        }
        Ok(row)
    }

    fn flush_timestamps(&mut self) -> Result<()> {
        let t = &mut self.timestamp_rows;
        if t.len == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![std::sync::Arc::new(t.column.finish())];
        t.len = 0;
        self.timestamps
            .write(&RecordBatch::try_new(schema::timestamps(), columns)?)?;
        Ok(())
    }

    fn flush_chunks(&mut self) -> Result<()> {
        let r = &mut self.chunk_rows;
        if r.len == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            std::sync::Arc::new(r.series.finish()),
            std::sync::Arc::new(r.min_t.finish()),
            std::sync::Arc::new(r.max_t.finish()),
            std::sync::Arc::new(r.samples.finish()),
            std::sync::Arc::new(r.timestamps_row.finish()),
            std::sync::Arc::new(r.values.finish()),
        ];
        r.len = 0;
        self.chunks
            .write(&RecordBatch::try_new(schema::chunks(), columns)?)?;
        Ok(())
    }

    fn flush_windows(&mut self) -> Result<()> {
        let r = &mut self.window_rows;
        if r.len == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            std::sync::Arc::new(r.series.finish()),
            std::sync::Arc::new(r.start.finish()),
            std::sync::Arc::new(r.end.finish()),
            std::sync::Arc::new(r.count.finish()),
            std::sync::Arc::new(r.sum.finish()),
            std::sync::Arc::new(r.scale.finish()),
            std::sync::Arc::new(r.buckets.finish()),
        ];
        r.len = 0;
        self.windows
            .write(&RecordBatch::try_new(schema::windows(), columns)?)?;
        Ok(())
    }

    fn flush_index(&mut self) -> Result<()> {
        let r = &mut self.index_rows;
        if r.len == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            std::sync::Arc::new(r.labels.finish()),
            std::sync::Arc::new(r.kind.finish()),
            std::sync::Arc::new(r.first_row.finish()),
            std::sync::Arc::new(r.rows.finish()),
        ];
        r.len = 0;
        self.index
            .write(&RecordBatch::try_new(schema::index(), columns)?)?;
        Ok(())
    }

    /// Completes the files, fsyncs them and moves the block into place.
    /// Returns its directory and meta.
    pub(crate) fn finish(mut self) -> Result<(PathBuf, Meta)> {
        self.flush_chunks()?;
        self.flush_timestamps()?;
        self.flush_windows()?;
        self.flush_index()?;
        let mut bytes = 0;
        for (file, w) in [
            (schema::CHUNKS_FILE, &mut self.chunks),
            (schema::TIMESTAMPS_FILE, &mut self.timestamps),
            (schema::WINDOWS_FILE, &mut self.windows),
            (schema::INDEX_FILE, &mut self.index),
        ] {
            w.finish()?;
            w.flush()?;
            let written = w.get_ref().get_ref();
            written.file.sync_all()?;
            bytes += written.bytes;
            let crc = written.hasher.clone().finalize();
            self.meta.checksums.insert(file.to_string(), crc);
        }
        self.meta.bytes = bytes;
        let meta_json = serde_json::to_vec_pretty(&self.meta).expect("meta serializes");
        let meta_path = self.tmp.join(schema::META_FILE);
        fs::write(&meta_path, meta_json)?;
        File::open(&meta_path)?.sync_all()?;
        sync_dir(&self.tmp)?;
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)?;
        }
        fs::rename(&self.tmp, &self.dir)?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok((self.dir.clone(), self.meta.clone()))
    }
}

/// A block that failed half-way (a full disk) is removed at once, not
/// left taking the space the WAL needs until the next attempt.
impl Drop for BlockWriter {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A data file that hashes what it writes, so the block's checksums need
/// no second read of files that may be hundreds of megabytes.
struct Checksummed {
    file: File,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl Checksummed {
    fn new(file: File) -> Self {
        Self {
            file,
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }
}

impl Write for Checksummed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
