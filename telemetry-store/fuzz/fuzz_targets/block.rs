//! Block files damaged on disk: a valid block's files with fuzzed bytes
//! written over (or a cut in) one of them. The store opens and reads it
//! as it does at start-up: a block or an error, never a panic that escapes
//! it, and never more series than the writer put in.
//!
//! The store turns the panics of Arrow's reader on damaged files into
//! errors, so this target lets panics unwind instead of aborting at once
//! as libFuzzer's hook does; one that reaches the target still aborts.

#![no_main]

use conduit_telemetry_store::fuzzing;
use libfuzzer_sys::fuzz_target;

/// Three series of the template block: two of 600 samples, one of five
/// histogram windows.
const MAX_SERIES: usize = 3;

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    if let Ok((series, _values)) = fuzzing::mutated_block(data) {
        assert!(series <= MAX_SERIES, "{series} series");
    }
});
