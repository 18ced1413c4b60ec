//! HTTP/1.1 and HTTP/2 through the proxy, counted exactly.

use std::sync::{Arc, Mutex};

use http::{Request, Version};
use http_body_util::Full;

use crate::support::*;

/// `/ok` → 200, `/missing` → 404, `/fail` → 500.
async fn status_upstream() -> Upstream {
    upstream(|req| async move {
        let status = match req.uri().path() {
            "/missing" => 404,
            "/fail" => 500,
            _ => 200,
        };
        text(status, "hello")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_http1_counts_are_exact() {
    let app = status_upstream().await;
    let proxy = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    let client = http1_client();
    for (path, n, status) in [("/ok", 20, 200), ("/missing", 5, 404), ("/fail", 5, 500)] {
        for _ in 0..n {
            let (s, _, body) = get(&client, proxy.inbound_addr, "web.test:8080", path).await;
            assert_eq!((s, body.as_ref()), (status, b"hello".as_ref()));
        }
    }
    let base = [
        ("direction", "inbound"),
        ("authority", "web.test:8080"),
        ("namespace", "test"),
        ("deployment", "web"),
        ("pod", "web-0"),
        ("tls", "no_identity"),
    ];
    let m = metrics_when(proxy.admin_addr, "30 responses", |m| {
        m.sum("response_total", &base) >= 30.0
    })
    .await;
    assert_eq!(m.sum("request_total", &base), 30.0);
    assert_eq!(m.sum("response_total", &base), 30.0);
    let by = |code: &str, class: &str| {
        let mut l = base.to_vec();
        l.extend([("status_code", code), ("classification", class)]);
        m.sum("response_total", &l)
    };
    assert_eq!(by("200", "success"), 20.0);
    assert_eq!(by("404", "success"), 5.0);
    assert_eq!(by("500", "failure"), 5.0);
    assert_eq!(by("500", "success") + by("200", "failure"), 0.0);
    assert_eq!(m.sum("response_latency_ms_count", &base), 30.0);
    let mut inf = base.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(m.sum("response_latency_ms_bucket", &inf), 30.0);
    assert!(m.sum("response_latency_ms_sum", &base) > 0.0);
    assert_eq!(app.hits(), 30);
    // Every accepted connection is counted on the source side.
    assert!(
        m.sum(
            "tcp_open_total",
            &[("direction", "inbound"), ("peer", "src")]
        ) >= 1.0
    );
    assert!(
        m.sum(
            "tcp_read_bytes_total",
            &[("direction", "inbound"), ("peer", "src")]
        ) > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_http2_end_to_end() {
    let app = upstream(|req| async move {
        let v = format!("{:?}", req.version());
        text(200, v)
    })
    .await;
    let proxy = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    let client = h2_client();
    for _ in 0..10 {
        let req = Request::get(format!("http://{}/h2", proxy.inbound_addr))
            .body(Full::default())
            .unwrap();
        let (s, _, body) = send(&client, req).await;
        assert_eq!(s, 200);
        assert_eq!(body.as_ref(), b"HTTP/2.0", "the application sees HTTP/2");
    }
    let authority = proxy.inbound_addr.to_string();
    let labels = [("direction", "inbound"), ("authority", authority.as_str())];
    let m = metrics_when(proxy.admin_addr, "10 responses", |m| {
        m.sum("response_total", &labels) >= 10.0
    })
    .await;
    assert_eq!(m.sum("request_total", &labels), 10.0);
    assert_eq!(m.sum("response_latency_ms_count", &labels), 10.0);
}

/// The application's HTTP/1.1 goes over one multiplexed HTTP/2 connection
/// between the two proxies and arrives as HTTP/1.1 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_is_carried_over_h2_between_proxies() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = upstream(move |req| {
        let s = s.clone();
        async move {
            let orig = req.headers().get("conduit-orig-proto").cloned();
            s.lock()
                .unwrap()
                .push((req.version(), orig, req.headers().get("host").cloned()));
            text(200, "from b")
        }
    })
    .await;
    let server_proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--deployment",
        "b",
    ])
    .await;
    let endpoint = format!(
        "b.test:80={};h2;deployment=test/b",
        server_proxy.inbound_addr
    );
    let client_proxy = proxy(&["--outbound-endpoint", &endpoint]).await;

    // The first request opens the connection between the proxies; the
    // next ten, concurrent on separate downstream connections, share it.
    let (status, _, _) = get(&http1_client(), client_proxy.outbound_addr, "b.test", "/x").await;
    assert_eq!(status, 200);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let addr = client_proxy.outbound_addr;
        // A fresh client each: ten separate downstream connections.
        tasks.push(tokio::spawn(async move {
            get(&http1_client(), addr, "b.test", "/x").await
        }));
    }
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!((status, body.as_ref()), (200, b"from b".as_ref()));
    }
    for (version, orig, host) in seen.lock().unwrap().iter() {
        assert_eq!(*version, Version::HTTP_11);
        assert!(
            orig.is_none(),
            "conduit-orig-proto must not reach the application"
        );
        assert_eq!(host.as_ref().map(|h| h.to_str().unwrap()), Some("b.test"));
    }

    let out = [
        ("direction", "outbound"),
        ("authority", "b.test:80"),
        ("dst_namespace", "test"),
        ("dst_deployment", "b"),
    ];
    let m = metrics_when(client_proxy.admin_addr, "11 outbound responses", |m| {
        m.sum("response_total", &out) >= 11.0
    })
    .await;
    assert_eq!(m.sum("request_total", &out), 11.0);
    let mut ok = out.to_vec();
    ok.extend([("status_code", "200"), ("classification", "success")]);
    assert_eq!(m.sum("response_total", &ok), 11.0);
    let dst = [
        ("direction", "outbound"),
        ("peer", "dst"),
        ("dst_deployment", "b"),
    ];
    assert_eq!(
        m.sum("tcp_open_total", &dst),
        1.0,
        "concurrent requests share one HTTP/2 connection between the proxies"
    );
    let m = metrics_when(server_proxy.admin_addr, "11 inbound responses", |m| {
        m.sum("response_total", &[("direction", "inbound")]) >= 11.0
    })
    .await;
    assert_eq!(
        m.sum(
            "request_total",
            &[("direction", "inbound"), ("authority", "b.test:80")]
        ),
        11.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_and_forwarded_headers_kept() {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let app = upstream(move |req| {
        *s.lock().unwrap() = Some(req.headers().clone());
        async { text(200, "") }
    })
    .await;
    let plain = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    let req = Request::get(format!("http://{}/", plain.inbound_addr))
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-for", "10.1.2.3")
        .header("forwarded", "for=10.1.2.3")
        .header("x-end-to-end", "yes")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&http1_client(), req).await.0, 200);
    let h = seen.lock().unwrap().take().unwrap();
    for hop in ["x-hop", "keep-alive", "proxy-connection"] {
        assert!(!h.contains_key(hop), "{hop} was forwarded");
    }
    assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    assert_eq!(h["forwarded"], "for=10.1.2.3");
    assert_eq!(h["x-end-to-end"], "yes");

    let adding = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--inbound-add-forwarded",
    ])
    .await;
    let req = Request::get(format!("http://{}/", adding.inbound_addr))
        .header("forwarded", "for=10.1.2.3")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&http1_client(), req).await.0, 200);
    let h = seen.lock().unwrap().take().unwrap();
    let forwarded: Vec<_> = h
        .get_all("forwarded")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(forwarded[0], "for=10.1.2.3");
    assert!(
        forwarded[1].starts_with("for=\"127.0.0.1:") && forwarded[1].ends_with("\";proto=http"),
        "{forwarded:?}"
    );
}

/// An outbound authority with no static endpoint is found by DNS (here a
/// literal address, which resolves to itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_falls_back_to_dns() {
    let app = status_upstream().await;
    let proxy = proxy(&[]).await;
    let host = app.addr.to_string();
    let (status, _, body) = get(&http1_client(), proxy.outbound_addr, &host, "/ok").await;
    assert_eq!((status, body.as_ref()), (200, b"hello".as_ref()));
    let m = metrics_when(proxy.admin_addr, "the outbound response", |m| {
        m.sum(
            "response_total",
            &[("direction", "outbound"), ("authority", &host)],
        ) >= 1.0
    })
    .await;
    assert_eq!(
        m.sum(
            "request_total",
            &[("direction", "outbound"), ("authority", &host)]
        ),
        1.0
    );
}
