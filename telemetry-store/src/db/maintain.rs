//! Maintenance: cutting the head's oldest range into a block (and its
//! rollup), truncating the WAL behind it, dropping idle series,
//! compacting blocks and applying retention. One run at a time, on a
//! blocking thread; reads and appends go on meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Db, DbError, ROLLUP_RESOLUTION_MS, valid_times};
use crate::block::{self, Block, compact};
use crate::head::MemSeries;
use crate::model::{Kind, Window};
use crate::wal::record;

impl Db {
    /// Cuts blocks, truncates the WAL, compacts and applies retention, then
    /// gives free heap pages back to the OS. Runs on a blocking thread; one
    /// at a time.
    pub(crate) fn maintain(&self, now_ms: i64) -> Result<(), DbError> {
        let _one = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let changes = self.block_changes();
        while self.cut_block()? {}
        self.coarsen_windows(now_ms);
        self.compact()?;
        self.apply_retention(now_ms)?;
        if self.block_changes() != changes {
            self.labels.purge();
        }
        crate::memory::release_free();
        Ok(())
    }

    /// Blocks cut, compacted or deleted so far: each can leave label sets
    /// that only the interner still holds.
    fn block_changes(&self) -> u64 {
        [
            &self.stats.blocks_cut,
            &self.stats.compactions,
            &self.stats.blocks_deleted,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// Moves the oldest block range out of the head once the head spans
    /// 1.5 block ranges. Returns whether a block was cut.
    fn cut_block(&self) -> Result<bool, DbError> {
        let range = self.opts.block_range_ms;
        let head_from = self
            .blocks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .head_from;
        let min_t = self.head_min_t.load(Ordering::Relaxed).max(head_from);
        // The head holds valid times only; the clamp keeps it that way
        // for the block range even if the clock jumped back since.
        let max_t = self
            .head_max_t
            .load(Ordering::Relaxed)
            .min(*valid_times(self.opts.max_future_ms).end());
        if min_t == i64::MAX || max_t == i64::MIN || max_t.saturating_sub(min_t) < range + range / 2
        {
            return Ok(false);
        }
        let start = min_t.div_euclid(range) * range;
        let Some(end) = start.checked_add(range) else {
            return Ok(false);
        };
        // From now on the head refuses samples this block will hold.
        self.head.set_min_valid_t(end);
        // Appends in flight finish before we read.
        drop(self.wal.lock().unwrap_or_else(|e| e.into_inner()));

        // Compared pair by pair, compact label sets sort as `Labels` do,
        // without decoding every series' set at once.
        let mut sorted = self.head.all();
        sorted.sort_by(|a, b| (a.labels.pairs().cmp(b.labels.pairs())).then(a.kind.cmp(&b.kind)));
        let blocks_dir = self.opts.dir.join("blocks");
        let mut w = block::writer::BlockWriter::create(&blocks_dir, start, end, 1, 0)?;
        let mut rollup = if self.opts.raw_retention_ms > 0 {
            Some(block::writer::BlockWriter::create(
                &blocks_dir,
                start,
                end,
                1,
                ROLLUP_RESOLUTION_MS,
            )?)
        } else {
            None
        };
        for s in &sorted {
            let (samples, windows) = {
                let data = s.lock();
                let mut samples = Vec::new();
                data.samples(start, end - 1, &mut samples)?;
                let windows: Vec<Window> = data.windows(start - 1, end - 1).to_vec();
                (samples, windows)
            };
            w.add(&s.labels, s.kind, &samples, &windows)?;
            if let Some(r) = &mut rollup {
                r.add(
                    &s.labels,
                    s.kind,
                    &crate::downsample::samples(&samples, ROLLUP_RESOLUTION_MS),
                    &crate::downsample::windows(&windows, ROLLUP_RESOLUTION_MS),
                )?;
            }
        }
        let (dir, meta) = w.finish()?;
        let mut block = vec![Arc::new(Block::open(&dir, &self.labels)?)];
        if let Some(r) = rollup {
            let (dir, _) = r.finish()?;
            block.push(Arc::new(Block::open(&dir, &self.labels)?));
        }
        tracing::info!(
            min_t = meta.min_t,
            max_t = meta.max_t,
            series = meta.series,
            samples = meta.samples,
            bytes = meta.bytes,
            "cut a block from the head"
        );
        {
            let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
            blocks.list.extend(block);
            blocks.list.sort_by_key(|b| b.meta.min_t);
            blocks.head_from = end;
            // Truncate under the lock so no reader sees the data twice or
            // not at all.
            let mut new_min = i64::MAX;
            for s in &sorted {
                let mut data = s.lock();
                if data.truncate_before(end) {
                    new_min = new_min.min(data.min_t().unwrap_or(i64::MAX));
                }
            }
            self.head_min_t.store(new_min, Ordering::Relaxed);
            self.head.chunk_files.release_before(end);
        }
        self.stats.blocks_cut.fetch_add(1, Ordering::Relaxed);
        self.gc_series(&sorted, end);
        self.truncate_wal(end)?;
        Ok(true)
    }

    /// Drops series that hold no data any more and have not been written
    /// to for a block range.
    fn gc_series(&self, series: &[Arc<MemSeries>], cut: i64) {
        let now = crate::time::now_ms();
        let idle_ms = self.opts.block_range_ms;
        let wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        for s in series {
            let empty = s.lock().min_t().is_none();
            let idle = now - s.last_append_ms.load(Ordering::Relaxed) > idle_ms;
            if empty && (idle || s.lock().last().is_none_or(|(t, _)| t < cut)) {
                self.head.remove(s);
                removed += 1;
            }
        }
        drop(wal);
        self.stats
            .series_removed
            .fetch_add(removed, Ordering::Relaxed);
    }

    /// Keeps WAL segments from `segment` on (remote write has not sent
    /// them yet).
    pub(crate) fn protect_wal_from(&self, segment: u64) {
        self.wal_keep_from.store(segment, Ordering::Relaxed);
    }

    fn truncate_wal(&self, before: i64) -> Result<(), DbError> {
        let mut keep_from = self.wal_keep_from.load(Ordering::Relaxed);
        let wal_bytes = self.wal_bytes();
        if keep_from != u64::MAX && wal_bytes > self.opts.wal_keep_max_bytes {
            tracing::warn!(
                wal_bytes,
                limit = self.opts.wal_keep_max_bytes,
                "remote write is too far behind; truncating the WAL anyway (unsent samples are lost)"
            );
            keep_from = u64::MAX;
        }
        // Only planning and forgetting take the log's lock: encoding a
        // large head's series and writing them out took seconds, and
        // every append waited for it.
        let plan = self
            .wal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .plan_truncation(before, keep_from)?;
        if plan.drops_nothing() {
            return Ok(());
        }
        // Every series logged before the plan exists now (or is gone for
        // good); those logged after it are in kept segments.
        let live = self.head.all();
        let records: Vec<Vec<u8>> = live
            .chunks(10_000)
            .map(|chunk| {
                let mut buf = Vec::new();
                record::encode_series(
                    &mut buf,
                    chunk.iter().map(|s| (s.r, s.kind, s.labels.pairs())),
                );
                buf
            })
            .collect();
        plan.carry_out(&self.opts.dir.join("wal"), &records)?;
        let dropped = self
            .wal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish_truncation(&plan);
        tracing::debug!(segments = dropped, "truncated the WAL");
        Ok(())
    }

    /// Keeps per-report windows for the recent past only; older ones are
    /// merged to one per minute (windows of `Golden` queries over older
    /// data then align to minutes).
    fn coarsen_windows(&self, now_ms: i64) {
        let before = now_ms - 15 * 60_000;
        for s in self.head.select(Kind::Histogram, &[]) {
            s.lock().coarsen_windows(before, 60_000);
        }
    }

    fn compact(&self) -> Result<(), DbError> {
        let ranges = compact::level_ranges(self.opts.block_range_ms, self.opts.retention_ms);
        loop {
            let chosen: Vec<Arc<Block>> = {
                let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
                // Raw blocks and rollups compact separately.
                let planned = [0, ROLLUP_RESOLUTION_MS].into_iter().find_map(|res| {
                    let same: Vec<&Arc<Block>> = blocks
                        .list
                        .iter()
                        .filter(|b| b.meta.resolution_ms == res)
                        .collect();
                    let metas: Vec<&block::Meta> = same.iter().map(|b| &b.meta).collect();
                    compact::plan(&metas, &ranges)
                        .map(|idx| idx.into_iter().map(|i| same[i].clone()).collect())
                });
                match planned {
                    Some(chosen) => chosen,
                    None => return Ok(()),
                }
            };
            let refs: Vec<&Block> = chosen.iter().map(|b| b.as_ref()).collect();
            let (dir, meta) = compact::merge(&self.opts.dir.join("blocks"), &refs)?;
            let merged = Arc::new(Block::open(&dir, &self.labels)?);
            tracing::info!(
                min_t = meta.min_t,
                max_t = meta.max_t,
                inputs = chosen.len(),
                bytes = meta.bytes,
                "compacted blocks"
            );
            {
                let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
                blocks
                    .list
                    .retain(|b| !chosen.iter().any(|c| Arc::ptr_eq(b, c)));
                blocks.list.push(merged);
                blocks.list.sort_by_key(|b| b.meta.min_t);
            }
            for b in &chosen {
                if b.dir != dir {
                    compact::delete(&b.dir)?;
                }
            }
            self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn apply_retention(&self, now_ms: i64) -> Result<(), DbError> {
        let wal_bytes = self.wal_bytes();
        let doomed: Vec<Arc<Block>> = {
            let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
            let metas: Vec<&block::Meta> = blocks.list.iter().map(|b| &b.meta).collect();
            let raw_age = if self.opts.raw_retention_ms > 0 {
                self.opts.raw_retention_ms.min(self.opts.retention_ms)
            } else {
                self.opts.retention_ms
            };
            let age = |m: &block::Meta| {
                if m.resolution_ms == 0 {
                    raw_age
                } else {
                    self.opts.retention_ms
                }
            };
            compact::expired(&metas, now_ms, age, self.opts.retention_bytes, wal_bytes)
                .into_iter()
                .map(|i| blocks.list[i].clone())
                .collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        self.blocks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .list
            .retain(|b| !doomed.iter().any(|d| Arc::ptr_eq(b, d)));
        for b in &doomed {
            tracing::info!(
                min_t = b.meta.min_t,
                max_t = b.meta.max_t,
                bytes = b.meta.bytes,
                "deleting a block past retention"
            );
            compact::delete(&b.dir)?;
        }
        self.stats
            .blocks_deleted
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
