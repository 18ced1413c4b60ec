//! The scenarios' options: `--flag value` pairs, each number within the
//! bounds the scenario can honour, so a typo or an absurd value is an
//! error naming the flag before minutes of setup, not a silent default.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Walks a scenario's arguments; every error carries the scenario's usage.
pub(crate) struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
    usage: &'a str,
}

impl<'a> Flags<'a> {
    pub(crate) fn new(args: &'a [String], usage: &'a str) -> Self {
        Self {
            args: args.iter(),
            usage,
        }
    }

    /// The next flag, or `None` at the end.
    pub(crate) fn next_flag(&mut self) -> Option<&'a str> {
        self.args.next().map(String::as_str)
    }

    /// The value after `flag`.
    pub(crate) fn value(&mut self, flag: &str) -> Result<&'a str, String> {
        self.args
            .next()
            .map(String::as_str)
            .ok_or_else(|| format!("{flag} needs a value\n{}", self.usage))
    }

    /// The value after `flag`, a number within `bounds`.
    pub(crate) fn number<T>(&mut self, flag: &str, bounds: RangeInclusive<T>) -> Result<T, String>
    where
        T: FromStr + PartialOrd + Display,
    {
        let value = self.value(flag)?;
        self.parse(flag, value, &bounds)
    }

    /// The value after `flag`, a comma-separated list of numbers within
    /// `bounds`, at least one, in ascending order when `ascending`.
    pub(crate) fn numbers<T>(
        &mut self,
        flag: &str,
        bounds: RangeInclusive<T>,
        ascending: bool,
    ) -> Result<Vec<T>, String>
    where
        T: FromStr + PartialOrd + Display,
    {
        let value = self.value(flag)?;
        let list = value
            .split(',')
            .map(|v| self.parse(flag, v.trim(), &bounds))
            .collect::<Result<Vec<T>, String>>()?;
        if list.is_empty() || (ascending && !list.is_sorted()) {
            return Err(format!(
                "invalid {flag} {value:?}: give ascending values\n{}",
                self.usage
            ));
        }
        Ok(list)
    }

    /// The error for a flag the scenario does not know.
    pub(crate) fn unknown(&self, flag: &str) -> String {
        format!("unknown option {flag}\n{}", self.usage)
    }

    fn parse<T>(&self, flag: &str, value: &str, bounds: &RangeInclusive<T>) -> Result<T, String>
    where
        T: FromStr + PartialOrd + Display,
    {
        value
            .parse()
            .ok()
            .filter(|v| bounds.contains(v))
            .ok_or_else(|| {
                format!(
                    "invalid {flag} {value:?}: expected {} to {}\n{}",
                    bounds.start(),
                    bounds.end(),
                    self.usage
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn numbers_outside_their_bounds_are_refused_naming_the_flag() {
        let a = args(&["--rate", "0"]);
        let mut f = Flags::new(&a, "usage");
        assert_eq!(f.next_flag(), Some("--rate"));
        let e = f.number("--rate", 1..=10u32).unwrap_err();
        assert!(e.contains("--rate \"0\": expected 1 to 10"), "{e}");
    }

    #[test]
    fn lists_parse_and_must_ascend_when_asked() {
        let a = args(&["--p", "1,5,9", "--p", "9,1", "--p"]);
        let mut f = Flags::new(&a, "usage");
        f.next_flag();
        assert_eq!(f.numbers("--p", 1..=9usize, true).unwrap(), [1, 5, 9]);
        f.next_flag();
        assert!(f.numbers("--p", 1..=9usize, true).is_err());
        f.next_flag();
        assert!(f.value("--p").unwrap_err().contains("needs a value"));
    }
}
