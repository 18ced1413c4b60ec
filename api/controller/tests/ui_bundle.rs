//! The dashboard bundle over real HTTP from the real controller binary:
//! precompressed variants by `Accept-Encoding`, a year of caching for
//! content-hashed files and revalidation for `index.html` (also when it
//! answers a deep link).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use conduit_testbed::{Controller, TempDir};

const JS: &str = "conduit-ui-0123456789abcdef.js";

/// Status, lower-cased headers and body bytes of `GET path`.
fn get(
    addr: SocketAddr,
    path: &str,
    accept_encoding: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept_encoding.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

#[test]
fn bundle_is_served_precompressed_and_cached_by_name() {
    let ui = TempDir::new("bundle");
    write(ui.path(), "index.html", "index");
    write(ui.path(), "index.html.br", "index in brotli");
    write(ui.path(), "index.html.gz", "index in gzip");
    write(ui.path(), JS, "script");
    write(ui.path(), &format!("{JS}.gz"), "script in gzip");
    let discovery = ui.path().join("discovery.yaml");
    write(ui.path(), "discovery.yaml", "version: 1\n");
    let ui_dir = ui.path().display().to_string();
    // No store: serving the bundle must not need one.
    let c = Controller::start_with_args("http://127.0.0.1:9", &discovery, &["--ui-dir", &ui_dir]);

    let (status, h, body) = get(c.http, "/", Some("gzip, deflate, br"));
    assert_eq!(status, 200);
    assert_eq!(body, b"index in brotli");
    assert_eq!(header(&h, "content-encoding"), Some("br"));
    assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));
    assert_eq!(header(&h, "vary"), Some("accept-encoding"));

    // A deep link is the index too, never cached without revalidation.
    let (status, h, body) = get(c.http, "/deployments/demo/web", Some("gzip"));
    assert_eq!(
        (status, body.as_slice()),
        (200, b"index in gzip".as_slice())
    );
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));

    // brotli is preferred but only gzip exists for the script.
    let (status, h, body) = get(c.http, &format!("/{JS}"), Some("br, gzip"));
    assert_eq!(
        (status, body.as_slice()),
        (200, b"script in gzip".as_slice())
    );
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(
        header(&h, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(&h, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // A client that accepts no coding (or refuses one) gets the file as is.
    for accept in [None, Some("identity"), Some("gzip;q=0")] {
        let (status, h, body) = get(c.http, &format!("/{JS}"), accept);
        assert_eq!(
            (status, body.as_slice()),
            (200, b"script".as_slice()),
            "{accept:?}"
        );
        assert_eq!(header(&h, "content-encoding"), None, "{accept:?}");
    }

    assert_eq!(
        get(c.http, "/conduit-ui-ffffffffffffffff.js", Some("br")).0,
        404
    );
}
