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

    /// Writes the low `n` bits of `value`, most significant first.
    pub(crate) fn write_bits(&mut self, value: u64, mut n: u8) {
        while n > 0 {
            if self.free == 0 {
                self.push_byte();
            }
            let take = n.min(self.free);
            let shift = n - take;
            let chunk = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            self.free -= take;
            *self.bytes.last_mut().expect("pushed above") |= chunk << self.free;
            n -= take;
        }
    }

    /// Grows by a quarter, at least 64 bytes, instead of doubling: an open
    /// head chunk ends at a few hundred bytes, and doubling would leave
    /// up to half of every series' open chunk unused.
    fn push_byte(&mut self) {
        if self.bytes.len() == self.bytes.capacity() {
            self.bytes.reserve_exact((self.bytes.len() / 4).max(64));
        }
        self.bytes.push(0);
        self.free = 8;
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
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xff]);
        assert!(r.read_bits(9).is_err());
    }
}
