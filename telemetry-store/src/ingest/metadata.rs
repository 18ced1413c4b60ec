//! Metric metadata (type, help, unit) as `/api/v1/metadata` serves it:
//! every family of the mesh's vocabulary, and what remote-write senders
//! describe. Names come from peers, so their entries are bounded: past
//! `--max-metadata` they push out the least recently described, and those
//! not described for `--peer-state-ttl` are forgotten. The mesh's own
//! families stay, and a peer cannot describe them otherwise.

use std::collections::BTreeMap;

use super::remote_write::MetricMetadata;
use super::valid_metric_name;

/// Longest help text kept; longer ones are cut at a character boundary.
const MAX_HELP_BYTES: usize = 1024;
/// Longest unit kept.
const MAX_UNIT_BYTES: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MetricMeta {
    pub(crate) kind: String,
    pub(crate) help: String,
    pub(crate) unit: String,
}

struct Entry {
    meta: MetricMeta,
    /// When it was last described, and in which order (many share a
    /// millisecond); `None` for the store's own entries, which stay.
    seen: Option<(i64, u64)>,
}

pub(crate) struct MetadataTable {
    entries: BTreeMap<String, Entry>,
    /// How many entries are the store's own.
    builtin: usize,
    /// How many peers' entries it keeps.
    max: usize,
    described: u64,
}

impl MetadataTable {
    /// A table holding `builtin` for good and up to `max` entries that
    /// peers described.
    pub(crate) fn new(max: usize, builtin: impl IntoIterator<Item = (String, MetricMeta)>) -> Self {
        let entries: BTreeMap<String, Entry> = builtin
            .into_iter()
            .map(|(name, meta)| {
                let entry = Entry { meta, seen: None };
                (name, entry)
            })
            .collect();
        Self {
            builtin: entries.len(),
            max: max.max(1),
            entries,
            described: 0,
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, MetricMeta> {
        self.entries
            .iter()
            .map(|(name, e)| (name.clone(), e.meta.clone()))
            .collect()
    }

    /// Records what a request described at `now_ms`; returns how many
    /// entries were pushed out to make room.
    pub(crate) fn record(&mut self, described: Vec<MetricMetadata>, now_ms: i64) -> u64 {
        let mut evicted = 0;
        for m in described {
            if !valid_metric_name(&m.metric_family_name) {
                continue;
            }
            match self.entries.get(&m.metric_family_name) {
                Some(own) if own.seen.is_none() => continue,
                Some(_) => {}
                None if self.entries.len() - self.builtin >= self.max => {
                    evicted += self.evict_oldest_quarter();
                }
                None => {}
            }
            let meta = MetricMeta {
                kind: m.type_name().to_string(),
                help: cut(m.help, MAX_HELP_BYTES),
                unit: cut(m.unit, MAX_UNIT_BYTES),
            };
            self.described += 1;
            let seen = Some((now_ms, self.described));
            self.entries
                .insert(m.metric_family_name, Entry { meta, seen });
        }
        evicted
    }

    /// Forgets what was last described before `before_ms`.
    pub(crate) fn forget_before(&mut self, before_ms: i64) {
        self.entries
            .retain(|_, e| e.seen.is_none_or(|(t, _)| t >= before_ms));
    }

    /// Makes room for many newcomers at once: one eviction per newcomer
    /// would scan the table each time.
    fn evict_oldest_quarter(&mut self) -> u64 {
        let mut order: Vec<u64> = self
            .entries
            .values()
            .filter_map(|e| e.seen)
            .map(|s| s.1)
            .collect();
        if order.is_empty() {
            return 0;
        }
        let k = order.len() / 4;
        let (_, cutoff, _) = order.select_nth_unstable(k);
        let cutoff = *cutoff;
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.seen.is_none_or(|(_, n)| n > cutoff));
        (before - self.entries.len()) as u64
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(name: &str, help: &str) -> MetricMetadata {
        MetricMetadata {
            r#type: 1,
            metric_family_name: name.into(),
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_its_own_entries() {
        let own = MetricMeta {
            kind: "counter".into(),
            help: "own".into(),
            unit: String::new(),
        };
        let mut t = MetadataTable::new(9, [("request_total".to_string(), own)]);
        let mut evicted = 0;
        for i in 0..1000 {
            // Many in one millisecond: the order still tells them apart.
            evicted += t.record(vec![described(&format!("m{i}"), "h")], i / 100);
            assert!(t.entries.len() <= 1 + 9);
        }
        assert!(evicted > 0);
        t.record(vec![described("request_total", "a peer's words")], 1000);
        let names = t.snapshot();
        assert_eq!(names["request_total"].help, "own", "the mesh's own stays");
        assert!(names.contains_key("m999"), "the newest stay");
        t.record(
            vec![
                described("bad-name", "h"),
                described("long", &"é".repeat(1000)),
            ],
            1000,
        );
        let names = t.snapshot();
        assert!(!names.contains_key("bad-name"));
        assert_eq!(names["long"].help.len(), 1024);
        t.forget_before(2000);
        assert_eq!(t.snapshot().len(), 1, "only the store's own entry is left");
    }
}
