//! The destination client against a real destination server: live
//! endpoint changes, a controller restart under traffic, fallbacks, and
//! profiles that must be refused.

use std::time::Duration;

use conduit_api::proto::destination::v1::DestinationProfile;
use conduit_proxy::PROXY_ERROR_HEADER;

use crate::controller::{Controller, profile};
use crate::support::*;

fn destination(c: &Controller) -> String {
    format!("http://{}", c.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restart_fails_no_request() {
    let (a, b) = (
        upstream(|_| async { text(200, "a") }).await,
        upstream(|_| async { text(200, "b") }).await,
    );
    let controller = Controller::start().await;
    controller.set_endpoints("web.test:80", &[a.addr, b.addr]);
    let proxy = proxy(&["--destination-addr", &destination(&controller)]).await;

    let addr = proxy.outbound_addr;
    let traffic = tokio::spawn(async move {
        let client = http1_client();
        let mut statuses = Vec::new();
        for _ in 0..300 {
            statuses.push(get(&client, addr, "web.test", "/").await.0);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        statuses
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    controller.stop();
    tokio::time::sleep(Duration::from_millis(700)).await;
    controller.restart().await;
    let statuses = traffic.await.unwrap();
    assert_eq!(statuses.len(), 300);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "failed: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );

    // The subscription came back: a change made after the restart applies.
    let c = upstream(|_| async { text(200, "c") }).await;
    controller.set_endpoints("web.test:80", &[c.addr]);
    let client = http1_client();
    eventually(
        "traffic to the endpoint added after the restart",
        || async {
            get(&client, proxy.outbound_addr, "web.test", "/").await;
            (c.hits() > 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_gets_nothing_after_the_update() {
    let a = upstream(|_| async { text(200, "a") }).await;
    let b = upstream(|_| async { text(200, "b") }).await;
    let c = upstream(|_| async { text(200, "c") }).await;
    let controller = Controller::start().await;
    controller.set_endpoints("web.test:80", &[a.addr, b.addr]);
    let proxy = proxy(&["--destination-addr", &destination(&controller)]).await;
    let client = http1_client();
    for _ in 0..50 {
        assert_eq!(
            get(&client, proxy.outbound_addr, "web.test", "/").await.0,
            200
        );
    }
    assert!(a.hits() > 0 && b.hits() > 0);

    controller.set_endpoints("web.test:80", &[b.addr, c.addr]);
    eventually(
        "the update to arrive (the new endpoint gets traffic)",
        || async {
            assert_eq!(
                get(&client, proxy.outbound_addr, "web.test", "/").await.0,
                200
            );
            (c.hits() > 0).then_some(())
        },
    )
    .await;
    let (a_hits, rest) = (a.hits(), b.hits() + c.hits());
    for _ in 0..200 {
        assert_eq!(
            get(&client, proxy.outbound_addr, "web.test", "/").await.0,
            200
        );
    }
    assert_eq!(
        a.hits(),
        a_hits,
        "the removed endpoint got requests after the update"
    );
    assert_eq!(b.hits() + c.hits(), rest + 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_authorities_and_an_unreachable_controller_fall_back() {
    let app = upstream(|_| async { text(200, "direct") }).await;
    let host = app.addr.to_string();
    let controller = Controller::start().await;
    let knows_nothing = proxy(&["--destination-addr", &destination(&controller)]).await;
    let unreachable = proxy(&[
        "--destination-addr",
        &format!("http://{}", closed_port().await),
    ])
    .await;
    for p in [&knows_nothing, &unreachable] {
        let (status, _, body) = get(&http1_client(), p.outbound_addr, &host, "/").await;
        assert_eq!((status, body.as_ref()), (200, b"direct".as_ref()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_authority_without_endpoints_is_503() {
    let controller = Controller::start().await;
    controller.set_endpoints("empty.test:80", &[]);
    let proxy = proxy(&["--destination-addr", &destination(&controller)]).await;
    let (status, headers, _) = get(&http1_client(), proxy.outbound_addr, "empty.test", "/").await;
    assert_eq!(status, 503);
    assert_eq!(
        headers[PROXY_ERROR_HEADER],
        "no endpoints for empty.test:80"
    );

    // Endpoints appear: traffic flows without a new resolution.
    let app = upstream(|_| async { text(200, "up") }).await;
    controller.set_endpoints("empty.test:80", &[app.addr]);
    let client = http1_client();
    eventually("the new endpoint to be used", || async {
        (get(&client, proxy.outbound_addr, "empty.test", "/").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_profiles_are_rejected_and_the_previous_stays() {
    let app = upstream(|_| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        text(200, "late")
    })
    .await;
    let controller = Controller::start().await;
    controller.set_endpoints("slow.test:80", &[app.addr]);
    let good = profile::of(
        vec![profile::with_timeout(
            profile::route("slow", "/slow"),
            Duration::from_millis(100),
        )],
        None,
    );
    controller.set_profile("slow.test:80", good.clone());
    let proxy = proxy(&["--destination-addr", &destination(&controller)]).await;
    let client = http1_client();
    assert_eq!(
        get(&client, proxy.outbound_addr, "slow.test", "/slow")
            .await
            .0,
        504
    );

    // Each would lift the 100 ms timeout if it were applied.
    let mut negative = good.clone();
    negative.routes[0].timeout = Some(prost_types::Duration {
        seconds: -1,
        nanos: 0,
    });
    let absurd = DestinationProfile {
        retry_budget: Some(profile::budget(1e9, 10)),
        ..DestinationProfile::default()
    };
    let bad_regex = profile::of(vec![profile::route("books", "/books/(")], None);
    for (i, bad) in [negative, absurd, bad_regex].into_iter().enumerate() {
        controller.set_profile("slow.test:80", bad);
        let rejected = (i + 1) as f64;
        metrics_when(proxy.admin_addr, "the profile's rejection", |m| {
            m.sum("destination_profiles_rejected_total", &[]) == rejected
        })
        .await;
        let start = std::time::Instant::now();
        let (status, headers, _) = get(&client, proxy.outbound_addr, "slow.test", "/slow").await;
        assert_eq!(
            status, 504,
            "profile {i}: the previous profile's timeout still applies"
        );
        assert_eq!(headers[PROXY_ERROR_HEADER], "request timeout");
        assert!(start.elapsed() < Duration::from_millis(600));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_destinations_are_forgotten() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let controller = Controller::start().await;
    controller.set_endpoints("web.test:80", &[app.addr]);
    let proxy = proxy(&[
        "--destination-addr",
        &destination(&controller),
        "--destination-idle-timeout",
        "1s",
    ])
    .await;
    {
        let client = http1_client();
        assert_eq!(
            get(&client, proxy.outbound_addr, "web.test", "/").await.0,
            200
        );
        assert_eq!(
            controller.open_streams(),
            1,
            "one subscription for the authority"
        );
    }
    // The client and its connection are gone; after the idle timeout the
    // proxy closes its subscription.
    eventually("the idle subscription to close", || async {
        (controller.open_streams() == 0).then_some(())
    })
    .await;
    // Used again: subscribed again.
    assert_eq!(
        get(&http1_client(), proxy.outbound_addr, "web.test", "/")
            .await
            .0,
        200
    );
    assert_eq!(controller.open_streams(), 1);
}
