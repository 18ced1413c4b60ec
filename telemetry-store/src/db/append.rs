//! The append path: a batch is validated against each series' last
//! sample, logged to the WAL and applied to the head, all under the WAL
//! lock, so the log and the head see batches in the same order and a
//! sample is acknowledged only once it is in the log.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Db;
use crate::head::{MemSeries, Reject};
use crate::model::{Sample, SeriesRef, Window};
use crate::prefetch;
use crate::series::hash::FastBuild;
use crate::wal::{Entry, Wal, record};

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

impl Db {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{DbError, DbOptions, Floats};
    use crate::model::Kind;
    use crate::wal::FsyncPolicy;
    use conduit_api::Labels;

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
        db.select::<Floats, DbError>(&[], 0, i64::MAX, |_, samples| {
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
