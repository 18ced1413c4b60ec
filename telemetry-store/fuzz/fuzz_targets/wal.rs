//! WAL segments and records as replay reads them: never a panic, the good
//! prefix lies within the segment, and a segment that is one valid frame
//! decodes as that frame's record does.

#![no_main]

use conduit_telemetry_store::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (records, good) = fuzzing::wal_segment(data);
    assert!(good <= data.len());
    assert!(records <= good / 8, "{records} records in {good} bytes");
    let valid = fuzzing::wal_record(data);
    let mut framed = (data.len() as u32).to_le_bytes().to_vec();
    framed.extend(crc32fast::hash(data).to_le_bytes());
    framed.extend(data);
    let (records, good) = fuzzing::wal_segment(&framed);
    assert_eq!((records == 1, good == framed.len()), (valid, valid));
});
