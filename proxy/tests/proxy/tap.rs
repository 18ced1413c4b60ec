//! Live tap over gRPC: a subscriber sees exactly the requests its filter
//! matches, at most its rate, and bad filters are refused.

use std::time::Duration;

use conduit_api::DeploymentRef;
use conduit_api::proto::mesh::v1::Direction;
use conduit_api::proto::tap::v1::tap_client::TapClient;
use conduit_api::proto::tap::v1::{Filter, ObserveRequest, TapEvent};
use http::Request;
use http_body_util::Full;
use tonic::Streaming;

use crate::support::*;

async fn subscribe(
    tap: std::net::SocketAddr,
    req: ObserveRequest,
) -> Result<Streaming<TapEvent>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{tap}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TapClient::new(channel);
    client.observe(req).await.map(|r| r.into_inner())
}

async fn next_event(s: &mut Streaming<TapEvent>, within: Duration) -> Option<TapEvent> {
    tokio::time::timeout(within, s.message())
        .await
        .ok()
        .and_then(|m| m.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_filter_sees_exactly_the_matching_requests() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    let filter = |prefix: &str| Filter {
        path_prefix: prefix.into(),
        ..Default::default()
    };
    let mut matching = subscribe(
        proxy.tap_addr,
        ObserveRequest {
            filter: Some(filter("/match")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut limited = subscribe(
        proxy.tap_addr,
        ObserveRequest {
            filter: Some(Filter {
                method: "POST".into(),
                ..Default::default()
            }),
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let client = http1_client();
    for i in 0..5 {
        get(
            &client,
            proxy.inbound_addr,
            "web.test:80",
            &format!("/match/{i}"),
        )
        .await;
        get(
            &client,
            proxy.inbound_addr,
            "web.test:80",
            &format!("/other/{i}"),
        )
        .await;
    }
    for i in 0..3 {
        let req = Request::post(format!("http://{}/post/{i}", proxy.inbound_addr))
            .header("host", "web.test:80")
            .header("x-request-id", format!("req-{i}"))
            .body(Full::from("12345"))
            .unwrap();
        send(&client, req).await;
    }

    for i in 0..5 {
        let e = next_event(&mut matching, WAIT)
            .await
            .expect("a matching event");
        assert_eq!(e.path, format!("/match/{i}"));
        assert_eq!(e.method, "GET");
        assert_eq!(e.authority, "web.test:80");
        assert_eq!(e.http_status, 200);
        assert_eq!(e.direction, Direction::Inbound as i32);
        assert_eq!(e.response_bytes, 2);
        assert!(e.response_latency_us > 0 && e.response_duration_us >= e.response_latency_us);
        assert!(!e.request_id.is_empty());
        let dst = e.destination.unwrap().deployment.map(DeploymentRef::from);
        assert_eq!(dst, Some(DeploymentRef::new("test", "web")));
    }
    assert!(
        next_event(&mut matching, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing else matched"
    );

    let first = next_event(&mut limited, WAIT).await.unwrap();
    assert_eq!(
        (first.method.as_str(), first.request_id.as_str()),
        ("POST", "req-0")
    );
    assert_eq!(first.request_bytes, 5);
    assert_eq!(
        next_event(&mut limited, WAIT).await.unwrap().request_id,
        "req-1"
    );
    assert!(
        limited.message().await.unwrap().is_none(),
        "the stream ends at its limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_rate_limited() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&["--inbound-app-addr", &app.addr.to_string()]).await;
    let mut slow = subscribe(
        proxy.tap_addr,
        ObserveRequest {
            max_rps: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let client = http1_client();
    let start = std::time::Instant::now();
    for _ in 0..30 {
        get(&client, proxy.inbound_addr, "web.test:80", "/").await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut seen = 0;
    while next_event(&mut slow, Duration::from_millis(300))
        .await
        .is_some()
    {
        seen += 1;
    }
    // A burst of 3, then 3 per second.
    let allowed = 3 + (elapsed * 3.0).ceil() as usize;
    assert!(
        seen >= 3 && seen <= allowed,
        "saw {seen}, allowed {allowed}"
    );
    let m = metrics(proxy.admin_addr).await;
    assert_eq!(m.sum("tap_events_dropped_total", &[]), (30 - seen) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_refused() {
    let proxy = proxy(&[]).await;
    for filter in [
        Filter {
            path_prefix: "no-slash".into(),
            ..Default::default()
        },
        Filter {
            method: "BAD METHOD".into(),
            ..Default::default()
        },
        Filter {
            direction: 9,
            ..Default::default()
        },
    ] {
        let err = subscribe(
            proxy.tap_addr,
            ObserveRequest {
                filter: Some(filter),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_past_the_cap_are_refused() {
    let proxy = proxy(&["--tap-max-subscribers", "2"]).await;
    let first = subscribe(proxy.tap_addr, ObserveRequest::default()).await;
    let second = subscribe(proxy.tap_addr, ObserveRequest::default()).await;
    assert!(first.is_ok() && second.is_ok());
    let third = subscribe(proxy.tap_addr, ObserveRequest::default())
        .await
        .expect_err("a third subscriber");
    assert_eq!(third.code(), tonic::Code::ResourceExhausted, "{third}");

    drop(first);
    eventually("a departed subscriber's slot is free again", || async {
        subscribe(proxy.tap_addr, ObserveRequest::default())
            .await
            .ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tap_requests_are_refused() {
    let proxy = proxy(&["--tap-max-request-bytes", "4096"]).await;
    let huge = ObserveRequest {
        filter: Some(Filter {
            path_prefix: format!("/{}", "a".repeat(8_192)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let refused = subscribe(proxy.tap_addr, huge)
        .await
        .expect_err("an 8 KiB filter");
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused}");
    assert!(
        subscribe(proxy.tap_addr, ObserveRequest::default())
            .await
            .is_ok()
    );
}
