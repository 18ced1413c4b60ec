//! Label sets: what identifies a metric series.
//!
//! A [`Labels`] is kept sorted by name with unique names, so two sets with
//! the same pairs compare, hash and serialize equal whatever order they were
//! built in; the store relies on that to map a set to one series.

use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg(feature = "proto")]
use crate::proto::mesh::v1 as pb;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Labels(Vec<Label>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
    #[error("label {0:?} appears more than once")]
    Duplicate(String),
}

impl Labels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from pairs, rejecting invalid and repeated names.
    pub fn try_from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Result<Self, LabelError>
    where
        N: Into<String>,
        V: Into<String>,
    {
        let mut labels: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .collect();
        if let Some(bad) = labels.iter().find(|l| !is_valid_name(&l.name)) {
            return Err(LabelError::InvalidName(bad.name.clone()));
        }
        labels.sort();
        if let Some(w) = labels.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(LabelError::Duplicate(w[0].name.clone()));
        }
        Ok(Self(labels))
    }

    /// Sets `name` to `value`, replacing any previous value. Empty values
    /// remove the label, as in Prometheus.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        debug_assert!(is_valid_name(&name), "label name {name:?}");
        match self.0.binary_search_by(|l| l.name.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label { name, value }),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(feature = "proto")]
    pub fn to_proto(&self) -> Vec<pb::Label> {
        self.0
            .iter()
            .map(|l| pb::Label {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect()
    }

    #[cfg(feature = "proto")]
    pub fn from_proto(labels: Vec<pb::Label>) -> Result<Self, LabelError> {
        Self::try_from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
    }
}

/// Prometheus' label name rule.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A label given as `NAME=VALUE` (e.g. an external label of remote
/// write), its name checked.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(format!("{s:?}: expected NAME=VALUE"));
    };
    if !is_valid_name(name) {
        return Err(format!("{s:?}: {name:?} is not a valid label name"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Prints like Prometheus: `{a="1", b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_a_valid_name_and_any_value() {
        assert_eq!(
            parse_pair("replica=$(POD_NAME)=x"),
            Ok(("replica".into(), "$(POD_NAME)=x".into()))
        );
        assert_eq!(
            parse_pair("__replica__="),
            Ok(("__replica__".into(), "".into()))
        );
        assert!(
            parse_pair("replica")
                .unwrap_err()
                .contains("expected NAME=VALUE")
        );
        assert!(
            parse_pair("a-b=1")
                .unwrap_err()
                .contains("not a valid label name")
        );
    }

    #[test]
    fn order_of_construction_does_not_matter() {
        let a = Labels::try_from_pairs([("b", "2"), ("a", "1")]).unwrap();
        let mut b = Labels::new();
        b.insert("a", "1");
        b.insert("b", "2");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), r#"{a="1", b="2"}"#);
        assert_eq!(a.get("b"), Some("2"));
    }

    #[test]
    fn rejects_invalid_and_duplicate_names() {
        assert_eq!(
            Labels::try_from_pairs([("1x", "v")]),
            Err(LabelError::InvalidName("1x".into()))
        );
        assert_eq!(
            Labels::try_from_pairs([("a", "1"), ("a", "2")]),
            Err(LabelError::Duplicate("a".into()))
        );
    }

    #[test]
    fn empty_value_removes() {
        let mut l = Labels::try_from_pairs([("a", "1")]).unwrap();
        l.insert("a", "");
        assert!(l.is_empty());
    }

    #[cfg(feature = "proto")]
    #[test]
    fn proto_round_trip() {
        let l = Labels::try_from_pairs([("direction", "inbound"), ("deployment", "web")]).unwrap();
        assert_eq!(Labels::from_proto(l.to_proto()), Ok(l));
    }
}
