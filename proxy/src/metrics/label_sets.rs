//! One metric family's label sets, under a budget.
//!
//! Label values come from peers (the authority a client wrote, the identity
//! it proved, the names discovery returned), so unless the proxy bounds
//! them, peers choose how many series it keeps, in memory and in every
//! telemetry report. A family holds at most `max` label sets; a new one
//! past that is counted into the family's overflow set, which keeps the
//! labels the proxy defines (`direction`, `tls`, `peer`...) and reads
//! `_overflow` for every value a peer chose. Label sets that nobody holds
//! and nobody looked up for the retention time are forgotten (as
//! linkerd2-proxy's `retain_idle` does), so a burst of names does not keep
//! the budget spent for ever.
//!
//! Keys hash with std's `RandomState`, seeded per process: peers cannot
//! precompute label values that collide.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conduit_api::metrics::{OVERFLOW_LABEL_VALUE, label};

use super::lock;

pub(crate) type Key = Vec<(&'static str, String)>;

/// Labels whose values peers pick (or discovery, on their behalf); an
/// overflow set stands in for all of them.
const PEER_CHOSEN: &[&str] = &[
    label::AUTHORITY,
    label::CLIENT_ID,
    label::SERVER_ID,
    label::DST_NAMESPACE,
    label::DST_DEPLOYMENT,
    label::ROUTE,
];

pub(crate) struct LabelSets<T> {
    /// The family's first metric: its name in the overflow and eviction
    /// counters.
    pub(crate) metric: &'static str,
    max: usize,
    sets: Mutex<HashMap<Key, Entry<T>>>,
}

struct Entry<T> {
    series: Arc<T>,
    /// When it was last looked up or seen in use (ms on the registry's
    /// clock).
    seen_ms: u64,
}

/// A lookup's series, and whether it is the label set's own.
pub(crate) enum Found<T> {
    Own(Arc<T>),
    /// The budget was spent: the overflow set's series.
    Overflow(Arc<T>),
}

impl<T> LabelSets<T> {
    pub(crate) fn new(metric: &'static str, max: usize) -> Self {
        Self {
            metric,
            max: max.max(1),
            sets: Mutex::default(),
        }
    }

    /// The series of `key`, made by `make` if it is new and the budget
    /// allows, else the overflow set's.
    pub(crate) fn get_or_insert(
        &self,
        key: Key,
        now_ms: u64,
        make: impl FnOnce(&Key) -> Arc<T>,
    ) -> Found<T> {
        let mut sets = lock(&self.sets);
        if let Some(e) = sets.get_mut(&key) {
            e.seen_ms = now_ms;
            return Found::Own(e.series.clone());
        }
        if sets.len() < self.max {
            let series = make(&key);
            sets.insert(
                key,
                Entry {
                    series: series.clone(),
                    seen_ms: now_ms,
                },
            );
            return Found::Own(series);
        }
        // Past the budget by at most the few overflow sets: their labels
        // take only values the proxy defines.
        let entry = sets.entry(overflow(key)).or_insert_with_key(|k| Entry {
            series: make(k),
            seen_ms: now_ms,
        });
        entry.seen_ms = now_ms;
        Found::Overflow(entry.series.clone())
    }

    /// Forgets the label sets idle for `idle_ms` that nobody holds (a
    /// connection, an endpoint or a request in flight holds the series it
    /// counts into); returns how many.
    pub(crate) fn evict_idle(&self, now_ms: u64, idle_ms: u64) -> u64 {
        let mut sets = lock(&self.sets);
        let before = sets.len();
        sets.retain(|_, e| {
            if Arc::strong_count(&e.series) > 1 {
                e.seen_ms = now_ms;
                return true;
            }
            now_ms.saturating_sub(e.seen_ms) < idle_ms
        });
        (before - sets.len()) as u64
    }

    pub(crate) fn series(&self) -> Vec<Arc<T>> {
        lock(&self.sets)
            .values()
            .map(|e| e.series.clone())
            .collect()
    }
}

/// The overflow set standing in for `key`.
fn overflow(mut key: Key) -> Key {
    for (name, value) in &mut key {
        if PEER_CHOSEN.contains(name) && !value.is_empty() {
            *value = OVERFLOW_LABEL_VALUE.to_string();
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(authority: &str) -> Key {
        vec![
            (
                label::DIRECTION,
                conduit_api::Direction::Inbound.as_str().into(),
            ),
            (label::AUTHORITY, authority.into()),
        ]
    }

    #[test]
    fn past_the_budget_label_sets_share_the_overflow_set() {
        let family = LabelSets::<Key>::new("request_total", 2);
        let get = |a: &str| family.get_or_insert(key(a), 0, |k| Arc::new(k.clone()));
        assert!(matches!(get("a:80"), Found::Own(_)));
        assert!(matches!(get("b:80"), Found::Own(_)));
        assert!(matches!(get("a:80"), Found::Own(_)), "known sets stay");
        for other in ["c:80", "d:80"] {
            let Found::Overflow(s) = get(other) else {
                panic!("{other} got its own set past the budget");
            };
            assert_eq!(*s, key(OVERFLOW_LABEL_VALUE));
        }
        assert_eq!(family.series().len(), 3);
    }

    #[test]
    fn idle_sets_nobody_holds_are_evicted() {
        let family = LabelSets::<Key>::new("request_total", 10);
        let held = match family.get_or_insert(key("held:80"), 0, |k| Arc::new(k.clone())) {
            Found::Own(s) => s,
            Found::Overflow(_) => unreachable!("within the budget"),
        };
        family.get_or_insert(key("idle:80"), 0, |k| Arc::new(k.clone()));
        family.get_or_insert(key("recent:80"), 900, |k| Arc::new(k.clone()));
        assert_eq!(family.evict_idle(1_000, 500), 1);
        let left: Vec<String> = family.series().iter().map(|s| s[1].1.clone()).collect();
        assert!(left.contains(&"held:80".to_string()), "{left:?}");
        assert!(left.contains(&"recent:80".to_string()), "{left:?}");
        drop(held);
        assert_eq!(
            family.evict_idle(1_400, 500),
            1,
            "the recent set idled out; the released one was seen in use at 1000"
        );
        assert_eq!(family.evict_idle(1_600, 500), 1);
        assert!(family.series().is_empty());
    }
}
