//! Sorting table rows by a column.
//!
//! A row without a value (a Deployment that served nothing) goes last
//! whichever way the column is sorted: flipping from "highest RPS first"
//! to "lowest first" should show the quietest *active* Deployment, not a
//! list of idle ones.

use std::cmp::Ordering;

/// Which way a column is sorted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

impl Direction {
    pub fn flip(self) -> Self {
        match self {
            Self::Ascending => Self::Descending,
            Self::Descending => Self::Ascending,
        }
    }

    /// As it appears in a URL (`?dir=asc`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ascending => "asc",
            Self::Descending => "desc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "asc" => Some(Self::Ascending),
            "desc" => Some(Self::Descending),
            _ => None,
        }
    }
}

/// Compares optional numbers: present values in `direction`, missing
/// values (and NaN) after every present one.
pub fn numbers(a: Option<f64>, b: Option<f64>, direction: Direction) -> Ordering {
    let a = a.filter(|v| !v.is_nan());
    let b = b.filter(|v| !v.is_nan());
    match (a, b) {
        (Some(a), Some(b)) => directed(a.total_cmp(&b), direction),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Compares text case-insensitively in `direction`.
pub fn text(a: &str, b: &str, direction: Direction) -> Ordering {
    let by_lower = a
        .chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase));
    directed(by_lower.then_with(|| a.cmp(b)), direction)
}

fn directed(o: Ordering, direction: Direction) -> Ordering {
    match direction {
        Direction::Ascending => o,
        Direction::Descending => o.reverse(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_sort_last_both_ways() {
        let mut v = [Some(2.0), None, Some(1.0), Some(f64::NAN), Some(3.0)];
        v.sort_by(|a, b| numbers(*a, *b, Direction::Descending));
        assert_eq!(v[..3], [Some(3.0), Some(2.0), Some(1.0)]);
        assert!(v[3..].iter().all(|x| x.is_none_or(f64::is_nan)));

        v.sort_by(|a, b| numbers(*a, *b, Direction::Ascending));
        assert_eq!(v[..3], [Some(1.0), Some(2.0), Some(3.0)]);
        assert!(v[3..].iter().all(|x| x.is_none_or(f64::is_nan)));
    }

    #[test]
    fn text_ignores_case_but_is_total() {
        let mut v = ["web", "Emoji", "emoji", "voting"];
        v.sort_by(|a, b| text(a, b, Direction::Ascending));
        assert_eq!(v, ["Emoji", "emoji", "voting", "web"]);
        v.sort_by(|a, b| text(a, b, Direction::Descending));
        assert_eq!(v, ["web", "voting", "emoji", "Emoji"]);
    }

    #[test]
    fn directions_round_trip_through_urls() {
        for d in [Direction::Ascending, Direction::Descending] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
            assert_eq!(d.flip().flip(), d);
        }
        assert_eq!(Direction::parse("sideways"), None);
    }
}
