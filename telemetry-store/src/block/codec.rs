//! How a block stores one row of a series: its timestamps and its values as
//! two separate compressed columns.
//!
//! Timestamps are delta-of-delta. Values pick the smaller of two
//! encodings: XOR floats (Gorilla), or — when every value is an integer,
//! as counters and histogram buckets are — delta-of-delta of the integers,
//! which costs about one bit per sample for a counter growing at a steady
//! rate. That choice is what takes a block below one byte per sample.

use crate::head::gorilla::{XorState, read_dod, write_dod};
use crate::head::{BitReader, BitWriter, Sample};

const XOR: u8 = 0;
const INT_DOD: u8 = 1;
/// Integers beyond this lose precision as f64; they stay XOR-encoded.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

#[derive(Debug, thiserror::Error)]
#[error("corrupt block chunk: {0}")]
pub(crate) struct CorruptChunk(&'static str);

pub(crate) fn encode_timestamps(samples: &[Sample]) -> Vec<u8> {
    let mut w = BitWriter::with_capacity(samples.len() / 4 + 16);
    let Some(&(t0, _)) = samples.first() else {
        return Vec::new();
    };
    w.write_bits(t0 as u64, 64);
    let (mut prev, mut delta) = (t0, 0i64);
    for &(t, _) in &samples[1..] {
        let d = t - prev;
        write_dod(&mut w, d - delta);
        delta = d;
        prev = t;
    }
    w.into_bytes()
}

pub(crate) fn encode_values(samples: &[Sample]) -> Vec<u8> {
    let exact_ints = samples.iter().all(|&(_, v)| {
        v.fract() == 0.0 && v.abs() < MAX_EXACT_INT && !(v == 0.0 && v.is_sign_negative())
    });
    let mut w = BitWriter::with_capacity(samples.len() / 2 + 16);
    let Some(&(_, v0)) = samples.first() else {
        return Vec::new();
    };
    if exact_ints {
        w.write_bits(INT_DOD as u64, 8);
        let first = v0 as i64;
        w.write_bits(first as u64, 64);
        let (mut prev, mut delta) = (first, 0i64);
        for &(_, v) in &samples[1..] {
            let v = v as i64;
            let d = v - prev;
            write_dod(&mut w, d - delta);
            delta = d;
            prev = v;
        }
    } else {
        w.write_bits(XOR as u64, 8);
        w.write_bits(v0.to_bits(), 64);
        let mut xor = XorState::first(v0);
        for &(_, v) in &samples[1..] {
            xor.write(&mut w, v);
        }
    }
    w.into_bytes()
}

/// Decodes `count` samples, appending those with `mint <= t <= maxt`.
pub(crate) fn decode(
    timestamps: &[u8],
    values: &[u8],
    count: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), CorruptChunk> {
    if count == 0 {
        return Ok(());
    }
    let truncated = |_| CorruptChunk("truncated");
    let mut tr = BitReader::new(timestamps);
    let mut vr = BitReader::new(values);
    let mode = vr.read_bits(8).map_err(truncated)? as u8;
    let mut t = tr.read_bits(64).map_err(truncated)? as i64;
    let mut tdelta = 0i64;
    match mode {
        INT_DOD => {
            let mut v = vr.read_bits(64).map_err(truncated)? as i64;
            let mut vdelta = 0i64;
            for i in 0..count {
                if i > 0 {
                    tdelta += read_dod(&mut tr).map_err(truncated)?;
                    t += tdelta;
                    vdelta += read_dod(&mut vr).map_err(truncated)?;
                    v += vdelta;
                }
                if t > maxt {
                    break;
                }
                if t >= mint {
                    out.push((t, v as f64));
                }
            }
        }
        XOR => {
            let v0 = f64::from_bits(vr.read_bits(64).map_err(truncated)?);
            let mut xor = XorState::first(v0);
            let mut v = v0;
            for i in 0..count {
                if i > 0 {
                    tdelta += read_dod(&mut tr).map_err(truncated)?;
                    t += tdelta;
                    v = xor.read(&mut vr).map_err(truncated)?;
                }
                if t > maxt {
                    break;
                }
                if t >= mint {
                    out.push((t, v));
                }
            }
        }
        _ => return Err(CorruptChunk("unknown value encoding")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[Sample]) -> usize {
        let ts = encode_timestamps(samples);
        let vs = encode_values(samples);
        let mut out = Vec::new();
        decode(&ts, &vs, samples.len(), i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(samples) {
            assert_eq!((a.0, a.1.to_bits()), (b.0, b.1.to_bits()));
        }
        ts.len() + vs.len()
    }

    #[test]
    fn counters_cost_well_under_a_byte_per_sample() {
        let samples: Vec<Sample> = (0..7200)
            .map(|i| (1_700_000_000_000 + i * 1000, (i * 13 + (i % 7)) as f64))
            .collect();
        let bytes = round_trip(&samples);
        assert!(bytes < 7200, "{bytes} bytes for 7200 samples");
    }

    #[test]
    fn floats_and_special_values_round_trip() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        round_trip(&[
            (1, 0.5),
            (2, -0.0),
            (5, stale),
            (9, f64::INFINITY),
            (10, 3.25),
        ]);
        round_trip(&[(1, 1.0), (2, -0.0)]);
        round_trip(&[(1, 1e300)]);
        round_trip(&[(-5, 9.007199254740993e15), (0, 1.0)]);
    }

    #[test]
    fn window_and_garbage() {
        let samples: Vec<Sample> = (0..100).map(|i| (i * 10, i as f64)).collect();
        let (ts, vs) = (encode_timestamps(&samples), encode_values(&samples));
        let mut out = Vec::new();
        decode(&ts, &vs, 100, 200, 300, &mut out).unwrap();
        assert_eq!(out, samples[20..=30]);
        assert!(decode(&ts[..3], &vs, 100, 0, 1000, &mut Vec::new()).is_err());
        assert!(decode(&ts, &[9, 0, 0], 100, 0, 1000, &mut Vec::new()).is_err());
    }
}
