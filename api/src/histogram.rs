//! Latency distributions on the wire.
//!
//! Proxies record latency in microseconds into an HdrHistogram with three
//! significant digits, and ship each interval's histogram in its V2
//! serialization. The store merges them over any window, so a quantile is
//! exact to the histogram's precision instead of interpolated between
//! Prometheus buckets.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// Precision of every latency histogram in the mesh.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// The largest latency a histogram tracks, in microseconds (one hour);
/// larger values saturate here.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Latency is recorded in µs and named in ms (`response_latency_ms`).
pub const LATENCY_VALUE_SCALE: f64 = 0.001;

#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("cannot serialize histogram: {0:?}")]
    Serialize(hdrhistogram::serialization::V2SerializeError),
    #[error("invalid histogram bytes: {0:?}")]
    Deserialize(hdrhistogram::serialization::DeserializeError),
}

/// An empty latency histogram with the mesh's precision and range.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("static histogram bounds are valid")
}

/// Records a latency, saturating at [`MAX_LATENCY_US`] instead of failing.
pub fn record_latency_us(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, MAX_LATENCY_US));
}

pub fn encode(h: &Histogram<u64>) -> Result<Vec<u8>, HistogramError> {
    let mut buf = Vec::with_capacity(64);
    V2Serializer::new()
        .serialize(h, &mut buf)
        .map_err(HistogramError::Serialize)?;
    Ok(buf)
}

pub fn decode(mut bytes: &[u8]) -> Result<Histogram<u64>, HistogramError> {
    Deserializer::new()
        .deserialize(&mut bytes)
        .map_err(HistogramError::Deserialize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"not a histogram").is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn saturates_instead_of_failing() {
        let mut h = new_latency_histogram();
        record_latency_us(&mut h, 0);
        record_latency_us(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_LATENCY_US);
    }
}
