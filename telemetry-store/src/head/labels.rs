//! A series' label set in one shared allocation: `name 0xff value 0xfe`
//! repeated, sorted by name. A `Labels` costs a `String` pair per label
//! (two allocations and 48 bytes of headers each); for millions of series
//! that is most of the head's memory. 0xfe and 0xff never occur in UTF-8,
//! so they cannot collide with label bytes.
//!
//! The head and every block that hold a series share one copy of its
//! label set through the [`LabelInterner`]: most series are in all of
//! them, and a copy each made blocks cost as much memory as the head.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use conduit_api::Labels;

use crate::series::hash::FastBuild;
use crate::series::labelset::{LabelLookup, LabelPairs};

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct CompactLabels(Arc<[u8]>);

const NAME_END: u8 = 0xff;
const VALUE_END: u8 = 0xfe;

impl CompactLabels {
    /// The compact form itself.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The (name, value) pairs, in name order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        pairs(&self.0)
    }

    /// The shared label type, allocated on demand (queries, blocks).
    pub(crate) fn labels(&self) -> Labels {
        Labels::try_from_pairs(self.pairs().map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        }))
        .expect("built from a valid label set")
    }

    /// The value of label `name`, without decoding the others.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let (_, value) = self.pairs().find(|(n, _)| *n == name.as_bytes())?;
        std::str::from_utf8(value).ok()
    }
}

/// The (name, value) pairs of a compact form, in its order.
pub(crate) fn pairs(encoded: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    let mut rest = encoded;
    std::iter::from_fn(move || {
        let n = rest.iter().position(|&b| b == NAME_END)?;
        let (name, tail) = (&rest[..n], &rest[n + 1..]);
        let v = tail.iter().position(|&b| b == VALUE_END)?;
        rest = &tail[v + 1..];
        Some((name, &tail[..v]))
    })
}

/// The compact form of a valid label set.
pub(crate) fn encode(labels: &(impl LabelPairs + ?Sized)) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_raw_into(
        labels
            .label_pairs()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        &mut buf,
    );
    buf
}

/// Appends the compact form of name-sorted raw pairs to `buf`, so a
/// lookup compares one byte string. Returns false, leaving the appended
/// bytes unusable, when a name or value holds a 0xfe/0xff byte: such bytes
/// are not UTF-8, and in the compact form they could pass for separators
/// of a different, valid label set.
pub(crate) fn encode_raw_into<'a>(
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    buf: &mut Vec<u8>,
) -> bool {
    let start = buf.len();
    let mut separators = 0;
    for (name, value) in pairs {
        buf.extend_from_slice(name);
        buf.push(NAME_END);
        buf.extend_from_slice(value);
        buf.push(VALUE_END);
        separators += 2;
    }
    separator_bytes(&buf[start..]) == separators
}

/// How many bytes are 0xfe or 0xff. Counted in byte-wide lanes, 255 bytes
/// at most at a time, so the count vectorizes at full width: a count in
/// `usize` lanes was about half of the encoding's time.
fn separator_bytes(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from(b >= VALUE_END))))
        .sum()
}

/// Hashes and compares as its bytes, so the interner finds a label set
/// from an encoded buffer without allocating a `CompactLabels`.
impl Borrow<[u8]> for CompactLabels {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// One [`CompactLabels`] per distinct label set among the head and the
/// open blocks.
#[derive(Default)]
pub(crate) struct LabelInterner {
    sets: Mutex<HashSet<CompactLabels, FastBuild>>,
}

impl LabelInterner {
    /// The shared copy of `labels`, made on first use.
    pub(crate) fn intern(&self, labels: &(impl LabelPairs + ?Sized)) -> CompactLabels {
        self.intern_encoded(encode(labels))
    }

    /// The shared copy of a label set already in compact form.
    pub(crate) fn intern_encoded(&self, buf: Vec<u8>) -> CompactLabels {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = sets.get(buf.as_slice()) {
            return found.clone();
        }
        let new = CompactLabels(buf.into());
        sets.insert(new.clone());
        new
    }

    /// Forgets the label sets that only the interner still holds: their
    /// series left the head and every block.
    pub(crate) fn purge(&self) {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.retain(|l| Arc::strong_count(&l.0) > 1);
        sets.shrink_to_fit();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl std::fmt::Debug for CompactLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.labels())
    }
}

impl LabelLookup for CompactLabels {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

impl LabelPairs for CompactLabels {
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        // Built only from `str`s, so always UTF-8.
        let text = |b| std::str::from_utf8(b).unwrap_or_default();
        self.pairs().map(move |(n, v)| (text(n), text(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_compares_as_bytes() {
        let l = Labels::try_from_pairs([("__name__", "x"), ("a", "é"), ("empty_name_next", "v")])
            .unwrap();
        let interner = LabelInterner::default();
        let c = interner.intern(&l);
        assert_eq!(c.labels(), l);
        assert_eq!(c.bytes(), encode(&l));
        let other = Labels::try_from_pairs([("__name__", "x"), ("a", "e")]).unwrap();
        assert_ne!(c.bytes(), encode(&other));
        let raw = [
            ("__name__".as_bytes(), "x".as_bytes()),
            (b"a", "é".as_bytes()),
            (b"empty_name_next", b"v"),
        ];
        let mut buf = Vec::new();
        assert!(encode_raw_into(raw.iter().copied(), &mut buf));
        assert_eq!(buf, c.bytes(), "raw pairs encode as the label set does");
        assert_eq!(c.get("a"), Some("é"));
        assert_eq!(c.get("empty_name_next"), Some("v"));
        assert_eq!(c.get("__name__"), Some("x"));
        assert_eq!(c.get("b"), None);
    }

    /// Blocks are written, and compacted by merging, in `Labels` order;
    /// the head sorts its compact sets pair by pair instead.
    #[test]
    fn compact_sets_sort_as_labels_do() {
        let sets = [
            vec![("a", "x")],
            vec![("ab", "x")],
            vec![("a", "x"), ("b", "")],
            vec![("a", "x"), ("b", "y")],
            vec![("a", "xy")],
            vec![("a", ""), ("c", "z")],
            vec![("__name__", "up"), ("job", "a")],
            vec![("__name__", "up_total")],
        ];
        let interner = LabelInterner::default();
        let mut labels: Vec<Labels> = sets
            .iter()
            .map(|s| Labels::try_from_pairs(s.iter().copied()).unwrap())
            .collect();
        let mut compact: Vec<CompactLabels> = labels.iter().map(|l| interner.intern(l)).collect();
        labels.sort();
        compact.sort_by(|a, b| a.pairs().cmp(b.pairs()));
        let back: Vec<Labels> = compact.iter().map(CompactLabels::labels).collect();
        assert_eq!(back, labels);
    }

    /// 0xfe/0xff in raw input could spell another set's separators:
    /// {a="b\xfec\xffd"} must not pass for {a="b", c="d"}.
    #[test]
    fn raw_pairs_with_separator_bytes_are_not_encoded() {
        let valid = Labels::try_from_pairs([("a", "b"), ("c", "d")]).unwrap();
        let forged: [(&[u8], &[u8]); 1] = [(b"a", b"b\xfec\xffd")];
        let valid_form = encode(&valid);
        let mut buf = Vec::new();
        assert!(!encode_raw_into(forged.iter().copied(), &mut buf));
        assert_eq!(
            buf, valid_form,
            "the forged set spells the valid one: only the refusal keeps them apart"
        );
    }

    /// The count runs in byte lanes, 255 bytes at a time: over longer
    /// label sets it must neither wrap nor miss a chunk's tail.
    #[test]
    fn separator_bytes_are_counted_across_chunks() {
        let mixed: Vec<u8> = (0..2000u32)
            .map(|i| match i % 5 {
                0 => 0xfe,
                1 => 0xff,
                _ => b'a',
            })
            .collect();
        for len in [0, 1, 254, 255, 256, 511, 2000] {
            let bytes = &mixed[..len];
            let naive = bytes.iter().filter(|&&b| b >= VALUE_END).count();
            assert_eq!(separator_bytes(bytes), naive, "{len} bytes");
        }
        assert_eq!(separator_bytes(&[0xff; 1000]), 1000);
        let mut buf = b"kept".to_vec();
        let long = "v".repeat(700);
        let pairs = [(&b"a"[..], long.as_bytes()), (b"b", b"x")];
        assert!(encode_raw_into(pairs.iter().copied(), &mut buf));
        assert!(buf.starts_with(b"kept"), "appends to what is there");
        let forged = [(&b"a"[..], &b"\xfe"[..])];
        assert!(!encode_raw_into(forged.iter().copied(), &mut buf));
    }

    #[test]
    fn interned_label_sets_are_shared_until_unused() {
        let interner = LabelInterner::default();
        let l = Labels::try_from_pairs([("__name__", "x"), ("pod", "p1")]).unwrap();
        let head = interner.intern(&l);
        let block = interner.intern(&l);
        assert!(Arc::ptr_eq(&head.0, &block.0), "one copy for both");
        assert_eq!(block.labels(), l);
        let other = interner.intern(&Labels::try_from_pairs([("__name__", "y")]).unwrap());
        assert_eq!(interner.len(), 2);
        drop(other);
        interner.purge();
        assert_eq!(interner.len(), 1, "an unused set is forgotten");
        drop((head, block));
        interner.purge();
        assert_eq!(interner.len(), 0);
    }
}
