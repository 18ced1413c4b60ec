//! The read path: one querier over the blocks and the head, generic over
//! what a series holds ([`Floats`] or [`Windows`]).
//!
//! A read takes the block list and the head's lower bound under one lock,
//! so a block cut in progress is never counted twice nor missed. Every
//! read of series data goes through [`Db::select`] (merged, sorted by
//! labels, one series at a time) or [`Db::for_each`] (any order, straight
//! from the head when no block holds the range); label reads go through
//! [`Db::labels_from`]. The two kinds differ only in the [`Stored`] impl.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use conduit_api::Labels;

use super::{Db, DbError, Stats};
use crate::block::{Block, BlockError};
use crate::head::{Head, MemSeries};
use crate::model::{Kind, Sample, Window};
use crate::series::Matcher;
use crate::series::labelset::LabelLookup;

/// What series of one kind hold, read the same way from blocks and the
/// head. `lo` and `hi` are the kind's own bounds: float samples in
/// `[lo, hi]`, histogram windows ending in `(lo, hi]`.
pub(crate) trait Stored {
    type Item: Clone;
    const KIND: Kind;

    /// The part of the range the head answers, when blocks hold
    /// everything before `head_from`; `None` when that part is empty.
    fn head_part(lo: i64, hi: i64, head_from: i64) -> Option<(i64, i64)>;

    fn read_block(
        block: &Block,
        id: u32,
        lo: i64,
        hi: i64,
        out: &mut Vec<Self::Item>,
    ) -> Result<(), BlockError>;

    fn read_head(s: &MemSeries, lo: i64, hi: i64, out: &mut Vec<Self::Item>)
    -> Result<(), DbError>;

    /// Hands `f` what the head holds of `s`, without copying it where the
    /// head keeps it in the shape `f` reads.
    fn visit_head(
        s: &MemSeries,
        part: (i64, i64),
        buf: &mut Vec<Self::Item>,
        f: &mut impl FnMut(&dyn LabelLookup, &[Self::Item]),
    ) -> Result<(), DbError>;

    /// Puts one series' merged data in order once all its parts are read.
    fn settle(items: &mut Vec<Self::Item>, stats: &Stats);
}

/// Float series: samples, decoded from chunks.
pub(crate) struct Floats;

/// Histogram series: the proxies' latency windows.
pub(crate) struct Windows;

impl Stored for Floats {
    type Item = Sample;
    const KIND: Kind = Kind::Float;

    fn head_part(lo: i64, hi: i64, head_from: i64) -> Option<(i64, i64)> {
        let lo = lo.max(head_from);
        (lo <= hi).then_some((lo, hi))
    }

    fn read_block(
        block: &Block,
        id: u32,
        lo: i64,
        hi: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), BlockError> {
        block.samples_of(id, lo, hi, out)
    }

    fn read_head(s: &MemSeries, lo: i64, hi: i64, out: &mut Vec<Sample>) -> Result<(), DbError> {
        Ok(s.lock().samples(lo, hi, out)?)
    }

    /// Decodes outside `f`, so the series' lock is not held while `f`
    /// runs.
    fn visit_head(
        s: &MemSeries,
        (lo, hi): (i64, i64),
        buf: &mut Vec<Sample>,
        f: &mut impl FnMut(&dyn LabelLookup, &[Sample]),
    ) -> Result<(), DbError> {
        buf.clear();
        Self::read_head(s, lo, hi, buf)?;
        if !buf.is_empty() {
            f(&s.labels, buf);
        }
        Ok(())
    }

    /// The parts arrive block by block, then the head: sorting (and
    /// dropping a time read twice) is only needed when they overlap.
    fn settle(samples: &mut Vec<Sample>, stats: &Stats) {
        stats
            .query_samples_loaded
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        if !samples.is_sorted_by_key(|s| s.0) {
            samples.sort_by_key(|s| s.0);
            samples.dedup_by_key(|s| s.0);
        }
    }
}

impl Stored for Windows {
    type Item = Window;
    const KIND: Kind = Kind::Histogram;

    fn head_part(after: i64, until: i64, head_from: i64) -> Option<(i64, i64)> {
        let after = after.max(head_from.saturating_sub(1));
        (after < until).then_some((after, until))
    }

    fn read_block(
        block: &Block,
        id: u32,
        after: i64,
        until: i64,
        out: &mut Vec<Window>,
    ) -> Result<(), BlockError> {
        block.windows_of(id, after, until, out)
    }

    fn read_head(
        s: &MemSeries,
        after: i64,
        until: i64,
        out: &mut Vec<Window>,
    ) -> Result<(), DbError> {
        out.extend_from_slice(s.lock().windows(after, until));
        Ok(())
    }

    /// Reads the windows in place, under the series' lock: copying them
    /// cost more than the merge. A series with no window in the range is
    /// visited too, as it always was: its group still gets its `Golden`
    /// row.
    fn visit_head(
        s: &MemSeries,
        (after, until): (i64, i64),
        _: &mut Vec<Window>,
        f: &mut impl FnMut(&dyn LabelLookup, &[Window]),
    ) -> Result<(), DbError> {
        f(&s.labels, s.lock().windows(after, until));
        Ok(())
    }

    fn settle(_: &mut Vec<Window>, _: &Stats) {}
}

/// Where [`Db::select`] reads a series from: a block (by its place among
/// the blocks covering the range, and its id there) or the head (with the
/// part of the range it answers).
enum Source {
    Block(usize, u32),
    Head(Arc<MemSeries>, (i64, i64)),
}

impl Db {
    /// Hands each matching series' labels and data in range to `f`, in no
    /// particular order. When the head alone holds the range (what `stat`
    /// and `top` ask for), no label set is built or ordered: for thousands
    /// of series that was a third of `Golden`'s time.
    pub(crate) fn for_each<K: Stored>(
        &self,
        matchers: &[Matcher],
        lo: i64,
        hi: i64,
        mut f: impl FnMut(&dyn LabelLookup, &[K::Item]),
    ) -> Result<(), DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        if !blocks.covering(lo, hi).is_empty() {
            drop(blocks);
            return self.select::<K, DbError>(matchers, lo, hi, |labels, items| {
                f(&labels, &items);
                Ok(())
            });
        }
        let Some(part) = K::head_part(lo, hi, blocks.head_from) else {
            return Ok(());
        };
        let mut buf = Vec::new();
        for s in self.head.select(K::KIND, matchers) {
            K::visit_head(&s, part, &mut buf, &mut f)?;
        }
        Ok(())
    }

    /// Each matching series' data in range, merged across blocks and the
    /// head, handed to `f` in label order one series at a time: each is
    /// loaded and merged before the next one is read, so a query that `f`
    /// stops (too many samples, out of time) never holds more than one
    /// series it did not ask for.
    pub(crate) fn select<K: Stored, E: From<DbError>>(
        &self,
        matchers: &[Matcher],
        lo: i64,
        hi: i64,
        mut f: impl FnMut(Labels, Vec<K::Item>) -> Result<(), E>,
    ) -> Result<(), E> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let covering = blocks.covering(lo, hi);
        let mut sources: BTreeMap<Labels, Vec<Source>> = BTreeMap::new();
        for (i, (b, _, _)) in covering.iter().enumerate() {
            for (labels, id) in b.matching(K::KIND, matchers).map_err(DbError::from)? {
                sources
                    .entry(labels)
                    .or_default()
                    .push(Source::Block(i, id));
            }
        }
        if let Some(part) = K::head_part(lo, hi, blocks.head_from) {
            for s in self.head.select(K::KIND, matchers) {
                sources
                    .entry(s.labels.labels())
                    .or_default()
                    .push(Source::Head(s, part));
            }
        }
        for (labels, from) in sources {
            let mut items = Vec::new();
            for source in from {
                match source {
                    Source::Block(i, id) => {
                        let (b, lo, hi) = covering[i];
                        K::read_block(b, id, lo, hi, &mut items).map_err(DbError::from)?;
                    }
                    Source::Head(s, (lo, hi)) => K::read_head(&s, lo, hi, &mut items)?,
                }
            }
            if items.is_empty() {
                continue;
            }
            K::settle(&mut items, &self.stats);
            f(labels, items)?;
        }
        Ok(())
    }

    /// Label sets of float series with data overlapping `[mint, maxt]`.
    pub(crate) fn series_labels(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>, DbError> {
        self.labels_from(
            mint,
            maxt,
            |b, out| {
                out.extend(b.labels(Kind::Float, matchers)?);
                Ok(())
            },
            |head, out| {
                let series = head.select(Kind::Float, matchers);
                out.extend(series.into_iter().map(|s| s.labels.labels()));
            },
        )
    }

    pub(crate) fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<String>, DbError> {
        self.labels_from(
            mint,
            maxt,
            |b, out| b.label_names(matchers, out),
            |head, out| {
                head.index(Kind::Float)
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .label_names(matchers, out);
            },
        )
    }

    pub(crate) fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<String>, DbError> {
        self.labels_from(
            mint,
            maxt,
            |b, out| b.label_values(name, matchers, out),
            |head, out| {
                head.index(Kind::Float)
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .label_values(name, matchers, out);
            },
        )
    }

    /// What the blocks covering `[mint, maxt]` and, when it holds data
    /// there, the head add to a set: label reads go by the index alone and
    /// read no samples.
    fn labels_from<T: Ord>(
        &self,
        mint: i64,
        maxt: i64,
        from_block: impl Fn(&Block, &mut BTreeSet<T>) -> Result<(), BlockError>,
        from_head: impl FnOnce(&Head, &mut BTreeSet<T>),
    ) -> Result<BTreeSet<T>, DbError> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeSet::new();
        for (b, _, _) in blocks.covering(mint, maxt) {
            from_block(b, &mut out)?;
        }
        if self.head_overlaps(blocks.head_from, mint, maxt) {
            from_head(&self.head, &mut out);
        }
        Ok(out)
    }

    fn head_overlaps(&self, head_from: i64, mint: i64, maxt: i64) -> bool {
        let min_t = self.head_min_t.load(Ordering::Relaxed).max(head_from);
        let max_t = self.head_max_t.load(Ordering::Relaxed);
        min_t <= maxt && max_t >= mint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Batch, DbOptions};

    /// Every sample of `db` in `[0, 10 s]`, read both ways.
    fn read_both_ways(db: &Db) -> (Vec<Sample>, Vec<Sample>) {
        let mut merged = Vec::new();
        db.select::<Floats, DbError>(&[], 0, 10_000, |_, samples| {
            merged.extend(samples);
            Ok(())
        })
        .unwrap();
        let mut visited = Vec::new();
        db.for_each::<Floats>(&[], 0, 10_000, |_, samples| {
            visited.extend_from_slice(samples)
        })
        .unwrap();
        (merged, visited)
    }

    /// Before and after blocks are cut from the head, both reads see
    /// every sample once, in order.
    #[test]
    fn blocks_and_head_read_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = DbOptions::for_tests(dir.path());
        opts.block_range_ms = 1000;
        let db = Db::open(opts).unwrap();
        let labels = Labels::try_from_pairs([("__name__", "x")]).unwrap();
        let s = db.series(labels, Kind::Float).unwrap();
        let all: Vec<Sample> = (0..10).map(|i| (i * 500, i as f64)).collect();
        let floats = all.iter().map(|&sample| (s.clone(), sample)).collect();
        db.commit(&Batch {
            floats,
            windows: Vec::new(),
        })
        .unwrap();
        assert_eq!(read_both_ways(&db), (all.clone(), all.clone()));
        // A clock just past the data keeps retention away.
        db.maintain(6000).unwrap();
        assert!(db.block_stats().0 > 0, "blocks were cut");
        assert_eq!(read_both_ways(&db), (all.clone(), all));
    }
}
