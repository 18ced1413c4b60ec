//! The `conduit.store.v1.Query` gRPC service the controller calls: it
//! checks each request, hands it to the database, the PromQL engine,
//! [`crate::golden`] or the tap history, and turns their errors into
//! gRPC statuses.

use std::sync::Arc;
use std::time::Duration;

use conduit_api::Labels;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::store::v1 as pb;
use conduit_api::proto::store::v1::query_server::Query;
use conduit_api::proto::tap::v1::TapEvent;
use tonic::{Request, Response, Status};

use conduit_api::time_range::TimeRange;

use crate::db::Db;
use crate::golden::{GoldenQuery, golden};
use crate::ingest::Ingester;
use crate::ingest::telemetry::Proxies;
use crate::promql::{Engine, QueryError, QueryValue};
use crate::series::Matcher;
use crate::tap::TapIndex;

/// What the query service reads: no configuration, no write path.
pub(crate) struct QueryService {
    pub(crate) db: Arc<Db>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) proxies: Arc<Proxies>,
    pub(crate) tap: Option<Arc<TapIndex>>,
    /// `--query-timeout`.
    pub(crate) timeout: Duration,
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

/// Checks a `Golden` request and fills in its defaults: the window ends
/// at `end_unix_ms` (default now) and starts at `start_unix_ms` (default
/// `window`, 1 minute, before the end), within the store's retention.
fn golden_query(
    req: pb::GoldenRequest,
    lookback_ms: i64,
    retention_ms: i64,
) -> Result<GoldenQuery, Status> {
    let base = matchers(&req.matchers)?;
    for g in &req.group_by {
        if !conduit_api::labels::is_valid_name(g) {
            return Err(Status::invalid_argument(format!(
                "invalid group_by label {g:?}"
            )));
        }
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
    let now = crate::time::now_ms();
    let end = if req.end_unix_ms > 0 {
        req.end_unix_ms
    } else {
        now
    };
    let start = if req.start_unix_ms > 0 {
        req.start_unix_ms
    } else {
        end.saturating_sub(window)
    };
    let range = TimeRange {
        start_ms: start,
        end_ms: end,
    };
    range
        .check(now)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    range
        .check_retention(retention_ms, now)
        .map_err(|e| Status::out_of_range(e.to_string()))?;
    Ok(GoldenQuery {
        matchers: base,
        group_by: req.group_by,
        start,
        end,
        lookback_ms,
    })
}

/// `work`'s answer, or DEADLINE_EXCEEDED once it takes longer than
/// `--query-timeout`.
async fn within_query_timeout<T>(
    limit: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Status> {
    tokio::time::timeout(limit, work).await.map_err(|_| {
        Status::deadline_exceeded(format!(
            "no answer within {limit:?} (--query-timeout): narrow the request"
        ))
    })
}

impl QueryService {
    fn tap(&self) -> Result<Arc<TapIndex>, Status> {
        self.tap.clone().ok_or_else(|| {
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
        let q = golden_query(
            request.into_inner(),
            self.engine.options().lookback_ms,
            self.db.retention_ms(),
        )?;
        let (start_unix_ms, end_unix_ms) = (q.start, q.end);
        let db = self.db.clone();
        let work = tokio::task::spawn_blocking(move || golden(&db, &q));
        let answer = within_query_timeout(self.timeout, work)
            .await?
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::GoldenResponse {
            rows: answer.rows,
            start_unix_ms,
            end_unix_ms,
            latency_resolution_ms: answer.latency_resolution_ms,
        }))
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
        let engine = self.engine.clone();
        let v = self
            .engine
            .run(self.timeout, move |stop| engine.instant(&q.query, t, stop))
            .await
            .map_err(status_of)?;
        Ok(Response::new(result_of(v)))
    }

    async fn range(
        &self,
        request: Request<pb::RangeQuery>,
    ) -> Result<Response<pb::QueryResult>, Status> {
        let q = request.into_inner();
        let engine = self.engine.clone();
        let v = self
            .engine
            .run(self.timeout, move |stop| {
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
        let db = self.db.clone();
        let start = req.start_unix_ms;
        let work = tokio::task::spawn_blocking(move || db.series_labels(&m, start, end));
        let all = within_query_timeout(self.timeout, work)
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
        let since = crate::time::now_ms() - RECENT_PROXY_MS;
        Ok(Response::new(pb::StatusResponse {
            version: conduit_api::VERSION.to_string(),
            active_series: self.db.head.len() as u64,
            samples_ingested_total: self
                .db
                .stats
                .samples_appended
                .load(std::sync::atomic::Ordering::Relaxed),
            reports_received_total: self
                .ingester
                .stats
                .reports
                .load(std::sync::atomic::Ordering::Relaxed),
            proxies: self
                .proxies
                .since(since)
                .into_iter()
                .map(|p| pb::ReportingProxy {
                    proxy: Some(p.meta),
                    last_report_unix_ms: p.last_report_ms,
                    dropped_reports: p.dropped_reports,
                })
                .collect(),
            retention_ms: self.db.retention_ms(),
        }))
    }
}
