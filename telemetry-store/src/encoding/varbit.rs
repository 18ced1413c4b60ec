//! The open chunk's code for small signed integers (timestamp and integer
//! value delta-of-deltas): a unary class prefix, then the number in that
//! class's width.
//!
//! Gorilla's timestamp buckets start at 14 bits, so every millisecond of
//! scrape jitter costs 16; these start at 4, so a few ms of jitter costs
//! 6 bits and a counter's noisy increase about 11, where Gorilla's XOR of
//! its float bits costs 20-30.

use super::bits::{BitReader, BitWriter, Truncated};

/// Widths after the prefixes `10`, `110`, `1110`, `11110`, `111110`;
/// `111111` is followed by all 64 bits.
const WIDTHS: [u8; 5] = [4, 8, 14, 20, 32];

pub(crate) fn write(w: &mut BitWriter, x: i64) {
    write_classes(w, x, &WIDTHS);
}

pub(crate) fn read(r: &mut BitReader<'_>) -> Result<i64, Truncated> {
    read_classes(r, &WIDTHS)
}

/// Writes `x` in the first class of `widths` that holds it: the class's
/// index + 1 ones and a zero, then `x` in that width; past the last
/// class, `widths.len() + 1` ones and all 64 bits. Gorilla's timestamp
/// code is this with its own widths.
pub(crate) fn write_classes(w: &mut BitWriter, x: i64, widths: &[u8]) {
    if x == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &width) in widths.iter().enumerate() {
        let half = 1i64 << (width - 1);
        if (-half..half).contains(&x) {
            // Prefix and number in one write: at most 6 + 32 bits.
            let prefix = (1u64 << (i + 2)) - 2;
            let number = x as u64 & ((1u64 << width) - 1);
            w.write_bits(prefix << width | number, i as u8 + 2 + width);
            return;
        }
    }
    let ones = widths.len() as u8 + 1;
    w.write_bits((1u64 << ones) - 1, ones);
    w.write_bits(x as u64, 64);
}

pub(crate) fn read_classes(r: &mut BitReader<'_>, widths: &[u8]) -> Result<i64, Truncated> {
    let mut ones = 0;
    while ones <= widths.len() && r.read_bit()? {
        ones += 1;
    }
    match ones {
        0 => Ok(0),
        n if n > widths.len() => Ok(r.read_bits(64)? as i64),
        n => {
            let width = widths[n - 1];
            let raw = r.read_bits(width)?;
            // Sign-extend from `width` bits.
            let shift = 64 - u32::from(width);
            Ok(((raw << shift) as i64) >> shift)
        }
    }
}

/// Writes `xs` in the classes of `widths` and checks they read back.
#[cfg(test)]
pub(crate) fn assert_round_trips(widths: &[u8], xs: &[i64]) {
    let mut w = BitWriter::default();
    for &x in xs {
        write_classes(&mut w, x, widths);
    }
    let bytes = w.into_bytes();
    let mut r = BitReader::new(&bytes);
    for &x in xs {
        assert_eq!(read_classes(&mut r, widths).unwrap(), x);
    }
}

/// Integers beyond this lose precision as f64.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// `v` as an integer, when it is one that converts back exactly (not
/// -0.0, whose sign an integer would lose).
pub(crate) fn exact_int(v: f64) -> Option<i64> {
    let exact = v.fract() == 0.0 && v.abs() < MAX_EXACT_INT && !(v == 0.0 && v.is_sign_negative());
    exact.then_some(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_round_trips_and_small_numbers_are_small() {
        let xs = [
            0,
            1,
            -1,
            7,
            -8,
            8,
            127,
            -128,
            128,
            8191,
            -8192,
            1 << 19,
            -(1 << 31),
            1 << 31,
            i64::MAX,
            i64::MIN,
        ];
        assert_round_trips(&WIDTHS, &xs);
        let mut jitter = BitWriter::default();
        write(&mut jitter, -3);
        assert_eq!(
            jitter.into_bytes().len(),
            1,
            "a few ms of jitter fits a byte"
        );
    }

    #[test]
    fn exact_ints_are_the_ones_that_round_trip() {
        assert_eq!(exact_int(42.0), Some(42));
        assert_eq!(exact_int(-7.0), Some(-7));
        assert_eq!(exact_int(0.5), None);
        assert_eq!(exact_int(-0.0), None);
        assert_eq!(exact_int(f64::NAN), None);
        assert_eq!(exact_int(f64::INFINITY), None);
        assert_eq!(exact_int(1e300), None);
    }
}
