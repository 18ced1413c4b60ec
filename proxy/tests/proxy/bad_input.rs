//! Bad input gets a clear answer, never a crash: each case asserts the
//! status, the `conduit-proxy-error` header naming the cause, and that the
//! proxy keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;
use conduit_testbed::raw_h2::{RawH2, frame};

/// Sends raw bytes, returns everything the proxy answers before closing.
async fn raw(proxy: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("the proxy closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        })
}

async fn still_serving(proxy: &conduit_proxy::Proxy) {
    let (status, _, _) = get(&http1_client(), proxy.admin_addr, "admin", "/live").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_is_400() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    for bad in [
        &b"GET / HTTP/1.1\r\nbad header line\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: ten\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n",
    ] {
        let rsp = raw(proxy.inbound_addr, bad).await;
        assert!(rsp.starts_with("HTTP/1.1 400 "), "{rsp}");
        let cause = header(&rsp, "conduit-proxy-error").expect("cause header");
        assert!(cause.starts_with("malformed request"), "{cause}");
    }
    assert_eq!(app.hits(), 0, "nothing malformed reached the application");
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_431() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--max-header-bytes",
        "8192",
    ])
    .await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let rsp = raw(proxy.inbound_addr, big.as_bytes()).await;
    assert!(rsp.starts_with("HTTP/1.1 431 "), "{rsp}");
    assert_eq!(
        header(&rsp, "conduit-proxy-error"),
        Some("request headers too large")
    );

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let rsp = raw(proxy.inbound_addr, many.as_bytes()).await;
    assert!(rsp.starts_with("HTTP/1.1 431 "), "{rsp}");

    // Later requests of a kept-alive connection are held to the same limit.
    let mut s = TcpStream::connect(proxy.inbound_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    s.write_all(big.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let second = &out[out.find("HTTP/1.1 431 ").expect("a 431")..];
    assert_eq!(
        header(second, "conduit-proxy-error"),
        Some("request headers too large")
    );
    assert_eq!(app.hits(), 1);
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_get_408() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--header-read-timeout",
        "300ms",
        "--detect-timeout",
        "200ms",
    ])
    .await;
    // A complete request line, then headers that never finish.
    let rsp = raw(proxy.inbound_addr, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ").await;
    assert!(rsp.starts_with("HTTP/1.1 408 "), "{rsp}");
    assert_eq!(
        header(&rsp, "conduit-proxy-error"),
        Some("request header read timeout")
    );

    // A request line trickled byte by byte, slower than detection.
    let mut s = TcpStream::connect(proxy.inbound_addr).await.unwrap();
    for b in b"GET /slowly-loris" {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert_eq!(app.hits(), 0);
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502() {
    let dead = closed_port().await;
    let proxy = proxy(&["--inbound-app-addr", &dead.to_string()]).await;
    let (status, headers, body) =
        get(&http1_client(), proxy.inbound_addr, "web.test:80", "/").await;
    assert_eq!(status, 502);
    let cause = headers["conduit-proxy-error"].to_str().unwrap();
    assert!(cause.starts_with("upstream unreachable"), "{cause}");
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .starts_with("upstream unreachable")
    );
    let failed = [
        ("direction", "inbound"),
        ("status_code", "502"),
        ("classification", "failure"),
    ];
    metrics_when(proxy.admin_addr, "the 502 counted", |m| {
        m.sum("response_total", &failed) == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_outbound_requests() {
    let proxy = proxy(&[]).await;
    let client = http1_client();
    let (status, headers, _) = get(&client, proxy.outbound_addr, "nowhere.invalid:80", "/").await;
    assert_eq!(status, 404);
    let cause = headers["conduit-proxy-error"].to_str().unwrap();
    assert!(
        cause.starts_with("no route to nowhere.invalid:80"),
        "{cause}"
    );

    // The proxy's own listener as the authority would loop forever.
    let own = proxy.outbound_addr.to_string();
    let (status, headers, _) = get(&client, proxy.outbound_addr, &own, "/").await;
    assert_eq!(status, 404);
    assert!(
        headers["conduit-proxy-error"]
            .to_str()
            .unwrap()
            .contains("would loop")
    );

    // HTTP/1.0 without Host: nothing to route by.
    let rsp = raw(proxy.outbound_addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        rsp.starts_with("HTTP/1.0 400 ") || rsp.starts_with("HTTP/1.1 400 "),
        "{rsp}"
    );
    assert!(
        header(&rsp, "conduit-proxy-error")
            .unwrap()
            .contains("no authority")
    );

    // Bytes that are not HTTP have no destination in explicit mode: closed.
    let rsp = raw(proxy.outbound_addr, b"\x00\x01\x02 binary").await;
    assert!(rsp.is_empty());
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_protocol_errors_get_goaway() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    // The preface and an empty SETTINGS frame, then DATA on stream 0 (a
    // connection error).
    let mut c = RawH2::connect(proxy.inbound_addr).await;
    c.write(&frame(0x0, 0, 0, b"oops")).await;
    assert_eq!(
        c.goaway(WAIT).await,
        Some(0x1),
        "GOAWAY with PROTOCOL_ERROR"
    );

    let (status, _, _) = get(&h2_client(), proxy.inbound_addr, "web.test:80", "/").await;
    assert_eq!(status, 200, "other connections are unaffected");
    still_serving(&proxy).await;
}
