//! Exemplars: the requests behind a latency histogram's buckets, as
//! `/api/v1/query_exemplars` returns them (Grafana draws them on its
//! panels).
//!
//! A proxy's report names, per histogram, requests of the interval whose
//! tap events went to the tap history; each becomes an exemplar of the
//! `<metric>_bucket` series its latency falls in, with the request id as
//! its `trace_id`, so an exemplar leads to the tap event. Exemplars live
//! in memory only: the newest `--exemplars-per-series` per series, in at
//! most `--exemplars-max-series` series, those updated least recently
//! forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use conduit_api::Labels;
use conduit_api::histogram::latency_bucket;
use conduit_api::metrics::{LATENCY_BUCKETS_MS, label};
use conduit_api::proto::telemetry::v1::Exemplar as ReportedExemplar;

use crate::promql::format_float;
use crate::series::{LabelsExt, METRIC_NAME, Matcher};

/// One request behind a bucket.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Exemplar {
    pub(crate) trace_id: String,
    pub(crate) value: f64,
    pub(crate) timestamp_ms: i64,
}

struct Series {
    exemplars: VecDeque<Exemplar>,
    /// The order of its last update, for forgetting the stalest.
    touched: u64,
}

#[derive(Default)]
struct Table {
    series: HashMap<Labels, Series>,
    updates: u64,
}

pub(crate) struct Exemplars {
    table: Mutex<Table>,
    per_series: usize,
    max_series: usize,
    pub(crate) evicted_series: AtomicU64,
}

impl Exemplars {
    pub(crate) fn new(per_series: usize, max_series: usize) -> Self {
        Self {
            table: Mutex::default(),
            per_series,
            max_series: max_series.max(1),
            evicted_series: AtomicU64::new(0),
        }
    }

    /// Adds a report's exemplars of one histogram series (`labels` holds
    /// its metric name).
    pub(crate) fn add(&self, labels: &Labels, reported: &[ReportedExemplar]) {
        if self.per_series == 0 || reported.is_empty() {
            return;
        }
        let Some(name) = labels.metric_name() else {
            return;
        };
        let bucket_name = format!("{name}_bucket");
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for r in reported {
            if !r.value.is_finite() || !trace_id_fits(&r.request_id) {
                continue;
            }
            let mut series = labels.with(METRIC_NAME, &bucket_name);
            series.insert(label::LE, le_of(r.value));
            self.push(
                &mut table,
                series,
                Exemplar {
                    trace_id: r.request_id.clone(),
                    value: r.value,
                    timestamp_ms: r.timestamp_unix_ms,
                },
            );
        }
    }

    fn push(&self, table: &mut Table, labels: Labels, exemplar: Exemplar) {
        if !table.series.contains_key(&labels) && table.series.len() >= self.max_series {
            let evicted = forget_stalest_quarter(&mut table.series);
            self.evicted_series.fetch_add(evicted, Ordering::Relaxed);
        }
        table.updates += 1;
        let touched = table.updates;
        let s = table.series.entry(labels).or_insert_with(|| Series {
            exemplars: VecDeque::new(),
            touched,
        });
        s.touched = touched;
        if s.exemplars.len() >= self.per_series {
            s.exemplars.pop_front();
        }
        s.exemplars.push_back(exemplar);
    }

    /// The exemplars in `[start, end]` (Unix ms) of the series any of the
    /// selectors matches, series sorted by labels, exemplars by time.
    pub(crate) fn select(
        &self,
        selectors: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(Labels, Vec<Exemplar>)> = table
            .series
            .iter()
            .filter(|(l, _)| {
                selectors
                    .iter()
                    .any(|m| m.iter().all(|m| m.matches_labels(l)))
            })
            .filter_map(|(l, s)| {
                let mut in_range: Vec<Exemplar> = s
                    .exemplars
                    .iter()
                    .filter(|e| (start..=end).contains(&e.timestamp_ms))
                    .cloned()
                    .collect();
                in_range.sort_by_key(|e| e.timestamp_ms);
                (!in_range.is_empty()).then(|| (l.clone(), in_range))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The `le` of the bucket a latency (ms) is counted in.
fn le_of(ms: f64) -> String {
    let bound = LATENCY_BUCKETS_MS
        .get(latency_bucket(ms))
        .copied()
        .unwrap_or(f64::INFINITY);
    format_float(bound)
}

fn forget_stalest_quarter(series: &mut HashMap<Labels, Series>) -> u64 {
    let mut touched: Vec<u64> = series.values().map(|s| s.touched).collect();
    let k = touched.len() / 4;
    let (_, cutoff, _) = touched.select_nth_unstable(k);
    let cutoff = *cutoff;
    let before = series.len();
    series.retain(|_, s| s.touched > cutoff);
    (before - series.len()) as u64
}

/// OpenMetrics bounds an exemplar's labels to 128 characters in all, so
/// `trace_id` leaves 120 for the id; a longer one (a client's
/// `x-request-id` can be kilobytes) would cost the store that much per
/// exemplar kept.
const MAX_TRACE_ID_CHARS: usize = 128 - "trace_id".len();

fn trace_id_fits(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_TRACE_ID_CHARS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(deployment: &str) -> Labels {
        let mut l = Labels::new();
        l.insert(METRIC_NAME, "response_latency_ms");
        l.insert("deployment", deployment);
        l
    }

    fn reported(id: &str, value: f64, t: i64) -> ReportedExemplar {
        ReportedExemplar {
            request_id: id.into(),
            value,
            timestamp_unix_ms: t,
        }
    }

    fn all() -> Vec<Vec<Matcher>> {
        vec![vec![Matcher::regex(METRIC_NAME, ".+", false).unwrap()]]
    }

    #[test]
    fn ids_longer_than_openmetrics_allows_are_not_kept() {
        let ex = Exemplars::new(4, 100);
        let fits = "x".repeat(MAX_TRACE_ID_CHARS);
        let long = "y".repeat(MAX_TRACE_ID_CHARS + 1);
        ex.add(
            &latency("web"),
            &[
                reported(&fits, 1.0, 10),
                reported(&long, 1.0, 11),
                reported("", 1.0, 12),
            ],
        );
        let got = ex.select(&all(), 0, 100);
        let ids: Vec<&str> = got
            .iter()
            .flat_map(|(_, e)| e.iter().map(|e| e.trace_id.as_str()))
            .collect();
        assert_eq!(ids, [fits.as_str()]);
    }

    #[test]
    fn exemplars_land_in_their_bucket_series() {
        let ex = Exemplars::new(4, 100);
        ex.add(
            &latency("web"),
            &[
                reported("a", 0.5, 10),
                reported("b", 250.0, 20),
                reported("c", 1e9, 30),
            ],
        );
        let got = ex.select(&all(), 0, 100);
        let le: Vec<(&str, &str)> = got
            .iter()
            .map(|(l, e)| (l.get("le").unwrap(), e[0].trace_id.as_str()))
            .collect();
        assert_eq!(le, [("+Inf", "c"), ("1", "a"), ("300", "b")]);
        assert!(
            got.iter()
                .all(|(l, _)| l.get(METRIC_NAME) == Some("response_latency_ms_bucket"))
        );
        assert_eq!(ex.select(&all(), 15, 25).len(), 1, "only b is in the range");
    }

    #[test]
    fn each_series_keeps_its_newest_per_series_limit() {
        let ex = Exemplars::new(3, 100);
        let many: Vec<_> = (0..10)
            .map(|i| reported(&format!("r{i}"), 7.0, i))
            .collect();
        ex.add(&latency("web"), &many);
        let got = ex.select(&all(), 0, 100);
        let ids: Vec<&str> = got[0].1.iter().map(|e| e.trace_id.as_str()).collect();
        assert_eq!(ids, ["r7", "r8", "r9"]);
    }

    #[test]
    fn the_series_limit_forgets_the_stalest_series() {
        let ex = Exemplars::new(2, 4);
        for i in 0..8 {
            ex.add(&latency(&format!("d{i}")), &[reported("x", 7.0, i)]);
        }
        let got = ex.select(&all(), 0, 100);
        assert!(got.len() <= 4, "{}", got.len());
        assert!(
            got.iter().any(|(l, _)| l.get("deployment") == Some("d7")),
            "the newest stays"
        );
        assert!(
            got.iter().all(|(l, _)| l.get("deployment") != Some("d0")),
            "the stalest goes"
        );
        assert!(ex.evicted_series.load(Ordering::Relaxed) >= 4);
    }

    #[test]
    fn selectors_pick_series() {
        let ex = Exemplars::new(2, 10);
        ex.add(&latency("web"), &[reported("w", 7.0, 1)]);
        ex.add(&latency("voting"), &[reported("v", 7.0, 1)]);
        let web = vec![vec![Matcher::equal("deployment", "web")]];
        let got = ex.select(&web, 0, 10);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1[0].trace_id, "w");
    }
}
