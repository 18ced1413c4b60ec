//! Facebook Gorilla's encodings, the ones Prometheus uses: timestamps as
//! delta-of-delta with variable-width buckets (a regular scrape or report
//! interval costs one bit per sample), floats as the XOR with the previous
//! value, storing only the meaningful bits.
//!
//! Open head chunks write XOR floats; their timestamps moved to the
//! [`varbit`](super::varbit) code. Version 1 blocks used Gorilla's
//! delta-of-delta for timestamps and integer-valued series, so
//! [`read_dod`] still decodes them.

use super::bits::{BitReader, BitWriter, Truncated};

/// Widths of the delta-of-delta buckets after their prefix (`10`, `110`,
/// `1110`, `11110`); `11111` is followed by the full 64 bits.
const DOD_WIDTHS: [u8; 4] = [14, 17, 20, 32];

#[cfg(test)]
pub(crate) fn write_dod(w: &mut BitWriter, dod: i64) {
    super::varbit::write_classes(w, dod, &DOD_WIDTHS);
}

pub(crate) fn read_dod(r: &mut BitReader<'_>) -> Result<i64, Truncated> {
    super::varbit::read_classes(r, &DOD_WIDTHS)
}

/// The XOR encoder's memory: the previous value and the window of its
/// meaningful bits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XorState {
    prev: u64,
    leading: u8,
    trailing: u8,
}

impl XorState {
    /// The last value written or read.
    pub(crate) fn last(&self) -> f64 {
        f64::from_bits(self.prev)
    }

    pub(crate) fn first(v: f64) -> Self {
        Self {
            prev: v.to_bits(),
            leading: u8::MAX,
            trailing: 0,
        }
    }

    pub(crate) fn write(&mut self, w: &mut BitWriter, v: f64) {
        let bits = v.to_bits();
        let xor = bits ^ self.prev;
        self.prev = bits;
        if xor == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            w.write_bits(xor >> self.trailing, sig);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let sig = 64 - leading - trailing;
        w.write_bit(true);
        w.write_bits(leading as u64, 5);
        // 64 significant bits is written as 0: 6 bits hold 0..=63.
        w.write_bits((sig & 63) as u64, 6);
        w.write_bits(xor >> trailing, sig);
    }

    pub(crate) fn read(&mut self, r: &mut BitReader<'_>) -> Result<f64, Truncated> {
        if !r.read_bit()? {
            return Ok(f64::from_bits(self.prev));
        }
        if r.read_bit()? {
            self.leading = r.read_bits(5)? as u8;
            let mut sig = r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64 - self.leading - sig;
        }
        let sig = 64 - self.leading - self.trailing;
        let xor = r.read_bits(sig)? << self.trailing;
        self.prev ^= xor;
        Ok(f64::from_bits(self.prev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dod_buckets_round_trip_at_their_edges() {
        let values = [
            0,
            1,
            -1,
            8192,
            -8191,
            8193,
            -8192,
            65536,
            -65535,
            524288,
            -524287,
            1 << 31,
            -(1 << 31) + 1,
            1 << 40,
            i64::MIN,
            i64::MAX,
        ];
        crate::encoding::varbit::assert_round_trips(&DOD_WIDTHS, &values);
    }

    #[test]
    fn xor_round_trips_special_values_bit_exactly() {
        let values = [
            1.0,
            1.0,
            1.5,
            -0.0,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0002),
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
            123456789.123,
            f64::MIN_POSITIVE,
        ];
        let mut w = BitWriter::default();
        let mut enc = XorState::first(values[0]);
        for &v in &values[1..] {
            enc.write(&mut w, v);
        }
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        let mut dec = XorState::first(values[0]);
        for &v in &values[1..] {
            assert_eq!(dec.read(&mut r).unwrap().to_bits(), v.to_bits());
        }
    }
}
