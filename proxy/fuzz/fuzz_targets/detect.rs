//! Protocol detection (and the ClientHello's server name) on arbitrary
//! first bytes: never panics, and its verdicts are consistent with each
//! other.

#![no_main]

use conduit_proxy::detect::{self, Detection, Protocol};
use conduit_proxy::http::head::{self, HeadCheck};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = detect::classify(data);
    if data.len() >= detect::MAX_DETECT_BYTES {
        assert_ne!(
            verdict,
            Detection::NeedMore,
            "detection must decide by its byte limit"
        );
    }
    // An HTTP/2 verdict needs the whole preface.
    if verdict == Detection::Known(Protocol::H2) {
        assert!(data.starts_with(detect::H2_PREFACE));
    }
    let _ = detect::unfinished(data);

    // The ClientHello reader: a server name it finds lies inside the
    // input, and a complete record never needs more.
    match detect::client_hello(data) {
        detect::ClientHello::Hello { server_name: Some(name) } => {
            assert!(name.len() < data.len());
        }
        detect::ClientHello::NeedMore => {
            assert!(data.len() < detect::MAX_CLIENT_HELLO_RECORD)
        }
        _ => {}
    }

    // The first request head check, at a small and a default limit.
    for limit in [64, 65_536] {
        match head::check_head(data, limit) {
            HeadCheck::Complete { len } => assert!(len <= limit && len <= data.len()),
            HeadCheck::Partial => assert!(data.len() < limit),
            HeadCheck::Invalid(_) | HeadCheck::TooLarge => {}
        }
    }
});
