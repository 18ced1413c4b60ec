//! Remote-write bodies (snappy, then a protobuf WriteRequest) as
//! `/api/v1/write` reads them: never a panic, and never more samples or
//! labels than the decompressed body has room for (each costs at least two
//! bytes on the wire) or than the request limits allow.

#![no_main]

use conduit_telemetry_store::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok((samples, labels)) = fuzzing::remote_write(body) else {
        return;
    };
    let room = snap::raw::decompress_len(body).unwrap_or(0) / 2;
    assert!(samples <= room.min(1_000_000), "{samples} samples");
    assert!(labels <= room, "{labels} labels");
});
