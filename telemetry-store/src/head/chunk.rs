//! Head chunks: up to [`SAMPLES_PER_CHUNK`] samples of one series.
//!
//! The open chunk takes appends as one bit stream, timestamps and values
//! interleaved, the cheapest to extend one sample at a time: timestamp
//! delta-of-deltas in [`varbit`] code, and values either as integer
//! delta-of-deltas in the same code (counters, histogram buckets, small
//! gauges: a chunk whose first value is an integer) or as Gorilla XOR
//! floats. A non-integer value ends an integer chunk early.
//!
//! A full chunk is frozen into the smaller of its own stream and the
//! block codec's encoding of it (which looks at the whole row: grid
//! timestamps, bit-packed integer deltas). The codec wins on jittered
//! scrapes of a fixed schedule, the stream on timestamps that drift.
//! Frozen chunks are most of the head, and the head is most of the
//! store's memory; their bytes live in [`chunk_files`](super::chunk_files).

use super::chunk_files::{ChunkFiles, Stored};
use crate::encoding::bits::{BitReader, BitWriter, Truncated};
use crate::encoding::columns;
use crate::encoding::gorilla::XorState;
use crate::encoding::varbit::{self, exact_int};
pub(crate) use crate::model::Sample;

/// As in Prometheus: about two minutes of 1 s data, a good compression
/// window while keeping a query's decode work small.
pub(crate) const SAMPLES_PER_CHUNK: u16 = 120;

pub(crate) struct OpenChunk {
    w: BitWriter,
    count: u16,
    min_t: i64,
    last_t: i64,
    last_delta: i64,
    values: Values,
}

/// How a chunk writes values, fixed by its first one.
#[derive(Clone, Copy)]
enum Values {
    Int { last: i64, delta: i64 },
    Float(XorState),
}

impl Values {
    fn first(v: f64) -> Self {
        match exact_int(v) {
            Some(i) => Values::Int { last: i, delta: 0 },
            None => Values::Float(XorState::first(v)),
        }
    }
}

/// A series' frozen chunks, oldest first.
#[derive(Default)]
pub(crate) struct Frozen {
    chunks: Vec<FrozenChunk>,
}

struct FrozenChunk {
    /// Codec timestamps then values, or the open chunk's stream as it was.
    bytes: Stored,
    /// Length of the codec's timestamps; 0 for a chunk kept as its open
    /// stream (codec timestamps take at least 8 bytes).
    timestamps_len: u16,
    count: u16,
    min_t: i64,
    /// `max_t - min_t`: an open chunk ends before its span outgrows this.
    span: u32,
}

impl OpenChunk {
    pub(crate) fn new(t: i64, v: f64) -> Self {
        let mut w = BitWriter::with_capacity(32);
        w.write_bits(t as u64, 64);
        w.write_bits(v.to_bits(), 64);
        Self {
            w,
            count: 1,
            min_t: t,
            last_t: t,
            last_delta: 0,
            values: Values::first(v),
        }
    }

    /// Starts loading the bytes the next append writes into.
    pub(crate) fn prefetch_tail(&self) {
        self.w.prefetch_tail();
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count >= SAMPLES_PER_CHUNK
    }

    /// Appends a sample, or returns false when this chunk cannot hold it
    /// (a non-integer in an integer chunk, or 49 days after its first
    /// sample): start a new chunk.
    pub(crate) fn append(&mut self, t: i64, v: f64) -> bool {
        // Its frozen form keeps the span in 32 bits (49 days of ms).
        if t.checked_sub(self.min_t)
            .is_none_or(|span| span > i64::from(u32::MAX))
        {
            return false;
        }
        let int = match self.values {
            Values::Int { .. } => match exact_int(v) {
                Some(i) => Some(i),
                None => return false,
            },
            Values::Float(_) => None,
        };
        let delta = t.wrapping_sub(self.last_t);
        varbit::write(&mut self.w, delta.wrapping_sub(self.last_delta));
        match (&mut self.values, int) {
            (Values::Int { last, delta }, Some(i)) => {
                let d = i.wrapping_sub(*last);
                varbit::write(&mut self.w, d.wrapping_sub(*delta));
                (*last, *delta) = (i, d);
            }
            (Values::Float(xor), _) => xor.write(&mut self.w, v),
            (Values::Int { .. }, None) => unreachable!("checked above"),
        }
        self.last_delta = delta;
        self.last_t = t;
        self.count += 1;
        true
    }

    pub(crate) fn min_t(&self) -> i64 {
        self.min_t
    }

    pub(crate) fn max_t(&self) -> i64 {
        self.last_t
    }

    pub(crate) fn last(&self) -> Sample {
        let v = match self.values {
            Values::Int { last, .. } => last as f64,
            Values::Float(xor) => xor.last(),
        };
        (self.last_t, v)
    }

    fn span(&self) -> u32 {
        u32::try_from(self.last_t - self.min_t).expect("append keeps the span in range")
    }

    pub(crate) fn decode_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        decode(self.w.bytes(), self.count, mint, maxt, out)
            .expect("an open chunk is always complete");
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.w.capacity()
    }
}

impl Frozen {
    /// Freezes a full (or ended) open chunk into the smaller encoding.
    pub(crate) fn push(&mut self, open: OpenChunk, files: &ChunkFiles) {
        let mut samples = Vec::with_capacity(open.count.into());
        open.decode_into(i64::MIN, i64::MAX, &mut samples);
        let timestamps = columns::encode_timestamps(&samples);
        let values = columns::encode_values(&samples);
        let stream = open.w.bytes();
        let codec_wins = timestamps.len() + values.len() < stream.len();
        let parts: [&[u8]; 2] = if codec_wins {
            [&timestamps, &values]
        } else {
            [stream, &[]]
        };
        self.chunks.reserve_exact(1);
        self.chunks.push(FrozenChunk {
            bytes: files.store(open.last_t, &parts),
            timestamps_len: if codec_wins {
                u16::try_from(timestamps.len())
                    .expect("at most 8 + 16 bytes per sample of a 120-sample chunk")
            } else {
                0
            },
            count: open.count,
            min_t: open.min_t,
            span: open.span(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub(crate) fn min_t(&self) -> Option<i64> {
        self.chunks.first().map(|c| c.min_t)
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`.
    pub(crate) fn decode_into(
        &self,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for c in &self.chunks {
            if c.max_t() >= mint && c.min_t <= maxt {
                c.bytes.read_into(&mut bytes)?;
                c.decode_into(&bytes, mint, maxt, out);
            }
        }
        Ok(())
    }

    /// Drops the chunks that end before `t`.
    pub(crate) fn truncate_before(&mut self, t: i64) {
        let gone = self.chunks.partition_point(|c| c.max_t() < t);
        if gone == 0 {
            return;
        }
        self.chunks.drain(..gone);
        self.chunks.shrink_to_fit();
    }

    /// Bytes of chunk data and bookkeeping, in files and in memory.
    pub(crate) fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.bytes.len() + std::mem::size_of::<FrozenChunk>())
            .sum()
    }
}

impl FrozenChunk {
    fn max_t(&self) -> i64 {
        self.min_t + i64::from(self.span)
    }

    fn decode_into(&self, bytes: &[u8], mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let complete = if self.timestamps_len == 0 {
            decode(bytes, self.count, mint, maxt, out).is_ok()
        } else {
            let (timestamps, values) = bytes.split_at(self.timestamps_len.into());
            columns::decode(
                columns::LATEST,
                timestamps,
                values,
                self.count.into(),
                mint,
                maxt,
                out,
            )
            .is_ok()
        };
        assert!(complete, "a frozen chunk is always complete");
    }
}

/// Appends the samples with `mint <= t <= maxt` to `out`.
fn decode(
    bytes: &[u8],
    count: u16,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), Truncated> {
    let mut r = BitReader::new(bytes);
    let mut t = r.read_bits(64)? as i64;
    let v = f64::from_bits(r.read_bits(64)?);
    let mut values = Values::first(v);
    let push = |t: i64, v: f64, out: &mut Vec<Sample>| {
        if t >= mint && t <= maxt {
            out.push((t, v));
        }
    };
    push(t, v, out);
    let mut delta = 0i64;
    for _ in 1..count {
        delta = delta.wrapping_add(varbit::read(&mut r)?);
        t = t.wrapping_add(delta);
        let v = match &mut values {
            Values::Int { last, delta } => {
                *delta = delta.wrapping_add(varbit::read(&mut r)?);
                *last = last.wrapping_add(*delta);
                *last as f64
            }
            Values::Float(xor) => xor.read(&mut r)?,
        };
        if t > maxt {
            break;
        }
        push(t, v, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freeze(c: OpenChunk) -> Frozen {
        let mut frozen = Frozen::default();
        frozen.push(c, &files());
        frozen
    }

    /// Chunk files are unlinked: the temporary directory stays clean.
    fn files() -> ChunkFiles {
        ChunkFiles::new(7_200_000, std::env::temp_dir())
    }

    #[test]
    fn regular_samples_compress_and_round_trip() {
        let mut c = OpenChunk::new(1_700_000_000_000, 0.0);
        let mut expected = vec![(1_700_000_000_000, 0.0)];
        let mut t = 1_700_000_000_000;
        for i in 1..SAMPLES_PER_CHUNK {
            t += 1000 + if i % 10 == 0 { 3 } else { 0 };
            let v = (i as f64 * 7.0).floor();
            c.append(t, v);
            expected.push((t, v));
        }
        assert!(c.is_full());
        let mut open = Vec::new();
        c.decode_into(i64::MIN, i64::MAX, &mut open);
        assert_eq!(open, expected);
        let open = c.w.bytes().len();
        let frozen = freeze(c);
        // Timestamps that drift from any grid by 3 ms every 10 samples.
        // The open stream wins here: 120 samples in some 60 bytes.
        let bytes = frozen.bytes();
        let bookkeeping = std::mem::size_of::<FrozenChunk>();
        assert!(bytes <= open + bookkeeping, "{bytes} bytes, open {open}");
        assert!(bytes < 100, "{bytes} bytes");
        let mut window = Vec::new();
        frozen
            .decode_into(expected[10].0, expected[20].0, &mut window)
            .unwrap();
        assert_eq!(window, expected[10..=20]);
    }

    /// A scraped counter from `t0`: a few ms of jitter on some scrapes of
    /// a fixed 15 s schedule, a noisy rate.
    fn counter(t0: i64, mut v: f64) -> (OpenChunk, Vec<Sample>) {
        let mut c = OpenChunk::new(t0, v);
        let mut expected = vec![(t0, v)];
        for i in 1..SAMPLES_PER_CHUNK as i64 {
            let t = t0 + i * 15_000 + [0, 0, 3, 0, -2, 0, 0, 5, 0, 0][(i % 10) as usize];
            v += (1500 + (i * 7919) % 90) as f64;
            c.append(t, v);
            expected.push((t, v));
        }
        (c, expected)
    }

    #[test]
    fn a_counter_costs_under_3_bytes_a_sample_open_and_1_6_frozen() {
        let (c, expected) = counter(1_700_000_000_000, 1e6);
        let open = c.w.bytes().len();
        let n = expected.len();
        assert!(open < 3 * n, "open {open} bytes for {n} samples");
        let frozen = freeze(c);
        // The codec wins on a jittered schedule: under 1.6 bytes a sample
        // with the chunk's bookkeeping.
        let bytes = frozen.bytes();
        assert!(bytes < open, "frozen {bytes} bytes, open {open}");
        assert!(bytes * 5 < 8 * n, "frozen {bytes} bytes for {n} samples");
        let mut all = Vec::new();
        frozen.decode_into(i64::MIN, i64::MAX, &mut all).unwrap();
        assert_eq!(all, expected);
    }

    #[test]
    fn an_integer_chunk_refuses_a_fraction_and_floats_stay_exact() {
        let mut c = OpenChunk::new(1000, 5.0);
        assert!(c.append(2000, 7.0));
        assert!(!c.append(3000, 7.5), "an integer chunk ends at a fraction");
        let mut got = Vec::new();
        c.decode_into(i64::MIN, i64::MAX, &mut got);
        assert_eq!(got, [(1000, 5.0), (2000, 7.0)]);

        let floats = [0.5, 1.0, -0.0, f64::NAN, 1e300, f64::INFINITY, 3.25];
        let mut c = OpenChunk::new(0, floats[0]);
        for (i, &v) in floats.iter().enumerate().skip(1) {
            assert!(c.append(i as i64 * 1000, v), "a float chunk takes anything");
        }
        let mut got = Vec::new();
        c.decode_into(i64::MIN, i64::MAX, &mut got);
        let bits: Vec<u64> = got.iter().map(|s| s.1.to_bits()).collect();
        assert_eq!(bits, floats.map(f64::to_bits));
    }

    #[test]
    fn truncation_drops_whole_chunks_and_keeps_the_rest_readable() {
        let mut frozen = Frozen::default();
        let files = files();
        let mut all = Vec::new();
        for k in 0..3 {
            let (c, expected) = counter(1_700_000_000_000 + k * 1_800_000, (k as f64) * 1e6);
            frozen.push(c, &files);
            all.push(expected);
        }
        let before = frozen.bytes();
        // Inside the second chunk: only the first is wholly before it.
        frozen.truncate_before(all[1][5].0);
        assert_eq!(frozen.min_t(), Some(all[1][0].0));
        assert!(frozen.bytes() < before);
        let mut left = Vec::new();
        frozen.decode_into(i64::MIN, i64::MAX, &mut left).unwrap();
        assert_eq!(left, [all[1].clone(), all[2].clone()].concat());
        frozen.truncate_before(i64::MAX);
        assert!(frozen.is_empty());
        assert_eq!(frozen.bytes(), 0);
    }
}
