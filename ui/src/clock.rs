//! The browser's clock and time zone, for labelling times.

/// Local time minus UTC, in ms (JavaScript gives it the other way round,
/// in minutes).
pub(crate) fn utc_offset_ms() -> i64 {
    let minutes = js_sys::Date::new_0().get_timezone_offset();
    -(minutes * 60_000.0) as i64
}

/// Now, as Unix ms.
pub(crate) fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}
