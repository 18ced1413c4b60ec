//! A big-endian bit stream: what the Gorilla encodings write into and
//! read from.

#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 means start a new byte).
    free: u8,
}

impl BitWriter {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            free: 0,
        }
    }

    pub(crate) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.push_byte();
        }
        self.free -= 1;
        if bit {
            *self.bytes.last_mut().expect("pushed above") |= 1 << self.free;
        }
    }

    /// Writes the low `n` bits of `value`, most significant first: what
    /// fits in the last byte's free bits, then whole bytes at once (this
    /// runs for every sample ingested).
    pub(crate) fn write_bits(&mut self, value: u64, n: u8) {
        if n == 0 {
            return;
        }
        let mut n = n.min(64);
        let value = if n == 64 {
            value
        } else {
            value & ((1u64 << n) - 1)
        };
        if self.free > 0 {
            let take = n.min(self.free);
            self.free -= take;
            let top = (value >> (n - take)) as u8;
            *self
                .bytes
                .last_mut()
                .expect("free bits are in the last byte") |= top << self.free;
            n -= take;
            if n == 0 {
                return;
            }
        }
        // Byte-aligned now: left-align the remaining bits and copy the
        // bytes they cover.
        let rest = (value << (64 - n)).to_be_bytes();
        let len = usize::from(n.div_ceil(8));
        self.grow_for(len);
        self.bytes.extend_from_slice(&rest[..len]);
        self.free = (len * 8) as u8 - n;
    }

    /// Grows by a quarter, at least 64 bytes, instead of doubling: an open
    /// head chunk ends at a few hundred bytes, and doubling would leave
    /// up to half of every series' open chunk unused.
    fn grow_for(&mut self, more: usize) {
        let len = self.bytes.len();
        if len + more > self.bytes.capacity() {
            self.bytes.reserve_exact((len / 4).max(64).max(more));
        }
    }

    fn push_byte(&mut self) {
        self.grow_for(1);
        self.bytes.push(0);
        self.free = 8;
    }

    /// Starts loading the last byte, which the next write finishes.
    pub(crate) fn prefetch_tail(&self) {
        if let Some(last) = self.bytes.last() {
            crate::prefetch::line(last);
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("chunk ends before its samples do")]
pub(crate) struct Truncated;

impl<'a> BitReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn read_bit(&mut self) -> Result<bool, Truncated> {
        let byte = *self.bytes.get(self.pos / 8).ok_or(Truncated)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Ok(bit)
    }

    pub(crate) fn read_bits(&mut self, mut n: u8) -> Result<u64, Truncated> {
        if self.pos + n as usize > self.bytes.len() * 8 {
            return Err(Truncated);
        }
        let mut out = 0u64;
        while n > 0 {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let take = n.min(avail);
            let bits = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            out = (out << take) | bits as u64;
            self.pos += take as usize;
            n -= take;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_mixed_widths() {
        let mut w = BitWriter::default();
        let items: &[(u64, u8)] = &[
            (1, 1),
            (0b101, 3),
            (u64::MAX, 64),
            (0, 7),
            (12345, 17),
            (1, 1),
        ];
        for &(v, n) in items {
            w.write_bits(v, n);
        }
        w.write_bit(true);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        for &(v, n) in items {
            assert_eq!(r.read_bits(n).unwrap(), v);
        }
        assert!(r.read_bit().unwrap());
    }

    #[test]
    fn writes_the_same_bits_as_one_bit_at_a_time() {
        let (mut fast, mut slow) = (BitWriter::default(), BitWriter::default());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000 {
            // xorshift: arbitrary values and widths, high bits set too.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 65) as u8;
            fast.write_bits(x, n);
            for bit in (0..n).rev() {
                slow.write_bit(x >> bit & 1 == 1);
            }
            assert_eq!(fast.bytes(), slow.bytes(), "after write {i} of {n} bits");
        }
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xff]);
        assert!(r.read_bits(9).is_err());
    }
}
