//! A client of the Prometheus HTTP query API (`/api/v1/query`,
//! `/api/v1/series`), which Prometheus, VictoriaMetrics, Thanos Query and
//! Mimir all serve.
//!
//! Every call is bounded: the whole exchange by `--metrics-backend-timeout`
//! and the answer by `--metrics-backend-max-body`, so a slow or runaway
//! backend costs the controller neither a hung handler nor its memory.
//! Every failure becomes one `UNAVAILABLE` status naming the backend's URL
//! and what failed, never an empty answer.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::store::v1 as store;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tonic::Status;

/// The bounds of every call to the backend.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connecting, sending and reading the whole answer.
    pub timeout: Duration,
    /// Largest answer body.
    pub max_body: usize,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: Hyper<HttpConnector, Full<Bytes>>,
    limits: Limits,
}

/// The envelope of every query API answer.
#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType", default)]
    error_type: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Client {
    pub fn new(url: &str, limits: Limits) -> anyhow::Result<Self> {
        let _: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--metrics-backend prometheus:{url}: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.timeout));
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            http: Hyper::builder(TokioExecutor::new()).build(connector),
            limits,
        })
    }

    pub fn describe(&self) -> String {
        format!("the metrics backend prometheus:{}", self.base)
    }

    /// An instant query at `time_unix_ms` (0: the backend's now). Each
    /// series of the vector answer has one sample; a scalar answer is one
    /// series without labels.
    pub async fn instant(
        &self,
        query: &str,
        time_unix_ms: i64,
    ) -> Result<Vec<store::Series>, Status> {
        let time = seconds(time_unix_ms);
        let form = if time_unix_ms > 0 {
            form(&[("query", query), ("time", &time)])
        } else {
            form(&[("query", query)])
        };
        let data: QueryData = self.post("/api/v1/query", form, query).await?;
        self.vector(data, query)
    }

    /// `/api/v1/series` for the request's matchers and time range.
    pub async fn series(&self, req: &store::SeriesRequest) -> Result<Vec<store::LabelSet>, Status> {
        let selector = super::golden::selector(&req.matchers, None);
        let form = form(&[
            ("match[]", &selector),
            ("start", &seconds(req.start_unix_ms)),
            ("end", &seconds(req.end_unix_ms)),
        ]);
        let sets: Vec<BTreeMap<String, String>> =
            self.post("/api/v1/series", form, &selector).await?;
        Ok(sets
            .into_iter()
            .map(|labels| store::LabelSet {
                labels: proto_labels(labels),
            })
            .collect())
    }

    fn vector(&self, data: QueryData, query: &str) -> Result<Vec<store::Series>, Status> {
        let series = match data.result_type.as_str() {
            "vector" => serde_json::from_value::<Vec<VectorSample>>(data.result).map_err(|e| {
                self.garbage(&format!("its vector for {query:?} is malformed: {e}"))
            })?,
            "scalar" => {
                let value = serde_json::from_value::<(f64, String)>(data.result).map_err(|e| {
                    self.garbage(&format!("its scalar for {query:?} is malformed: {e}"))
                })?;
                vec![VectorSample {
                    metric: BTreeMap::new(),
                    value,
                }]
            }
            other => {
                return Err(self.garbage(&format!(
                    "it answered {query:?} with a {other}, not an instant vector"
                )));
            }
        };
        series
            .into_iter()
            .map(|s| {
                let value = sample_value(&s.value.1).ok_or_else(|| {
                    self.garbage(&format!("sample value {:?} is not a number", s.value.1))
                })?;
                Ok(store::Series {
                    labels: proto_labels(s.metric),
                    samples: vec![store::Sample {
                        timestamp_unix_ms: (s.value.0 * 1000.0).round() as i64,
                        value,
                    }],
                })
            })
            .collect()
    }

    /// POSTs a form to `path` and returns the answer's `data`.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: String,
        what: &str,
    ) -> Result<T, Status> {
        let url = format!("{}{path}", self.base);
        let req = hyper::Request::post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "user-agent",
                concat!("conduit-controller/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| self.fail(&format!("cannot build a request for {url}: {e}")))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.fail(&format!("cannot reach it: {}", chain(&e))))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), self.limits.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        self.fail(&format!(
                            "its answer to {} is larger than {} bytes (--metrics-backend-max-body); \
                             narrow the query (a namespace, a shorter window) or raise the limit",
                            path,
                            self.limits.max_body
                        ))
                    } else {
                        self.fail(&format!("reading its answer failed: {}", chain(&*e)))
                    }
                })?
                .to_bytes();
            Ok::<_, Status>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.limits.timeout, exchange)
            .await
            .map_err(|_| {
                self.fail(&format!(
                    "it did not answer within {} (--metrics-backend-timeout)",
                    conduit_api::duration::format(self.limits.timeout)
                ))
            })??;
        let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|_| {
            self.garbage(&format!(
                "HTTP {status} with a body that is not query API JSON: {:?}",
                excerpt(&body)
            ))
        })?;
        if envelope.status != "success" {
            return Err(self.fail(&format!(
                "it refused {what:?} (HTTP {status}, {}): {}",
                envelope.error_type, envelope.error
            )));
        }
        envelope
            .data
            .ok_or_else(|| self.garbage(&format!("HTTP {status} with no data")))
    }

    fn fail(&self, what: &str) -> Status {
        Status::unavailable(format!("{}: {what}", self.describe()))
    }

    fn garbage(&self, what: &str) -> Status {
        self.fail(&format!(
            "{what}; is {} the query API of Prometheus, VictoriaMetrics, Thanos Query or Mimir?",
            self.base
        ))
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Unix ms as the seconds the query API takes.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A sample value as the query API writes it (`"1.5"`, `"NaN"`, `"+Inf"`).
fn sample_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn proto_labels(labels: BTreeMap<String, String>) -> Vec<mesh::Label> {
    labels
        .into_iter()
        .map(|(name, value)| mesh::Label { name, value })
        .collect()
}

/// An error with its causes: hyper's own message ("client error
/// (Connect)") says little without them.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]).to_string();
    if body.len() > 120 {
        format!("{text}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_values_read_as_the_query_api_writes_them() {
        assert_eq!(seconds(1_700_000_000_123), "1700000000.123");
        assert_eq!(seconds(5), "0.005");
        assert!(sample_value("NaN").unwrap().is_nan());
        assert_eq!(sample_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(sample_value("2.5"), Some(2.5));
        assert_eq!(sample_value("lots"), None);
    }
}
