//! The public API as JSON over HTTP, with Server-Sent Events for live
//! views: what the dashboard reads, and what `curl` can.
//!
//! Every endpoint is a `GET` answering `application/json` (or
//! `text/event-stream`), with the bodies of [`conduit_api::json`]. Errors
//! are a JSON [`conduit_api::json::ApiError`] with a matching status: 400
//! for bad parameters, 404 for an unknown Deployment, 409 when a
//! Deployment cannot be tapped, 503 when the store or the proxies cannot
//! be reached.
//!
//! | route | parameters | body |
//! |---|---|---|
//! | `/api/v1/version` | | `Version` |
//! | `/api/v1/deployments` | `namespace`, `all_namespaces`, `name` | `DeploymentList` |
//! | `/api/v1/stat` | selector, `from`, `to`, `window` or `since`/`until`, `by` (`deployment`, `version`) | `Stat` |
//! | `/api/v1/stat/stream` | as `stat` without `until`, `interval` (default 1s) | SSE: `stat` events (`Stat`), `error` events (`ApiError`) |
//! | `/api/v1/stat/history` | selector, `range` (15m) or `since`/`until`, `step` (15s), `window` (1m) | `StatHistory` |
//! | `/api/v1/top` | `namespace`, `name`, `window` (default 10s), `limit` | `Top` after one tick |
//! | `/api/v1/top/stream` | as `top` | SSE: `top` events (`Top`), one a second |
//! | `/api/v1/tap/stream` | `namespace`, `name`, `to`, `path`, `method`, `authority`, `max_rps` | SSE: `tap` events (`TapEvent`) |
//! | `/api/v1/tap/search` | `query`, `since` or `start_ms`/`end_ms`, `limit`, `namespace`, `name`, `to`, `path`, `method`, `authority` | `TapSearch` |
//! | `/api/v1/edges` | selector, `window` (5m) or `since`/`until` | `Edges` |
//! | `/api/v1/routes` | `namespace`, `name`, `window` or `since`/`until` | `Routes` |
//! | `/api/v1/authz` | `namespace`, `name`, `window` or `since`/`until` | `Authz` |
//! | `/api/v1/check` | | `Check` |
//! | `/healthz` | | `ok` |
//!
//! The selector is `namespace` (default `default`), `all_namespaces=true`,
//! and `name` (one Deployment). `from`/`to` name a Deployment as
//! `namespace/name` or `name` (in the selector's namespace). Windows and
//! durations are written `30s`, `1m`, `1h`; `since` and `until` are how
//! long ago (`2h`) or RFC 3339 times, and a window with `until` in the past
//! is the same at every request. A stream whose source fails
//! sends an `error` event; the stat stream then keeps trying each interval,
//! the others end (the browser's `EventSource` reconnects by itself).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::public::v1::{self as pb, api_server::Api};
use conduit_api::proto::tap::v1 as tap;
use conduit_api::time_range::TimePoint;
use conduit_api::{DeploymentRef, json};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::public::PublicApi;
use crate::store::now_unix_ms;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The routes of the API, to be merged with the dashboard's.
pub fn router(api: PublicApi) -> Router {
    let v1 = Router::new()
        .route("/version", get(version))
        .route("/deployments", get(deployments))
        .route("/stat", get(stat))
        .route("/stat/stream", get(stat_stream))
        .route("/stat/history", get(stat_history))
        .route("/top", get(top))
        .route("/top/stream", get(top_stream))
        .route("/tap/stream", get(tap_stream))
        .route("/tap/search", get(tap_search))
        .route("/edges", get(edges))
        .route("/routes", get(routes))
        .route("/authz", get(authz))
        .route("/check", get(check))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such API route; see api/controller/README.md",
            )
        });
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/auth", get(auth))
        .with_state(api)
}

/// A call of the public API carrying the HTTP caller's credential (its
/// `authorization` header or the dashboard's cookie), for the methods
/// that check it.
fn with_credential<T>(headers: HeaderMap, message: T) -> tonic::Request<T> {
    tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(headers),
        tonic::Extensions::default(),
        message,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthQuery {
    token: String,
}

/// Opens the dashboard in a browser: the URL `conduit dashboard` and
/// `conduit demo` print carries the API token once; it becomes an
/// HTTP-only, same-site cookie (which `EventSource` sends too), and the
/// browser goes on to the dashboard without the token in its address bar.
async fn auth(
    State(api): State<PublicApi>,
    q: Result<Query<AuthQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    if !api.accepts_session(&q.token) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this is not the control plane's API token; open the URL `conduit dashboard` prints",
        ));
    }
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        crate::access::COOKIE,
        q.token
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (axum::http::header::SET_COOKIE, cookie),
            (axum::http::header::LOCATION, "/".to_string()),
        ],
    )
        .into_response())
}

/// An error as the HTTP API reports it.
pub struct ApiError {
    status: StatusCode,
    body: json::ApiError,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json::ApiError {
                error: message.into(),
                code: code.to_string(),
            },
        }
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        let (status, code) = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Code::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
            Code::Unavailable | Code::DeadlineExceeded => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, s.message())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SelectorQuery {
    namespace: Option<String>,
    #[serde(default)]
    all_namespaces: bool,
    name: Option<String>,
}

impl SelectorQuery {
    fn selector(&self) -> pb::Selector {
        selector(&self.namespace, self.all_namespaces, &self.name)
    }
}

/// The Deployments a query's `namespace`, `all_namespaces` and `name` pick;
/// the controller validates it as it does a gRPC client's.
fn selector(
    namespace: &Option<String>,
    all_namespaces: bool,
    name: &Option<String>,
) -> pb::Selector {
    pb::Selector {
        namespace: namespace.clone().unwrap_or_default(),
        all_namespaces,
        name: name.clone().unwrap_or_default(),
    }
}

fn namespace_or_default(ns: &Option<String>) -> String {
    ns.clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// A Deployment parameter (see [`DeploymentRef::parse_in`]).
fn deployment_param(
    what: &str,
    text: Option<&str>,
    namespace: &str,
) -> Result<Option<mesh::DeploymentRef>, ApiError> {
    text.map(|t| {
        DeploymentRef::parse_in(t, namespace)
            .map(Into::into)
            .map_err(|e| bad(format!("{what}: {e}")))
    })
    .transpose()
}

fn duration_param(
    what: &str,
    text: &Option<String>,
) -> Result<Option<prost_types::Duration>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let d = conduit_api::duration::parse_window(text).map_err(|e| bad(format!("{what}: {e}")))?;
    Ok(Some(crate::profile::duration(d)))
}

/// `since` and `until` (how long ago, or RFC 3339) as a request's
/// `start_unix_ms` and `end_unix_ms`, 0 where absent; the API checks the
/// window they make.
fn range_params(since: &Option<String>, until: &Option<String>) -> Result<(i64, i64), ApiError> {
    let now = now_unix_ms();
    let at = |what: &str, text: &Option<String>| {
        let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(0);
        };
        text.parse::<TimePoint>()
            .map(|p| p.at(now))
            .map_err(|e| bad(format!("{what}: {e}")))
    };
    Ok((at("since", since)?, at("until", until)?))
}

fn named(ns: &Option<String>, name: &Option<String>) -> Result<mesh::DeploymentRef, ApiError> {
    let name = name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("the `name` parameter (a Deployment) is required"))?;
    DeploymentRef::parse_in(name, &namespace_or_default(ns))
        .map(Into::into)
        .map_err(|e| bad(format!("name: {e}")))
}

async fn version(State(api): State<PublicApi>) -> ApiResult<json::Version> {
    let v = api
        .version(tonic::Request::new(pb::VersionRequest {}))
        .await?;
    Ok(Json(v.into_inner().into()))
}

async fn deployments(
    State(api): State<PublicApi>,
    q: Result<Query<SelectorQuery>, QueryRejection>,
) -> ApiResult<json::DeploymentList> {
    let Query(q) = q?;
    let reply = api
        .list_deployments(tonic::Request::new(pb::ListDeploymentsRequest {
            selector: Some(q.selector()),
        }))
        .await?;
    Ok(Json(reply.into_inner().into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatQuery {
    namespace: Option<String>,
    #[serde(default)]
    all_namespaces: bool,
    name: Option<String>,
    from: Option<String>,
    to: Option<String>,
    window: Option<String>,
    since: Option<String>,
    until: Option<String>,
    interval: Option<String>,
    by: Option<String>,
}

impl StatQuery {
    fn request(&self) -> Result<pb::StatRequest, ApiError> {
        let ns = namespace_or_default(&self.namespace);
        let (start_unix_ms, end_unix_ms) = range_params(&self.since, &self.until)?;
        Ok(pb::StatRequest {
            selector: Some(selector(&self.namespace, self.all_namespaces, &self.name)),
            from: deployment_param("from", self.from.as_deref(), &ns)?,
            to: deployment_param("to", self.to.as_deref(), &ns)?,
            window: duration_param("window", &self.window)?,
            start_unix_ms,
            end_unix_ms,
            by: grouping_param(self.by.as_deref())? as i32,
        })
    }
}

/// `by=deployment` (the default) or `by=version`.
fn grouping_param(text: Option<&str>) -> Result<pb::StatGrouping, ApiError> {
    match text {
        None | Some("deployment") => Ok(pb::StatGrouping::Deployment),
        Some("version") => Ok(pb::StatGrouping::Version),
        Some(other) => Err(bad(format!(
            "by: {other:?} is not a grouping: use `deployment` or `version`"
        ))),
    }
}

async fn stat_once(api: &PublicApi, req: pb::StatRequest) -> Result<json::Stat, ApiError> {
    let reply = api.stat(tonic::Request::new(req)).await?;
    Ok(reply.into_inner().into())
}

async fn stat(
    State(api): State<PublicApi>,
    q: Result<Query<StatQuery>, QueryRejection>,
) -> ApiResult<json::Stat> {
    let Query(q) = q?;
    Ok(Json(stat_once(&api, q.request()?).await?))
}

fn sse<S>(events: S) -> impl IntoResponse
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

async fn stat_stream(
    State(api): State<PublicApi>,
    q: Result<Query<StatQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q?;
    if q.until.is_some() {
        return Err(bad(
            "until: a window that has ended does not change; ask /api/v1/stat for it",
        ));
    }
    let req = q.request()?;
    let interval = match &q.interval {
        None => DEFAULT_INTERVAL,
        Some(text) => {
            let d =
                conduit_api::duration::parse(text).map_err(|e| bad(format!("interval: {e}")))?;
            if !(Duration::from_millis(500)..=Duration::from_secs(60)).contains(&d) {
                return Err(bad("interval must be between 500ms and 1m"));
            }
            d
        }
    };
    // Fail fast on a request that can never succeed (bad names, unknown
    // Deployment); later failures (store down) become `error` events.
    let first = stat_once(&api, req.clone()).await;
    let permanent =
        |e: &ApiError| e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::NOT_FOUND;
    let first = match first {
        Err(e) if permanent(&e) => return Err(e),
        other => other,
    };
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut next = Some(first);
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let result = match next.take() {
                Some(r) => r,
                None => stat_once(&api, req.clone()).await,
            };
            let event = match result {
                Ok(stat) => json_event("stat", &stat),
                Err(e) => json_event("error", &e.body),
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(sse(ReceiverStream::new(rx)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    namespace: Option<String>,
    #[serde(default)]
    all_namespaces: bool,
    name: Option<String>,
    window: Option<String>,
    range: Option<String>,
    step: Option<String>,
    /// Instead of `range`: the points from `since` to `until` (default now).
    since: Option<String>,
    until: Option<String>,
}

async fn stat_history(
    State(api): State<PublicApi>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<json::StatHistory> {
    let Query(q) = q?;
    let parse = |what: &str, text: &Option<String>, default: &str| {
        conduit_api::duration::parse(text.as_deref().unwrap_or(default))
            .map_err(|e| bad(format!("{what}: {e}")))
    };
    let step = parse("step", &q.step, "15s")?;
    let (start, end) = range_params(&q.since, &q.until)?;
    let (range, end) = match (start, q.range.is_some()) {
        (0, _) => (parse("range", &q.range, "15m")?, (end > 0).then_some(end)),
        (_, true) => return Err(bad("since: give either since or range, not both")),
        (start, false) => {
            let end = if end > 0 { end } else { now_unix_ms() };
            let span = u64::try_from(end - start)
                .map_err(|_| bad("since must be earlier than until: the window would be empty"))?;
            // The first point ends one step after `since`.
            (Duration::from_millis(span), Some(end))
        }
    };
    let selector = selector(&q.namespace, q.all_namespaces, &q.name);
    let window = duration_param("window", &q.window)?;
    let window_text = q.window.clone().unwrap_or_else(|| "1m".into());
    let history = api
        .stat_history(Some(selector), window, (range, step), end)
        .await?;
    Ok(Json(json::StatHistory {
        window: window_text,
        step: conduit_api::duration::format(step),
        series: history
            .into_iter()
            .map(|(d, points)| json::StatSeries {
                namespace: d.namespace,
                name: d.name,
                points: points
                    .into_iter()
                    .map(|(t, m)| json::StatPoint {
                        time_unix_ms: t,
                        metrics: m.map(Into::into),
                    })
                    .collect(),
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopQuery {
    namespace: Option<String>,
    name: Option<String>,
    window: Option<String>,
    limit: Option<u32>,
}

impl TopQuery {
    fn request(&self) -> Result<pb::TopRequest, ApiError> {
        Ok(pb::TopRequest {
            deployment: Some(named(&self.namespace, &self.name)?),
            window: duration_param("window", &self.window)?,
            limit: self.limit.unwrap_or(0),
        })
    }
}

async fn top(
    State(api): State<PublicApi>,
    headers: HeaderMap,
    q: Result<Query<TopQuery>, QueryRejection>,
) -> ApiResult<json::Top> {
    let Query(q) = q?;
    let mut updates = api
        .top(with_credential(headers, q.request()?))
        .await?
        .into_inner();
    match updates.next().await {
        Some(Ok(u)) => Ok(Json(u.into())),
        Some(Err(s)) => Err(s.into()),
        None => Err(Status::unavailable("the top stream ended before its first update").into()),
    }
}

async fn top_stream(
    State(api): State<PublicApi>,
    headers: HeaderMap,
    q: Result<Query<TopQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q?;
    let updates = api
        .top(with_credential(headers, q.request()?))
        .await?
        .into_inner();
    Ok(sse(updates.map(|u| {
        Ok(match u {
            Ok(u) => json_event("top", &json::Top::from(u)),
            Err(s) => json_event("error", &ApiError::from(s).body),
        })
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TapQuery {
    namespace: Option<String>,
    name: Option<String>,
    to: Option<String>,
    path: Option<String>,
    method: Option<String>,
    authority: Option<String>,
    max_rps: Option<u32>,
}

fn filter(
    namespace: &Option<String>,
    to: &Option<String>,
    path: &Option<String>,
    method: &Option<String>,
    authority: &Option<String>,
) -> Result<tap::Filter, ApiError> {
    let ns = namespace_or_default(namespace);
    Ok(tap::Filter {
        path_prefix: path.clone().unwrap_or_default(),
        method: method.clone().unwrap_or_default(),
        authority: authority.clone().unwrap_or_default(),
        destination: deployment_param("to", to.as_deref(), &ns)?,
        ..Default::default()
    })
}

async fn tap_stream(
    State(api): State<PublicApi>,
    headers: HeaderMap,
    q: Result<Query<TapQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q?;
    let req = pb::TapRequest {
        deployment: Some(named(&q.namespace, &q.name)?),
        filter: Some(filter(
            &q.namespace,
            &q.to,
            &q.path,
            &q.method,
            &q.authority,
        )?),
        max_rps: q.max_rps.unwrap_or(0),
    };
    let events = api.tap(with_credential(headers, req)).await?.into_inner();
    Ok(sse(events.map(|e| {
        Ok(match e {
            Ok(e) => json_event("tap", &json::TapEvent::from(e)),
            Err(s) => json_event("error", &ApiError::from(s).body),
        })
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    query: Option<String>,
    since: Option<String>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    limit: Option<u32>,
    namespace: Option<String>,
    name: Option<String>,
    to: Option<String>,
    path: Option<String>,
    method: Option<String>,
    authority: Option<String>,
}

async fn tap_search(
    State(api): State<PublicApi>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> ApiResult<json::TapSearch> {
    let Query(q) = q?;
    let end = q.end_ms.unwrap_or_else(now_unix_ms);
    let start = match (&q.since, q.start_ms) {
        (Some(_), Some(_)) => return Err(bad("give `since` or `start_ms`, not both")),
        (Some(since), None) => {
            let d = conduit_api::duration::parse(since).map_err(|e| bad(format!("since: {e}")))?;
            end - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
        (None, start) => start.unwrap_or(0),
    };
    let deployment = match &q.name {
        Some(_) => Some(named(&q.namespace, &q.name)?),
        None => None,
    };
    let req = pb::SearchTapRequest {
        query: q.query.clone().unwrap_or_default(),
        start_unix_ms: start,
        end_unix_ms: end,
        limit: q.limit.unwrap_or(0),
        deployment,
        filter: Some(filter(
            &q.namespace,
            &q.to,
            &q.path,
            &q.method,
            &q.authority,
        )?),
    };
    let reply = api
        .search_tap(with_credential(headers, req))
        .await?
        .into_inner();
    Ok(Json(json::TapSearch {
        events: reply.events.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgesQuery {
    namespace: Option<String>,
    #[serde(default)]
    all_namespaces: bool,
    name: Option<String>,
    window: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

async fn edges(
    State(api): State<PublicApi>,
    q: Result<Query<EdgesQuery>, QueryRejection>,
) -> ApiResult<json::Edges> {
    let Query(q) = q?;
    let (start_unix_ms, end_unix_ms) = range_params(&q.since, &q.until)?;
    let reply = api
        .edges(tonic::Request::new(pb::EdgesRequest {
            selector: Some(selector(&q.namespace, q.all_namespaces, &q.name)),
            window: duration_param("window", &q.window)?,
            start_unix_ms,
            end_unix_ms,
        }))
        .await?;
    Ok(Json(reply.into_inner().into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesQuery {
    namespace: Option<String>,
    name: Option<String>,
    window: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

async fn routes(
    State(api): State<PublicApi>,
    q: Result<Query<RoutesQuery>, QueryRejection>,
) -> ApiResult<json::Routes> {
    let Query(q) = q?;
    let (start_unix_ms, end_unix_ms) = range_params(&q.since, &q.until)?;
    let reply = api
        .routes(tonic::Request::new(pb::RoutesRequest {
            deployment: Some(named(&q.namespace, &q.name)?),
            window: duration_param("window", &q.window)?,
            start_unix_ms,
            end_unix_ms,
        }))
        .await?;
    Ok(Json(reply.into_inner().into()))
}

/// Same parameters as `routes`: one Deployment and a window.
async fn authz(
    State(api): State<PublicApi>,
    q: Result<Query<RoutesQuery>, QueryRejection>,
) -> ApiResult<json::Authz> {
    let Query(q) = q?;
    let (start_unix_ms, end_unix_ms) = range_params(&q.since, &q.until)?;
    let reply = api
        .authz(tonic::Request::new(pb::AuthzRequest {
            deployment: Some(named(&q.namespace, &q.name)?),
            window: duration_param("window", &q.window)?,
            start_unix_ms,
            end_unix_ms,
        }))
        .await?;
    Ok(Json(reply.into_inner().into()))
}

async fn check(State(api): State<PublicApi>) -> ApiResult<json::Check> {
    let reply = api.check(tonic::Request::new(pb::CheckRequest {})).await?;
    Ok(Json(reply.into_inner().into()))
}
