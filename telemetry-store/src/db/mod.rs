//! The database: head + WAL + blocks behind one append path and one read
//! path.
//!
//! Split by what touches the data: [`open`] finds the blocks and has
//! [`replay`] rebuild the head from the WAL; [`append`] is the only way
//! samples get in (validate, log, apply, under the WAL lock, which keeps
//! the WAL and the head in the same order without per-series
//! coordination); [`read`] is the only way they get out, one querier that
//! merges blocks and head for either kind of series; [`maintain`] moves
//! data from the head to blocks and out of the blocks again. They share
//! the [`Db`] and its block list, whose snapshot a read takes together
//! with the head's lower time bound, so a block cut in progress is never
//! counted twice nor missed.

mod append;
mod maintain;
mod open;
mod read;
mod replay;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use conduit_api::Labels;

use crate::block::{Block, BlockError};
use crate::head::{Head, LabelInterner, MemSeries, SeriesLimit};
use crate::model::Kind;
use crate::wal::{FsyncPolicy, Wal};

pub(crate) use append::{Batch, Outcome, valid_times};
pub(crate) use read::{Floats, Windows};

pub(crate) struct DbOptions {
    pub(crate) dir: PathBuf,
    pub(crate) block_range_ms: i64,
    pub(crate) retention_ms: i64,
    pub(crate) retention_bytes: u64,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) max_series: usize,
    /// Raw blocks older than this are deleted once their rollup exists;
    /// 0 keeps raw data for the whole retention and writes no rollups.
    pub(crate) raw_retention_ms: i64,
    /// Most WAL bytes kept for a lagging remote-write forwarder.
    pub(crate) wal_keep_max_bytes: u64,
    /// How far past the clock a sample may be dated.
    pub(crate) max_future_ms: i64,
}

#[cfg(test)]
impl DbOptions {
    /// A laptop's defaults in `dir`, for unit tests.
    pub(crate) fn for_tests(dir: &std::path::Path) -> Self {
        Self {
            dir: dir.into(),
            block_range_ms: 7_200_000,
            retention_ms: 86_400_000,
            retention_bytes: u64::MAX,
            fsync: FsyncPolicy::Never,
            max_series: 10_000,
            raw_retention_ms: 0,
            wal_keep_max_bytes: 0,
            max_future_ms: 600_000,
        }
    }
}

/// The step of rollups (see [`crate::downsample`]).
pub(crate) const ROLLUP_RESOLUTION_MS: i64 = 60_000;

/// Counters exposed on `/metrics` and in `Status`.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) samples_appended: AtomicU64,
    pub(crate) windows_appended: AtomicU64,
    pub(crate) out_of_order: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) out_of_bounds: AtomicU64,
    pub(crate) out_of_time_range: AtomicU64,
    pub(crate) series_refused: AtomicU64,
    pub(crate) series_removed: AtomicU64,
    pub(crate) blocks_cut: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) blocks_deleted: AtomicU64,
    pub(crate) wal_replayed_records: AtomicU64,
    pub(crate) wal_truncated_bytes: AtomicU64,
    pub(crate) query_samples_loaded: AtomicU64,
}

struct Blocks {
    list: Vec<Arc<Block>>,
    /// Head data before this is in blocks and not read from the head.
    head_from: i64,
}

impl Blocks {
    /// Where raw data starts: rollups answer only for earlier times.
    fn raw_from(&self) -> i64 {
        self.list
            .iter()
            .filter(|b| b.meta.resolution_ms == 0)
            .map(|b| b.meta.min_t)
            .min()
            .unwrap_or(self.head_from)
    }

    /// The blocks to read for `[mint, maxt]`, each with the part of the
    /// range it answers: raw blocks all of theirs, rollups only before the
    /// raw data.
    fn covering(&self, mint: i64, maxt: i64) -> Vec<(&Arc<Block>, i64, i64)> {
        let raw_from = self.raw_from();
        self.list
            .iter()
            .filter_map(|b| {
                let hi = if b.meta.resolution_ms == 0 {
                    maxt
                } else {
                    maxt.min(raw_from.saturating_sub(1))
                };
                (mint <= hi && b.overlaps(mint, hi)).then_some((b, mint, hi))
            })
            .collect()
    }
}

pub(crate) struct Db {
    opts: DbOptions,
    pub(crate) head: Head,
    wal: Mutex<Wal>,
    blocks: RwLock<Blocks>,
    pub(crate) stats: Stats,
    head_min_t: AtomicI64,
    head_max_t: AtomicI64,
    maintenance: Mutex<()>,
    /// The oldest WAL segment remote write still needs.
    wal_keep_from: AtomicU64,
    /// One label set copy per series for the head and all blocks.
    labels: Arc<LabelInterner>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Block(#[from] BlockError),
}

impl Db {
    /// How long data is kept (`--retention-time`): older windows have
    /// nothing to answer from.
    pub(crate) fn retention_ms(&self) -> i64 {
        self.opts.retention_ms
    }

    /// How far past the clock a sample may be dated.
    pub(crate) fn max_future_ms(&self) -> i64 {
        self.opts.max_future_ms
    }

    pub(crate) fn series(&self, labels: Labels, kind: Kind) -> Result<Arc<MemSeries>, SeriesLimit> {
        let r = self.head.get_or_create(labels, kind);
        if r.is_err() {
            self.stats.series_refused.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Blocks on disk: (count, bytes, samples).
    pub(crate) fn block_stats(&self) -> (usize, u64, u64) {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        (
            blocks.list.len(),
            blocks.list.iter().map(|b| b.meta.bytes).sum(),
            blocks.list.iter().map(|b| b.meta.samples).sum(),
        )
    }

    pub(crate) fn wal_bytes(&self) -> u64 {
        self.wal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .disk_bytes()
    }

    /// Bytes of chunk and window data held by the head.
    pub(crate) fn head_chunk_bytes(&self) -> usize {
        self.head.all().iter().map(|s| s.lock().bytes()).sum()
    }
}
