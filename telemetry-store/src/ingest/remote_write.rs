//! The Prometheus remote-write receiver (`POST /api/v1/write`): a snappy
//! block-compressed protobuf `WriteRequest`.
//!
//! The messages are declared here with prost derives (wire-compatible with
//! Prometheus' `remote.proto`); label names and values decode as
//! zero-copy slices of the request, so a known series is found without
//! allocating its labels.

use bytes::Bytes;
use prost::Message;

/// Largest compressed body accepted.
pub(crate) const MAX_BODY_BYTES: usize = 32 << 20;
/// Largest decompressed body accepted (snappy announces it up front).
const MAX_DECODED_BYTES: usize = 256 << 20;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub(crate) labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Label {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) name: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) value: Bytes,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Sample {
    #[prost(double, tag = "1")]
    pub(crate) value: f64,
    #[prost(int64, tag = "2")]
    pub(crate) timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct MetricMetadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram,
    /// 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub(crate) r#type: i32,
    #[prost(string, tag = "2")]
    pub(crate) metric_family_name: String,
    #[prost(string, tag = "4")]
    pub(crate) help: String,
    #[prost(string, tag = "5")]
    pub(crate) unit: String,
}

impl MetricMetadata {
    pub(crate) fn type_name(&self) -> &'static str {
        match self.r#type {
            1 => "counter",
            2 => "gauge",
            3 => "histogram",
            4 => "gaugehistogram",
            5 => "summary",
            6 => "info",
            7 => "stateset",
            _ => "unknown",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("request body is too large ({0} bytes, at most {MAX_BODY_BYTES})")]
    TooLarge(usize),
    #[error("snappy: {0} (the body must be snappy block-compressed protobuf)")]
    Snappy(String),
    #[error("decompressed body would be {0} bytes, more than the {MAX_DECODED_BYTES} accepted")]
    TooLargeDecoded(usize),
    #[error("protobuf: {0} (the body must be a prometheus.WriteRequest)")]
    Protobuf(#[from] prost::DecodeError),
}

pub(crate) fn decode(body: &[u8]) -> Result<WriteRequest, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge(body.len()));
    }
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLargeDecoded(len));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    Ok(WriteRequest::decode(Bytes::from(raw))?)
}

#[cfg(test)]
pub(crate) fn encode(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any input")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_bodies() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: Bytes::from_static(b"__name__"),
                    value: Bytes::from_static(b"up"),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
            }],
            metadata: vec![],
        };
        assert_eq!(decode(&encode(&req)).unwrap(), req);
        assert!(matches!(
            decode(b"\xff\xff\xff\xff\xff"),
            Err(DecodeError::Snappy(_))
        ));
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff\x0f")
            .unwrap();
        assert!(matches!(decode(&not_proto), Err(DecodeError::Protobuf(_))));
    }
}
