//! Numbers as an operator reads them: `99.52%`, `12.3 rps`, `850µs`,
//! `1.25s`, `3.4 KiB`, `12:05:09`.
//!
//! Precision follows magnitude (three significant digits or so), so that a
//! column of values lines up and a changing value does not jitter between
//! widths. A value that does not exist (no traffic) prints as an em dash,
//! never as zero.

/// Shown where there is no value.
pub const MISSING: &str = "—";

/// A success rate in `[0, 1]` as a percentage with two decimals.
pub fn percent(rate: f64) -> String {
    percent_with(rate, 2)
}

/// A rate in `[0, 1]` as a percentage with `decimals` decimals.
pub fn percent_with(rate: f64, decimals: usize) -> String {
    if !rate.is_finite() {
        return MISSING.to_string();
    }
    format!("{:.*}%", decimals, rate * 100.0)
}

/// Requests per second: two decimals below 1, one below 100, whole
/// numbers below ten thousand, then `k`/`M`.
pub fn rps(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return MISSING.to_string();
    }
    if v == 0.0 {
        "0".to_string()
    } else if v < 1.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else if v < 10_000.0 {
        format!("{v:.0}")
    } else {
        si(v)
    }
}

/// A large count with a `k`/`M`/`G` suffix and three significant digits.
pub fn si(v: f64) -> String {
    const UNITS: [(f64, &str); 3] = [(1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (size, unit) in UNITS {
        if v.abs() >= size {
            return format!("{}{unit}", significant(v / size));
        }
    }
    significant(v)
}

/// A count as a whole number, large ones abbreviated.
pub fn count(n: u64) -> String {
    if n < 10_000 {
        n.to_string()
    } else {
        si(n as f64)
    }
}

/// Three significant digits without trailing zeros: `1.5`, `12.3`, `250`.
fn significant(v: f64) -> String {
    let decimals = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A latency given in milliseconds: `µs` below a millisecond, `ms` below
/// a second, then seconds.
pub fn latency_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return MISSING.to_string();
    }
    if ms == 0.0 {
        "0ms".to_string()
    } else if ms < 1.0 {
        format!("{:.0}µs", (ms * 1_000.0).max(1.0))
    } else if ms < 10.0 {
        format!("{}ms", significant(ms))
    } else if ms < 1_000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{}s", significant(ms / 1_000.0))
    } else {
        let s = (ms / 1_000.0).round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A latency given in microseconds (as tap events carry it).
pub fn latency_us(us: u64) -> String {
    latency_ms(us as f64 / 1_000.0)
}

/// Bytes in binary units: `512 B`, `3.4 KiB`, `12 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{} {unit}", significant(v))
}

/// `HH:MM:SS` of a Unix time in ms, in the zone `utc_offset_ms` away from
/// UTC (local minus UTC).
pub fn clock(unix_ms: i64, utc_offset_ms: i64) -> String {
    let (h, m, s) = hms(unix_ms, utc_offset_ms);
    format!("{h:02}:{m:02}:{s:02}")
}

/// `HH:MM`, for axis labels whose ticks are whole minutes.
pub fn clock_minutes(unix_ms: i64, utc_offset_ms: i64) -> String {
    let (h, m, _) = hms(unix_ms, utc_offset_ms);
    format!("{h:02}:{m:02}")
}

fn hms(unix_ms: i64, utc_offset_ms: i64) -> (i64, i64, i64) {
    let secs = (unix_ms + utc_offset_ms)
        .div_euclid(1_000)
        .rem_euclid(86_400);
    (secs / 3_600, secs / 60 % 60, secs % 60)
}

/// How long ago, roughly: `4s ago`, `3m ago`, `2h ago`.
pub fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    if s < 60 {
        format!("{s}s ago")
    } else if s < 3_600 {
        format!("{}m ago", s / 60)
    } else {
        format!("{}h ago", s / 3_600)
    }
}

/// What an axis in `unit` prints at a tick, given the tick spacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A rate in `[0, 1]` shown as a percentage.
    Percent,
    /// Requests per second.
    Rps,
    /// Milliseconds of latency.
    Millis,
}

impl Unit {
    pub fn tick(self, v: f64, step: f64) -> String {
        match self {
            Self::Percent => percent_with(v, crate::ticks::decimals_for(step * 100.0)),
            Self::Rps if v >= 10_000.0 => si(v),
            Self::Rps => format!("{v:.*}", crate::ticks::decimals_for(step)),
            Self::Millis => latency_ms(v),
        }
    }

    /// The value as a tooltip shows it.
    pub fn value(self, v: f64) -> String {
        match self {
            Self::Percent => percent(v),
            Self::Rps => format!("{} rps", rps(v)),
            Self::Millis => latency_ms(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percent(1.0), "100.00%");
        assert_eq!(percent(0.9952), "99.52%");
        assert_eq!(percent(0.0), "0.00%");
        assert_eq!(percent_with(0.95, 0), "95%");
        assert_eq!(percent(f64::NAN), MISSING);
    }

    #[test]
    fn request_rates() {
        assert_eq!(rps(0.0), "0");
        assert_eq!(rps(0.25), "0.25");
        assert_eq!(rps(3.456), "3.5");
        assert_eq!(rps(50.0), "50.0");
        assert_eq!(rps(1234.4), "1234");
        assert_eq!(rps(12_345.0), "12.3k");
        assert_eq!(rps(2_500_000.0), "2.5M");
        assert_eq!(rps(-1.0), MISSING);
        assert_eq!(rps(f64::INFINITY), MISSING);
    }

    #[test]
    fn counts() {
        assert_eq!(count(0), "0");
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(10_000), "10k");
        assert_eq!(count(123_456), "123k");
        assert_eq!(count(1_500_000_000), "1.5G");
    }

    #[test]
    fn latencies() {
        assert_eq!(latency_ms(0.0), "0ms");
        assert_eq!(latency_ms(0.85), "850µs");
        assert_eq!(latency_ms(0.0001), "1µs");
        assert_eq!(latency_ms(2.5), "2.5ms");
        assert_eq!(latency_ms(2.0), "2ms");
        assert_eq!(latency_ms(9.999), "10ms");
        assert_eq!(latency_ms(120.4), "120ms");
        assert_eq!(latency_ms(1_250.0), "1.25s");
        assert_eq!(latency_ms(12_500.0), "12.5s");
        assert_eq!(latency_ms(125_000.0), "2m05s");
        assert_eq!(latency_ms(f64::NAN), MISSING);
        assert_eq!(latency_us(850), "850µs");
        assert_eq!(latency_us(15_000), "15ms");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1 KiB");
        assert_eq!(bytes(3_482), "3.4 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5 MiB");
        assert_eq!(bytes(3 * 1024u64.pow(4)), "3 TiB");
        assert_eq!(bytes(2048 * 1024u64.pow(4)), "2048 TiB");
    }

    #[test]
    fn clock_times() {
        // 1970-01-01 13:04:05 UTC
        let t = (13 * 3_600 + 4 * 60 + 5) * 1_000;
        assert_eq!(clock(t, 0), "13:04:05");
        assert_eq!(clock(t, 2 * 3_600_000), "15:04:05");
        assert_eq!(clock(t, -14 * 3_600_000), "23:04:05");
        assert_eq!(clock_minutes(t + 999, 0), "13:04");
    }

    #[test]
    fn durations_ago() {
        assert_eq!(ago(4_900), "4s ago");
        assert_eq!(ago(185_000), "3m ago");
        assert_eq!(ago(7_300_000), "2h ago");
        assert_eq!(ago(-5), "0s ago");
    }

    #[test]
    fn axis_ticks_have_as_many_decimals_as_the_step_needs() {
        assert_eq!(Unit::Percent.tick(0.98, 0.02), "98%");
        assert_eq!(Unit::Percent.tick(0.995, 0.005), "99.5%");
        assert_eq!(Unit::Rps.tick(2.5, 0.5), "2.5");
        assert_eq!(Unit::Rps.tick(40.0, 20.0), "40");
        assert_eq!(Unit::Rps.tick(20_000.0, 10_000.0), "20k");
        assert_eq!(Unit::Millis.tick(250.0, 50.0), "250ms");
        assert_eq!(Unit::Rps.value(3.456), "3.5 rps");
        assert_eq!(Unit::Percent.value(0.5), "50.00%");
    }
}
