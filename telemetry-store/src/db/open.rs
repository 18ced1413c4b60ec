//! Opening the data directory: the blocks on disk, then the WAL replayed
//! into a head that starts where the newest block ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::replay::apply_replayed;
use super::{Blocks, Db, DbError, DbOptions, Stats, valid_times};
use crate::block::{self, Block};
use crate::head::{Head, LabelInterner, MemSeries};
use crate::model::SeriesRef;
use crate::wal::Wal;

impl Db {
    /// Opens the data directory: blocks, then WAL replay into the head.
    pub(crate) fn open(opts: DbOptions) -> Result<Self, DbError> {
        std::fs::create_dir_all(&opts.dir)?;
        let labels = Arc::new(LabelInterner::default());
        let blocks: Vec<Arc<Block>> = block::open_all(&opts.dir.join("blocks"), &labels)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let head_from = blocks
            .iter()
            .map(|b| b.meta.max_t)
            .max()
            .unwrap_or(i64::MIN);
        let head = Head::new(
            opts.max_series,
            opts.block_range_ms,
            opts.dir.clone(),
            labels.clone(),
        );
        head.set_min_valid_t(head_from);
        let stats = Stats::default();
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        let mut refs: HashMap<SeriesRef, Arc<MemSeries>> = HashMap::new();
        // A WAL written before times were checked may hold any time.
        let valid = valid_times(opts.max_future_ms);
        let valid = head_from.max(*valid.start())..=*valid.end();
        let (wal, replay) = Wal::open(&opts.dir.join("wal"), opts.fsync, |rec| {
            apply_replayed(&head, &mut refs, rec, &valid, &mut min_t, &mut max_t)
        })?;
        drop(refs);
        stats
            .wal_replayed_records
            .store(replay.records, Ordering::Relaxed);
        stats
            .wal_truncated_bytes
            .store(replay.truncated_bytes, Ordering::Relaxed);
        tracing::info!(
            blocks = blocks.len(),
            series = head.len(),
            wal_records = replay.records,
            "opened data directory {}",
            opts.dir.display()
        );
        Ok(Self {
            head,
            wal: Mutex::new(wal),
            blocks: RwLock::new(Blocks {
                list: blocks,
                head_from,
            }),
            stats,
            head_min_t: AtomicI64::new(min_t),
            head_max_t: AtomicI64::new(max_t),
            maintenance: Mutex::new(()),
            wal_keep_from: AtomicU64::new(u64::MAX),
            labels,
            opts,
        })
    }
}
