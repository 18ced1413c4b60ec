//! Durations as people type them (`conduit stat -t`, `?window=`, the
//! discovery file's timeouts, every component's flags): any text is a duration or
//! a clear error, never a panic, and what is accepted prints back as text
//! that parses to the same duration.

#![no_main]

use conduit_api::duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = duration::parse(text) {
        let printed = duration::format(d);
        assert_eq!(
            duration::parse(&printed),
            Ok(d),
            "{text:?} printed as {printed:?}"
        );
    }
    let _ = duration::parse_window(text);
});
