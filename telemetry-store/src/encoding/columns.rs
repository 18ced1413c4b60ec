//! How a block stores one row of a series: its timestamps and its values as
//! two separate compressed columns.
//!
//! Blocks are written once and read many times, so they use encodings
//! that look at a whole row instead of Gorilla's sample-by-sample ones
//! (whose smallest non-zero timestamp code is 16 bits, paid by every
//! millisecond of scrape jitter):
//!
//! - Timestamps: the regular grid through the first and last timestamp,
//!   plus each sample's offset from it; a group of 64 samples whose
//!   offsets are all zero costs 7 bits, jitter costs a flag bit per sample
//!   and a few bits per jittered one.
//! - Values: when every value is an integer (counters, histogram buckets,
//!   small gauges), the deltas between samples are bit-packed in groups of
//!   64 as offsets from the group's smallest delta (frame of reference),
//!   so a counter costs the bits of its noise, and a flat series almost
//!   nothing. Other values are XOR floats (Gorilla).
//!
//! Version 1 blocks (delta-of-delta timestamps and integers) still decode.

use super::Sample;
use super::bits::{BitReader, BitWriter};
use super::gorilla::{XorState, read_dod};
use super::varbit::exact_int;
use super::varint::{unzigzag, zigzag};

/// The format `encode_timestamps` and `encode_values` write; version 1
/// blocks hold the older one, which `decode` still reads.
pub(crate) const LATEST: u32 = 2;

const XOR: u8 = 0;
/// Version 1 blocks only.
const INT_DOD: u8 = 1;
const INT_FOR: u8 = 2;
/// Samples per bit-packing group.
const GROUP: usize = 64;
/// Most samples a decoder reserves room for up front: a corrupt sample
/// count must end in a "truncated" error, not in a huge allocation.
const PREALLOCATE: usize = 8192;

#[derive(Debug, thiserror::Error)]
#[error("corrupt block chunk: {0}")]
pub(crate) struct CorruptChunk(&'static str);

type Result<T> = std::result::Result<T, CorruptChunk>;

fn truncated<E>(_: E) -> CorruptChunk {
    CorruptChunk("truncated")
}

fn bit_len(u: u64) -> u8 {
    (64 - u.leading_zeros()) as u8
}

/// A signed integer as its bit length (7 bits) and its zigzag bits.
fn write_int(w: &mut BitWriter, v: i64) {
    let z = zigzag(v);
    let n = bit_len(z);
    w.write_bits(n.into(), 7);
    w.write_bits(z, n);
}

fn read_width(r: &mut BitReader<'_>) -> Result<u8> {
    let n = r.read_bits(7).map_err(truncated)? as u8;
    if n > 64 {
        return Err(CorruptChunk("bit width over 64"));
    }
    Ok(n)
}

fn read_int(r: &mut BitReader<'_>) -> Result<i64> {
    let n = read_width(r)?;
    Ok(unzigzag(r.read_bits(n).map_err(truncated)?))
}

/// `xs` in groups: the group's minimum, a width, then every element's
/// offset from the minimum in that many bits.
fn write_packed(w: &mut BitWriter, xs: &[i64]) {
    for g in xs.chunks(GROUP) {
        let base = *g.iter().min().expect("chunks are non-empty");
        let max = *g.iter().max().expect("chunks are non-empty");
        let width = bit_len(max.wrapping_sub(base) as u64);
        write_int(w, base);
        w.write_bits(width.into(), 7);
        for &x in g {
            w.write_bits(x.wrapping_sub(base) as u64, width);
        }
    }
}

fn read_packed(r: &mut BitReader<'_>, n: usize, out: &mut Vec<i64>) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let base = read_int(r)?;
        let width = read_width(r)?;
        for _ in 0..left.min(GROUP) {
            out.push(base.wrapping_add(r.read_bits(width).map_err(truncated)? as i64));
        }
        left -= left.min(GROUP);
    }
    Ok(())
}

/// Offsets from the grid, mostly zero: per group a width, then per
/// sample a flag and, when set, the zigzag offset.
fn write_offsets(w: &mut BitWriter, xs: &[i64]) {
    for g in xs.chunks(GROUP) {
        let width = bit_len(g.iter().map(|&x| zigzag(x)).max().unwrap_or(0));
        w.write_bits(width.into(), 7);
        if width == 0 {
            continue;
        }
        for &x in g {
            w.write_bit(x != 0);
            if x != 0 {
                w.write_bits(zigzag(x), width);
            }
        }
    }
}

fn read_offsets(r: &mut BitReader<'_>, n: usize, out: &mut Vec<i64>) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let width = read_width(r)?;
        for _ in 0..left.min(GROUP) {
            let set = width > 0 && r.read_bit().map_err(truncated)?;
            out.push(if set {
                unzigzag(r.read_bits(width).map_err(truncated)?)
            } else {
                0
            });
        }
        left -= left.min(GROUP);
    }
    Ok(())
}

/// The grid's `i`th point: `t0 + i * step`, in wrapping arithmetic so
/// that corrupt input cannot overflow.
fn grid(t0: i64, step: i64, i: usize) -> i64 {
    t0.wrapping_add(step.wrapping_mul(i as i64))
}

pub(crate) fn encode_timestamps(samples: &[Sample]) -> Vec<u8> {
    let mut w = BitWriter::with_capacity(samples.len() / 4 + 16);
    let (Some(&(t0, _)), Some(&(last, _))) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    w.write_bits(t0 as u64, 64);
    if samples.len() == 1 {
        return w.into_bytes();
    }
    let step = ((i128::from(last) - i128::from(t0)) / (samples.len() as i128 - 1)) as i64;
    write_int(&mut w, step);
    let offsets: Vec<i64> = samples[1..]
        .iter()
        .enumerate()
        .map(|(i, &(t, _))| t.wrapping_sub(grid(t0, step, i + 1)))
        .collect();
    write_offsets(&mut w, &offsets);
    w.into_bytes()
}

pub(crate) fn encode_values(samples: &[Sample]) -> Vec<u8> {
    let Some(&(_, v0)) = samples.first() else {
        return Vec::new();
    };
    let exact_ints = samples.iter().all(|&(_, v)| exact_int(v).is_some());
    let mut w = BitWriter::with_capacity(samples.len() / 2 + 16);
    if exact_ints {
        w.write_bits(INT_FOR.into(), 8);
        w.write_bits(v0 as i64 as u64, 64);
        let deltas: Vec<i64> = samples
            .windows(2)
            .map(|p| p[1].1 as i64 - p[0].1 as i64)
            .collect();
        write_packed(&mut w, &deltas);
    } else {
        w.write_bits(XOR.into(), 8);
        w.write_bits(v0.to_bits(), 64);
        let mut xor = XorState::first(v0);
        for &(_, v) in &samples[1..] {
            xor.write(&mut w, v);
        }
    }
    w.into_bytes()
}

/// `n` integers after `first`, each written as its delta-of-delta
/// (version 1 timestamps and integer values).
fn read_dod_run(r: &mut BitReader<'_>, first: i64, n: usize, out: &mut Vec<i64>) -> Result<()> {
    let (mut v, mut delta) = (first, 0i64);
    for _ in 0..n {
        delta = delta.wrapping_add(read_dod(r).map_err(truncated)?);
        v = v.wrapping_add(delta);
        out.push(v);
    }
    Ok(())
}

fn decode_timestamps(version: u32, bytes: &[u8], count: usize) -> Result<Vec<i64>> {
    let mut r = BitReader::new(bytes);
    let t0 = r.read_bits(64).map_err(truncated)? as i64;
    let mut out = Vec::with_capacity(count.min(PREALLOCATE));
    out.push(t0);
    if count == 1 {
        return Ok(out);
    }
    if version == 1 {
        read_dod_run(&mut r, t0, count - 1, &mut out)?;
        return Ok(out);
    }
    let step = read_int(&mut r)?;
    read_offsets(&mut r, count - 1, &mut out)?;
    for (i, t) in out.iter_mut().enumerate().skip(1) {
        *t = t.wrapping_add(grid(t0, step, i));
    }
    Ok(out)
}

fn decode_values(bytes: &[u8], count: usize) -> Result<Vec<f64>> {
    let mut r = BitReader::new(bytes);
    let mode = r.read_bits(8).map_err(truncated)? as u8;
    let first = r.read_bits(64).map_err(truncated)?;
    let mut out = Vec::with_capacity(count.min(PREALLOCATE));
    match mode {
        INT_FOR => {
            let mut deltas = Vec::with_capacity(count.min(PREALLOCATE));
            read_packed(&mut r, count - 1, &mut deltas)?;
            let mut v = first as i64;
            out.push(v as f64);
            for d in deltas {
                v = v.wrapping_add(d);
                out.push(v as f64);
            }
        }
        INT_DOD => {
            let mut ints = vec![first as i64];
            read_dod_run(&mut r, first as i64, count - 1, &mut ints)?;
            out.extend(ints.into_iter().map(|v| v as f64));
        }
        XOR => {
            let v0 = f64::from_bits(first);
            let mut xor = XorState::first(v0);
            out.push(v0);
            for _ in 1..count {
                out.push(xor.read(&mut r).map_err(truncated)?);
            }
        }
        _ => return Err(CorruptChunk("unknown value encoding")),
    }
    Ok(out)
}

/// Decodes `count` samples of a block of `version`, appending those with
/// `mint <= t <= maxt`.
pub(crate) fn decode(
    version: u32,
    timestamps: &[u8],
    values: &[u8],
    count: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let ts = decode_timestamps(version, timestamps, count)?;
    let vs = decode_values(values, count)?;
    out.extend(
        ts.into_iter()
            .zip(vs)
            .skip_while(|&(t, _)| t < mint)
            .take_while(|&(t, _)| t <= maxt),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[Sample]) -> usize {
        let ts = encode_timestamps(samples);
        let vs = encode_values(samples);
        let mut out = Vec::new();
        decode(
            LATEST,
            &ts,
            &vs,
            samples.len(),
            i64::MIN,
            i64::MAX,
            &mut out,
        )
        .unwrap();
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

    /// A counter scraped every 15 s with a few ms of jitter on 3 scrapes
    /// in 10, growing by 150 ± 12 a scrape: timestamps cost about two
    /// bits a sample, values the bits of their noise.
    #[test]
    fn scraped_counters_cost_the_bits_of_their_noise() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut v = 0i64;
        let samples: Vec<Sample> = (0..480)
            .map(|i| {
                let jitter = match next() % 10 {
                    0 => 1,
                    1 => -1,
                    2 => (next() % 7) as i64 - 3,
                    _ => 0,
                };
                v += 138 + (next() % 25) as i64;
                (1_700_000_000_000 + i * 15_000 + jitter, v as f64)
            })
            .collect();
        round_trip(&samples);
        let ts_bits = encode_timestamps(&samples).len() as f64 * 8.0 / 480.0;
        let value_bits = encode_values(&samples).len() as f64 * 8.0 / 480.0;
        assert!(ts_bits < 3.0, "{ts_bits} bits per timestamp");
        assert!(value_bits < 6.0, "{value_bits} bits per value");
    }

    #[test]
    fn irregular_and_extreme_integers_round_trip() {
        round_trip(&[(5, 3.0)]);
        round_trip(&[(5, 3.0), (6, -3.0)]);
        round_trip(&[
            (-1_000_000, 9.007199254740991e15),
            (0, -9.007199254740991e15),
            (1, 0.0),
            (3_000_000_000_000, 1.0),
            (3_000_000_000_001, 1.0),
            (i64::MAX / 2, -42.0),
        ]);
        let ramp: Vec<Sample> = (0..1000).map(|i| (i * i, (i % 3) as f64)).collect();
        round_trip(&ramp);
    }

    /// Blocks written before version 2 keep their delta-of-delta rows.
    #[test]
    fn version_1_rows_still_decode() {
        use crate::encoding::gorilla::write_dod;
        let samples: Vec<Sample> = (0..100)
            .map(|i| (i * 1000 + i % 2, (i * 7) as f64))
            .collect();
        let (mut ts, mut vs) = (BitWriter::default(), BitWriter::default());
        ts.write_bits(samples[0].0 as u64, 64);
        vs.write_bits(INT_DOD.into(), 8);
        vs.write_bits(0, 64);
        let (mut dt, mut dv) = (0, 0);
        for p in samples.windows(2) {
            let (t, v) = (p[1].0 - p[0].0, p[1].1 as i64 - p[0].1 as i64);
            write_dod(&mut ts, t - dt);
            write_dod(&mut vs, v - dv);
            (dt, dv) = (t, v);
        }
        let mut out = Vec::new();
        decode(
            1,
            &ts.into_bytes(),
            &vs.into_bytes(),
            100,
            0,
            i64::MAX,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, samples);
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
        decode(LATEST, &ts, &vs, 100, 200, 300, &mut out).unwrap();
        assert_eq!(out, samples[20..=30]);
        assert!(decode(LATEST, &ts[..3], &vs, 100, 0, 1000, &mut Vec::new()).is_err());
        assert!(decode(LATEST, &ts, &[9, 0, 0], 100, 0, 1000, &mut Vec::new()).is_err());
        // A corrupt count (a regular series makes width-0 groups, 7 bits
        // per 64 samples) ends in an error, not in a 32 GB allocation.
        let regular: Vec<Sample> = (0..100).map(|i| (i * 10, 1.0)).collect();
        let (ts, vs) = (encode_timestamps(&regular), encode_values(&regular));
        assert!(
            decode(
                LATEST,
                &ts,
                &vs,
                u32::MAX as usize,
                0,
                1000,
                &mut Vec::new()
            )
            .is_err()
        );
    }
}
