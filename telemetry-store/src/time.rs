//! Times and durations as Prometheus spells them: `1h30m`, `5m`, `250ms`,
//! `7d`; API timestamps as RFC 3339 or (fractional) Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum TimeError {
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
    #[error("cannot parse {0:?} to a valid timestamp")]
    Timestamp(String),
}

/// Parses a Prometheus duration (`1h30m`, `90s`, `7d`, `1w`, `1y`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_duration_ms(s)
        .map(|ms| Duration::from_millis(ms as u64))
        .map_err(|e| e.to_string())
}

pub(crate) fn parse_duration_ms(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError::Duration(s.to_string());
    if s.is_empty() {
        return Err(err());
    }
    if s == "0" {
        return Ok(0);
    }
    let units: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit = 0usize;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let pos = units.iter().position(|(u, _)| *u == unit).ok_or_else(err)?;
        // Units must go from largest to smallest, each at most once.
        if pos < last_unit || (total > 0 && pos == last_unit) {
            return Err(err());
        }
        last_unit = pos;
        total = n
            .checked_mul(units[pos].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(total)
}

/// An API duration: float seconds (`30`, `1.5`) or a Prometheus duration.
pub(crate) fn parse_api_duration_ms(s: &str) -> Result<i64, TimeError> {
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() > i64::MAX as f64 {
            return Err(TimeError::Duration(s.to_string()));
        }
        return Ok(ms.round() as i64);
    }
    parse_duration_ms(s)
}

/// An API timestamp: float Unix seconds or RFC 3339, to ms.
pub(crate) fn parse_timestamp_ms(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError::Timestamp(s.to_string());
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(err());
        }
        let ms = (secs * 1000.0).round();
        // Prometheus' own min/max times are about ±292 million years.
        if ms.abs() > 9.2e18 {
            return Err(err());
        }
        return Ok(ms as i64);
    }
    parse_rfc3339_ms(s).ok_or_else(err)
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
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
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number: (year, month 1-12, day 1-31).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
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

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_prometheus() {
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert!(parse_duration_ms("5").is_err());
        assert!(parse_duration_ms("m5").is_err());
        assert!(parse_duration_ms("5m1h").is_err());
        assert!(parse_duration_ms("").is_err());
        assert_eq!(parse_api_duration_ms("1.5"), Ok(1500));
        assert_eq!(parse_api_duration_ms("15s"), Ok(15_000));
    }

    #[test]
    fn timestamps_as_seconds_or_rfc3339() {
        assert_eq!(parse_timestamp_ms("1700000000.123"), Ok(1_700_000_000_123));
        assert_eq!(
            parse_timestamp_ms("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ms("2023-11-14T23:13:20.5+01:00"),
            Ok(1_700_000_000_500)
        );
        assert!(parse_timestamp_ms("yesterday").is_err());
        assert!(parse_timestamp_ms("NaN").is_err());
        assert!(parse_timestamp_ms("1e300").is_err());
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
