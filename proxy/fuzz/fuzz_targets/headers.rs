//! Hop-by-hop header handling on arbitrary header maps: never panics,
//! never leaves a hop-by-hop header behind, never drops an end-to-end one
//! the `Connection` header did not name.

#![no_main]

use conduit_proxy::http::headers;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let keep_upgrade = flags & 1 == 1;
    let mut map = HeaderMap::new();
    // `name: value` lines.
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    let named: Vec<String> = map
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(headers::connection_tokens)
        .map(str::to_ascii_lowercase)
        .collect();
    let before = map.clone();
    headers::strip_hop_by_hop(&mut map, keep_upgrade);

    for hop in HOP {
        if *hop == "connection" && keep_upgrade && map.contains_key("upgrade") {
            assert_eq!(map.get(*hop).map(|v| v.as_bytes()), Some(&b"upgrade"[..]));
            continue;
        }
        assert!(!map.contains_key(*hop), "{hop} left behind");
    }
    if let Some(te) = map.get(http::header::TE) {
        assert_eq!(te, "trailers");
    }
    for name in before.keys() {
        let n = name.as_str();
        let hop = HOP.contains(&n) || n == "te" || n == "upgrade" || named.iter().any(|t| t == n);
        if !hop {
            assert!(map.contains_key(name), "{n} was dropped");
        }
    }
});
