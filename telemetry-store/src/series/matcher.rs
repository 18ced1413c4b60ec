//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus' semantics: a
//! missing label has the empty value, and regular expressions are fully
//! anchored.

use regex::Regex;

#[derive(Clone, Debug)]
pub(crate) enum MatchKind {
    Equal,
    NotEqual,
    Regex(Regex),
    NotRegex(Regex),
}

#[derive(Clone, Debug)]
pub(crate) struct Matcher {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) kind: MatchKind,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {name:?}: {reason}")]
pub(crate) struct BadRegex {
    name: String,
    pattern: String,
    reason: String,
}

impl Matcher {
    pub(crate) fn equal(name: &str, value: &str) -> Self {
        Self {
            name: name.to_string(),
            value: value.to_string(),
            kind: MatchKind::Equal,
        }
    }

    pub(crate) fn not_equal(name: &str, value: &str) -> Self {
        Self {
            kind: MatchKind::NotEqual,
            ..Self::equal(name, value)
        }
    }

    pub(crate) fn regex(name: &str, pattern: &str, negate: bool) -> Result<Self, BadRegex> {
        let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| BadRegex {
            name: name.to_string(),
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            name: name.to_string(),
            value: pattern.to_string(),
            kind: if negate {
                MatchKind::NotRegex(re)
            } else {
                MatchKind::Regex(re)
            },
        })
    }

    /// Converts the parser's matcher, whose regex is already anchored.
    pub(crate) fn from_promql(m: &promql_parser::label::Matcher) -> Self {
        use promql_parser::label::MatchOp;
        let kind = match &m.op {
            MatchOp::Equal => MatchKind::Equal,
            MatchOp::NotEqual => MatchKind::NotEqual,
            MatchOp::Re(re) => MatchKind::Regex(re.clone()),
            MatchOp::NotRe(re) => MatchKind::NotRegex(re.clone()),
        };
        Self {
            name: m.name.clone(),
            value: m.value.clone(),
            kind,
        }
    }

    /// Whether a label value (empty when the label is missing) matches.
    pub(crate) fn matches(&self, value: &str) -> bool {
        match &self.kind {
            MatchKind::Equal => self.value == value,
            MatchKind::NotEqual => self.value != value,
            MatchKind::Regex(re) => re.is_match(value),
            MatchKind::NotRegex(re) => !re.is_match(value),
        }
    }

    pub(crate) fn matches_labels(&self, labels: &conduit_api::Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or_default())
    }

    /// Only an equality matcher with a non-empty value pins a label, which
    /// is what `absent()` turns into output labels.
    pub(crate) fn is_equal(&self) -> bool {
        matches!(self.kind, MatchKind::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::Labels;

    #[test]
    fn missing_label_is_the_empty_value() {
        let l = Labels::try_from_pairs([("a", "1")]).unwrap();
        assert!(Matcher::not_equal("b", "x").matches_labels(&l));
        assert!(Matcher::equal("b", "").matches_labels(&l));
        assert!(!Matcher::equal("a", "").matches_labels(&l));
        assert!(Matcher::regex("b", ".*", false).unwrap().matches_labels(&l));
        assert!(!Matcher::regex("b", ".+", false).unwrap().matches_labels(&l));
    }

    #[test]
    fn regexes_are_anchored() {
        let m = Matcher::regex("a", "fo", false).unwrap();
        assert!(!m.matches("foo"));
        assert!(Matcher::regex("a", "fo+", false).unwrap().matches("foo"));
        assert!(Matcher::regex("a", "fo|ba", true).unwrap().matches("foo"));
        assert!(Matcher::regex("a", "(", false).is_err());
    }
}
