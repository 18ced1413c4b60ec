//! Request bodies: read whole before a handler runs, within a size and a
//! time. Every handler of the API reads its body whole anyway; reading it
//! here bounds a client that sends a huge body, or a small one a byte at a
//! time, in one place.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// How big a body a group of routes takes, how long it may take to
/// arrive, and the flag that sets the size (for the error).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit {
    pub(crate) max_bytes: usize,
    pub(crate) timeout: Duration,
    pub(crate) flag: &'static str,
}

pub(crate) async fn read_whole(
    State(limit): State<BodyLimit>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let collect = Limited::new(body, limit.max_bytes).collect();
    let bytes = match tokio::time::timeout(limit.timeout, collect).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than {} bytes ({}): send less per request\n",
                    limit.max_bytes, limit.flag
                ),
            )
                .into_response();
        }
        Ok(Err(e)) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            )
                .into_response();
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {:?} (--http-body-timeout)\n",
                    limit.timeout
                ),
            )
                .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
