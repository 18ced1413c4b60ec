//! PromQL text through the store's whole path: text limits, parsing and
//! evaluation on an empty store. A query past the limits is refused
//! before parsing; one within them never overflows the stack (the fuzzer
//! runs it on a thread of the store's 2 MiB), never panics, and stops
//! near its deadline.

#![no_main]

use std::time::{Duration, Instant};

use conduit_telemetry_store::fuzzing;
use libfuzzer_sys::fuzz_target;

const TIMEOUT: Duration = Duration::from_millis(200);

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let accepted = fuzzing::query_text_accepted(query);
    let query = query.to_string();
    let started = Instant::now();
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || fuzzing::promql(&query, TIMEOUT))
        .expect("a thread")
        .join()
        .expect("evaluation panicked");
    if !accepted {
        assert_eq!(outcome, Err("bad_data"), "refused before parsing");
    }
    assert!(
        started.elapsed() < TIMEOUT + Duration::from_secs(1),
        "ran {:?} past a {TIMEOUT:?} deadline",
        started.elapsed()
    );
});
