//! A head series' label set in one allocation: `name 0xff value 0xfe`
//! repeated, sorted by name. A `Labels` costs a `String` pair per label
//! (two allocations and 48 bytes of headers each); for millions of series
//! that is most of the head's memory. 0xfe and 0xff never occur in UTF-8,
//! so they cannot collide with label bytes.

use conduit_api::Labels;

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct CompactLabels(Box<[u8]>);

const NAME_END: u8 = 0xff;
const VALUE_END: u8 = 0xfe;

impl CompactLabels {
    pub(crate) fn new(labels: &Labels) -> Self {
        let mut buf = Vec::with_capacity(
            labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 2)
                .sum(),
        );
        for l in labels.iter() {
            buf.extend_from_slice(l.name.as_bytes());
            buf.push(NAME_END);
            buf.extend_from_slice(l.value.as_bytes());
            buf.push(VALUE_END);
        }
        Self(buf.into_boxed_slice())
    }

    /// The (name, value) pairs, in name order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let n = rest.iter().position(|&b| b == NAME_END)?;
            let (name, tail) = (&rest[..n], &rest[n + 1..]);
            let v = tail.iter().position(|&b| b == VALUE_END)?;
            rest = &tail[v + 1..];
            Some((name, &tail[..v]))
        })
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

    pub(crate) fn eq_labels(&self, other: &Labels) -> bool {
        self.eq_pairs(
            other
                .iter()
                .map(|l| (l.name.as_bytes(), l.value.as_bytes())),
        )
    }

    pub(crate) fn eq_pairs<'a>(
        &self,
        mut other: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> bool {
        let mut mine = self.pairs();
        loop {
            match (mine.next(), other.next()) {
                (None, None) => return true,
                (Some(a), Some(b)) if a == b => {}
                _ => return false,
            }
        }
    }
}

impl std::fmt::Debug for CompactLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.labels())
    }
}

impl crate::series::labelset::LabelLookup for CompactLabels {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_compares_without_allocating_labels() {
        let l = Labels::try_from_pairs([("__name__", "x"), ("a", "é"), ("empty_name_next", "v")])
            .unwrap();
        let c = CompactLabels::new(&l);
        assert_eq!(c.labels(), l);
        assert!(c.eq_labels(&l));
        let other = Labels::try_from_pairs([("__name__", "x"), ("a", "e")]).unwrap();
        assert!(!c.eq_labels(&other));
        assert!(!CompactLabels::new(&other).eq_labels(&l));
        assert_eq!(c.get("a"), Some("é"));
        assert_eq!(c.get("empty_name_next"), Some("v"));
        assert_eq!(c.get("__name__"), Some("x"));
        assert_eq!(c.get("b"), None);
    }
}
