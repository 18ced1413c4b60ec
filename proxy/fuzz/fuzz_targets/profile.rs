//! Destination profiles as the controller (or anything speaking for it)
//! may send them: whatever the bytes, the proxy accepts or refuses the
//! profile whole, and an accepted one routes requests and classifies
//! responses without panicking.
//!
//! Input: a status code (2 bytes), a gRPC status (1 byte, 0xff for none),
//! a method selector (1 byte), a path length (1 byte), the path, then the
//! `DestinationProfile` message.

#![no_main]

use conduit_api::proto::destination::v1::DestinationProfile;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

fuzz_target!(|data: &[u8]| {
    let [s0, s1, grpc, method, path_len, rest @ ..] = data else {
        return;
    };
    let Some((path, profile)) = rest.split_at_checked(usize::from(*path_len)) else {
        return;
    };
    let Ok(profile) = DestinationProfile::decode(profile) else {
        return;
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let method = METHODS[usize::from(*method) % METHODS.len()];
    let Ok(req) = http::Request::builder()
        .method(method)
        .uri(format!("/{path}"))
        .body(())
    else {
        return;
    };
    let status = u16::from_be_bytes([*s0, *s1]);
    let grpc = (*grpc != 0xff).then(|| i32::from(*grpc));
    let _ = conduit_proxy::profile::check(profile, &req, status, grpc);
});
