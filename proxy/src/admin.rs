//! The admin server: `/metrics` for Prometheus, `/ready` and `/live` for
//! the kubelet (or `conduit demo`, which waits on `/ready`). With identity
//! on, the proxy is ready only while it holds a valid certificate.
//!
//! It listens on the pod's address, so any client can reach it: a request
//! head must arrive within the header read timeout, a connection idle for
//! the idle timeout is closed, and past the connection cap new connections
//! are closed at once, so slow clients cannot pile up.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::idle::{self, Activity, IdleIo};
use crate::metrics::Registry;

/// What one admin client may take.
#[derive(Copy, Clone, Debug)]
pub(crate) struct AdminLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>, limits: AdminLimits) {
    let mut builder = http1::Builder::new();
    // Without a timer hyper enforces no header read timeout at all.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    crate::accept::serve(listener, "admin", move |stream, client| {
        let slot = slots.clone().try_acquire_owned().ok();
        let (registry, builder) = (registry.clone(), builder.clone());
        async move {
            let Some(_slot) = slot else {
                tracing::debug!(%client, "admin connections at their cap; closing a new one");
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let rsp = respond(&req, &registry);
                async move { Ok::<_, Infallible>(rsp) }
            });
            let activity = Activity::new();
            let io = TokioIo::new(IdleIo::new(stream, activity.clone()));
            let conn = builder.serve_connection(io, svc);
            match idle::or_idle(conn, &activity, limits.idle_timeout).await {
                Some(Err(e)) => tracing::debug!(%client, error = %e, "admin connection failed"),
                Some(Ok(())) => {}
                None => tracing::debug!(%client, "admin connection idle; closed"),
            }
        }
    })
    .await;
}

fn respond(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut rsp = text(StatusCode::OK, registry.render_prometheus());
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            rsp
        }
        "/ready" => match registry.credentials() {
            Some(c) if !c.is_ready() => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no valid certificate from the identity service yet\n".into(),
            ),
            _ => text(StatusCode::OK, "ready\n".into()),
        },
        "/live" => text(StatusCode::OK, "live\n".into()),
        other => text(
            StatusCode::NOT_FOUND,
            format!("{other} not found: try /metrics, /ready or /live\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}
