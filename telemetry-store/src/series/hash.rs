//! Fast hashing of label sets and series refs, keyed per process.
//!
//! SipHash costs a third of the ingest path, so the maps of the head, the
//! label index and the interner use a multiply-and-fold hash instead. Label
//! sets come from peers, so the hash must not be predictable: with a fixed
//! function (FxHash, as this was) anyone can compute label sets that share
//! a hash and turn every lookup of theirs into a scan. Each process draws
//! its own keys, and every word is folded through a full 64×64→128-bit
//! product with a secret factor, so which inputs collide depends on keys
//! the peer never sees (the construction of foldhash and aHash's fallback).

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// The process' secret keys: the initial state and the multiplier.
fn keys() -> (u64, u64) {
    static KEYS: OnceLock<(u64, u64)> = OnceLock::new();
    *KEYS.get_or_init(|| {
        // std's RandomState is seeded from the OS' random source.
        let random = |salt: u64| std::collections::hash_map::RandomState::new().hash_one(salt);
        // An even or zero factor would throw away bits of every word.
        (random(1), random(2) | 1)
    })
}

/// The high and low halves of the 128-bit product, folded.
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Fed eight bytes at a time.
#[derive(Clone, Copy)]
pub(crate) struct FastHasher {
    state: u64,
    factor: u64,
}

impl Default for FastHasher {
    fn default() -> Self {
        let (state, factor) = keys();
        Self { state, factor }
    }
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.state = fold_mul(self.state ^ word, self.factor);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut tail = [0u8; 8];
            tail[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn finish(&self) -> u64 {
        // Low bits (stripe and table slot) must depend on every byte.
        fold_mul(self.state, self.factor.rotate_left(32) | 1)
    }
}

/// For `HashMap`s keyed by refs, precomputed hashes or label sets.
pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(b: &[u8]) -> u64 {
        let mut h = FastHasher::default();
        h.write(b);
        h.finish()
    }

    #[test]
    fn distinct_inputs_hash_apart() {
        let inputs: [&[u8]; 5] = [b"", b"a", b"a\0", b"abcdefgh", b"abcdefghi"];
        let hashes: std::collections::HashSet<u64> = inputs.iter().map(|b| hash(b)).collect();
        assert_eq!(hashes.len(), inputs.len());
    }

    /// FxHash, as the store used before, maps these two label-like inputs
    /// (the first word's top bit flipped, the second word's bit 4 flipped)
    /// to one hash whatever its seed: `(x ^ 2^63) * K = x * K + 2^63`, and
    /// rotating by 5 moves that bit to bit 4, where the next word cancels
    /// it. The keyed fold does not carry such a difference through.
    #[test]
    fn fxhash_differentials_do_not_collide() {
        let a = *b"abcdefg\x01ijklmnop";
        let mut b = a;
        b[7] ^= 0x80;
        b[8] ^= 0x10;
        let fx = |bytes: &[u8]| {
            const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
            bytes.chunks(8).fold(0u64, |h, c| {
                let w = u64::from_le_bytes(c.try_into().unwrap());
                (h.rotate_left(5) ^ w).wrapping_mul(K)
            })
        };
        assert_eq!(fx(&a), fx(&b), "the construction collides FxHash");
        assert_ne!(hash(&a), hash(&b));
    }
}
