//! The HTTP API's time and duration parameters: any text is a value or a
//! clear refusal, never a panic, and an accepted timestamp lies within
//! Prometheus' own range (about ±292 million years, in ms).

#![no_main]

use conduit_telemetry_store::fuzzing;
use libfuzzer_sys::fuzz_target;

const MAX_MS: i64 = 9_200_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (timestamp, _duration) = fuzzing::api_time(text);
    if let Some(ms) = timestamp {
        assert!((-MAX_MS..=MAX_MS).contains(&ms), "{text:?} gave {ms}");
    }
});
