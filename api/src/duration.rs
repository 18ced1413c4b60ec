//! Durations as people type them: `500ms`, `30s`, `1m`, `1h30m`, `2d`.
//!
//! The same spelling is used by `conduit stat -t`, the controller's HTTP API
//! (`?window=1m`) and the static discovery file (timeouts), so a value
//! copied from one works in the others.

use std::fmt;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration: use e.g. 30s, 1m, 1h30m")]
    Empty,
    #[error(
        "invalid duration {0:?}: use a number and a unit (ms, s, m, h, d), e.g. 30s, 1m, 1h30m"
    )]
    Invalid(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a sequence of `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow(text.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        // In milliseconds as u128, so one part may be as large as a sum of
        // parts (what `format` prints must parse).
        let part = from_millis(u128::from(value) * unit_ms)
            .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
    }
    Ok(total)
}

fn from_millis(ms: u128) -> Option<Duration> {
    let secs = u64::try_from(ms / 1000).ok()?;
    Some(Duration::new(secs, (ms % 1000) as u32 * 1_000_000))
}

/// Prints a duration in the largest units that represent it exactly, the
/// inverse of [`parse`]: `90s` prints as `1m30s`, `1500ms` as `1s500ms`.
pub fn format(d: Duration) -> String {
    Display(d).to_string()
}

struct Display(Duration);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

/// The window of a metrics query (`stat -t`, `?window=`): at least one
/// second, since the proxies report once per second, and at most a day.
pub fn parse_window(text: &str) -> Result<Duration, WindowError> {
    let d = parse(text)?;
    if d < MIN_WINDOW {
        return Err(WindowError::TooShort(text.to_string()));
    }
    if d > MAX_WINDOW {
        return Err(WindowError::TooLong(text.to_string()));
    }
    Ok(d)
}

pub const MIN_WINDOW: Duration = Duration::from_secs(1);
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error(transparent)]
    Invalid(#[from] DurationError),
    #[error("window {0:?} is shorter than 1s, the proxies' reporting interval")]
    TooShort(String),
    #[error("window {0:?} is longer than the maximum of 24h")]
    TooLong(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["1", "m", "1x", "-1m", "1.5m", "1 m", "m1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(
            parse("99999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn format_is_the_inverse_of_parse() {
        for text in ["0s", "1s500ms", "1m30s", "1h", "2d3h", "250ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
        // Found by the duration fuzz target: a sum of parts printed as one
        // part larger than any single part used to be allowed.
        let sum = parse("4294967295d294967295d").unwrap();
        assert_eq!(format(sum), "4589934590d");
        assert_eq!(parse("4589934590d"), Ok(sum));
    }

    #[test]
    fn windows_are_bounded() {
        assert_eq!(parse_window("1m"), Ok(Duration::from_secs(60)));
        assert!(matches!(
            parse_window("500ms"),
            Err(WindowError::TooShort(_))
        ));
        assert!(matches!(parse_window("2d"), Err(WindowError::TooLong(_))));
        assert!(matches!(parse_window("x"), Err(WindowError::Invalid(_))));
    }
}
