//! WAL replay: each logged record applied to the head again, skipping
//! what a block already holds and times the store would not accept now.

use std::collections::HashMap;
use std::sync::Arc;

use crate::head::{Head, MemSeries};
use crate::model::SeriesRef;
use crate::wal::Record;

pub(super) fn apply_replayed(
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
