//! The `conduit.store.v1.Query` gRPC service the controller calls.
//!
//! `Golden` is what `conduit stat`, `top` and `routes` show: per group,
//! exact success and failure counts (increases of the proxies' cumulative
//! `response_total` counters), requests per second, and latency quantiles
//! from the proxies' HdrHistograms merged over the window — no bucket
//! interpolation.

use std::collections::BTreeMap;
use std::sync::Arc;

use conduit_api::Labels;
use conduit_api::metrics::{self, label};
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::store::v1 as pb;
use conduit_api::proto::store::v1::query_server::Query;
use conduit_api::proto::tap::v1::TapEvent;
use hdrhistogram::Histogram;
use tonic::{Request, Response, Status};

use crate::db::{Floats, Windows};
use crate::model::{CorruptWindow, Window};
use crate::promql::value::is_stale;
use crate::promql::{QueryError, QueryValue};
use crate::series::labelset::LabelLookup;
use crate::series::{METRIC_NAME, Matcher};
use crate::store::Shared;

pub(crate) struct QueryService {
    pub(crate) shared: Arc<Shared>,
}

const DEFAULT_WINDOW_MS: i64 = 60_000;
/// Proxies that reported within this are listed by `Status`.
const RECENT_PROXY_MS: i64 = 5 * 60_000;

fn matchers(pb: &[pb::Matcher]) -> Result<Vec<Matcher>, Status> {
    pb.iter()
        .map(|m| {
            if !conduit_api::labels::is_valid_name(&m.name) {
                return Err(Status::invalid_argument(format!(
                    "invalid label name {:?} in matcher",
                    m.name
                )));
            }
            let op = pb::matcher::Op::try_from(m.op)
                .map_err(|_| Status::invalid_argument(format!("unknown matcher op {}", m.op)))?;
            Ok(match op {
                pb::matcher::Op::Equal => Matcher::equal(&m.name, &m.value),
                pb::matcher::Op::NotEqual => Matcher::not_equal(&m.name, &m.value),
                pb::matcher::Op::Regex => Matcher::regex(&m.name, &m.value, false)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
                pb::matcher::Op::NotRegex => Matcher::regex(&m.name, &m.value, true)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            })
        })
        .collect()
}

fn status_of(e: QueryError) -> Status {
    match e {
        QueryError::BadData(m) => Status::invalid_argument(m),
        QueryError::Execution(m) => Status::failed_precondition(m),
        QueryError::Timeout(m) => Status::deadline_exceeded(m),
        QueryError::Canceled(m) => Status::cancelled(m),
        QueryError::Internal(m) => Status::internal(m),
    }
}

fn to_proto_labels(l: &Labels) -> Vec<mesh::Label> {
    l.to_proto()
}

fn result_of(v: QueryValue) -> pb::QueryResult {
    use pb::query_result::ResultType;
    let sample = |t: i64, v: f64| pb::Sample {
        timestamp_unix_ms: t,
        value: v,
    };
    match v {
        QueryValue::Scalar(t, v) => pb::QueryResult {
            series: vec![pb::Series {
                labels: vec![],
                samples: vec![sample(t, v)],
            }],
            result_type: ResultType::Scalar as i32,
        },
        QueryValue::String(t, s) => pb::QueryResult {
            series: vec![pb::Series {
                labels: vec![mesh::Label {
                    name: "value".into(),
                    value: s,
                }],
                samples: vec![sample(t, f64::NAN)],
            }],
            result_type: ResultType::String as i32,
        },
        QueryValue::Vector(samples) => pb::QueryResult {
            series: samples
                .into_iter()
                .map(|(m, t, v)| pb::Series {
                    labels: to_proto_labels(&m),
                    samples: vec![sample(t, v)],
                })
                .collect(),
            result_type: ResultType::Vector as i32,
        },
        QueryValue::Matrix(series) => pb::QueryResult {
            series: series
                .into_iter()
                .map(|s| pb::Series {
                    labels: to_proto_labels(&s.metric),
                    samples: s.points.into_iter().map(|(t, v)| sample(t, v)).collect(),
                })
                .collect(),
            result_type: ResultType::Matrix as i32,
        },
    }
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

pub(crate) fn golden(
    shared: &Shared,
    req: pb::GoldenRequest,
) -> Result<pb::GoldenResponse, Status> {
    let base = matchers(&req.matchers)?;
    for g in &req.group_by {
        if !conduit_api::labels::is_valid_name(g) {
            return Err(Status::invalid_argument(format!(
                "invalid group_by label {g:?}"
            )));
        }
    }
    if let Some(q) = req.quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(Status::invalid_argument(format!(
            "quantile {q} is not in [0, 1]"
        )));
    }
    let window = match &req.window {
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err(Status::invalid_argument("window must be positive"));
        }
        Some(d) => d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000,
        None => 0,
    };
    let window = if window > 0 {
        window
    } else {
        DEFAULT_WINDOW_MS
    };
    let end = if req.end_unix_ms > 0 {
        req.end_unix_ms
    } else {
        crate::time::now_ms()
    };
    let start = end - window;
    let lookback = shared.engine.options().lookback_ms;
    let group_names: Vec<&str> = req.group_by.iter().map(String::as_str).collect();
    let with_name = |name: &str| {
        let mut m = base.clone();
        m.push(Matcher::equal(METRIC_NAME, name));
        m
    };
    let db = &shared.db;
    let internal = |e: crate::db::DbError| Status::internal(format!("reading series: {e}"));
    let mut rows: BTreeMap<Labels, Row> = BTreeMap::new();

    db.for_each::<Floats>(
        &with_name(metrics::RESPONSE_TOTAL),
        start - lookback,
        end,
        |l, samples| {
            let n = increase(samples, start);
            let failure = l.label(label::CLASSIFICATION) == Some("failure");
            let row = row_of(&mut rows, &group_names, l);
            if failure {
                row.failure += n;
            } else {
                row.success += n;
            }
        },
    )
    .map_err(internal)?;
    let mut corrupt = None;
    db.for_each::<Windows>(
        &with_name(metrics::RESPONSE_LATENCY_MS),
        start,
        end,
        |l, windows| {
            let row = row_of(&mut rows, &group_names, l);
            for w in windows {
                if let Err(e) = row.latency.add(w) {
                    corrupt = Some(e);
                }
            }
        },
    )
    .map_err(internal)?;
    if let Some(e) = corrupt {
        return Err(Status::internal(e.to_string()));
    }
    db.for_each::<Floats>(
        &with_name(metrics::TCP_OPEN_CONNECTIONS),
        end - lookback,
        end,
        |l, samples| {
            if let Some(&(_, v)) = samples.last().filter(|(_, v)| !is_stale(*v)) {
                row_of(&mut rows, &group_names, l).tcp_open += v;
            }
        },
    )
    .map_err(internal)?;
    let secs = window as f64 / 1000.0;
    Ok(pb::GoldenResponse {
        rows: rows
            .into_iter()
            .map(|(group, mut row)| {
                row.latency.sort();
                let q = |q: f64| row.latency.quantile(q);
                pb::GoldenRow {
                    group: group.to_proto(),
                    success_count: row.success.round() as u64,
                    failure_count: row.failure.round() as u64,
                    requests_per_second: (row.success + row.failure) / secs,
                    latency_p50_ms: q(0.5),
                    latency_p95_ms: q(0.95),
                    latency_p99_ms: q(0.99),
                    latency_quantiles_ms: req.quantiles.iter().map(|&x| q(x)).collect(),
                    tcp_open_connections: row.tcp_open,
                }
            })
            .collect(),
    })
}

/// `work`'s answer, or DEADLINE_EXCEEDED once it takes longer than
/// `--query-timeout`.
async fn within_query_timeout<T>(
    shared: &Shared,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Status> {
    let limit = shared.config.query_timeout;
    tokio::time::timeout(limit, work).await.map_err(|_| {
        Status::deadline_exceeded(format!(
            "no answer within {limit:?} (--query-timeout): narrow the request"
        ))
    })
}

impl QueryService {
    fn tap(&self) -> Result<Arc<crate::tap::TapIndex>, Status> {
        self.shared.tap.clone().ok_or_else(|| {
            Status::unimplemented("the tap history is off (--tap-retention-time 0s); use live tap through the controller")
        })
    }
}

fn tap_status(e: crate::tap::TapError) -> Status {
    match e {
        crate::tap::TapError::BadQuery(m) => {
            Status::invalid_argument(format!("invalid tap query: {m}"))
        }
        e @ crate::tap::TapError::TooManyFollowers(_) => Status::resource_exhausted(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn golden(
        &self,
        request: Request<pb::GoldenRequest>,
    ) -> Result<Response<pb::GoldenResponse>, Status> {
        let shared = self.shared.clone();
        let req = request.into_inner();
        let work = tokio::task::spawn_blocking(move || golden(&shared, req));
        let resp = within_query_timeout(&self.shared, work)
            .await?
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(resp))
    }

    async fn instant(
        &self,
        request: Request<pb::InstantQuery>,
    ) -> Result<Response<pb::QueryResult>, Status> {
        let q = request.into_inner();
        let t = if q.time_unix_ms > 0 {
            q.time_unix_ms
        } else {
            crate::time::now_ms()
        };
        let engine = self.shared.engine.clone();
        let v = self
            .shared
            .engine
            .run(self.shared.config.query_timeout, move |stop| {
                engine.instant(&q.query, t, stop)
            })
            .await
            .map_err(status_of)?;
        Ok(Response::new(result_of(v)))
    }

    async fn range(
        &self,
        request: Request<pb::RangeQuery>,
    ) -> Result<Response<pb::QueryResult>, Status> {
        let q = request.into_inner();
        let engine = self.shared.engine.clone();
        let v = self
            .shared
            .engine
            .run(self.shared.config.query_timeout, move |stop| {
                engine.range(&q.query, (q.start_unix_ms, q.end_unix_ms, q.step_ms), stop)
            })
            .await
            .map_err(status_of)?;
        Ok(Response::new(result_of(v)))
    }

    async fn series(
        &self,
        request: Request<pb::SeriesRequest>,
    ) -> Result<Response<pb::SeriesResponse>, Status> {
        let req = request.into_inner();
        let m = matchers(&req.matchers)?;
        if m.is_empty() {
            return Err(Status::invalid_argument("at least one matcher is required"));
        }
        let end = if req.end_unix_ms > 0 {
            req.end_unix_ms
        } else {
            i64::MAX
        };
        let db = self.shared.db.clone();
        let start = req.start_unix_ms;
        let work = tokio::task::spawn_blocking(move || db.series_labels(&m, start, end));
        let all = within_query_timeout(&self.shared, work)
            .await?
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("reading series: {e}")))?;
        Ok(Response::new(pb::SeriesResponse {
            series: all
                .iter()
                .map(|l| pb::LabelSet {
                    labels: l.to_proto(),
                })
                .collect(),
        }))
    }

    async fn search_tap(
        &self,
        request: Request<pb::SearchTapRequest>,
    ) -> Result<Response<pb::SearchTapResponse>, Status> {
        let tap = self.tap()?;
        let req = request.into_inner();
        let end = if req.end_unix_ms > 0 {
            req.end_unix_ms
        } else {
            i64::MAX
        };
        let limit = if req.limit > 0 {
            req.limit as usize
        } else {
            100
        };
        let events = tokio::task::spawn_blocking(move || {
            tap.search(&req.query, req.start_unix_ms, end, limit, false)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(tap_status)?;
        Ok(Response::new(pb::SearchTapResponse { events }))
    }

    type FollowTapStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<TapEvent, Status>> + Send>>;

    async fn follow_tap(
        &self,
        request: Request<pb::SearchTapRequest>,
    ) -> Result<Response<Self::FollowTapStream>, Status> {
        use futures_util::StreamExt;
        let tap = self.tap()?;
        let req = request.into_inner();
        tap.validate(&req.query).map_err(tap_status)?;
        let follower = tap.follower().map_err(tap_status)?;
        let from = if req.start_unix_ms > 0 {
            req.start_unix_ms
        } else {
            crate::time::now_ms()
        };
        let limit = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        let stream = crate::tap::follow(tap, follower, req.query, from)
            .take(limit)
            .map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = &self.shared;
        let since = crate::time::now_ms() - RECENT_PROXY_MS;
        Ok(Response::new(pb::StatusResponse {
            version: conduit_api::VERSION.to_string(),
            active_series: s.db.head.len() as u64,
            samples_ingested_total: s
                .db
                .stats
                .samples_appended
                .load(std::sync::atomic::Ordering::Relaxed),
            reports_received_total: s
                .ingester
                .stats
                .reports
                .load(std::sync::atomic::Ordering::Relaxed),
            proxies: s
                .proxies
                .since(since)
                .into_iter()
                .map(|p| pb::ReportingProxy {
                    proxy: Some(p.meta),
                    last_report_unix_ms: p.last_report_ms,
                    dropped_reports: p.dropped_reports,
                })
                .collect(),
        }))
    }
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
