//! Wall-clock timestamps for telemetry reports and tap events (latency is
//! measured with `Instant`, never with these).

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn unix_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn unix_us() -> i64 {
    i64::try_from(since_epoch().as_micros()).unwrap_or(i64::MAX)
}

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
