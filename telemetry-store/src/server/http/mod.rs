//! The HTTP API: Prometheus' `/api/v1/*` query endpoints (GET and
//! urlencoded POST, JSON and errors as Prometheus writes them), the
//! remote-write receiver, health endpoints and the store's own metrics.
//!
//! Each group of routes declares the state it reads ([`Reads`],
//! [`Writes`], [`TapReads`], [`Gauges`]) and the composition root builds
//! them: the query routes cannot write, the write route cannot query.

mod auth;
mod body;
mod json;
mod metrics;
mod params;
mod tap;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use self::params::Params;
use crate::config::Config;
use crate::db::Db;
use crate::exemplars::Exemplars;
use crate::ingest::Ingester;
use crate::ingest::remote_write;
use crate::promql::{Engine, QueryError};
use crate::series::Matcher;
use crate::time::{now_ms, parse_api_duration_ms, parse_timestamp_ms};
use crate::wal::FsyncPolicy;

pub(crate) use auth::Tokens;
pub(crate) use metrics::Gauges;
pub(crate) use tap::TapReads;

/// PromQL, series and label reads.
#[derive(Clone)]
pub(crate) struct Reads {
    pub(crate) db: Arc<Db>,
    pub(crate) engine: Arc<Engine>,
    /// `--query-timeout`.
    pub(crate) timeout: Duration,
    pub(crate) exemplars: Arc<Exemplars>,
}

/// Remote write in.
#[derive(Clone)]
pub(crate) struct Writes {
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) fsync: FsyncPolicy,
}

/// The state of every route group.
pub(crate) struct Routes {
    pub(crate) reads: Reads,
    pub(crate) writes: Writes,
    pub(crate) tap: TapReads,
    pub(crate) gauges: Gauges,
    /// For `/api/v1/metadata`.
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) tokens: Arc<Tokens>,
}

pub(crate) fn router(c: &Config, routes: Routes) -> Router {
    let body_limit = |max_bytes: u64, flag| body::BodyLimit {
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        timeout: c.http_body_timeout,
        flag,
    };
    let read_body = || {
        axum::middleware::from_fn_with_state(
            body_limit(c.http_max_request_body, "--http-max-request-body"),
            body::read_whole,
        )
    };
    // Route layers added last run first: the token is checked before a
    // body is read.
    let writes = Router::new()
        .route("/api/v1/write", post(write))
        .layer(axum::middleware::from_fn_with_state(
            body_limit(c.remote_write_max_body, "--remote-write-max-body"),
            body::read_whole,
        ))
        .route_layer(from_fn_with_state(
            routes.tokens.clone(),
            auth::remote_write,
        ))
        .with_state(routes.writes);
    let tap = Router::new()
        .route("/api/v1/tap/search", get(tap::search).post(tap::search))
        .route("/api/v1/tap/follow", get(tap::follow))
        .with_state(routes.tap);
    // An exemplar names one request (its id, latency and time), so it is
    // closed with the tap history rather than open with the aggregates.
    let requests = Router::new()
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .with_state(routes.reads.clone())
        .merge(tap)
        .layer(read_body())
        .route_layer(from_fn_with_state(routes.tokens, auth::tap));
    let queries = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .with_state(routes.reads);
    let reads = Router::new()
        .merge(queries)
        .route("/api/v1/metadata", get(metadata))
        .with_state(routes.ingester)
        .route("/metrics", get(metrics::handler))
        .with_state(routes.gauges)
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/-/ready",
            get(|| async { "Conduit telemetry store is Ready.\n" }),
        )
        .route(
            "/-/healthy",
            get(|| async { "Conduit telemetry store is Healthy.\n" }),
        )
        .layer(read_body());
    // The bodies are whole and within their limits once a handler runs.
    writes
        .merge(requests)
        .merge(reads)
        .layer(DefaultBodyLimit::disable())
}

/// An API error with its Prometheus `errorType` and HTTP status.
struct ApiError {
    kind: &'static str,
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_data(message: impl Into<String>) -> Self {
        Self {
            kind: "bad_data",
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn param(name: &str, e: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {e}"))
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let (kind, status) = match &e {
            QueryError::BadData(_) => ("bad_data", StatusCode::BAD_REQUEST),
            QueryError::Execution(_) => ("execution", StatusCode::UNPROCESSABLE_ENTITY),
            QueryError::Timeout(_) => ("timeout", StatusCode::SERVICE_UNAVAILABLE),
            // Nobody reads it: the client is gone. nginx's code for that.
            QueryError::Canceled(_) => (
                "canceled",
                StatusCode::from_u16(499).expect("499 is a valid status"),
            ),
            QueryError::Internal(_) => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        };
        Self {
            kind,
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, json::error(self.kind, &self.message))
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ok(body: String) -> Response {
    json_response(StatusCode::OK, body)
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => parse_timestamp_ms(v).map_err(|e| ApiError::param(name, e)),
    }
}

fn timeout_param(s: &Reads, p: &Params) -> Result<Duration, ApiError> {
    let max = s.timeout;
    match p.get("timeout") {
        None | Some("") => Ok(max),
        Some(v) => {
            let ms = parse_api_duration_ms(v).map_err(|e| ApiError::param("timeout", e))?;
            Ok(Duration::from_millis(ms.max(0) as u64).min(max))
        }
    }
}

async fn query(
    State(s): State<Reads>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &headers, &body);
    let t = time_param(&p, "time", now_ms())?;
    let timeout = timeout_param(&s, &p)?;
    let expr = p.get("query").unwrap_or_default().to_string();
    let engine = s.engine.clone();
    let value = s
        .engine
        .run(timeout, move |stop| engine.instant(&expr, t, stop))
        .await?;
    Ok(ok(json::success(|j| json::query_data(j, &value))))
}

async fn query_range(
    State(s): State<Reads>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &headers, &body);
    let start = parse_timestamp_ms(p.get("start").unwrap_or_default())
        .map_err(|e| ApiError::param("start", e))?;
    let end = parse_timestamp_ms(p.get("end").unwrap_or_default())
        .map_err(|e| ApiError::param("end", e))?;
    let step = parse_api_duration_ms(p.get("step").unwrap_or_default())
        .map_err(|e| ApiError::param("step", e))?;
    let timeout = timeout_param(&s, &p)?;
    crate::promql::check_range(start, end, step)?;
    let expr = p.get("query").unwrap_or_default().to_string();
    let engine = s.engine.clone();
    let value = s
        .engine
        .run(timeout, move |stop| {
            engine.range(&expr, (start, end, step), stop)
        })
        .await?;
    Ok(ok(json::success(|j| json::query_data(j, &value))))
}

/// `match[]` selectors, each parsed as PromQL and required to be a plain
/// vector selector. Parsing runs in a query slot: a bad selector's error
/// position takes a parse per character.
fn selectors(engine: &Engine, raw: &[String]) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let param = |e: &dyn std::fmt::Display| {
        QueryError::BadData(format!("invalid parameter \"match[]\": {e}"))
    };
    raw.iter()
        .map(|m| match engine.parse(m) {
            Ok(promql_parser::parser::Expr::VectorSelector(vs)) => {
                crate::promql::selector_matchers(&vs).map_err(|e| param(&e))
            }
            Ok(_) => Err(param(&format!("{m:?} is not a series selector"))),
            Err(e) => Err(param(&e)),
        })
        .collect()
}

fn match_params(p: &Params) -> Vec<String> {
    p.all("match[]").into_iter().map(String::from).collect()
}

fn range_params(p: &Params) -> Result<(i64, i64), ApiError> {
    Ok((
        time_param(p, "start", i64::MIN)?,
        time_param(p, "end", i64::MAX)?,
    ))
}

async fn series(
    State(s): State<Reads>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &headers, &body);
    let raw = match_params(&p);
    if raw.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = range_params(&p)?;
    let (db, engine) = (s.db.clone(), s.engine.clone());
    let all = s
        .engine
        .run(s.timeout, move |_| {
            let sets = selectors(&engine, &raw)?;
            let mut all = std::collections::BTreeSet::new();
            for m in &sets {
                all.extend(db.series_labels(m, start, end)?);
            }
            Ok(all)
        })
        .await?;
    Ok(ok(json::success(|j| {
        j.raw("[");
        for (i, l) in all.iter().enumerate() {
            if i > 0 {
                j.raw(",");
            }
            j.labels(l);
        }
        j.raw("]");
    })))
}

async fn labels(
    State(s): State<Reads>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &headers, &body);
    let raw = match_params(&p);
    let (start, end) = range_params(&p)?;
    let (db, engine) = (s.db.clone(), s.engine.clone());
    let names = s
        .engine
        .run(s.timeout, move |_| {
            let sets = selectors(&engine, &raw)?;
            let mut names = std::collections::BTreeSet::new();
            if sets.is_empty() {
                names = db.label_names(&[], start, end)?;
            }
            for m in &sets {
                names.extend(db.label_names(m, start, end)?);
            }
            Ok(names)
        })
        .await?;
    Ok(ok(json::success(|j| {
        j.strings(names.iter().map(String::as_str));
    })))
}

async fn label_values(
    State(s): State<Reads>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    if !conduit_api::labels::is_valid_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let p = Params::parse(q.as_deref(), &headers, &[]);
    let raw = match_params(&p);
    let (start, end) = range_params(&p)?;
    let (db, engine) = (s.db.clone(), s.engine.clone());
    let values = s
        .engine
        .run(s.timeout, move |_| {
            let sets = selectors(&engine, &raw)?;
            let mut values = std::collections::BTreeSet::new();
            if sets.is_empty() {
                values = db.label_values(&name, &[], start, end)?;
            }
            for m in &sets {
                values.extend(db.label_values(&name, m, start, end)?);
            }
            Ok(values)
        })
        .await?;
    Ok(ok(json::success(|j| {
        j.strings(values.iter().map(String::as_str));
    })))
}

async fn metadata(
    State(ingester): State<Arc<Ingester>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &HeaderMap::new(), &[]);
    let limit = match p.get("limit") {
        None | Some("") => usize::MAX,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 0 => usize::MAX,
            Ok(n) => n as usize,
            Err(_) => return Err(ApiError::bad_data("limit must be a number")),
        },
    };
    let metric = p.get("metric").unwrap_or_default();
    let all = ingester.metadata();
    Ok(ok(json::success(|j| {
        j.raw("{");
        let entries = all
            .iter()
            .filter(|(name, _)| metric.is_empty() || *name == metric)
            .take(limit);
        for (i, (name, m)) in entries.enumerate() {
            if i > 0 {
                j.raw(",");
            }
            j.string(name)
                .raw(r#":[{"type":"#)
                .string(&m.kind)
                .raw(r#","help":"#)
                .string(&m.help);
            j.raw(r#","unit":"#).string(&m.unit).raw("}]");
        }
        j.raw("}");
    })))
}

/// The exemplars of the series the query's selectors select, in
/// `[start, end]`: Prometheus' answer, so Grafana draws them on a panel.
async fn exemplars(
    State(s): State<Reads>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &headers, &body);
    let (start, end) = range_params(&p)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let expr = p.get("query").unwrap_or_default().to_string();
    let (engine, exemplars) = (s.engine.clone(), s.exemplars.clone());
    let found = s
        .engine
        .run(s.timeout, move |_| {
            let selectors = crate::promql::selectors_in(&engine.parse(&expr)?)?;
            Ok(exemplars.select(&selectors, start, end))
        })
        .await?;
    Ok(ok(json::success(|j| json::exemplars(j, &found))))
}

/// Grafana reads `version` to pick query features; the store implements
/// the API of Prometheus 2.42, so that is the version it reports (its own
/// is in `revision`).
async fn buildinfo() -> Response {
    ok(json::success(|j| {
        j.raw(r#"{"version":"2.42.0","revision":"#)
            .string(&format!("conduit-telemetry-store {}", conduit_api::VERSION))
            .raw(r#","branch":"conduit","buildUser":"","buildDate":"","goVersion":"none"}"#);
    }))
}

/// A committed body's summary, or why the commit failed or its task died.
type Ingested =
    Result<Result<crate::ingest::WriteSummary, crate::ingest::WriteError>, tokio::task::JoinError>;

/// Decompresses and commits a remote-write body on the worker that
/// received it, in that thread's reused buffer: a 2 000-sample request is
/// a few ms of CPU and, with the WAL synced on an interval, no wait for
/// the disk, and handing every request to the blocking pool cost a tenth
/// of ingest throughput in thread hand-offs. With `--wal-fsync always`
/// each commit waits for the disk, so it goes to the blocking pool.
async fn ingest_remote_write(
    s: &Writes,
    body: &[u8],
) -> Result<Ingested, remote_write::DecodeError> {
    if s.fsync != crate::FsyncPolicy::Always {
        return remote_write::with_decompressed(body, |raw| Ok(s.ingester.remote_write(raw)));
    }
    let raw = remote_write::decompress(body)?;
    let ingester = s.ingester.clone();
    Ok(tokio::task::spawn_blocking(move || ingester.remote_write(&raw)).await)
}

/// A write the WAL could not take: nothing of it was stored, and the
/// sender should retry (Prometheus retries 5xx).
fn wal_unavailable(e: &std::io::Error) -> Response {
    let what = if e.kind() == std::io::ErrorKind::StorageFull {
        "the disk holding --data-dir is full: nothing of this write was stored; free space and retry, the store resumes by itself"
    } else {
        "cannot write the WAL: nothing of this write was stored; retry later"
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        format!("{what} ({e})\n"),
    )
        .into_response()
}

async fn write(State(s): State<Writes>, body: Bytes) -> Response {
    let ingested = match ingest_remote_write(&s, &body).await {
        Ok(i) => i,
        Err(e) => {
            s.ingester
                .stats
                .remote_write_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let summary = match ingested {
        Ok(Ok(summary)) => summary,
        Ok(Err(e @ crate::ingest::WriteError::Decode(_))) => {
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
        Ok(Err(crate::ingest::WriteError::Io(e))) => return wal_unavailable(&e),
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ingest task failed: {e}\n"),
            )
                .into_response();
        }
    };
    let o = summary.outcome;
    if summary.rejected_series == 0 && o.rejected() == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut msg = format!("stored {} samples", o.accepted);
    if summary.rejected_series > 0 {
        msg += &format!(
            "; rejected {} series: {}",
            summary.rejected_series,
            summary.first_error.as_deref().unwrap_or_default()
        );
    }
    if o.rejected() > 0 {
        msg += &format!(
            "; rejected {} samples ({} out of order, {} duplicate timestamps with another value, {} too old for the head, {} dated beyond --future-window or before 1970: check the sender's clock)",
            o.rejected(),
            o.out_of_order,
            o.duplicates,
            o.out_of_bounds,
            o.out_of_time_range
        );
    }
    (StatusCode::BAD_REQUEST, msg + "\n").into_response()
}
