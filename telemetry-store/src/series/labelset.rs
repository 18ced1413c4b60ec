//! Label-set edits PromQL needs (drop the metric name, keep or drop a
//! grouping) on top of the shared [`Labels`] type, which stays sorted and
//! valid by construction.

use conduit_api::Labels;

use super::METRIC_NAME;

/// One label's value, from whichever form a label set is kept in.
pub(crate) trait LabelLookup {
    fn label(&self, name: &str) -> Option<&str>;
}

impl LabelLookup for Labels {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

/// A label set's (name, value) pairs in name order, from whichever form
/// it is kept in: what indexing and interning read.
pub(crate) trait LabelPairs: LabelLookup {
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl LabelPairs for Labels {
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|l| (l.name.as_str(), l.value.as_str()))
    }
}

/// Pairs already checked to be a valid label set (sorted, unique, valid
/// names), borrowed from a buffer being decoded.
impl LabelLookup for [(&str, &str)] {
    fn label(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

impl LabelPairs for [(&str, &str)] {
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().copied()
    }
}

pub(crate) trait LabelsExt {
    /// The set without the named labels.
    fn without(&self, names: &[&str]) -> Labels;
    /// The set with only the named labels.
    fn keep(&self, names: &[&str]) -> Labels;
    /// The set with `name` set to `value` (removed when `value` is empty).
    fn with(&self, name: &str, value: &str) -> Labels;
    fn metric_name(&self) -> Option<&str>;
    fn without_metric_name(&self) -> Labels {
        self.without(&[METRIC_NAME])
    }
}

impl LabelsExt for Labels {
    fn without(&self, names: &[&str]) -> Labels {
        rebuild(self, |n| !names.contains(&n))
    }

    fn keep(&self, names: &[&str]) -> Labels {
        rebuild(self, |n| names.contains(&n))
    }

    fn with(&self, name: &str, value: &str) -> Labels {
        let mut out = self.clone();
        out.insert(name, value);
        out
    }

    fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }
}

fn rebuild(labels: &Labels, keep: impl Fn(&str) -> bool) -> Labels {
    Labels::try_from_pairs(
        labels
            .iter()
            .filter(|l| keep(&l.name))
            .map(|l| (l.name.as_str(), l.value.as_str())),
    )
    .expect("a subset of a valid label set is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_the_set_sorted() {
        let l = Labels::try_from_pairs([("__name__", "x"), ("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(l.without_metric_name().to_string(), r#"{a="1", b="2"}"#);
        assert_eq!(l.keep(&["b"]).to_string(), r#"{b="2"}"#);
        assert_eq!(l.with("a", "").to_string(), r#"{__name__="x", b="2"}"#);
        assert_eq!(l.metric_name(), Some("x"));
    }
}
