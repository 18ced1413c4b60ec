//! The database: head + WAL + blocks behind one append path and one read
//! path.
//!
//! Appends are serialized by the WAL lock (validate → log → apply), which
//! keeps the WAL and the head in the same order without per-series
//! coordination; everything outside that lock (decoding, series lookup)
//! runs in parallel. Reads take a snapshot of the block list and the
//! head's lower time bound together, so a block cut in progress is never
//! counted twice nor missed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use conduit_api::Labels;

use crate::block::{self, Block, BlockError, compact};
use crate::head::{Head, LabelInterner, MemSeries, Reject, SeriesLimit};
use crate::model::{Kind, Sample, Window};
use crate::prefetch;
use crate::series::hash::FastBuild;
use crate::series::labelset::LabelLookup;
use crate::series::{Matcher, SeriesRef};
use crate::wal::{Entry, FsyncPolicy, Record, Wal, record};

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

/// What became of a batch's samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) accepted: u64,
    pub(crate) out_of_order: u64,
    pub(crate) duplicates: u64,
    pub(crate) out_of_bounds: u64,
    /// Dated beyond the future window, or before 1970.
    pub(crate) out_of_time_range: u64,
}

impl Outcome {
    pub(crate) fn rejected(&self) -> u64 {
        self.out_of_order + self.duplicates + self.out_of_bounds + self.out_of_time_range
    }
}

/// The times the store takes samples at: from 1970 to `max_future_ms`
/// past its clock. Nothing later is trusted: a block range, a chunk file,
/// a retention cut or a follower's position derived from a year-2100
/// timestamp (or `i64::MAX`) would stop the ingest of current data.
pub(crate) fn valid_times(max_future_ms: i64) -> std::ops::RangeInclusive<i64> {
    0..=crate::time::now_ms().saturating_add(max_future_ms)
}

/// Samples and windows to append together.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) floats: Vec<(Arc<MemSeries>, Sample)>,
    pub(crate) windows: Vec<(Arc<MemSeries>, Window)>,
}

/// Where [`Db::select_each`] reads a series from: a block (by its place
/// among the blocks covering the range, and its id there) or the head.
enum Source {
    Block(usize, u32),
    Head(Arc<MemSeries>),
}

/// One series' samples, as a query sees it.
pub(crate) struct SeriesSamples {
    pub(crate) labels: Labels,
    pub(crate) samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Block(#[from] BlockError),
}

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

    /// Validates, logs and applies a batch; returns once the accepted
    /// samples are in the WAL (and on disk, with `--wal-fsync always`).
    pub(crate) fn commit(&self, batch: &Batch) -> io::Result<Outcome> {
        let mut outcome = Outcome::default();
        let valid = valid_times(self.opts.max_future_ms);
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        let min_valid = self.head.min_valid_t();
        let mut last: HashMap<SeriesRef, Sample, FastBuild> =
            HashMap::with_capacity_and_hasher(batch.floats.len(), FastBuild::default());
        let mut accepted: Vec<(SeriesRef, i64, f64)> = Vec::with_capacity(batch.floats.len());
        let mut accepted_idx: Vec<usize> = Vec::with_capacity(batch.floats.len());
        let mut new_series: Vec<&MemSeries> = Vec::new();
        for (i, (s, (t, v))) in batch.floats.iter().enumerate() {
            prefetch_series(&batch.floats, i + PREFETCH_AHEAD);
            if !valid.contains(t) {
                outcome.out_of_time_range += 1;
                continue;
            }
            if *t < min_valid {
                outcome.out_of_bounds += 1;
                continue;
            }
            let prev = match last.get(&s.r) {
                Some(prev) => Some(*prev),
                None => s.lock().last_for_append(),
            };
            match crate::head::series::check(prev, *t, *v) {
                Err(Reject::OutOfOrder) => outcome.out_of_order += 1,
                Err(Reject::Duplicate) => outcome.duplicates += 1,
                Ok(false) => {}
                Ok(true) => {
                    let first_in_batch = last.insert(s.r, (*t, *v)).is_none();
                    accepted.push((s.r, *t, *v));
                    accepted_idx.push(i);
                    if first_in_batch && !s.logged.load(Ordering::Acquire) {
                        new_series.push(s);
                    }
                }
            }
        }
        let mut windows_ok: Vec<usize> = Vec::new();
        let mut last_window: HashMap<SeriesRef, i64, FastBuild> = HashMap::default();
        for (i, (s, w)) in batch.windows.iter().enumerate() {
            if !valid.contains(&w.end_ms) || !(0..=w.end_ms).contains(&w.start_ms) {
                outcome.out_of_time_range += 1;
                continue;
            }
            if w.end_ms < min_valid {
                outcome.out_of_bounds += 1;
                continue;
            }
            let in_batch = last_window.get(&s.r).copied();
            let verdict = match in_batch {
                Some(prev) if w.end_ms < prev => Err(Reject::OutOfOrder),
                Some(prev) if w.end_ms == prev => Err(Reject::Duplicate),
                _ => s.lock().check_window(w),
            };
            match verdict {
                Err(Reject::OutOfOrder) => outcome.out_of_order += 1,
                Err(Reject::Duplicate) => outcome.duplicates += 1,
                Ok(()) => {
                    let first_in_batch = last_window.insert(s.r, w.end_ms).is_none();
                    windows_ok.push(i);
                    if first_in_batch && !s.logged.load(Ordering::Acquire) {
                        new_series.push(s);
                    }
                }
            }
        }
        outcome.accepted = (accepted.len() + windows_ok.len()) as u64;
        if outcome.accepted > 0 {
            self.log(&mut wal, &new_series, &accepted, batch, &windows_ok)?;
            self.apply(batch, &accepted_idx, &windows_ok);
        }
        drop(wal);
        self.count(&outcome, accepted.len() as u64, windows_ok.len() as u64);
        Ok(outcome)
    }

    /// Logs a batch's new series, samples and windows as one append: all
    /// of it is in the WAL, or none.
    fn log(
        &self,
        wal: &mut Wal,
        new_series: &[&MemSeries],
        samples: &[(SeriesRef, i64, f64)],
        batch: &Batch,
        windows: &[usize],
    ) -> io::Result<()> {
        let (mut series_rec, mut samples_rec, mut windows_rec) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut entries = Vec::with_capacity(3);
        if !new_series.is_empty() {
            record::encode_series(
                &mut series_rec,
                new_series.iter().map(|s| (s.r, s.kind, s.labels.pairs())),
            );
            entries.push(Entry {
                payload: &series_rec,
                max_t: None,
            });
        }
        if !samples.is_empty() {
            record::encode_samples(&mut samples_rec, samples);
            entries.push(Entry {
                payload: &samples_rec,
                max_t: samples.iter().map(|s| s.1).max(),
            });
        }
        if !windows.is_empty() {
            let ws = windows
                .iter()
                .map(|&i| (batch.windows[i].0.r, &batch.windows[i].1));
            record::encode_windows(&mut windows_rec, ws);
            entries.push(Entry {
                payload: &windows_rec,
                max_t: windows.iter().map(|&i| batch.windows[i].1.end_ms).max(),
            });
        }
        wal.append(&entries)?;
        for s in new_series {
            s.mark_logged();
        }
        Ok(())
    }

    fn apply(&self, batch: &Batch, floats: &[usize], windows: &[usize]) {
        let now = crate::time::now_ms();
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for (k, &i) in floats.iter().enumerate() {
            if let Some(&ahead) = floats.get(k + PREFETCH_AHEAD) {
                prefetch_series(&batch.floats, ahead);
            }
            let (s, (t, v)) = &batch.floats[i];
            s.lock().append(*t, *v, &self.head.chunk_files);
            s.touch(now);
            min_t = min_t.min(*t);
            max_t = max_t.max(*t);
        }
        for &i in windows {
            let (s, w) = &batch.windows[i];
            s.lock().push_window(w.clone());
            s.touch(now);
            min_t = min_t.min(w.end_ms);
            max_t = max_t.max(w.end_ms);
        }
        self.head_min_t.fetch_min(min_t, Ordering::Relaxed);
        self.head_max_t.fetch_max(max_t, Ordering::Relaxed);
    }

    fn count(&self, o: &Outcome, samples: u64, windows: u64) {
        let s = &self.stats;
        s.samples_appended.fetch_add(samples, Ordering::Relaxed);
        s.windows_appended.fetch_add(windows, Ordering::Relaxed);
        s.out_of_order.fetch_add(o.out_of_order, Ordering::Relaxed);
        s.duplicates.fetch_add(o.duplicates, Ordering::Relaxed);
        s.out_of_bounds
            .fetch_add(o.out_of_bounds, Ordering::Relaxed);
        s.out_of_time_range
            .fetch_add(o.out_of_time_range, Ordering::Relaxed);
    }

    /// fsyncs the WAL if anything was written since the last time. A
    /// failure stops the WAL taking writes until an fsync works (this
    /// tries again).
    pub(crate) fn sync_wal(&self) -> io::Result<()> {
        let pending = {
            let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
            wal.heal()?;
            wal.take_unsynced()
        };
        let Some(pending) = pending else {
            return Ok(());
        };
        let synced = pending.and_then(|p| p.run());
        if let Err(e) = &synced {
            self.wal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sync_failed(e);
        }
        synced
    }

    /// Hands each matching float series' labels and samples in
    /// `[mint, maxt]` to `f`, in no particular order. When the head alone
    /// holds the range (what `stat` and `top` ask for), no label set is
    /// built or ordered: for thousands of series that was a third of
    /// `Golden`'s time.
    pub(crate) fn for_each_float(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(&dyn LabelLookup, &[Sample]),
    ) -> Result<(), DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        if !blocks.covering(mint, maxt).is_empty() {
            drop(blocks);
            for s in self.select(matchers, mint, maxt)? {
                f(&s.labels, &s.samples);
            }
            return Ok(());
        }
        let mut samples = Vec::new();
        for s in self.head.select(Kind::Float, matchers) {
            samples.clear();
            s.lock()
                .samples(mint.max(blocks.head_from), maxt, &mut samples)?;
            if !samples.is_empty() {
                f(&s.labels, &samples);
            }
        }
        Ok(())
    }

    /// [`Self::for_each_float`] for histogram windows ending in
    /// `(after, until]`.
    pub(crate) fn for_each_windows(
        &self,
        matchers: &[Matcher],
        after: i64,
        until: i64,
        mut f: impl FnMut(&dyn LabelLookup, &mut dyn Iterator<Item = &Window>),
    ) -> Result<(), DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        if !blocks.covering(after, until).is_empty() {
            drop(blocks);
            for (labels, windows) in self.select_windows(matchers, after, until)? {
                f(&labels, &mut windows.iter());
            }
            return Ok(());
        }
        let after = after.max(blocks.head_from.saturating_sub(1));
        if after >= until {
            return Ok(());
        }
        for s in self.head.select(Kind::Histogram, matchers) {
            let data = s.lock();
            f(&s.labels, &mut data.windows(after, until));
        }
        Ok(())
    }

    /// Float samples in `[mint, maxt]` of every matching series, merged
    /// across blocks and the head, sorted by labels.
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, DbError> {
        let mut out = Vec::new();
        self.select_each(matchers, mint, maxt, |labels, samples| {
            out.push(SeriesSamples { labels, samples });
            Ok::<_, DbError>(())
        })?;
        Ok(out)
    }

    /// [`Self::select`] one series at a time: each series' samples are
    /// loaded, merged and handed to `f` before the next one is read, so a
    /// query that `f` stops (too many samples, out of time) never holds
    /// more than one series it did not ask for.
    pub(crate) fn select_each<E: From<DbError>>(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(Labels, Vec<Sample>) -> Result<(), E>,
    ) -> Result<(), E> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let covering = blocks.covering(mint, maxt);
        let mut sources: BTreeMap<Labels, Vec<Source>> = BTreeMap::new();
        for (i, (b, _, _)) in covering.iter().enumerate() {
            for (labels, id) in b.matching(matchers).map_err(DbError::from)? {
                sources
                    .entry(labels)
                    .or_default()
                    .push(Source::Block(i, id));
            }
        }
        let head_mint = mint.max(blocks.head_from);
        if head_mint <= maxt {
            for s in self.head.select(Kind::Float, matchers) {
                sources
                    .entry(s.labels.labels())
                    .or_default()
                    .push(Source::Head(s));
            }
        }
        for (labels, from) in sources {
            let mut samples = Vec::new();
            for source in from {
                match source {
                    Source::Block(i, id) => {
                        let (b, lo, hi) = covering[i];
                        b.samples_of(id, lo, hi, &mut samples)
                            .map_err(DbError::from)?;
                    }
                    Source::Head(s) => s
                        .lock()
                        .samples(head_mint, maxt, &mut samples)
                        .map_err(DbError::from)?,
                }
            }
            if samples.is_empty() {
                continue;
            }
            self.stats
                .query_samples_loaded
                .fetch_add(samples.len() as u64, Ordering::Relaxed);
            if !samples.is_sorted_by_key(|s| s.0) {
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
            }
            f(labels, samples)?;
        }
        Ok(())
    }

    /// Histogram windows ending in `(after, until]` of every matching
    /// series, sorted by labels.
    pub(crate) fn select_windows(
        &self,
        matchers: &[Matcher],
        after: i64,
        until: i64,
    ) -> Result<Vec<(Labels, Vec<Window>)>, DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let mut merged: BTreeMap<Labels, Vec<Window>> = BTreeMap::new();
        for (b, lo, hi) in blocks.covering(after, until) {
            for (labels, windows) in b.select_windows(matchers, lo, hi)? {
                merged.entry(labels).or_default().extend(windows);
            }
        }
        let head_after = after.max(blocks.head_from.saturating_sub(1));
        if head_after < until {
            for s in self.head.select(Kind::Histogram, matchers) {
                let data = s.lock();
                let windows: Vec<Window> = data.windows(head_after, until).cloned().collect();
                if !windows.is_empty() {
                    merged.entry(s.labels.labels()).or_default().extend(windows);
                }
            }
        }
        Ok(merged.into_iter().collect())
    }

    /// Label sets of float series with data overlapping `[mint, maxt]`.
    pub(crate) fn series_labels(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>, DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeSet::new();
        for (b, _, _) in blocks.covering(mint, maxt) {
            out.extend(b.labels(Kind::Float, matchers)?);
        }
        if self.head_overlaps(blocks.head_from, mint, maxt) {
            out.extend(
                self.head
                    .select(Kind::Float, matchers)
                    .into_iter()
                    .map(|s| s.labels.labels()),
            );
        }
        Ok(out)
    }

    pub(crate) fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<String>, DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeSet::new();
        for (b, _, _) in blocks.covering(mint, maxt) {
            b.label_names(matchers, &mut out)?;
        }
        if self.head_overlaps(blocks.head_from, mint, maxt) {
            self.head
                .index(Kind::Float)
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .label_names(matchers, &mut out);
        }
        Ok(out)
    }

    pub(crate) fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<String>, DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeSet::new();
        for (b, _, _) in blocks.covering(mint, maxt) {
            b.label_values(name, matchers, &mut out)?;
        }
        if self.head_overlaps(blocks.head_from, mint, maxt) {
            self.head
                .index(Kind::Float)
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .label_values(name, matchers, &mut out);
        }
        Ok(out)
    }

    fn head_overlaps(&self, head_from: i64, mint: i64, maxt: i64) -> bool {
        let min_t = self.head_min_t.load(Ordering::Relaxed).max(head_from);
        let max_t = self.head_max_t.load(Ordering::Relaxed);
        min_t <= maxt && max_t >= mint
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
                let windows: Vec<Window> = data.windows(start - 1, end - 1).cloned().collect();
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

/// How many samples ahead a commit prefetches the series it is about to
/// lock: far enough for a miss to complete, near enough to stay cached.
const PREFETCH_AHEAD: usize = 8;

/// Starts loading the lines of `floats[i]`'s series that a commit reads
/// and locks. The lock atomics serialize loads, so without this the
/// commit waits for each series' miss in turn.
fn prefetch_series(floats: &[(Arc<MemSeries>, Sample)], i: usize) {
    if let Some((s, _)) = floats.get(i) {
        prefetch::line(&s.r);
        prefetch::line(&s.data);
    }
}

fn apply_replayed(
    head: &Head,
    refs: &mut HashMap<SeriesRef, Arc<MemSeries>>,
    rec: Record,
    valid: &std::ops::RangeInclusive<i64>,
    min_t: &mut i64,
    max_t: &mut i64,
) {
    match rec {
        Record::Series(series) => {
            for (r, kind, labels) in series {
                let s = head.restore(r, labels, kind);
                refs.insert(r, s);
            }
        }
        Record::Samples(samples) => {
            for (r, t, v) in samples {
                let Some(s) = refs.get(&r) else { continue };
                if !valid.contains(&t) {
                    continue;
                }
                let mut data = s.lock();
                if let Ok(true) = data.check(t, v) {
                    data.append(t, v, &head.chunk_files);
                    *min_t = (*min_t).min(t);
                    *max_t = (*max_t).max(t);
                }
            }
        }
        Record::Windows(windows) => {
            for (r, w) in windows {
                let Some(s) = refs.get(&r) else { continue };
                if !valid.contains(&w.end_ms) {
                    continue;
                }
                let mut data = s.lock();
                if data.check_window(&w).is_ok() {
                    *min_t = (*min_t).min(w.end_ms);
                    *max_t = (*max_t).max(w.end_ms);
                    data.push_window(w);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_batch(db: &Db, t: i64) -> Batch {
        let labels = Labels::try_from_pairs([("__name__", "synced")]).unwrap();
        let s = db.series(labels, Kind::Float).unwrap();
        Batch {
            floats: vec![(s, (t, t as f64))],
            windows: Vec::new(),
        }
    }

    fn reopened(dir: &std::path::Path) -> Vec<Sample> {
        let db = Db::open(DbOptions::for_tests(dir)).unwrap();
        let mut out = Vec::new();
        db.select_each(&[], 0, i64::MAX, |_, samples| {
            out.extend(samples);
            Ok::<_, DbError>(())
        })
        .unwrap();
        out
    }

    /// With `--wal-fsync always`, a failed fsync acknowledges nothing,
    /// leaves nothing of its write in the log, and refuses writes until
    /// an fsync works again; then writes go on.
    #[test]
    fn a_failed_fsync_acknowledges_nothing_until_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = DbOptions::for_tests(dir.path());
        opts.fsync = FsyncPolicy::Always;
        let db = Db::open(opts).unwrap();
        assert_eq!(db.commit(&sample_batch(&db, 1000)).unwrap().accepted, 1);
        db.wal.lock().unwrap().failing_syncs = 2;
        assert!(
            db.commit(&sample_batch(&db, 2000)).is_err(),
            "its fsync fails"
        );
        let refused = db.commit(&sample_batch(&db, 3000)).unwrap_err();
        assert!(refused.to_string().contains("refuses writes"), "{refused}");
        assert_eq!(db.commit(&sample_batch(&db, 4000)).unwrap().accepted, 1);
        drop(db);
        let times: Vec<i64> = reopened(dir.path()).iter().map(|s| s.0).collect();
        assert_eq!(times, [1000, 4000], "exactly what was acknowledged");
    }

    /// With `--wal-fsync interval`, the background fsync failing stops
    /// acknowledgements instead of being logged and forgotten.
    #[test]
    fn a_failed_background_fsync_stops_acknowledgements() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = DbOptions::for_tests(dir.path());
        opts.fsync = FsyncPolicy::Interval;
        let db = Db::open(opts).unwrap();
        db.commit(&sample_batch(&db, 1000)).unwrap();
        db.wal.lock().unwrap().failing_syncs = 2;
        assert!(db.sync_wal().is_err());
        assert!(db.commit(&sample_batch(&db, 2000)).is_err(), "refused");
        // The next fsync works: the WAL is repaired and takes writes.
        db.sync_wal().unwrap();
        assert_eq!(db.commit(&sample_batch(&db, 3000)).unwrap().accepted, 1);
        drop(db);
        let times: Vec<i64> = reopened(dir.path()).iter().map(|s| s.0).collect();
        assert_eq!(times, [1000, 3000]);
    }
}
