//! `Golden`: what `conduit stat`, `top` and `routes` show. Per group,
//! exact success and failure counts (increases of the proxies' cumulative
//! `response_total` counters), requests per second, and latency quantiles
//! from the proxies' HdrHistograms merged over the window — no bucket
//! interpolation.
//!
//! A pure computation over the database: the gRPC service validates the
//! request and turns errors into statuses, so this can be tested, and
//! reused, without a server.

use std::collections::BTreeMap;

use conduit_api::Classification;
use conduit_api::Labels;
use conduit_api::metrics::family;
use conduit_api::metrics::labels::{Label, Response};
use conduit_api::proto::store::v1 as pb;
use hdrhistogram::Histogram;

use crate::db::{Db, DbError, Floats, Windows};
use crate::model::{CorruptWindow, Window};
use crate::promql::value::is_stale;
use crate::series::labelset::LabelLookup;
use crate::series::{METRIC_NAME, Matcher};

/// A validated `Golden` request.
pub(crate) struct GoldenQuery {
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) group_by: Vec<String>,
    /// The window is `(start, end]`.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// How far before the window a counter's baseline sample may be.
    pub(crate) lookback_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GoldenError {
    #[error("reading series: {0}")]
    Read(#[from] DbError),
    #[error(transparent)]
    Corrupt(#[from] CorruptWindow),
}

/// What `Golden` answers.
pub(crate) struct GoldenAnswer {
    pub(crate) rows: Vec<pb::GoldenRow>,
    /// The longest histogram window merged: the quantiles cover the
    /// query's window widened to the edges of windows this long.
    pub(crate) latency_resolution_ms: i64,
}

/// One output row while it is being summed up.
#[derive(Default)]
struct Row {
    success: f64,
    failure: f64,
    latency: Latency,
    tcp_open: f64,
}

/// The latency windows of one row, merged sparsely: the (value, count)
/// pairs of every window, sorted once at the end. A dense histogram of
/// the mesh's range and precision is ~190 KB, so one per row made a
/// thousand-Deployment `stat` allocate and scan 190 MB.
#[derive(Default)]
struct Latency {
    pairs: Vec<(u64, u64)>,
    total: u64,
    scale: f64,
}

impl Latency {
    fn add(&mut self, w: &Window) -> Result<(), CorruptWindow> {
        for (value, count) in w.pairs()? {
            self.pairs.push((value.max(1), count));
            self.total = self.total.saturating_add(count);
        }
        self.scale = w.scale;
        Ok(())
    }

    fn sort(&mut self) {
        self.pairs.sort_unstable_by_key(|&(value, _)| value);
    }

    /// What `Histogram::value_at_quantile` answers for the merged windows,
    /// in the metric's unit. Window values are already the highest
    /// equivalent value of their bucket, which is what it returns; only
    /// the 0 quantile asks for the lowest one.
    fn quantile(&self, q: f64) -> f64 {
        let target = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(value, count) in &self.pairs {
            seen = seen.saturating_add(count);
            if seen >= target {
                let value = if q == 0.0 {
                    reference_histogram().lowest_equivalent(value)
                } else {
                    value
                };
                return value as f64 * self.scale;
            }
        }
        0.0
    }
}

/// An empty histogram of the mesh's range and precision, for its bucket
/// arithmetic only.
fn reference_histogram() -> &'static Histogram<u64> {
    static REFERENCE: std::sync::OnceLock<Histogram<u64>> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(conduit_api::histogram::new_latency_histogram)
}

/// The increase of a cumulative counter over `(start, end]`: from the last
/// sample at or before `start` (zero when the series began inside the
/// window), counting resets as restarts from zero.
fn increase(samples: &[(i64, f64)], start: i64) -> f64 {
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    for &(t, v) in samples.iter().filter(|(_, v)| !is_stale(*v)) {
        if t <= start {
            prev = Some(v);
            continue;
        }
        match prev {
            Some(p) if v >= p => total += v - p,
            _ => total += v,
        }
        prev = Some(v);
    }
    total
}

/// The row of the group `l` belongs to.
fn row_of<'a>(
    rows: &'a mut BTreeMap<Labels, Row>,
    group_names: &[&str],
    l: &dyn LabelLookup,
) -> &'a mut Row {
    let mut group = Labels::new();
    for &name in group_names {
        if let Some(value) = l.label(name) {
            group.insert(name, value);
        }
    }
    rows.entry(group).or_default()
}

/// The rows of `q`, one per group, in group order.
pub(crate) fn golden(db: &Db, q: &GoldenQuery) -> Result<GoldenAnswer, GoldenError> {
    let group_names: Vec<&str> = q.group_by.iter().map(String::as_str).collect();
    let with_name = |name: &str| {
        let mut m = q.matchers.clone();
        m.push(Matcher::equal(METRIC_NAME, name));
        m
    };
    let mut rows: BTreeMap<Labels, Row> = BTreeMap::new();

    db.for_each::<Floats>(
        &with_name(family::RESPONSE_TOTAL.name()),
        q.start - q.lookback_ms,
        q.end,
        |l, samples| {
            let n = increase(samples, q.start);
            let class = l.label(Response::Classification.name());
            let failure = class == Some(Classification::Failure.as_str());
            let row = row_of(&mut rows, &group_names, l);
            if failure {
                row.failure += n;
            } else {
                row.success += n;
            }
        },
    )?;
    let mut corrupt = None;
    let mut resolution = 0;
    db.for_each::<Windows>(
        &with_name(family::RESPONSE_LATENCY_MS.name()),
        q.start,
        q.end,
        |l, windows| {
            let row = row_of(&mut rows, &group_names, l);
            for w in windows {
                resolution = resolution.max(w.end_ms - w.start_ms);
                if let Err(e) = row.latency.add(w) {
                    corrupt = Some(e);
                }
            }
        },
    )?;
    if let Some(e) = corrupt {
        return Err(e.into());
    }
    db.for_each::<Floats>(
        &with_name(family::TCP_OPEN_CONNECTIONS.name()),
        q.end - q.lookback_ms,
        q.end,
        |l, samples| {
            if let Some(&(_, v)) = samples.last().filter(|(_, v)| !is_stale(*v)) {
                row_of(&mut rows, &group_names, l).tcp_open += v;
            }
        },
    )?;
    let secs = (q.end - q.start) as f64 / 1000.0;
    let rows = rows
        .into_iter()
        .map(|(group, mut row)| {
            row.latency.sort();
            let at = |x: f64| row.latency.quantile(x);
            pb::GoldenRow {
                group: group.to_proto(),
                success_count: row.success.round() as u64,
                failure_count: row.failure.round() as u64,
                requests_per_second: (row.success + row.failure) / secs,
                latency_p50_ms: at(0.5),
                latency_p95_ms: at(0.95),
                latency_p99_ms: at(0.99),
                tcp_open_connections: row.tcp_open,
            }
        })
        .collect();
    Ok(GoldenAnswer {
        rows,
        latency_resolution_ms: resolution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::histogram::{new_latency_histogram, record_latency_us};

    #[test]
    fn sparse_latency_answers_like_the_merged_histogram() {
        let mut all = new_latency_histogram();
        let mut latency = Latency::default();
        for w in 0..20u64 {
            let mut h = new_latency_histogram();
            for i in 0..300u64 {
                // A spread from 1 µs to minutes, different in every window.
                let us = 1 + (i * i * 7919 + w * 104_729) % 90_000_000 / (1 + i % 97);
                record_latency_us(&mut h, us);
                record_latency_us(&mut all, us);
            }
            let window = Window::from_histogram(0, 1000, &h, 0.0, 0.001);
            latency.add(&window).unwrap();
        }
        latency.sort();
        for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(
                latency.quantile(q),
                all.value_at_quantile(q) as f64 * 0.001,
                "quantile {q}"
            );
        }
        assert_eq!(Latency::default().quantile(0.5), 0.0);
    }

    #[test]
    fn increase_counts_from_the_baseline_and_through_resets() {
        let s = [
            (0, 5.0),
            (1000, 7.0),
            (2000, 10.0),
            (3000, 2.0),
            (4000, 4.0),
        ];
        // Baseline 7 at t=1000: +3, reset to 2 (+2), +2.
        assert_eq!(increase(&s, 1000), 7.0);
        // A series born inside the window counts from zero.
        assert_eq!(increase(&s[2..], 1000), 14.0);
    }
}
