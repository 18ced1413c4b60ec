//! Opaque TCP: byte-exact forwarding with half-close, server-speaks-first
//! protocols on opaque ports, and TLS passed through untouched.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Reads everything until the client half-closes, then answers with the
/// bytes reversed and closes: only works if half-close is forwarded.
async fn reversing_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut data = Vec::new();
                s.read_to_end(&mut data).await.unwrap();
                data.reverse();
                s.write_all(&data).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// A binary payload: its first byte is not HTTP, so detection decides at
/// once.
fn payload() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 251) as u8).collect()
}

async fn exchange(proxy: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut back))
        .await
        .expect("answer in time")
        .unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_opaque_echo_with_half_close() {
    let app = reversing_app().await;
    let proxy = proxy(&["--inbound-app-addr", &app.to_string()]).await;
    let data = payload();
    let mut expected = data.clone();
    expected.reverse();
    assert_eq!(exchange(proxy.inbound_addr, &data).await, expected);

    let src = [("direction", "inbound"), ("peer", "src")];
    let m = metrics_when(proxy.admin_addr, "the connection to close", |m| {
        m.sum("tcp_close_total", &src) >= 1.0
    })
    .await;
    let n = data.len() as f64;
    assert_eq!(m.sum("tcp_open_total", &src), 1.0);
    assert_eq!(m.sum("tcp_read_bytes_total", &src), n);
    assert_eq!(m.sum("tcp_write_bytes_total", &src), n);
    assert_eq!(m.sum("tcp_open_connections", &src), 0.0);
    let dst = [("direction", "inbound"), ("peer", "dst")];
    assert_eq!(m.sum("tcp_write_bytes_total", &dst), n);
    assert_eq!(
        m.sum("request_total", &[]),
        0.0,
        "opaque traffic is not HTTP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_tcp_route() {
    let app = reversing_app().await;
    let endpoint = format!("db.test:5432={app};deployment=test/db");
    let proxy = proxy(&[
        "--outbound-tcp-route",
        "127.0.0.1:0=db.test:5432",
        "--outbound-endpoint",
        &endpoint,
    ])
    .await;
    let route = proxy.tcp_route_addrs[0];
    let data = payload();
    let mut expected = data.clone();
    expected.reverse();
    for _ in 0..3 {
        assert_eq!(exchange(route, &data).await, expected);
    }
    let dst = [
        ("direction", "outbound"),
        ("peer", "dst"),
        ("authority", "db.test:5432"),
        ("dst_deployment", "db"),
    ];
    let m = metrics_when(proxy.admin_addr, "3 closed connections", |m| {
        m.sum("tcp_close_total", &dst) >= 3.0
    })
    .await;
    assert_eq!(m.sum("tcp_open_total", &dst), 3.0);
    assert_eq!(m.sum("tcp_read_bytes_total", &dst), 3.0 * data.len() as f64);
}

/// The server talks first (an SMTP-like banner), the client waits for it.
async fn banner_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                s.write_all(b"220 ready\r\n").await.unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = s.write_all(&buf[..n]).await;
            });
        }
    });
    addr
}

async fn banner_delay(proxy: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let mut banner = [0u8; 11];
    tokio::time::timeout(WAIT, s.read_exact(&mut banner))
        .await
        .expect("banner in time")
        .unwrap();
    let delay = start.elapsed();
    assert_eq!(&banner, b"220 ready\r\n");
    s.write_all(b"EHLO x\r\n").await.unwrap();
    let mut echo = [0u8; 8];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"EHLO x\r\n");
    delay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_speaks_first_on_an_opaque_port() {
    let app = banner_app().await;
    let port = app.port().to_string();
    let opaque = proxy(&[
        "--inbound-app-addr",
        &app.to_string(),
        "--opaque-ports",
        &port,
        "--detect-timeout",
        "8s",
    ])
    .await;
    let delay = banner_delay(opaque.inbound_addr).await;
    assert!(
        delay < Duration::from_secs(4),
        "an opaque port skips detection ({delay:?})"
    );

    // Without the opaque port, the proxy waits for the client to speak
    // until the detection timeout, then forwards as TCP.
    let detecting = proxy(&[
        "--inbound-app-addr",
        &app.to_string(),
        "--detect-timeout",
        "400ms",
    ])
    .await;
    let delay = banner_delay(detecting.inbound_addr).await;
    assert!(
        delay >= Duration::from_millis(400),
        "detection waited ({delay:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_passed_through_untouched() {
    let app = reversing_app().await;
    let proxy = proxy(&["--inbound-app-addr", &app.to_string()]).await;
    // A TLS record header announcing a ClientHello, then arbitrary bytes.
    let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0x40, 0x01];
    hello.extend((0..64u8).map(|b| b.wrapping_mul(7)));
    let mut expected = hello.clone();
    expected.reverse();
    assert_eq!(exchange(proxy.inbound_addr, &hello).await, expected);
}
