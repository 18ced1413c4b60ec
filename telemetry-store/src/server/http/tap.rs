//! `/api/v1/tap/search` (newest first) and `/api/v1/tap/follow` (live,
//! Server-Sent Events): the tap history over HTTP, with tantivy's query
//! syntax in `q`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

use super::params::Params;
use super::{ApiError, json, ok, time_param};
use crate::promql::Engine;
use crate::tap::{self, TapError, TapIndex};
use crate::time::now_ms;

/// What the tap routes read. Searches take query slots like PromQL
/// queries: they cost alike.
#[derive(Clone)]
pub(crate) struct TapReads {
    pub(crate) tap: Option<Arc<TapIndex>>,
    pub(crate) engine: Arc<Engine>,
    /// `--query-timeout`.
    pub(crate) timeout: Duration,
}

fn tap_error(e: TapError) -> ApiError {
    match e {
        TapError::BadQuery(m) => ApiError::bad_data(format!("invalid tap query: {m}")),
        e @ TapError::TooManyFollowers(_) => ApiError {
            kind: "unavailable",
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
        },
        other => ApiError {
            kind: "internal",
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: other.to_string(),
        },
    }
}

fn tap_index(s: &TapReads) -> Result<std::sync::Arc<tap::TapIndex>, ApiError> {
    s.tap.clone().ok_or_else(|| ApiError {
        kind: "unavailable",
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the tap history is off (--tap-retention-time 0s)".into(),
    })
}

pub(super) async fn search(
    State(s): State<TapReads>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &headers, &body);
    let tap = tap_index(&s)?;
    let start = time_param(&p, "start", i64::MIN)?;
    let end = time_param(&p, "end", now_ms())?;
    let limit = match p.get("limit") {
        None | Some("") => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::param("limit", format!("{v:?} is not a positive integer")))?
            .min(tap.max_results()),
    };
    let query = p.get("q").unwrap_or_default().to_string();
    // Searches take query slots like PromQL queries: they cost alike.
    let events = s
        .engine
        .run(s.timeout, move |_| {
            Ok(tap.search(&query, start, end, limit, false))
        })
        .await?
        .map_err(tap_error)?;
    let data: Vec<serde_json::Value> = events.iter().map(tap::json).collect();
    let data = serde_json::to_string(&data).expect("JSON values serialize");
    Ok(ok(json::success(|j| {
        j.raw(&data);
    })))
}

pub(super) async fn follow(
    State(s): State<TapReads>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &HeaderMap::new(), &[]);
    let tap = tap_index(&s)?;
    let query = p.get("q").unwrap_or_default().to_string();
    tap.validate(&query).map_err(tap_error)?;
    let from = time_param(&p, "start", now_ms())?;
    let follower = tap.follower().map_err(tap_error)?;
    let events = tap::follow(tap, follower, query, from).map(|e| {
        Ok::<_, Infallible>(
            Event::default()
                .event("tap")
                .data(tap::json(&e).to_string()),
        )
    });
    Ok(sse(events).into_response())
}

fn sse(
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(events).keep_alive(KeepAlive::default())
}
