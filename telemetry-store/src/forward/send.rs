//! One remote-write request: protobuf + snappy over HTTP, and what the
//! answer means for the batch.

use std::time::Duration;

use bytes::Bytes;
use conduit_api::Labels;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use crate::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};

pub(crate) enum Outcome {
    Accepted,
    /// The receiver will never take this batch (4xx other than 429).
    Refused(String),
    /// Try again later (5xx, 429, connection errors, timeouts).
    Retry(String),
}

pub(crate) struct Client {
    url: http::Uri,
    http: Hyper<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub(crate) fn new(url: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--remote-write-url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            anyhow::bail!(
                "--remote-write-url {url:?}: only http:// is supported; put a TLS-terminating proxy in front of an https endpoint"
            );
        }
        Ok(Self {
            url: uri,
            http: Hyper::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub(crate) async fn post(&self, body: Bytes) -> Outcome {
        let req = hyper::Request::post(self.url.clone())
            .header("content-encoding", "snappy")
            .header("content-type", "application/x-protobuf")
            .header(
                "user-agent",
                concat!("conduit-telemetry-store/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(Full::new(body));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let resp = match tokio::time::timeout(Duration::from_secs(30), self.http.request(req)).await
        {
            Err(_) => return Outcome::Retry("timed out after 30 s".into()),
            Ok(Err(e)) => return Outcome::Retry(e.to_string()),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Accepted;
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let why = format!("{status}: {}", String::from_utf8_lossy(&body).trim());
        if status.is_client_error() && status.as_u16() != 429 {
            Outcome::Refused(why)
        } else {
            Outcome::Retry(why)
        }
    }
}

/// A snappy-compressed `WriteRequest` of the series' samples.
pub(crate) fn encode<'a>(series: impl Iterator<Item = (&'a Labels, &'a [(i64, f64)])>) -> Bytes {
    let req = WriteRequest {
        timeseries: series
            .map(|(labels, samples)| TimeSeries {
                labels: labels
                    .iter()
                    .map(|l| Label {
                        name: Bytes::from(l.name.clone()),
                        value: Bytes::from(l.value.clone()),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
            })
            .collect(),
        metadata: vec![],
    };
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy compresses any input"),
    )
}
