//! Each failure the proxy produces, provoked by its real cause, carries its
//! reason from the closed set: in the `error_reason` label of
//! `response_total` (or `route_response_total`) and in the tap event.

use std::net::SocketAddr;
use std::time::Duration;

use conduit_api::proto::tap::v1::tap_client::TapClient;
use conduit_api::proto::tap::v1::{ObserveRequest, TapEvent};
use conduit_proxy::{PROXY_ERROR_HEADER, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Streaming;

use crate::controller::{Controller, profile};
use crate::support::*;

/// Every request the proxy taps from now on.
async fn tap_all(proxy: &Proxy) -> Streaming<TapEvent> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.tap_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TapClient::new(channel)
        .observe(ObserveRequest::default())
        .await
        .unwrap()
        .into_inner()
}

async fn next_event(s: &mut Streaming<TapEvent>) -> TapEvent {
    tokio::time::timeout(WAIT, s.message())
        .await
        .expect("a tap event in time")
        .unwrap()
        .expect("the tap stream stays open")
}

/// Sends one outbound GET and checks its status, that the proxy named the
/// cause in `conduit-proxy-error`, that the tap event carries `reason`,
/// and that `response_total` counted it with `reason`.
async fn expect_outbound(proxy: &Proxy, authority: &str, status: u16, reason: &str) {
    let mut tap = tap_all(proxy).await;
    let (got, headers, _) = get(&http1_client(), proxy.outbound_addr, authority, "/").await;
    assert_eq!(got, status, "{reason}");
    assert!(headers.contains_key(PROXY_ERROR_HEADER), "{reason}");
    let event = next_event(&mut tap).await;
    assert_eq!(event.error_reason, reason, "{event:?}");
    assert!(!event.error.is_empty(), "the human text stays: {event:?}");
    let status = status.to_string();
    let labels = [
        ("direction", "outbound"),
        ("status_code", status.as_str()),
        ("classification", "failure"),
        ("error_reason", reason),
    ];
    metrics_when(proxy.admin_addr, reason, |m| {
        m.sum("response_total", &labels) == 1.0
    })
    .await;
}

fn endpoint(authority: &str, addr: SocketAddr) -> String {
    format!("{authority}={addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoints_is_fail_fast() {
    let controller = Controller::start().await;
    controller.set_endpoints("empty.test:80", &[]);
    let proxy = proxy(&["--destination-addr", &format!("http://{}", controller.addr)]).await;
    expect_outbound(&proxy, "empty.test", 503, "fail_fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unreachable() {
    let dead = closed_port().await;
    let proxy = proxy(&["--outbound-endpoint", &endpoint("dead.test:80", dead)]).await;
    expect_outbound(&proxy, "dead.test", 502, "unreachable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_breaker_open_is_breaker_open() {
    let failing = upstream(|_| async { text(500, "") }).await;
    let proxy = proxy(&[
        "--outbound-endpoint",
        &endpoint("failing.test:80", failing.addr),
        "--failure-accrual-consecutive",
        "2",
        "--failure-accrual-backoff",
        "1m",
    ])
    .await;
    let client = http1_client();
    for _ in 0..2 {
        let (status, headers, _) = get(&client, proxy.outbound_addr, "failing.test", "/").await;
        assert_eq!(status, 500);
        assert!(!headers.contains_key(PROXY_ERROR_HEADER), "the app's 500");
    }
    expect_outbound(&proxy, "failing.test", 503, "breaker_open").await;
    let m = metrics(proxy.admin_addr).await;
    let app_500 = [("status_code", "500"), ("classification", "failure")];
    assert_eq!(m.sum("response_total", &app_500), 2.0);
    assert!(
        m.matching("response_total", &app_500)
            .all(|(labels, _)| !labels.contains_key("error_reason")),
        "the application's own failures have no reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_without_an_answer_is_upstream_reset() {
    // Reads the request, then closes the connection without a response.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let proxy = proxy(&["--outbound-endpoint", &endpoint("reset.test:80", addr)]).await;
    expect_outbound(&proxy, "reset.test", 502, "upstream_reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_accept_queue_is_connect_timeout() {
    // A listener that never accepts, its queue already full: the kernel
    // drops further SYNs, so connecting hangs until the proxy gives up.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let proxy = proxy(&[
        "--outbound-endpoint",
        &endpoint("full.test:80", addr),
        "--connect-timeout",
        "300ms",
    ])
    .await;
    expect_outbound(&proxy, "full.test", 504, "connect_timeout").await;
    drop((listener, fillers));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_headers_in_time_is_response_timeout() {
    let slow = upstream(|_| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        text(200, "late")
    })
    .await;
    let proxy = proxy(&[
        "--outbound-endpoint",
        &endpoint("slow.test:80", slow.addr),
        "--outbound-request-timeout",
        "200ms",
    ])
    .await;
    expect_outbound(&proxy, "slow.test", 504, "response_timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_the_budget_refuses_is_retry_budget_exhausted() {
    let failing = upstream(|_| async { text(500, "") }).await;
    let controller = Controller::start().await;
    controller.set_endpoints("retry.test:80", &[failing.addr]);
    controller.set_profile(
        "retry.test:80",
        profile::of(
            vec![profile::retrying(profile::route("all", "/.*"), 3, &[])],
            Some(profile::budget(0.0, 0)),
        ),
    );
    let proxy = proxy(&["--destination-addr", &format!("http://{}", controller.addr)]).await;
    let client = http1_client();
    // The profile arrives shortly after the endpoints.
    let mut tap = tap_all(&proxy).await;
    let mut event = TapEvent::default();
    for _ in 0..50 {
        let (status, _, _) = get(&client, proxy.outbound_addr, "retry.test", "/").await;
        assert_eq!(status, 500, "the application's answer, not retried");
        event = next_event(&mut tap).await;
        if !event.error_reason.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(event.error_reason, "retry_budget_exhausted", "{event:?}");
    assert_eq!(event.http_status, 500);
    let route = [
        ("route", "all"),
        ("classification", "failure"),
        ("error_reason", "retry_budget_exhausted"),
    ];
    let m = metrics_when(proxy.admin_addr, "the route's failure", |m| {
        m.sum("route_response_total", &route) >= 1.0
    })
    .await;
    assert_eq!(
        m.sum("route_response_total", &route),
        m.sum("route_retry_budget_exhausted_total", &[("route", "all")]),
        "each refused retry is one failed request of the route"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_request_is_unauthorized() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--default-inbound-policy",
        "deny",
    ])
    .await;
    let mut tap = tap_all(&proxy).await;
    let (status, headers, _) = get(&http1_client(), proxy.inbound_addr, "web.test:80", "/").await;
    assert_eq!(status, 403);
    assert_eq!(headers[PROXY_ERROR_HEADER], "unauthorized");
    let event = next_event(&mut tap).await;
    assert_eq!(event.error_reason, "unauthorized", "{event:?}");
    let denied = [
        ("direction", "inbound"),
        ("status_code", "403"),
        ("error_reason", "unauthorized"),
    ];
    metrics_when(proxy.admin_addr, "the denial", |m| {
        m.sum("response_total", &denied) == 1.0
    })
    .await;
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_detect_timeout() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--header-read-timeout",
        "300ms",
    ])
    .await;
    let mut s = TcpStream::connect(proxy.inbound_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with(b"HTTP/1.1 408 "));
    let timed_out = [
        ("direction", "inbound"),
        ("status_code", "408"),
        ("error_reason", "detect_timeout"),
    ];
    metrics_when(proxy.admin_addr, "the 408", |m| {
        m.sum("response_total", &timed_out) == 1.0 && m.sum("request_total", &[]) == 1.0
    })
    .await;
    assert_eq!(app.hits(), 0);
}
