//! Serialized HdrHistograms as proxy reports carry them: decoded only
//! when the header's claims fit the bytes given (so never a large
//! allocation, which the fuzzer's -rss_limit_mb would catch), and a
//! decoded histogram's count is what its window and its `+Inf` bucket
//! series hold, counts near u64::MAX included.

#![no_main]

use conduit_telemetry_store::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|hdr: &[u8]| {
    if let Some((count, in_window, inf)) = fuzzing::histogram(hdr) {
        assert_eq!(count, in_window);
        assert_eq!(count, inf);
    }
});
