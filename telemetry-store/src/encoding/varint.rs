//! LEB128 varints and zigzag: how the WAL, histogram windows and block
//! columns write integers that are usually small in few bytes.

/// A varint ran past the end of its buffer or past 64 bits.
#[derive(Debug, thiserror::Error)]
#[error("truncated or overlong varint")]
pub(crate) struct BadVarint;

/// A signed integer as an unsigned one with small magnitudes small
/// (0, -1, 1, -2 → 0, 1, 2, 3), for varints and bit packing.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) fn get_uvarint(buf: &mut &[u8]) -> Result<u64, BadVarint> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or(BadVarint)?;
        *buf = rest;
        out |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(out);
        }
    }
    Err(BadVarint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 300, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, zigzag(v));
            let mut rest: &[u8] = &buf;
            assert_eq!(unzigzag(get_uvarint(&mut rest).unwrap()), v);
            assert!(rest.is_empty());
        }
        assert!(get_uvarint(&mut &[0x80u8][..]).is_err(), "truncated");
        assert!(get_uvarint(&mut &[0xffu8; 11][..]).is_err(), "overlong");
    }
}
