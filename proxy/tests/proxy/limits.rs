//! Every server's timeouts and caps, against the clients they are for:
//! slowloris and idlers on the admin server, stream floods, rapid resets,
//! malformed streams and silent peers on the HTTP/2 servers (data plane and
//! tap).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;
use conduit_testbed::raw_h2::*;

/// Reads until the server closes the connection; how long that took, or
/// `None` if it was still open after `within`.
async fn closed_after(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .ok()
        .map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_slowloris_is_cut_off_at_the_header_timeout() {
    let proxy = proxy(&["--admin-header-read-timeout", "500ms"]).await;
    let mut s = TcpStream::connect(proxy.admin_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n")
        .await
        .unwrap();
    // A header byte every 100 ms: never idle, never done.
    let trickle = async {
        for _ in 0..100 {
            if s.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let start = Instant::now();
    trickle.await;
    let (mut rest, _) = s.into_split();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, rest.read_to_end(&mut buf)).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(5),
        "cut off after {elapsed:?}"
    );
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "a trickled head was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_idle_connections_are_closed() {
    let proxy = proxy(&[
        "--admin-idle-timeout",
        "400ms",
        "--admin-header-read-timeout",
        "30s",
    ])
    .await;
    let mut s = TcpStream::connect(proxy.admin_addr).await.unwrap();
    s.write_all(b"GET /live HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    let closed = closed_after(&mut s, Duration::from_secs(5)).await;
    let closed = closed.expect("an idle keep-alive connection is closed");
    assert!(closed >= Duration::from_millis(350), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_past_the_cap_are_closed() {
    let proxy = proxy(&["--admin-max-connections", "2"]).await;
    let request = b"GET /live HTTP/1.1\r\nHost: admin\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.admin_addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        held.push(s);
    }
    let mut third = TcpStream::connect(proxy.admin_addr).await.unwrap();
    let _ = third.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, third.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    drop(held.pop());
    eventually("a freed slot serves again", || async {
        let mut s = TcpStream::connect(proxy.admin_addr).await.ok()?;
        s.write_all(request).await.ok()?;
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.ok()?;
        buf[..n].starts_with(b"HTTP/1.1 200 ").then_some(())
    })
    .await;
}

fn grpc_observe() -> [(&'static str, &'static str); 6] {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/conduit.tap.v1.Tap/Observe"),
        (":authority", "tap"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
}

fn http_get() -> [(&'static str, &'static str); 4] {
    [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "web.test"),
    ]
}

/// Opens `n` streams at once; returns how many the server refused.
async fn flood(addr: SocketAddr, fields: &[(&str, &str)], n: u32, cap: u32) -> usize {
    let mut c = RawH2::connect(addr).await;
    assert_eq!(c.handshake().await, Some(cap), "the cap is announced");
    let mut burst = Vec::new();
    for i in 0..n {
        burst.extend(open_stream(2 * i + 1, fields));
    }
    c.write(&burst).await;
    let mut refused = 0;
    c.until(Duration::from_secs(2), |f| {
        refused += usize::from(reset_code(f) == Some(REFUSED_STREAM));
        None::<()>
    })
    .await;
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_floods_are_refused_past_the_cap() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--http2-max-concurrent-streams",
        "4",
        "--tap-max-concurrent-streams",
        "3",
    ])
    .await;
    assert_eq!(flood(proxy.inbound_addr, &http_get(), 10, 4).await, 6);
    assert_eq!(flood(proxy.tap_addr, &grpc_observe(), 10, 3).await, 7);
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_caps_are_announced_by_default() {
    let proxy = proxy(&[]).await;
    for (addr, cap) in [(proxy.inbound_addr, 200), (proxy.tap_addr, 32)] {
        let mut c = RawH2::connect(addr).await;
        assert_eq!(c.handshake().await, Some(cap), "{addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_resets_end_the_connection() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--http2-max-pending-accept-reset-streams",
        "5",
    ])
    .await;
    for (addr, fields) in [
        (proxy.inbound_addr, &http_get()[..]),
        (proxy.tap_addr, &grpc_observe()[..]),
    ] {
        let burst: Vec<u8> = (0..50)
            .flat_map(|i| [open_stream(2 * i + 1, fields), reset(2 * i + 1, CANCEL)].concat())
            .collect();
        assert_eq!(
            goaway_after(addr, &burst).await,
            Some(ENHANCE_YOUR_CALM),
            "{addr}"
        );
    }
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_end_the_connection_past_the_reset_cap() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--http2-max-local-error-reset-streams",
        "5",
    ])
    .await;
    for addr in [proxy.inbound_addr, proxy.tap_addr] {
        // No :path or :scheme: each stream is malformed and reset by h2.
        let burst: Vec<u8> = (0..20)
            .flat_map(|i| {
                let block = header_block(&[(":method", "GET")]);
                frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block)
            })
            .collect();
        assert_eq!(
            goaway_after(addr, &burst).await,
            Some(ENHANCE_YOUR_CALM),
            "{addr}"
        );
    }
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_ignore_pings_are_disconnected() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--http2-keepalive-interval",
        "200ms",
        "--http2-keepalive-timeout",
        "300ms",
    ])
    .await;
    for addr in [proxy.inbound_addr, proxy.tap_addr] {
        let mut c = RawH2::connect(addr).await;
        c.handshake().await;
        assert!(c.closed_within(Duration::from_secs(5)).await, "{addr}");
    }
}

/// Sends `burst` on a fresh connection to `addr`: the code of the GOAWAY
/// it gets back within 5 s.
async fn goaway_after(addr: SocketAddr, burst: &[u8]) -> Option<u32> {
    let mut c = RawH2::connect(addr).await;
    c.handshake().await;
    c.write(burst).await;
    c.goaway(Duration::from_secs(5)).await
}

async fn still_serving(proxy: &conduit_proxy::Proxy) {
    let (status, _, _) = get(&h2_client(), proxy.inbound_addr, "web.test:80", "/").await;
    assert_eq!(status, 200);
}
