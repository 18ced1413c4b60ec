//! Every server's timeouts and caps, against the clients they are for:
//! slowloris and idlers on the admin server.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

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
