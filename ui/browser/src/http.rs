//! thirtyfour's HTTP transport over hyper-util: chromedriver listens on
//! loopback and speaks plain HTTP/1.1, so neither reqwest nor TLS is
//! needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client as Legacy, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use thirtyfour::error::{WebDriverError, WebDriverResult};
use thirtyfour::session::http::{Body, HttpClient};

/// No WebDriver command of these tests takes longer; a hung browser fails
/// the test instead of blocking it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(crate) struct Client(Legacy<HttpConnector, Full<Bytes>>);

impl Client {
    pub(crate) fn new() -> Self {
        Self(Legacy::builder(TokioExecutor::new()).build_http())
    }

    async fn call(&self, request: Request<Full<Bytes>>) -> Result<Response<Bytes>, String> {
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.0.request(request))
            .await
            .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send(&self, request: Request<Body<'_>>) -> WebDriverResult<Response<Bytes>> {
        let (mut parts, body) = request.into_parts();
        let bytes = match body {
            Body::Empty => Bytes::new(),
            Body::Json(v) => {
                parts
                    .headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Bytes::from(serde_json::to_vec(v).map_err(|e| WebDriverError::Json(e.to_string()))?)
            }
        };
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        self.call(Request::from_parts(parts, Full::new(bytes)))
            .await
            .map_err(WebDriverError::HttpError)
    }

    async fn new(&self) -> Arc<dyn HttpClient> {
        Arc::new(Self::new())
    }
}

/// Waits until chromedriver's `/status` says it is ready.
pub(crate) async fn wait_ready(server: &str, timeout: Duration) -> Result<(), String> {
    let client = Client::new();
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let request = Request::get(format!("{server}/status"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        match client.call(request).await {
            Ok(r) if r.status().is_success() => {
                let status: serde_json::Value =
                    serde_json::from_slice(r.body()).unwrap_or_default();
                if status["value"]["ready"] == serde_json::Value::Bool(true) {
                    return Ok(());
                }
                last = String::from_utf8_lossy(r.body()).into_owned();
            }
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}
