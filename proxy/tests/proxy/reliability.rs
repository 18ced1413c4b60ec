//! Retries within a budget and timeouts, driven by profiles from a real
//! destination server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use conduit_proxy::{PROXY_ERROR_HEADER, Proxy, RETRY_ATTEMPT_HEADER};
use http::Request;
use http_body_util::{BodyExt, Full};

use crate::controller::{Controller, profile};
use crate::support::*;

/// Fails 3 of every 10 requests it receives, never two in a row, and
/// counts the retried attempts it sees.
struct Flaky {
    upstream: Upstream,
    retried: Arc<AtomicUsize>,
}

async fn flaky() -> Flaky {
    let n = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let r = retried.clone();
    let upstream = upstream(move |req| {
        let i = n.fetch_add(1, SeqCst);
        if req.headers().contains_key(RETRY_ATTEMPT_HEADER) {
            r.fetch_add(1, SeqCst);
        }
        // 0, 7, 4, 1, 8, 5, 2, 9, 6, 3: values below 3 fail.
        let status = if (i * 7) % 10 < 3 { 500 } else { 200 };
        async move { text(status, "") }
    })
    .await;
    Flaky { upstream, retried }
}

async fn routed_proxy(
    controller: &Controller,
    authority: &str,
    backend: std::net::SocketAddr,
) -> Proxy {
    controller.set_endpoints(authority, &[backend]);
    proxy(&["--destination-addr", &format!("http://{}", controller.addr)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_failures() {
    let app = flaky().await;
    let controller = Controller::start().await;
    controller.set_profile(
        "flaky.test:80",
        profile::of(
            vec![profile::retrying(
                profile::route("flaky", "/flaky/.*"),
                3,
                &[],
            )],
            Some(profile::budget(0.5, 10)),
        ),
    );
    let proxy = routed_proxy(&controller, "flaky.test:80", app.upstream.addr).await;
    let client = http1_client();
    let mut ok = 0;
    for i in 0..1000 {
        if get(
            &client,
            proxy.outbound_addr,
            "flaky.test",
            &format!("/flaky/{i}"),
        )
        .await
        .0 == 200
        {
            ok += 1;
        }
    }
    assert!(ok >= 990, "{ok} of 1000 succeeded");
    let attempts = app.upstream.hits();
    let retries = app.retried.load(SeqCst);
    assert_eq!(
        attempts,
        1000 + retries,
        "every extra attempt carries {RETRY_ATTEMPT_HEADER}"
    );
    assert!(retries >= 250, "about 30 % needed a retry: {retries}");
    assert!(
        retries as f64 <= 0.5 * 1000.0 + 10.0 * 10.0,
        "within the budget: {retries}"
    );

    let route = [
        ("direction", "outbound"),
        ("authority", "flaky.test:80"),
        ("route", "flaky"),
    ];
    let m = metrics_when(proxy.admin_addr, "1000 route responses", |m| {
        m.sum("route_response_total", &route) >= 1000.0
    })
    .await;
    assert_eq!(m.sum("route_request_total", &route), 1000.0);
    assert_eq!(m.sum("route_retry_total", &route), retries as f64);
    assert_eq!(m.sum("route_response_latency_ms_count", &route), 1000.0);
    let endpoint = [
        ("direction", "outbound"),
        ("authority", "flaky.test:80"),
        ("dst_deployment", "backend"),
    ];
    assert_eq!(
        m.sum("request_total", &endpoint),
        attempts as f64,
        "the endpoint saw every attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries() {
    let app = flaky().await;
    let controller = Controller::start().await;
    controller.set_profile(
        "flaky.test:80",
        profile::of(
            vec![profile::retrying(profile::route("flaky", "/.*"), 5, &[])],
            Some(profile::budget(0.1, 0)),
        ),
    );
    let proxy = routed_proxy(&controller, "flaky.test:80", app.upstream.addr).await;
    let client = http1_client();
    let mut ok = 0;
    for _ in 0..500 {
        if get(&client, proxy.outbound_addr, "flaky.test", "/").await.0 == 200 {
            ok += 1;
        }
    }
    let retries = app.retried.load(SeqCst);
    // 10 % of 500 requests (all within the 10 s window).
    assert!(retries <= 50, "{retries} retries exceed the 10 % budget");
    assert!(retries >= 40, "the budget was used: {retries}");
    assert_eq!(app.upstream.hits(), 500 + retries);
    assert!(
        ok < 495,
        "without enough budget some failures stay visible: {ok}"
    );
    let route = [("route", "flaky")];
    let m = metrics_when(proxy.admin_addr, "500 route responses", |m| {
        m.sum("route_response_total", &route) >= 500.0
    })
    .await;
    assert_eq!(m.sum("route_retry_total", &route), retries as f64);
    assert_eq!(
        m.sum("route_retry_budget_exhausted_total", &route),
        (500 - ok) as f64,
        "each visible failure was a retry the budget refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_replayed() {
    // Fails every first attempt; echoes the body of the second.
    let app = upstream(|req| async move {
        let retried = req.headers().get(RETRY_ATTEMPT_HEADER).cloned();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        match retried {
            Some(attempt) => {
                assert_eq!(attempt, "2");
                text(200, body)
            }
            None => text(503, ""),
        }
    })
    .await;
    let controller = Controller::start().await;
    controller.set_profile(
        "echo.test:80",
        profile::of(
            vec![profile::retrying(
                profile::route("post", "/.*"),
                2,
                &["POST"],
            )],
            None,
        ),
    );
    let proxy = routed_proxy(&controller, "echo.test:80", app.addr).await;
    let client = http1_client();
    for i in 0..5 {
        let payload = format!("payload number {i}").repeat(100);
        let req = Request::post(format!("http://{}/echo", proxy.outbound_addr))
            .header("host", "echo.test")
            .body(Full::from(payload.clone()))
            .unwrap();
        let (status, _, body) = send(&client, req).await;
        assert_eq!(status, 200);
        assert_eq!(body, payload.as_bytes(), "the retry carried the same body");
    }
    assert_eq!(app.hits(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeouts_give_504() {
    let app = upstream(|_| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        text(200, "late")
    })
    .await;
    let controller = Controller::start().await;
    let mut p = profile::of(
        vec![profile::with_timeout(
            profile::route("slow", "/slow"),
            Duration::from_millis(100),
        )],
        None,
    );
    p.default_timeout = Some(profile::duration(Duration::from_millis(300)));
    controller.set_profile("slow.test:80", p);
    let proxy = routed_proxy(&controller, "slow.test:80", app.addr).await;
    let client = http1_client();

    for (path, timeout) in [("/slow", 100), ("/other", 300)] {
        let start = Instant::now();
        let (status, headers, _) = get(&client, proxy.outbound_addr, "slow.test", path).await;
        let elapsed = start.elapsed();
        assert_eq!(status, 504, "{path}");
        assert_eq!(headers[PROXY_ERROR_HEADER], "request timeout");
        let t = Duration::from_millis(timeout);
        assert!(
            elapsed >= t && elapsed < t + Duration::from_millis(600),
            "{path}: {elapsed:?}"
        );
    }
    let route = [
        ("route", "slow"),
        ("status_code", "504"),
        ("classification", "failure"),
    ];
    metrics_when(proxy.admin_addr, "the route's 504", |m| {
        m.sum("route_response_total", &route) == 1.0
    })
    .await;
}
