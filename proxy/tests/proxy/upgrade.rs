//! Protocol upgrades (WebSocket's handshake) and CONNECT tunnels pass
//! through, directly and between two proxies, as raw bytes on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Reads up to the end of an HTTP head.
async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, r.read(&mut byte))
            .await
            .expect("head in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before the end of the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Accepts WebSocket handshakes (answering 101) and CONNECT (answering
/// 200), then upper-cases every byte it receives until the client is done.
async fn upgrading_app(saw_upgrade_header: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let saw = saw_upgrade_header.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await.to_ascii_lowercase();
                let reply: &[u8] = if head.starts_with("connect ") {
                    b"HTTP/1.1 200 OK\r\n\r\n"
                } else if head.contains("\r\nupgrade: websocket\r\n")
                    && head.contains("connection: upgrade")
                {
                    saw.store(true, SeqCst);
                    b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
                } else {
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
                };
                s.write_all(reply).await.unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n].to_ascii_uppercase()).await.unwrap();
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

async fn talk_after_handshake(proxy: SocketAddr, request: &str, expected_status: &str) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with(expected_status), "{head}");
    for msg in ["hello", "websocket frames are just bytes here"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg.to_ascii_uppercase().as_bytes());
    }
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        rest.is_empty(),
        "the tunnel closes cleanly after half-close"
    );
}

const WEBSOCKET: &str = "GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_inbound() {
    let saw = Arc::new(AtomicBool::new(false));
    let app = upgrading_app(saw.clone()).await;
    let proxy = proxy(&["--inbound-app-addr", &app.to_string()]).await;
    talk_after_handshake(proxy.inbound_addr, WEBSOCKET, "HTTP/1.1 101 ").await;
    assert!(
        saw.load(SeqCst),
        "the application saw Connection: upgrade and Upgrade"
    );
    let m = metrics_when(proxy.admin_addr, "the 101", |m| {
        m.sum(
            "response_total",
            &[("direction", "inbound"), ("status_code", "101")],
        ) >= 1.0
    })
    .await;
    assert_eq!(m.sum("request_total", &[("direction", "inbound")]), 1.0);
}

/// Between proxies the handshake stays HTTP/1.1 even though the endpoint
/// is meshed (HTTP/2 has no Upgrade).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_between_proxies() {
    let saw = Arc::new(AtomicBool::new(false));
    let app = upgrading_app(saw.clone()).await;
    let server = proxy(&["--inbound-app-addr", &app.to_string()]).await;
    let endpoint = format!("ws.test:80={};h2", server.inbound_addr);
    let client = proxy(&["--outbound-endpoint", &endpoint]).await;
    talk_after_handshake(client.outbound_addr, WEBSOCKET, "HTTP/1.1 101 ").await;
    assert!(saw.load(SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnel_outbound() {
    let app = upgrading_app(Arc::new(AtomicBool::new(false))).await;
    let endpoint = format!("tunnel.test:443={app}");
    let proxy = proxy(&["--outbound-endpoint", &endpoint]).await;
    let req = "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n";
    talk_after_handshake(proxy.outbound_addr, req, "HTTP/1.1 200 ").await;
}
