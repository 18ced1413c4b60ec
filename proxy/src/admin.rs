//! The admin server: `/metrics` for Prometheus, `/ready` and `/live` for
//! the kubelet (or `conduit demo`, which waits on `/ready`). With identity
//! on, the proxy is ready only while it holds a valid certificate.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Registry;

pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    crate::accept::serve(listener, "admin", move |stream, _| {
        let registry = registry.clone();
        async move {
            let svc = hyper::service::service_fn(move |req| {
                let rsp = respond(&req, &registry);
                async move { Ok::<_, Infallible>(rsp) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "admin connection failed");
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
