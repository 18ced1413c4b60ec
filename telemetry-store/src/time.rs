//! Times and durations as Prometheus spells them: `1h30m`, `5m`, `250ms`,
//! `7d`; API timestamps as RFC 3339 or (fractional) Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use conduit_api::time_range::{civil_from_days, days_from_civil, parse_rfc3339_ms};

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
}
