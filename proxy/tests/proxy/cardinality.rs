//! What peers choose cannot make the proxy keep without bound: label sets
//! past the budget share an overflow set, idle ones are forgotten, an
//! authority costs no connection of its own, and the outbound destination
//! cache has a size.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// An HTTP/1 + HTTP/2 application that counts the connections it accepts.
async fn counting_app() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|_| async { Ok::<_, Infallible>(text(200, "ok")) });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorities_share_the_applications_connections() {
    let (app, connections) = counting_app().await;
    let proxy = proxy(&["--inbound-app-addr", &app.to_string()]).await;
    for client in [http1_client(), h2_client()] {
        for i in 0..20 {
            let host = format!("h{i}.example:80");
            let (status, _, _) = get(&client, proxy.inbound_addr, &host, "/").await;
            assert_eq!(status, 200);
        }
    }
    assert_eq!(
        connections.load(SeqCst),
        2,
        "one HTTP/1 and one HTTP/2 connection carry every authority"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_sets_past_the_budget_share_the_overflow_set() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--metrics-max-label-sets",
        "3",
    ])
    .await;
    // The Deployment's own name on ten ports: ten label sets it would keep.
    let client = http1_client();
    for port in 1..=10 {
        let host = format!("web.test:{port}");
        assert_eq!(get(&client, proxy.inbound_addr, &host, "/").await.0, 200);
    }
    let inbound = [("direction", "inbound")];
    let m = metrics_when(proxy.admin_addr, "ten responses", |m| {
        m.sum("response_total", &inbound) == 10.0
    })
    .await;
    let own: Vec<_> = m
        .matching("request_total", &inbound)
        .filter(|(l, _)| l["authority"] != "_overflow")
        .collect();
    assert_eq!(own.len(), 3, "{}", m.text);
    let overflow = [("direction", "inbound"), ("authority", "_overflow")];
    assert_eq!(m.matching("request_total", &overflow).count(), 1);
    assert_eq!(m.sum("request_total", &overflow), 7.0);
    assert_eq!(
        m.sum(
            "metrics_label_sets_overflow_total",
            &[("family", "request_total"), ("reason", "budget")]
        ),
        7.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_label_sets_are_forgotten() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--metrics-retain-idle",
        "300ms",
    ])
    .await;
    // A closed connection holds nothing: only idleness keeps the series.
    let mut s = TcpStream::connect(proxy.inbound_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 "));
    let series = [("direction", "inbound"), ("authority", "web.test:80")];
    let m = metrics_when(proxy.admin_addr, "the series forgotten", |m| {
        m.matching("request_total", &series).count() == 0
    })
    .await;
    assert!(
        m.sum(
            "metrics_label_sets_evicted_total",
            &[("family", "request_total")]
        ) >= 1.0,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_authorities_share_the_overflow_set() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    let client = http1_client();
    for host in ["web.test:80", "other.test:80", "x.example:80"] {
        assert_eq!(get(&client, proxy.inbound_addr, host, "/").await.0, 200);
    }
    // Outbound: an authority nothing resolves has no route, and no series.
    let (status, _, _) = get(&client, proxy.outbound_addr, "nowhere.invalid:80", "/").await;
    assert_eq!(status, 404);
    let m = metrics_when(proxy.admin_addr, "four responses", |m| {
        m.sum("response_total", &[]) == 4.0
    })
    .await;
    let authorities: Vec<(&str, &str)> = m
        .matching("request_total", &[])
        .map(|(l, _)| (l["direction"].as_str(), l["authority"].as_str()))
        .collect();
    assert_eq!(
        authorities,
        [
            ("inbound", "_overflow"),
            ("inbound", "web.test:80"),
            ("outbound", "_overflow")
        ],
        "{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "metrics_label_sets_overflow_total",
            &[("reason", "unknown_authority")]
        ),
        3.0
    );
}

/// A destination service that accepts connections and never answers, so
/// every resolution waits out `--destination-resolve-timeout`.
async fn silent_destination() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_destinations_are_bounded() {
    let a = upstream(|_| async { text(200, "a") }).await;
    let b = upstream(|_| async { text(200, "b") }).await;
    let (destination, _silent) = silent_destination().await;
    let proxy = proxy(&[
        "--destination-addr",
        &format!("http://{destination}"),
        "--destination-resolve-timeout",
        "1s",
        "--outbound-max-authorities",
        "1",
    ])
    .await;
    let (host_a, host_b) = (a.addr.to_string(), b.addr.to_string());
    let outbound = proxy.outbound_addr;

    // While `a` is being resolved the cache is full: `b` is refused.
    let first = tokio::spawn(async move { get(&http1_client(), outbound, &host_a, "/").await.0 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, headers, _) = get(&http1_client(), outbound, &host_b, "/").await;
    assert_eq!(status, 503);
    assert_eq!(
        headers["conduit-proxy-error"],
        "too many outbound authorities being resolved at once"
    );
    assert_eq!(
        first.await.unwrap(),
        200,
        "resolved by DNS after the timeout"
    );

    // Once `a` is resolved, `b` takes its place.
    let (status, _, body) = get(&http1_client(), outbound, &b.addr.to_string(), "/").await;
    assert_eq!((status, body.as_ref()), (200, b"b".as_ref()));
    let req = Request::get(format!("http://{outbound}/"))
        .header(http::header::HOST, a.addr.to_string())
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&http1_client(), req).await.0, 200);
    assert_eq!((a.hits(), b.hits()), (2, 1));
}
