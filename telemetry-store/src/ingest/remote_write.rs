//! The Prometheus remote-write receiver (`POST /api/v1/write`): a snappy
//! block-compressed protobuf `WriteRequest`.
//!
//! The messages are declared here with prost derives (wire-compatible with
//! Prometheus' `remote.proto`), used to send; receiving walks the wire
//! format directly, so a known series is found and its samples taken
//! without an allocation per series.

use bytes::Bytes;
use prost::Message;

/// Largest decompressed body accepted (snappy announces it up front).
const MAX_DECODED_BYTES: usize = 256 << 20;

#[derive(Clone, PartialEq, Message)]
#[allow(
    dead_code,
    reason = "built by prost's decoder; remote write out encodes its requests series by series"
)]
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

/// What one request may hold: its decoded vectors grow with what it holds
/// (a label entry costs 2 bytes on the wire and 32 in memory, an empty
/// sample 2 and 16), so these bound them, not only the body's size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalkLimits {
    pub(crate) max_labels: usize,
    pub(crate) max_samples: usize,
    /// Metadata entries past this are ignored.
    pub(crate) max_metadata: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("snappy: {0} (the body must be snappy block-compressed protobuf)")]
    Snappy(String),
    #[error("decompressed body would be {0} bytes, more than the {MAX_DECODED_BYTES} accepted")]
    TooLargeDecoded(usize),
    #[error(
        "decompressed body would be {claimed} bytes, more than a {body}-byte snappy body can hold: the body is corrupt"
    )]
    ImpossibleLength { claimed: usize, body: usize },
    #[error("protobuf: {0} (the body must be a prometheus.WriteRequest)")]
    Protobuf(String),
    #[error("a series has more than {0} labels (--max-labels-per-series)")]
    TooManyLabels(usize),
    #[error(
        "the request holds more than {0} samples (--remote-write-max-samples): send smaller batches (Prometheus' queue_config.max_samples_per_send)"
    )]
    TooManySamples(usize),
}

impl From<prost::DecodeError> for DecodeError {
    fn from(e: prost::DecodeError) -> Self {
        Self::Protobuf(e.to_string())
    }
}

/// The protobuf bytes of a snappy-compressed body.
pub(crate) fn decompress(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    decompress_into(body, &mut out)?;
    Ok(out)
}

/// Bigger decompression buffers than this are not kept for the next body.
const KEPT_BUFFER_BYTES: usize = 4 << 20;

thread_local! {
    /// Each thread's buffer for decompressed bodies. A body's few hundred
    /// kilobytes are above malloc's mmap threshold, so a fresh buffer
    /// per request was mapped, faulted in page by page and unmapped again:
    /// 7% of ingest CPU.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the protobuf bytes of a snappy-compressed body, kept in
/// this thread's reused buffer.
pub(crate) fn with_decompressed<T>(
    body: &[u8],
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T, DecodeError> {
    BUFFER.with_borrow_mut(|buf| {
        let result = decompress_into(body, buf).map(|()| f(buf));
        if buf.capacity() > KEPT_BUFFER_BYTES {
            *buf = Vec::new();
        }
        result
    })
}

fn decompress_into(body: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLargeDecoded(len));
    }
    // The buffer is sized (and zeroed) by the length the header claims,
    // before any of the body is read: a few bytes must not claim 256 MiB.
    if len > max_decompressed(body.len()) {
        return Err(DecodeError::ImpossibleLength {
            claimed: len,
            body: body.len(),
        });
    }
    out.clear();
    out.resize(len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(body, out)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    out.truncate(written);
    Ok(())
}

/// The most a snappy body of `n` bytes decompresses to: its densest
/// element, a 3-byte copy, yields 64 bytes.
fn max_decompressed(n: usize) -> usize {
    n.saturating_mul(22).saturating_add(64)
}

#[cfg(test)]
pub(crate) fn decode(body: &[u8]) -> Result<WriteRequest, DecodeError> {
    Ok(WriteRequest::decode(Bytes::from(decompress(body)?))?)
}

/// Walks a `WriteRequest` without allocating per series: `on_series`
/// gets each series' label pairs and samples as slices of the buffer;
/// metadata entries (rare) are decoded with prost.
pub(crate) fn walk<'a>(
    buf: &'a [u8],
    limits: &WalkLimits,
    mut on_series: impl FnMut(&[(&'a [u8], &'a [u8])], &[(i64, f64)]),
    metadata: &mut Vec<MetricMetadata>,
) -> Result<(), DecodeError> {
    let mut labels: Vec<(&'a [u8], &'a [u8])> = Vec::with_capacity(16);
    let mut samples: Vec<(i64, f64)> = Vec::with_capacity(4);
    let mut total_samples = 0usize;
    let mut r = Reader { buf, pos: 0 };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, 2) => {
                labels.clear();
                samples.clear();
                let mut ts = Reader {
                    buf: r.bytes()?,
                    pos: 0,
                };
                while !ts.done() {
                    match ts.key()? {
                        (1, 2) if labels.len() == limits.max_labels => {
                            return Err(DecodeError::TooManyLabels(limits.max_labels));
                        }
                        (1, 2) => labels.push(label(ts.bytes()?)?),
                        (2, 2) if total_samples == limits.max_samples => {
                            return Err(DecodeError::TooManySamples(limits.max_samples));
                        }
                        (2, 2) => {
                            samples.push(sample(ts.bytes()?)?);
                            total_samples += 1;
                        }
                        (_, w) => ts.skip(w)?,
                    }
                }
                on_series(&labels, &samples);
            }
            (3, 2) if metadata.len() == limits.max_metadata => r.skip(2)?,
            (3, 2) => metadata.push(MetricMetadata::decode(r.bytes()?)?),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(())
}

#[inline]
fn label(buf: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    let mut r = Reader { buf, pos: 0 };
    while !r.done() {
        match r.key()? {
            (1, 2) => name = r.bytes()?,
            (2, 2) => value = r.bytes()?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok((name, value))
}

fn sample(buf: &[u8]) -> Result<(i64, f64), DecodeError> {
    let (mut t, mut v) = (0i64, 0f64);
    let mut r = Reader { buf, pos: 0 };
    while !r.done() {
        match r.key()? {
            (1, 1) => v = f64::from_bits(r.fixed64()?),
            (2, 0) => t = r.varint()? as i64,
            (_, w) => r.skip(w)?,
        }
    }
    Ok((t, v))
}

/// Protobuf wire-format reading over a borrowed buffer.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn truncated() -> DecodeError {
    DecodeError::Protobuf("message ends in the middle of a field".into())
}

impl<'a> Reader<'a> {
    #[inline]
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Inlined for its one-byte case: field keys and label lengths,
    /// nearly every varint of a request, read tens of times per series.
    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(b.into());
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(DecodeError::Protobuf("varint longer than 10 bytes".into()))
    }

    #[inline]
    fn key(&mut self) -> Result<(u64, u8), DecodeError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(truncated)?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| truncated())?)
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            w => Err(DecodeError::Protobuf(format!("unsupported wire type {w}"))),
        }
    }
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

    const LIMITS: WalkLimits = WalkLimits {
        max_labels: 4,
        max_samples: 10,
        max_metadata: 1,
    };

    /// Each entry costs a few bytes on the wire and more in memory: the
    /// walker stops at the counts, whatever the body's size.
    #[test]
    fn the_walker_stops_at_its_counts() {
        let series = |labels: usize, samples: usize| TimeSeries {
            labels: (0..labels)
                .map(|i| Label {
                    name: Bytes::from(format!("l{i}")),
                    value: Bytes::from_static(b"v"),
                })
                .collect(),
            samples: vec![Sample::default(); samples],
        };
        let walk_all = |req: WriteRequest| {
            let mut metadata = Vec::new();
            let raw = req.encode_to_vec();
            walk(&raw, &LIMITS, |_, _| {}, &mut metadata).map(|()| metadata.len())
        };
        let req = |timeseries| WriteRequest {
            timeseries,
            metadata: vec![MetricMetadata::default(); 3],
        };
        assert_eq!(walk_all(req(vec![series(4, 5), series(1, 5)])).unwrap(), 1);
        assert!(matches!(
            walk_all(req(vec![series(5, 1)])),
            Err(DecodeError::TooManyLabels(4))
        ));
        assert!(matches!(
            walk_all(req(vec![series(1, 6), series(1, 5)])),
            Err(DecodeError::TooManySamples(10))
        ));
    }

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
        // The allocation-free walker sees the same series.
        let raw = decompress(&encode(&req)).unwrap();
        let mut seen = Vec::new();
        walk(
            &raw,
            &LIMITS,
            |l, s| seen.push((l.to_vec(), s.to_vec())),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![(vec![(&b"__name__"[..], &b"up"[..])], vec![(5, 1.0)])]
        );
        assert!(matches!(
            decode(b"\xff\xff\xff\xff\xff"),
            Err(DecodeError::Snappy(_))
        ));
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff\x0f")
            .unwrap();
        assert!(matches!(decode(&not_proto), Err(DecodeError::Protobuf(_))));
        // Five bytes claiming 200 MiB are refused before the buffer is sized.
        assert!(matches!(
            decode(&[0x80, 0x80, 0x80, 0x64, 0x00]),
            Err(DecodeError::ImpossibleLength { .. })
        ));
        // The densest body snappy makes stays within the bound.
        let zeros = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 1 << 20])
            .unwrap();
        assert!(max_decompressed(zeros.len()) >= 1 << 20, "{}", zeros.len());
        assert_eq!(decompress(&zeros).unwrap().len(), 1 << 20);
    }
}
