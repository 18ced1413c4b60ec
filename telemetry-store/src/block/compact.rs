//! Compaction and retention: merge small adjacent blocks into larger ones
//! (fewer files, better compression, cheaper long queries) and delete what
//! is older than the retention age or beyond the size budget.
//!
//! Ranges grow by 3× per level from the block range, like Prometheus'
//! 2h → 6h → 18h..., capped so no block spans more than a tenth of the
//! retention (retention deletes whole blocks).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use conduit_api::Labels;

use super::writer::BlockWriter;
use super::{Block, BlockError, Meta};
use crate::model::Kind;

/// The block ranges of each level, smallest first.
pub(crate) fn level_ranges(block_range: i64, retention: i64) -> Vec<i64> {
    let mut out = vec![block_range];
    let cap = (retention / 10).max(block_range);
    while let Some(&last) = out.last() {
        let next = last.saturating_mul(3);
        if next > cap || out.len() >= 8 {
            break;
        }
        out.push(next);
    }
    out
}

/// Indexes (into `metas`, sorted by time) of the blocks to merge next:
/// two or more blocks inside one aligned window of a larger range, where
/// that window is complete (a newer block starts after it).
pub(crate) fn plan(metas: &[&Meta], ranges: &[i64]) -> Option<Vec<usize>> {
    let newest_start = metas.iter().map(|m| m.min_t).max()?;
    for &range in ranges.iter().skip(1) {
        let mut windows: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, m) in metas.iter().enumerate() {
            let w = m.min_t.div_euclid(range);
            // A block that does not fit inside the window stays as it is.
            if (m.max_t - 1).div_euclid(range) == w {
                windows.entry(w).or_default().push(i);
            }
        }
        for (w, members) in windows {
            let window_end = (w + 1) * range;
            let complete = newest_start >= window_end;
            if members.len() >= 2 && complete {
                return Some(members);
            }
        }
    }
    None
}

/// Merges `blocks` into one new block under `parent`.
pub(crate) fn merge(parent: &Path, blocks: &[&Block]) -> Result<(PathBuf, Meta), BlockError> {
    let min_t = blocks.iter().map(|b| b.meta.min_t).min().unwrap_or(0);
    let max_t = blocks.iter().map(|b| b.meta.max_t).max().unwrap_or(0);
    let level = blocks.iter().map(|b| b.meta.level).max().unwrap_or(0) + 1;
    let resolution = blocks.first().map_or(0, |b| b.meta.resolution_ms);
    // Every label set and which (block, id) holds it, in label order.
    let mut all: BTreeMap<(Labels, Kind), Vec<(usize, usize)>> = BTreeMap::new();
    for (bi, b) in blocks.iter().enumerate() {
        for (id, series) in b.series()?.into_iter().enumerate() {
            all.entry(series).or_default().push((bi, id));
        }
    }
    let mut w = BlockWriter::create(parent, min_t, max_t, level, resolution)?;
    for ((labels, kind), sources) in all {
        let mut samples = Vec::new();
        let mut windows = Vec::new();
        for (bi, id) in sources {
            let (s, win) = blocks[bi].data(id)?;
            samples.extend(s);
            windows.extend(win);
        }
        samples.sort_by_key(|s| s.0);
        samples.dedup_by_key(|s| s.0);
        windows.sort_by_key(|w| w.end_ms);
        windows.dedup_by_key(|w| w.end_ms);
        w.add(&labels, kind, &samples, &windows)?;
    }
    w.finish()
}

/// Indexes of blocks to delete: past their age limit (`max_age_ms` of
/// each block: raw data and rollups age differently), then oldest first
/// until the total (plus `other_bytes`, the WAL) fits the size limit.
pub(crate) fn expired(
    metas: &[&Meta],
    now_ms: i64,
    max_age_ms: impl Fn(&Meta) -> i64,
    max_bytes: u64,
    other_bytes: u64,
) -> Vec<usize> {
    let mut out: Vec<usize> = metas
        .iter()
        .enumerate()
        .filter(|(_, m)| m.max_t <= now_ms.saturating_sub(max_age_ms(m)))
        .map(|(i, _)| i)
        .collect();
    let mut total: u64 = other_bytes
        + metas
            .iter()
            .enumerate()
            .filter(|(i, _)| !out.contains(i))
            .map(|(_, m)| m.bytes)
            .sum::<u64>();
    for (i, m) in metas.iter().enumerate() {
        if total <= max_bytes {
            break;
        }
        if !out.contains(&i) {
            out.push(i);
            total = total.saturating_sub(m.bytes);
        }
    }
    out
}

/// Removes a block directory so that a crash half-way leaves nothing
/// that looks like a block.
pub(crate) fn delete(dir: &Path) -> std::io::Result<()> {
    let doomed = dir.with_extension("deleted");
    fs::rename(dir, &doomed)?;
    fs::remove_dir_all(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(min_t: i64, max_t: i64, bytes: u64) -> Meta {
        Meta {
            version: 1,
            min_t,
            max_t,
            series: 1,
            samples: 1,
            windows: 0,
            level: 1,
            bytes,
            resolution_ms: 0,
            checksums: Default::default(),
        }
    }

    #[test]
    fn ranges_grow_by_three_up_to_a_tenth_of_retention() {
        let h = 3_600_000;
        assert_eq!(level_ranges(2 * h, 15 * 24 * h), vec![2 * h, 6 * h, 18 * h]);
        assert_eq!(level_ranges(10, 10), vec![10]);
    }

    #[test]
    fn merges_only_complete_windows() {
        let a = meta(0, 10, 1);
        let b = meta(10, 20, 1);
        let c = meta(20, 30, 1);
        let d = meta(30, 40, 1);
        // Window [0, 30) is complete once a block starts at 30.
        assert_eq!(plan(&[&a, &b, &c, &d], &[10, 30]), Some(vec![0, 1, 2]));
        // Without d, window [0, 30) might still grow.
        assert_eq!(plan(&[&a, &b, &c], &[10, 30]), None);
    }

    #[test]
    fn retention_by_age_then_size() {
        let metas = [meta(0, 10, 100), meta(10, 20, 100), meta(20, 30, 100)];
        let refs: Vec<&Meta> = metas.iter().collect();
        assert_eq!(expired(&refs, 25, |_| 10, u64::MAX, 0), vec![0]);
        assert_eq!(expired(&refs, 25, |_| 100, 150, 0), vec![0, 1]);
        assert_eq!(expired(&refs, 25, |_| 100, 250, 60), vec![0, 1]);
        // Raw blocks can age out sooner than rollups.
        assert_eq!(
            expired(
                &refs,
                25,
                |m| if m.min_t == 10 { 5 } else { 100 },
                u64::MAX,
                0
            ),
            vec![1]
        );
    }
}
