//! Latency distributions on the wire.
//!
//! Proxies record latency in microseconds into an HdrHistogram with three
//! significant digits, and ship each interval's histogram in its V2
//! serialization. The store merges them over any window, so a quantile is
//! exact to the histogram's precision instead of interpolated between
//! Prometheus buckets.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::metrics::LATENCY_BUCKETS_MS;

/// Precision of every latency histogram in the mesh.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// The largest latency a histogram tracks, in microseconds (one hour);
/// larger values saturate here.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Latency is recorded in µs and named in ms (`response_latency_ms`).
pub const LATENCY_VALUE_SCALE: f64 = 0.001;

/// Prometheus buckets of the latency families: one per bound of
/// [`LATENCY_BUCKETS_MS`], then `+Inf`.
pub const LATENCY_BUCKETS: usize = LATENCY_BUCKETS_MS.len() + 1;

/// Adds every value recorded in `h` to its latency bucket (counts per
/// bucket, not yet cumulative); `scale` turns the histogram's values into
/// milliseconds. A value belongs to the first bucket whose bound is at
/// least the lowest value its HdrHistogram bucket stands for: exact under
/// 2 ms, within the histogram's 0.1 % precision above. The proxy's
/// `/metrics` and the store's `_bucket` series both count this way, so they
/// agree on every request.
pub fn add_to_buckets(h: &Histogram<u64>, scale: f64, buckets: &mut [u64; LATENCY_BUCKETS]) {
    for v in h.iter_recorded() {
        let ms = h.lowest_equivalent(v.value_iterated_to()) as f64 * scale;
        let i = latency_bucket(ms);
        // A peer's histogram may hold counts near u64::MAX.
        buckets[i] = buckets[i].saturating_add(v.count_at_value());
    }
}

/// The index of the first latency bucket (of [`LATENCY_BUCKETS_MS`], then
/// `+Inf`) whose bound is at least `ms`: where a value is counted, and
/// where an exemplar of that value belongs.
pub fn latency_bucket(ms: f64) -> usize {
    // The bounds are whole milliseconds; the tolerance absorbs the
    // rounding of a scale (1000 µs × 0.001 must land in `le="1"`).
    LATENCY_BUCKETS_MS.partition_point(|&le| le * (1.0 + 1e-12) < ms)
}

/// The cumulative latency bucket counts of one histogram (see
/// [`add_to_buckets`]).
pub fn bucket_counts(h: &Histogram<u64>, scale: f64) -> [u64; LATENCY_BUCKETS] {
    let mut buckets = [0; LATENCY_BUCKETS];
    add_to_buckets(h, scale, &mut buckets);
    cumulative(&buckets)
}

/// Running totals of per-bucket counts: what `_bucket{le=...}` series count.
pub fn cumulative(buckets: &[u64; LATENCY_BUCKETS]) -> [u64; LATENCY_BUCKETS] {
    let mut out = [0; LATENCY_BUCKETS];
    let mut running = 0u64;
    for (c, b) in out.iter_mut().zip(buckets) {
        running = running.saturating_add(*b);
        *c = running;
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("cannot serialize histogram: {0:?}")]
    Serialize(hdrhistogram::serialization::V2SerializeError),
    #[error("invalid histogram bytes: {0:?}")]
    Deserialize(hdrhistogram::serialization::DeserializeError),
    #[error("invalid histogram header: {0}")]
    Header(String),
}

/// `V2` serialization: a 40-byte header, then the counts.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
const V2_HEADER_BYTES: usize = 40;
/// Most payload bytes a histogram of the mesh's precision needs: each of
/// its ~55 000 counters (3 digits, any range) is a varint of up to 9 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

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

/// Decodes a `V2` histogram, after checking that its header claims no
/// more than it holds: the decoder sizes its buffer to the payload length
/// the header claims (up to 4 GiB) and its counts array to the precision
/// it claims, before reading any of it.
pub fn decode(bytes: &[u8]) -> Result<Histogram<u64>, HistogramError> {
    check_header(bytes)?;
    let mut reader = bytes;
    Deserializer::new()
        .deserialize(&mut reader)
        .map_err(HistogramError::Deserialize)
}

fn check_header(bytes: &[u8]) -> Result<(), HistogramError> {
    let bad = |m: String| Err(HistogramError::Header(m));
    let Some(header) = bytes.get(..V2_HEADER_BYTES) else {
        return bad(format!(
            "{} bytes, shorter than the {V2_HEADER_BYTES}-byte header",
            bytes.len()
        ));
    };
    let word = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    match word(0) {
        V2_COOKIE => {}
        V2_COMPRESSED_COOKIE => {
            return bad(
                "compressed (V2 deflate) histograms are not accepted: send the plain V2 encoding"
                    .into(),
            );
        }
        other => return bad(format!("unknown cookie {other:#x}")),
    }
    let claimed = word(4) as usize;
    let present = bytes.len() - V2_HEADER_BYTES;
    if claimed > present {
        return bad(format!(
            "claims a {claimed}-byte payload, {present} bytes follow"
        ));
    }
    if claimed > MAX_PAYLOAD_BYTES {
        return bad(format!(
            "claims a {claimed}-byte payload, more than the {MAX_PAYLOAD_BYTES} any histogram of the mesh needs"
        ));
    }
    let digits = word(12);
    if digits > u32::from(SIGNIFICANT_DIGITS) {
        return bad(format!(
            "{digits} significant digits, more than the mesh's {SIGNIFICANT_DIGITS}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_are_cumulative_in_ms() {
        let mut h = new_latency_histogram();
        for us in [500, 1000, 1500, 2_500, 45_000, 70_000_000] {
            record_latency_us(&mut h, us);
        }
        let c = bucket_counts(&h, LATENCY_VALUE_SCALE);
        assert_eq!(c[0], 2, "le=1 holds 0.5 ms and 1 ms");
        assert_eq!(c[1], 3, "le=2");
        assert_eq!(c[2], 4, "le=3");
        assert_eq!(c[9], 5, "le=50");
        assert_eq!(c[LATENCY_BUCKETS - 2], 5, "le=50000");
        assert_eq!(c[LATENCY_BUCKETS - 1], 6, "+Inf");
    }

    /// A peer's histogram can hold counts that add past u64::MAX: the
    /// buckets saturate instead of overflowing.
    #[test]
    fn bucket_counts_saturate() {
        let mut h = new_latency_histogram();
        h.record_n(1000, u64::MAX / 2).unwrap();
        h.record_n(2000, u64::MAX / 2).unwrap();
        h.record_n(3000, u64::MAX / 2).unwrap();
        let c = bucket_counts(&h, LATENCY_VALUE_SCALE);
        assert_eq!(c[LATENCY_BUCKETS - 1], u64::MAX);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"not a histogram").is_err());
        assert!(decode(&[]).is_err());
    }

    fn encoded() -> Vec<u8> {
        let mut h = new_latency_histogram();
        for us in [100, 2_000, 35_000, 1_000_000] {
            record_latency_us(&mut h, us);
        }
        encode(&h).unwrap()
    }

    #[test]
    fn round_trips() {
        let back = decode(&encoded()).unwrap();
        assert_eq!(back.len(), 4);
    }

    /// The header is checked before the decoder sizes anything by it.
    #[test]
    fn headers_claiming_more_than_they_hold_are_refused() {
        let good = encoded();
        let with = |at: usize, value: u32| {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&value.to_be_bytes());
            b
        };
        let cases = [
            (with(4, u32::MAX), "claims a 4294967295-byte payload"),
            (with(4, good.len() as u32), "bytes follow"),
            (with(12, 5), "5 significant digits"),
            (with(0, V2_COMPRESSED_COOKIE), "compressed"),
            (with(0, 0xdead_beef), "unknown cookie"),
            (good[..20].to_vec(), "shorter than the 40-byte header"),
        ];
        for (bytes, expect) in cases {
            let err = decode(&bytes).unwrap_err().to_string();
            assert!(err.contains(expect), "{err} should say {expect}");
        }
        // A payload within the bytes present but over the cap.
        let mut big = with(4, (MAX_PAYLOAD_BYTES + 1) as u32);
        big.resize(V2_HEADER_BYTES + MAX_PAYLOAD_BYTES + 1, 0);
        let err = decode(&big).unwrap_err().to_string();
        assert!(err.contains("more than the"), "{err}");
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
