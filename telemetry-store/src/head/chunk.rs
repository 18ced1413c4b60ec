//! Head chunks: up to [`SAMPLES_PER_CHUNK`] samples of one series,
//! timestamps and values interleaved in one Gorilla bit stream. The open
//! chunk takes appends; a full one is frozen into an exact-size buffer.

use super::bits::{BitReader, BitWriter, Truncated};
use super::gorilla::{XorState, read_dod, write_dod};

/// As in Prometheus: about two minutes of 1 s data, a good compression
/// window while keeping a query's decode work small.
pub(crate) const SAMPLES_PER_CHUNK: u16 = 120;

/// A sample of a float series.
pub(crate) type Sample = (i64, f64);

pub(crate) struct OpenChunk {
    w: BitWriter,
    count: u16,
    min_t: i64,
    last_t: i64,
    last_delta: i64,
    xor: XorState,
}

/// An immutable, exactly sized chunk.
pub(crate) struct Chunk {
    bytes: Box<[u8]>,
    count: u16,
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
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
            xor: XorState::first(v),
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count >= SAMPLES_PER_CHUNK
    }

    pub(crate) fn append(&mut self, t: i64, v: f64) {
        let delta = t - self.last_t;
        write_dod(&mut self.w, delta - self.last_delta);
        self.xor.write(&mut self.w, v);
        self.last_delta = delta;
        self.last_t = t;
        self.count += 1;
    }

    pub(crate) fn min_t(&self) -> i64 {
        self.min_t
    }

    pub(crate) fn max_t(&self) -> i64 {
        self.last_t
    }

    pub(crate) fn freeze(mut self) -> Chunk {
        self.w.shrink();
        Chunk {
            bytes: self.w.into_bytes().into_boxed_slice(),
            count: self.count,
            min_t: self.min_t,
            max_t: self.last_t,
        }
    }

    pub(crate) fn decode_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        decode(self.w.bytes(), self.count, mint, maxt, out)
            .expect("an open chunk is always complete");
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.w.capacity()
    }
}

impl Chunk {
    pub(crate) fn decode_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        decode(&self.bytes, self.count, mint, maxt, out)
            .expect("a frozen chunk is always complete");
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.len()
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
    let mut xor = XorState::first(v);
    let push = |t: i64, v: f64, out: &mut Vec<Sample>| {
        if t >= mint && t <= maxt {
            out.push((t, v));
        }
    };
    push(t, v, out);
    let mut delta = 0i64;
    for _ in 1..count {
        delta += read_dod(&mut r)?;
        t += delta;
        let v = xor.read(&mut r)?;
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
        let frozen = c.freeze();
        // Far below 16 bytes per sample: about 2 bytes.
        assert!(frozen.heap_bytes() < 300, "{} bytes", frozen.heap_bytes());
        let mut window = Vec::new();
        frozen.decode_into(expected[10].0, expected[20].0, &mut window);
        assert_eq!(window, expected[10..=20]);
    }
}
