//! WAL record payloads. Compact and self-describing: varints for refs and
//! times, raw IEEE bits for values (stale markers must survive exactly).

use conduit_api::Labels;

use crate::encoding::varint::{get_uvarint, put_uvarint, unzigzag, zigzag};
use crate::model::{Kind, Window};
use crate::series::SeriesRef;

const SERIES: u8 = 1;
const SAMPLES: u8 = 2;
const WINDOWS: u8 = 3;

#[derive(Debug, PartialEq)]
pub(crate) enum Record {
    Series(Vec<(SeriesRef, Kind, Labels)>),
    Samples(Vec<(SeriesRef, i64, f64)>),
    Windows(Vec<(SeriesRef, Window)>),
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable WAL record: {0}")]
pub(crate) struct BadRecord(&'static str);

/// Most entries a decoder reserves room for before reading them: a count
/// read from a damaged record must end in an error at the data's end, not
/// in a reservation of gigabytes; real entries beyond it grow the vector
/// as they are read.
const PREALLOCATE: usize = 4096;

impl Record {
    /// Largest sample or window time in the record.
    pub(crate) fn max_t(&self) -> Option<i64> {
        match self {
            Record::Series(_) => None,
            Record::Samples(s) => s.iter().map(|s| s.1).max(),
            Record::Windows(w) => w.iter().map(|w| w.1.end_ms).max(),
        }
    }
}

/// Series records from each series' (name, value) pairs.
pub(crate) fn encode_series<'a, P>(
    out: &mut Vec<u8>,
    series: impl ExactSizeIterator<Item = (SeriesRef, Kind, P)>,
) where
    P: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    out.push(SERIES);
    put_uvarint(out, series.len() as u64);
    for (r, kind, pairs) in series {
        put_uvarint(out, r);
        out.push(match kind {
            Kind::Float => 0,
            Kind::Histogram => 1,
        });
        put_uvarint(out, pairs.clone().count() as u64);
        for (n, v) in pairs {
            put_bytes(out, n);
            put_bytes(out, v);
        }
    }
}

/// A label set's pairs, as [`encode_series`] takes them.
#[cfg(test)]
pub(crate) fn pairs(l: &Labels) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    l.iter()
        .map(|l| (l.name.as_bytes(), l.value.as_bytes()))
        .collect::<Vec<_>>()
        .into_iter()
}

pub(crate) fn encode_samples(out: &mut Vec<u8>, samples: &[(SeriesRef, i64, f64)]) {
    out.push(SAMPLES);
    put_uvarint(out, samples.len() as u64);
    let base = samples.first().map_or(0, |s| s.1);
    put_varint(out, base);
    for &(r, t, v) in samples {
        put_uvarint(out, r);
        put_varint(out, t.wrapping_sub(base));
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

pub(crate) fn encode_windows<'a>(
    out: &mut Vec<u8>,
    windows: impl ExactSizeIterator<Item = (SeriesRef, &'a Window)>,
) {
    out.push(WINDOWS);
    put_uvarint(out, windows.len() as u64);
    for (r, w) in windows {
        put_uvarint(out, r);
        put_varint(out, w.start_ms);
        put_varint(out, w.end_ms);
        put_uvarint(out, w.count);
        out.extend_from_slice(&w.sum.to_bits().to_le_bytes());
        out.extend_from_slice(&w.scale.to_bits().to_le_bytes());
        put_bytes(out, &w.buckets);
    }
}

pub(crate) fn decode(mut buf: &[u8]) -> Result<Record, BadRecord> {
    let (&kind, rest) = buf.split_first().ok_or(BadRecord("empty"))?;
    buf = rest;
    let n = uvarint(&mut buf)? as usize;
    // Every entry takes at least 2 bytes: refuse counts the payload cannot hold.
    if n > buf.len() {
        return Err(BadRecord("count exceeds payload"));
    }
    let reserve = n.min(PREALLOCATE);
    let record = match kind {
        SERIES => {
            let mut out = Vec::with_capacity(reserve);
            for _ in 0..n {
                let r = uvarint(&mut buf)?;
                let kind = match byte(&mut buf)? {
                    0 => Kind::Float,
                    1 => Kind::Histogram,
                    _ => return Err(BadRecord("series kind")),
                };
                let nl = uvarint(&mut buf)? as usize;
                if nl > buf.len() {
                    return Err(BadRecord("label count"));
                }
                let mut pairs = Vec::with_capacity(nl.min(PREALLOCATE));
                for _ in 0..nl {
                    pairs.push((string(&mut buf)?, string(&mut buf)?));
                }
                let labels = Labels::try_from_pairs(pairs).map_err(|_| BadRecord("labels"))?;
                out.push((r, kind, labels));
            }
            Record::Series(out)
        }
        SAMPLES => {
            let base = varint(&mut buf)?;
            let mut out = Vec::with_capacity(reserve);
            for _ in 0..n {
                let r = uvarint(&mut buf)?;
                let t = base.wrapping_add(varint(&mut buf)?);
                out.push((r, t, f64::from_bits(u64_le(&mut buf)?)));
            }
            Record::Samples(out)
        }
        WINDOWS => {
            let mut out = Vec::with_capacity(reserve);
            for _ in 0..n {
                let r = uvarint(&mut buf)?;
                let start_ms = varint(&mut buf)?;
                let end_ms = varint(&mut buf)?;
                let count = uvarint(&mut buf)?;
                let sum = f64::from_bits(u64_le(&mut buf)?);
                let scale = f64::from_bits(u64_le(&mut buf)?);
                let buckets = bytes(&mut buf)?.to_vec().into_boxed_slice();
                out.push((
                    r,
                    Window {
                        start_ms,
                        end_ms,
                        count,
                        sum,
                        scale,
                        buckets,
                    },
                ));
            }
            Record::Windows(out)
        }
        _ => return Err(BadRecord("unknown record type")),
    };
    if !buf.is_empty() {
        return Err(BadRecord("trailing bytes"));
    }
    Ok(record)
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn uvarint(buf: &mut &[u8]) -> Result<u64, BadRecord> {
    get_uvarint(buf).map_err(|_| BadRecord("varint"))
}

fn varint(buf: &mut &[u8]) -> Result<i64, BadRecord> {
    Ok(unzigzag(uvarint(buf)?))
}

fn byte(buf: &mut &[u8]) -> Result<u8, BadRecord> {
    let (&b, rest) = buf.split_first().ok_or(BadRecord("truncated"))?;
    *buf = rest;
    Ok(b)
}

fn u64_le(buf: &mut &[u8]) -> Result<u64, BadRecord> {
    if buf.len() < 8 {
        return Err(BadRecord("truncated"));
    }
    let (head, rest) = buf.split_at(8);
    *buf = rest;
    Ok(u64::from_le_bytes(head.try_into().expect("8 bytes")))
}

fn bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], BadRecord> {
    let n = uvarint(buf)? as usize;
    if buf.len() < n {
        return Err(BadRecord("truncated"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn string(buf: &mut &[u8]) -> Result<String, BadRecord> {
    String::from_utf8(bytes(buf)?.to_vec()).map_err(|_| BadRecord("utf-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let labels = Labels::try_from_pairs([("__name__", "x"), ("a", "é")]).unwrap();
        let mut buf = Vec::new();
        encode_series(
            &mut buf,
            [
                (7, Kind::Float, pairs(&labels)),
                (9, Kind::Histogram, pairs(&labels)),
            ]
            .into_iter(),
        );
        assert_eq!(
            decode(&buf).unwrap(),
            Record::Series(vec![
                (7, Kind::Float, labels.clone()),
                (9, Kind::Histogram, labels)
            ])
        );

        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let samples = vec![
            (7, 1_700_000_000_000, 1.5),
            (8, 1_699_999_999_000, stale),
            (7, 5, -0.0),
        ];
        let mut buf = Vec::new();
        encode_samples(&mut buf, &samples);
        let Record::Samples(back) = decode(&buf).unwrap() else {
            panic!()
        };
        assert_eq!(back.len(), 3);
        for (a, b) in back.iter().zip(&samples) {
            assert_eq!((a.0, a.1, a.2.to_bits()), (b.0, b.1, b.2.to_bits()));
        }

        let w = Window {
            start_ms: 1,
            end_ms: 2,
            count: 3,
            sum: 4.5,
            scale: 0.001,
            buckets: vec![1, 2, 3].into_boxed_slice(),
        };
        let mut buf = Vec::new();
        encode_windows(&mut buf, [(3, &w)].into_iter());
        assert_eq!(decode(&buf).unwrap(), Record::Windows(vec![(3, w)]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [
            &[][..],
            &[1, 200, 200, 200],
            &[2, 1],
            &[9, 0],
            &[1, 1, 1, 0, 5, 0xff],
        ] {
            assert!(decode(junk).is_err(), "{junk:?}");
        }
    }

    /// A record claiming a million entries in a few megabytes is an
    /// error once the bytes run out, having reserved room for a few
    /// thousand: each entry is tens of bytes in memory.
    #[test]
    fn a_damaged_count_does_not_reserve_its_claim() {
        for kind in [SERIES, SAMPLES, WINDOWS] {
            let mut rec = vec![kind];
            put_uvarint(&mut rec, 1_000_000);
            rec.resize(4 << 20, 0x80);
            assert!(decode(&rec).is_err(), "kind {kind}");
        }
    }
}
