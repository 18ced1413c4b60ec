//! One series in memory: its labels, frozen chunks, the open chunk, and
//! (for latency histograms) its windows.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::chunk::{Frozen, OpenChunk};
use super::chunk_files::ChunkFiles;
use super::labels::CompactLabels;
use crate::model::{Kind, Sample, SeriesRef, Window};

pub(crate) struct MemSeries {
    pub(crate) r: SeriesRef,
    pub(crate) labels: CompactLabels,
    pub(crate) kind: Kind,
    pub(crate) data: Mutex<SeriesData>,
    /// Whether its series record is in the WAL; written once, before the
    /// first sample that refers to it.
    pub(crate) logged: AtomicBool,
    /// Wall-clock ms of the last append, for dropping idle series.
    pub(crate) last_append_ms: AtomicI64,
}

#[derive(Default)]
pub(crate) struct SeriesData {
    frozen: Frozen,
    /// Also where the last sample is: a series without an open chunk has
    /// nothing newer than the head's start.
    open: Option<OpenChunk>,
    windows: Vec<Window>,
}

/// Why a sample was not appended, as Prometheus names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    OutOfOrder,
    Duplicate,
}

impl MemSeries {
    pub(crate) fn new(r: SeriesRef, labels: CompactLabels, kind: Kind) -> Self {
        Self {
            r,
            labels,
            kind,
            data: Mutex::new(SeriesData::default()),
            logged: AtomicBool::new(false),
            last_append_ms: AtomicI64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SeriesData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mark_logged(&self) -> bool {
        !self.logged.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn touch(&self, now_ms: i64) {
        self.last_append_ms.store(now_ms, Ordering::Relaxed);
    }
}

/// Checks a sample against the one before it: `Ok(true)` when it is new.
/// A repeated sample (same time, bit-identical value) is `Ok(false)`,
/// accepted and then ignored, as Prometheus does with re-sent
/// remote-write batches.
pub(crate) fn check(prev: Option<Sample>, t: i64, v: f64) -> Result<bool, Reject> {
    match prev {
        Some((lt, _)) if t < lt => Err(Reject::OutOfOrder),
        Some((lt, lv)) if t == lt && lv.to_bits() != v.to_bits() => Err(Reject::Duplicate),
        Some((lt, _)) if t == lt => Ok(false),
        _ => Ok(true),
    }
}

impl SeriesData {
    /// Checks a sample against the series' last one without appending it.
    pub(crate) fn check(&self, t: i64, v: f64) -> Result<bool, Reject> {
        check(self.last(), t, v)
    }

    /// Appends a sample that [`Self::check`] accepted as new; a full chunk
    /// is frozen into `files`.
    pub(crate) fn append(&mut self, t: i64, v: f64, files: &ChunkFiles) {
        if let Some(open) = &mut self.open
            && !open.is_full()
            && open.append(t, v)
        {
            return;
        }
        if let Some(full) = self.open.take() {
            self.frozen.push(full, files);
        }
        self.open = Some(OpenChunk::new(t, v));
    }

    /// The last sample, and a prefetch of the open chunk's end for the
    /// append that usually follows.
    pub(crate) fn last_for_append(&self) -> Option<Sample> {
        let open = self.open.as_ref()?;
        open.prefetch_tail();
        Some(open.last())
    }

    pub(crate) fn last(&self) -> Option<Sample> {
        self.open.as_ref().map(OpenChunk::last)
    }

    /// Appends the samples in `[mint, maxt]` to `out`; frozen chunks are
    /// read back from their file.
    pub(crate) fn samples(
        &self,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) -> std::io::Result<()> {
        self.frozen.decode_into(mint, maxt, out)?;
        if let Some(open) = &self.open
            && open.max_t() >= mint
            && open.min_t() <= maxt
        {
            open.decode_into(mint, maxt, out);
        }
        Ok(())
    }

    pub(crate) fn min_t(&self) -> Option<i64> {
        let chunks = self.frozen.min_t();
        let windows = self.windows.first().map(|w| w.end_ms);
        chunks
            .or(self.open.as_ref().map(|o| o.min_t()))
            .into_iter()
            .chain(windows)
            .min()
    }

    pub(crate) fn check_window(&self, w: &Window) -> Result<(), Reject> {
        match self.windows.last() {
            Some(last) if w.end_ms < last.end_ms => Err(Reject::OutOfOrder),
            Some(last) if w.end_ms == last.end_ms => Err(Reject::Duplicate),
            _ => Ok(()),
        }
    }

    pub(crate) fn push_window(&mut self, w: Window) {
        self.windows.push(w);
    }

    /// Windows whose end lies in `(after, until]`.
    pub(crate) fn windows(&self, after: i64, until: i64) -> &[Window] {
        let from = self.windows.partition_point(|w| w.end_ms <= after);
        let to = self.windows.partition_point(|w| w.end_ms <= until);
        &self.windows[from..to.max(from)]
    }

    /// Drops data before `t` (now in a block). Returns whether anything is
    /// left.
    pub(crate) fn truncate_before(&mut self, t: i64) -> bool {
        self.frozen.truncate_before(t);
        if self.frozen.is_empty()
            && let Some(open) = &self.open
            && open.max_t() < t
        {
            self.open = None;
        }
        self.windows.retain(|w| w.end_ms >= t);
        !self.frozen.is_empty() || self.open.is_some() || !self.windows.is_empty()
    }

    /// Replaces per-interval windows ending before `before` with one merged
    /// window per `step` ms, aligned to multiples of `step`.
    pub(crate) fn coarsen_windows(&mut self, before: i64, step: i64) {
        let split = self.windows.partition_point(|w| w.end_ms < before);
        let (old, _) = self.windows.split_at(split);
        let mut merged = Vec::new();
        let mut i = 0;
        // Windows ending in (k × step, (k + 1) × step] merge, as rollups do.
        let bucket_of = |w: &Window| (w.end_ms - 1).div_euclid(step);
        while i < old.len() {
            let bucket = bucket_of(&old[i]);
            let mut j = i;
            while j < old.len() && bucket_of(&old[j]) == bucket {
                j += 1;
            }
            if j - i == 1 {
                merged.push(old[i].clone());
            } else if let Ok(w) = Window::merge(&old[i..j]) {
                merged.push(w);
            }
            i = j;
        }
        if merged.len() < split {
            self.windows.splice(..split, merged);
        }
    }

    /// Bytes of chunk and window data, in chunk files and in memory.
    pub(crate) fn bytes(&self) -> usize {
        self.frozen.bytes()
            + self.open.as_ref().map_or(0, OpenChunk::heap_bytes)
            + self.windows.iter().map(Window::heap_bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_chunk_remembers_the_last_sample_exactly() {
        let files = ChunkFiles::new(7_200_000, std::env::temp_dir());
        let mut data = SeriesData::default();
        assert_eq!(
            data.check(5, 1.0),
            Ok(true),
            "an empty series takes anything"
        );
        // Integers, then a fraction (a new float chunk), then -0.0.
        for (t, v) in [(1000, 3.0), (2000, 4.0), (3000, 4.5), (4000, -0.0)] {
            assert_eq!(data.check(t, v), Ok(true));
            data.append(t, v, &files);
            assert_eq!(
                data.last().map(|(t, v)| (t, v.to_bits())),
                Some((t, v.to_bits()))
            );
        }
        assert_eq!(
            data.check(4000, -0.0),
            Ok(false),
            "a re-sent sample is ignored"
        );
        assert_eq!(data.check(4000, 0.0), Err(Reject::Duplicate));
        assert_eq!(data.check(3999, 1.0), Err(Reject::OutOfOrder));
        // Past a full chunk the last sample is still the open chunk's.
        for i in 0..200 {
            data.append(5000 + i * 1000, i as f64, &files);
        }
        assert_eq!(data.last(), Some((5000 + 199 * 1000, 199.0)));
    }
}
