//! Time ranges as people type them: `--since 2h --until 1h` (how long
//! ago) or RFC 3339 times (`2026-12-07T13:00:00Z`). The CLI's `--since` and
//! `--until`, the controller's HTTP API (`?since=&until=`) and the
//! dashboard's URL spell them the same way, so a value copied from one works
//! in the others; the store's HTTP API reads RFC 3339 with the same parser.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::duration::{self, MIN_WINDOW};

/// One end of a time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimePoint {
    /// This long before now.
    Ago(Duration),
    /// A Unix time in milliseconds.
    At(i64),
}

impl FromStr for TimePoint {
    type Err = TimePointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(ms) = parse_rfc3339_ms(s) {
            return Ok(Self::At(ms));
        }
        duration::parse(s)
            .map(Self::Ago)
            .map_err(|_| TimePointError(s.to_string()))
    }
}

impl TimePoint {
    /// The Unix time in milliseconds this point names at `now_ms`.
    pub fn at(self, now_ms: i64) -> i64 {
        match self {
            Self::Ago(d) => now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Self::At(ms) => ms,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid time {0:?}: use how long ago (e.g. 2h, 30m) or an RFC 3339 time (e.g. 2026-12-07T13:00:00Z)"
)]
pub struct TimePointError(String);

/// A window `(start, end]` in Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// How far past the reader's clock an end may be: the CLI, the
/// controller and the store read different clocks.
pub const CLOCK_SKEW_MS: i64 = 2_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    #[error(
        "the window ends at {end}, in the future (now is {now}): use an earlier --until, or none to end the window now"
    )]
    Future { end: Rfc3339, now: Rfc3339 },
    #[error(
        "the window starts at {start}, not before its end at {end}: --since must be earlier than --until"
    )]
    Empty { start: Rfc3339, end: Rfc3339 },
    #[error("the window from {start} to {end} is shorter than 1s, the proxies' reporting interval")]
    TooShort { start: Rfc3339, end: Rfc3339 },
    #[error(
        "the window starts at {start}, beyond the store's retention of {retention} (it keeps data from {oldest} on): start the window later, or keep data longer with the store's --retention-time"
    )]
    BeyondRetention {
        start: Rfc3339,
        oldest: Rfc3339,
        retention: String,
    },
}

impl TimeRange {
    /// The window from `since` (default: `window` before its end) to
    /// `until` (default: now), checked.
    pub fn resolve(
        since: Option<TimePoint>,
        until: Option<TimePoint>,
        window: Duration,
        now_ms: i64,
    ) -> Result<Self, RangeError> {
        let end_ms = until.map_or(now_ms, |u| u.at(now_ms));
        let start_ms = since.map_or_else(|| TimePoint::Ago(window).at(end_ms), |s| s.at(now_ms));
        let range = Self { start_ms, end_ms };
        range.check(now_ms)?;
        Ok(range)
    }

    /// Refuses windows that end in the future, are empty or shorter than
    /// the reporting interval.
    pub fn check(&self, now_ms: i64) -> Result<(), RangeError> {
        let (start, end) = (Rfc3339(self.start_ms), Rfc3339(self.end_ms));
        if self.end_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
            return Err(RangeError::Future {
                end,
                now: Rfc3339(now_ms),
            });
        }
        if self.start_ms >= self.end_ms {
            return Err(RangeError::Empty { start, end });
        }
        if self.end_ms - self.start_ms < MIN_WINDOW.as_millis() as i64 {
            return Err(RangeError::TooShort { start, end });
        }
        Ok(())
    }

    /// Refuses windows that start before the oldest data a store keeping
    /// `retention_ms` can hold.
    pub fn check_retention(&self, retention_ms: i64, now_ms: i64) -> Result<(), RangeError> {
        let oldest = now_ms.saturating_sub(retention_ms);
        if self.start_ms >= oldest {
            return Ok(());
        }
        Err(RangeError::BeyondRetention {
            start: Rfc3339(self.start_ms),
            oldest: Rfc3339(oldest),
            retention: duration::format(Duration::from_millis(
                u64::try_from(retention_ms).unwrap_or(0),
            )),
        })
    }

    pub fn len(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.end_ms - self.start_ms).unwrap_or(0))
    }
}

/// A Unix time in milliseconds, printed as RFC 3339 in UTC
/// (`2026-12-07T13:00:00Z`, with milliseconds when it has any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1000);
        let ms = self.0.rem_euclid(1000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        )?;
        if ms > 0 {
            write!(f, ".{ms:03}")?;
        }
        f.write_str("Z")
    }
}

/// An RFC 3339 time (`2026-12-07T13:00:00Z`, `…T14:00:00.5+01:00`) in
/// Unix milliseconds; `None` when `s` is not one.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 60 + rest[4..6].parse::<i64>().ok()?)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number: (year, month 1-12, day 1-31).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const H: i64 = 3_600_000;

    #[test]
    fn points_are_how_long_ago_or_rfc3339() {
        assert_eq!("2h".parse(), Ok(TimePoint::Ago(Duration::from_secs(7200))));
        assert_eq!(
            "2023-11-14T22:13:20Z".parse(),
            Ok(TimePoint::At(1_700_000_000_000))
        );
        assert_eq!(
            "2023-11-14T23:13:20.5+01:00".parse(),
            Ok(TimePoint::At(1_700_000_000_500))
        );
        let err = "yesterday".parse::<TimePoint>().unwrap_err().to_string();
        assert!(err.contains("RFC 3339") && err.contains("2h"), "{err}");
        assert_eq!(TimePoint::Ago(Duration::from_secs(3600)).at(NOW), NOW - H);
    }

    #[test]
    fn ranges_default_to_a_window_ending_now() {
        let r = TimeRange::resolve(None, None, Duration::from_secs(60), NOW).unwrap();
        assert_eq!((r.start_ms, r.end_ms), (NOW - 60_000, NOW));
        let ago = |h: u64| Some(TimePoint::Ago(Duration::from_secs(h * 3600)));
        let r = TimeRange::resolve(ago(2), ago(1), Duration::from_secs(60), NOW).unwrap();
        assert_eq!((r.start_ms, r.end_ms), (NOW - 2 * H, NOW - H));
        // --since alone runs to now; --until alone takes the window before it.
        let r = TimeRange::resolve(ago(2), None, Duration::from_secs(60), NOW).unwrap();
        assert_eq!((r.start_ms, r.end_ms), (NOW - 2 * H, NOW));
        let r = TimeRange::resolve(None, ago(1), Duration::from_secs(60), NOW).unwrap();
        assert_eq!((r.start_ms, r.end_ms), (NOW - H - 60_000, NOW - H));
    }

    #[test]
    fn bad_ranges_say_what_to_do() {
        let at = |ms| Some(TimePoint::At(ms));
        let w = Duration::from_secs(60);
        let err = TimeRange::resolve(at(NOW - H), at(NOW - 2 * H), w, NOW).unwrap_err();
        assert!(matches!(err, RangeError::Empty { .. }));
        assert!(
            err.to_string()
                .contains("--since must be earlier than --until")
        );
        let err = TimeRange::resolve(None, at(NOW + H), w, NOW).unwrap_err();
        assert!(err.to_string().contains("in the future"), "{err}");
        assert!(TimeRange::resolve(None, at(NOW + CLOCK_SKEW_MS), w, NOW).is_ok());
        let err = TimeRange::resolve(at(NOW - 500), None, w, NOW).unwrap_err();
        assert!(matches!(err, RangeError::TooShort { .. }));
        let week = 7 * 24 * H;
        let old = TimeRange::resolve(at(NOW - 8 * 24 * H), None, w, NOW).unwrap();
        let err = old.check_retention(week, NOW).unwrap_err().to_string();
        assert!(
            err.contains("retention of 7d") && err.contains("--retention-time"),
            "{err}"
        );
        assert!(
            TimeRange::resolve(at(NOW - 6 * 24 * H), None, w, NOW)
                .unwrap()
                .check_retention(week, NOW)
                .is_ok()
        );
    }

    #[test]
    fn rfc3339_prints_what_it_parses() {
        for ms in [0, 1_700_000_000_000, 1_700_000_000_500, -86_400_001] {
            let text = Rfc3339(ms).to_string();
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(
            Rfc3339(1_700_000_000_000).to_string(),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-800_000, -1, 0, 1, 19_675, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_676), (2023, 11, 15));
    }
}
