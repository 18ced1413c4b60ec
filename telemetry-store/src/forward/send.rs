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

use crate::ingest::remote_write::{Label, Sample, TimeSeries};

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

/// A forwarded series' labels, encoded once as a `TimeSeries` holding
/// only them: a request copies these bytes for each series it carries
/// instead of building its labels again.
pub(crate) struct Series(Vec<u8>);

impl Series {
    pub(crate) fn new(labels: &Labels) -> Self {
        let labels = labels
            .iter()
            .map(|l| Label {
                name: Bytes::copy_from_slice(l.name.as_bytes()),
                value: Bytes::copy_from_slice(l.value.as_bytes()),
            })
            .collect();
        Self(
            TimeSeries {
                labels,
                samples: vec![],
            }
            .encode_to_vec(),
        )
    }
}

/// `WriteRequest.timeseries`.
const TIMESERIES_FIELD: u32 = 1;

/// A snappy-compressed `WriteRequest` of the series' samples. Each
/// `TimeSeries` is its labels' bytes followed by a `TimeSeries` of just
/// its samples: protobuf reads two encodings of a message one after the
/// other as one message with both's repeated fields.
pub(crate) fn encode<'a>(series: impl Iterator<Item = (&'a Series, &'a [(i64, f64)])>) -> Bytes {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut req = Vec::new();
    let mut samples = TimeSeries::default();
    for (labels, values) in series {
        samples.samples.clear();
        samples.samples.extend(
            values
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp }),
        );
        encode_key(TIMESERIES_FIELD, WireType::LengthDelimited, &mut req);
        encode_varint((labels.0.len() + samples.encoded_len()) as u64, &mut req);
        req.extend_from_slice(&labels.0);
        samples
            .encode(&mut req)
            .expect("a Vec grows to hold any message");
    }
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(&req)
            .expect("snappy compresses any input"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::remote_write::WriteRequest;

    #[test]
    fn encodes_the_write_request_prost_reads() {
        let a = Labels::try_from_pairs([("__name__", "up"), ("job", "a")]).unwrap();
        let b = Labels::try_from_pairs([("__name__", "x_total"), ("pod", "p-1")]).unwrap();
        let (sa, sb) = (Series::new(&a), Series::new(&b));
        let body = encode(
            [
                (&sa, &[(1000, 1.0), (2000, 0.5)][..]),
                (&sb, &[(1500, f64::NAN)][..]),
            ]
            .into_iter(),
        );
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        type Got = (Vec<(String, String)>, Vec<(i64, u64)>);
        let got: Vec<Got> = req
            .timeseries
            .iter()
            .map(|ts| {
                (
                    ts.labels
                        .iter()
                        .map(|l| {
                            (
                                String::from_utf8_lossy(&l.name).into_owned(),
                                String::from_utf8_lossy(&l.value).into_owned(),
                            )
                        })
                        .collect(),
                    ts.samples
                        .iter()
                        .map(|s| (s.timestamp, s.value.to_bits()))
                        .collect(),
                )
            })
            .collect();
        let pairs = |l: &[(&str, &str)]| -> Vec<(String, String)> {
            l.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            got,
            vec![
                (
                    pairs(&[("__name__", "up"), ("job", "a")]),
                    vec![(1000, 1f64.to_bits()), (2000, 0.5f64.to_bits())]
                ),
                (
                    pairs(&[("__name__", "x_total"), ("pod", "p-1")]),
                    vec![(1500, f64::NAN.to_bits())]
                ),
            ]
        );
    }
}
