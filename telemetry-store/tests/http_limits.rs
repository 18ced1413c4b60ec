//! The HTTP server's timeouts and caps hold against clients that hold
//! connections open: a slowloris sending a header byte now and then is cut
//! off at the header timeout, silent and idle connections are closed,
//! connections past the cap wait to be accepted, and request bodies are
//! bounded in size and in time.

mod support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use conduit_testbed::hostile::closed_after;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_off_at_the_header_timeout() {
    let s = start_store(|c| c.http_header_timeout = Duration::from_secs(1)).await;
    let give_up = Duration::from_secs(8);
    let cases: [(&str, &[u8], &[u8]); 3] = [
        (
            "slowloris",
            b"GET /-/healthy HTTP/1.1\r\nx-slow: ",
            b"abcdefgh",
        ),
        ("silent", b"", b""),
        (
            "slow HTTP/2 preface",
            b"",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ),
    ];
    for (what, first, trickle) in cases {
        let took = closed_after(s.http(), first, trickle, give_up).await;
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{what}: closed after {took:?}, the header timeout is 1 s"
        );
    }
    // A client that sends its request in time is answered.
    assert_eq!(get(&format!("http://{}/-/healthy", s.http())).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let s = start_store(|c| c.http_idle_timeout = Duration::from_secs(1)).await;
    let tcp = TcpStream::connect(s.http()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
        started.elapsed()
    });
    let req = hyper::Request::get(format!("http://{}/-/healthy", s.http()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let took = tokio::time::timeout(Duration::from_secs(8), conn)
        .await
        .expect("the idle connection is still open after 8 s")
        .unwrap();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_to_be_accepted() {
    let s = start_store(|c| c.http_max_connections = 2).await;
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(s.http()).await.unwrap(),
        TcpStream::connect(s.http()).await.unwrap(),
    ];
    // The kernel completes the handshake; the store does not serve it.
    let mut third = TcpStream::connect(s.http()).await.unwrap();
    third
        .write_all(b"GET /-/healthy HTTP/1.1\r\nhost: store\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served: {early:?}");
    drop(held);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a place is free")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_in_size_and_time() {
    let s = start_store(|c| {
        c.http_max_request_body = 1000;
        c.remote_write_max_body = 1000;
        c.http_body_timeout = Duration::from_secs(1);
    })
    .await;
    let base = format!("http://{}/api/v1", s.http());
    let form = format!("query=vector(1)&pad={}", "x".repeat(2000));
    let (status, body) = post(
        &format!("{base}/query"),
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("--http-max-request-body"), "{body}");
    // Values snappy cannot squeeze.
    let ids: Vec<String> = (0..200u64)
        .map(|i| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let big: Vec<WriteSeries<'_>> = ids
        .iter()
        .map(|id| {
            (
                vec![("__name__", "m"), ("id", id.as_str())],
                vec![(now_ms(), 1.0)],
            )
        })
        .collect();
    let write = write_request(&big);
    assert!(write.len() > 1000);
    let (status, body) = post(&format!("{base}/write"), "application/x-protobuf", write).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("--remote-write-max-body"), "{body}");
    // A body that trickles in is cut off at the body timeout.
    let started = Instant::now();
    let mut conn = TcpStream::connect(s.http()).await.unwrap();
    conn.write_all(
        b"POST /api/v1/query HTTP/1.1\r\nhost: store\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\nquery=",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while started.elapsed() < Duration::from_secs(8) {
        let _ = conn.write_all(b"1").await;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Bodies within the limits work.
    let (status, body) = post(
        &format!("{base}/query"),
        "application/x-www-form-urlencoded",
        "query=vector(1)",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
