//! Bearer tokens in front of what writes data or reveals requests: remote
//! write in, and the tap history with its exemplars. PromQL stays open, as Prometheus' is:
//! Grafana reads it and it holds aggregates, not requests.
//!
//! The token is checked before the body is read, so an unauthenticated
//! caller cannot make the store buffer a large request either.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conduit_identity::bearer::{self, BearerToken};

use super::json;

/// The tokens each closed endpoint expects; `None`: closed to everyone.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    pub(crate) remote_write: Option<BearerToken>,
    pub(crate) tap: Option<BearerToken>,
}

impl Tokens {
    pub(crate) fn read(config: &crate::Config) -> anyhow::Result<Self> {
        let read = |path: Option<&Path>, flag: &str| {
            path.map(|p| {
                BearerToken::read(p).map_err(|e| {
                    anyhow::anyhow!("cannot read the token of {flag} {}: {e}", p.display())
                })
            })
            .transpose()
        };
        Ok(Self {
            remote_write: read(
                config.remote_write_token_file.as_deref(),
                "--remote-write-token-file",
            )?,
            tap: read(config.tap_token_file.as_deref(), "--tap-token-file")?,
        })
    }
}

pub(super) async fn remote_write(
    State(tokens): State<Arc<Tokens>>,
    req: Request,
    next: Next,
) -> Response {
    let token = tokens.remote_write.as_ref();
    match check(
        token,
        req.headers(),
        "remote write",
        "--remote-write-token-file",
    ) {
        Ok(()) => next.run(req).await,
        Err(why) => unauthorized(why),
    }
}

pub(super) async fn tap(State(tokens): State<Arc<Tokens>>, req: Request, next: Next) -> Response {
    let token = tokens.tap.as_ref();
    match check(token, req.headers(), "the tap history", "--tap-token-file") {
        Ok(()) => next.run(req).await,
        Err(why) => unauthorized(why),
    }
}

fn check(
    token: Option<&BearerToken>,
    headers: &HeaderMap,
    what: &str,
    flag: &str,
) -> Result<(), String> {
    let Some(token) = token else {
        return Err(format!(
            "{what} is closed: the store was started without {flag}"
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer::from_header);
    match presented {
        Some(p) if token.matches(p) => Ok(()),
        Some(_) => Err(format!(
            "{what}: the bearer token is not the one in the store's {flag}"
        )),
        None => Err(format!(
            "{what} needs `Authorization: Bearer <token>` with the token of the store's {flag}"
        )),
    }
}

fn unauthorized(message: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"conduit-telemetry-store\"",
            ),
            (header::CONTENT_TYPE, "application/json"),
        ],
        json::error("unauthorized", &message),
    )
        .into_response()
}
