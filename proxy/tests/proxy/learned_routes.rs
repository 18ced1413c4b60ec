//! Routes that discover themselves: requests no profile route matches are
//! counted per learned path template, within a template budget, on the
//! same `route_*` series as a profile's routes.

use std::net::SocketAddr;

use crate::controller::{Controller, profile};
use crate::support::*;

const AUTHORITY: &str = "vote.test:80";

/// A proxy whose destination service knows `AUTHORITY`, with `extra`
/// flags; a profile, if any, is set on the controller before.
async fn routed_proxy(
    controller: &Controller,
    backend: SocketAddr,
    extra: &[&str],
) -> conduit_proxy::Proxy {
    controller.set_endpoints(AUTHORITY, &[backend]);
    let destination = format!("http://{}", controller.addr);
    let mut flags = vec!["--destination-addr", &destination];
    flags.extend_from_slice(extra);
    proxy(&flags).await
}

/// Sends a GET of each path over `connections` kept-alive connections
/// at once; each must answer `expect(path)`.
async fn send_all(
    proxy: SocketAddr,
    paths: Vec<String>,
    connections: usize,
    expect: fn(&str) -> u16,
) {
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); connections];
    for (i, p) in paths.into_iter().enumerate() {
        shares[i % connections].push(p);
    }
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            tokio::spawn(async move {
                let client = http1_client();
                for p in share {
                    let (status, _, _) = get(&client, proxy, AUTHORITY, &p).await;
                    assert_eq!(status, expect(&p), "{p}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
}

fn route_series(m: &Metrics) -> Vec<String> {
    let mut routes: Vec<String> = m
        .matching("route_request_total", &[("authority", AUTHORITY)])
        .map(|(l, _)| l["route"].clone())
        .collect();
    routes.sort();
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_over_500_ids_make_one_learned_route() {
    /// Ids ending in 7 fail: 1 in 10.
    fn status(path: &str) -> u16 {
        let path = path.split('?').next().unwrap_or(path);
        if path.ends_with('7') { 500 } else { 200 }
    }
    let app = upstream(|req| async move { text(status(req.uri().path()), "") }).await;
    let controller = Controller::start().await;
    // Failures come in no runs, but the breaker is not under test here.
    let proxy = routed_proxy(
        &controller,
        app.addr,
        &["--failure-accrual-consecutive", "1000"],
    )
    .await;
    // Query strings differ too: they never count.
    let paths: Vec<String> = (0..10_000)
        .map(|i| format!("/api/vote/{}?choice={i}", 1000 + i % 500))
        .collect();
    let failing = paths.iter().filter(|p| status(p) == 500).count();
    assert_eq!(failing, 1_000);
    send_all(proxy.outbound_addr, paths, 8, status).await;

    let route = [
        ("direction", "outbound"),
        ("authority", AUTHORITY),
        ("route", "GET /api/vote/{id}"),
        ("learned", "true"),
    ];
    let m = metrics_when(proxy.admin_addr, "10 000 route responses", |m| {
        m.sum("route_response_total", &route) >= 10_000.0
    })
    .await;
    assert_eq!(route_series(&m), ["GET /api/vote/{id}"], "{}", m.text);
    assert_eq!(m.sum("route_request_total", &route), 10_000.0);
    assert_eq!(m.sum("route_response_latency_ms_count", &route), 10_000.0);
    let class = |c: &str| {
        let mut l = route.to_vec();
        l.push(("classification", c));
        m.sum("route_response_total", &l)
    };
    assert_eq!(class("failure"), failing as f64);
    assert_eq!(class("success"), (10_000 - failing) as f64);
    assert_eq!(
        m.sum("metrics_label_sets_overflow_total", &[]),
        0.0,
        "the label set budget is untouched"
    );
    assert_eq!(m.sum("learned_routes_overflow_total", &[]), 0.0);
    assert_eq!(
        m.matching("route_request_total", &[]).count(),
        1,
        "one route series in all: {}",
        m.text
    );
}

/// Thousands of distinct words (no identifiers) in one segment: each would
/// be a template of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_spend_the_template_budget_and_no_more() {
    const PATHS: usize = 3_000;
    /// The default `--learned-routes-max`.
    const BUDGET: usize = 100;
    let app = upstream(|_| async { text(200, "ok") }).await;
    let controller = Controller::start().await;
    let proxy = routed_proxy(&controller, app.addr, &[]).await;
    let word = |mut i: usize| {
        let mut w = String::from("w");
        loop {
            w.push(char::from(b'a' + (i % 26) as u8));
            i /= 26;
            if i == 0 {
                return w;
            }
        }
    };
    let paths: Vec<String> = (0..PATHS).map(|i| format!("/page/{}", word(i))).collect();
    send_all(proxy.outbound_addr, paths, 8, |_| 200).await;

    let learned = [("authority", AUTHORITY), ("learned", "true")];
    let m = metrics_when(proxy.admin_addr, "every route response", |m| {
        m.sum("route_response_total", &learned) >= PATHS as f64
    })
    .await;
    let routes = route_series(&m);
    assert_eq!(routes.len(), BUDGET + 1, "{routes:?}");
    assert!(routes.contains(&"_overflow".to_string()), "{routes:?}");
    let overflow = [
        ("authority", AUTHORITY),
        ("route", "_overflow"),
        ("learned", "true"),
    ];
    assert_eq!(
        m.sum("route_request_total", &overflow),
        (PATHS - BUDGET) as f64
    );
    assert_eq!(
        m.sum("learned_routes_overflow_total", &[("reason", "budget")]),
        (PATHS - BUDGET) as f64
    );
    assert_eq!(m.sum("route_request_total", &learned), PATHS as f64);
    assert_eq!(
        m.sum("metrics_label_sets_overflow_total", &[]),
        0.0,
        "the templates ran out long before the label sets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_budget_is_a_flag_and_zero_turns_learning_off() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let controller = Controller::start().await;
    let small = routed_proxy(&controller, app.addr, &["--learned-routes-max", "2"]).await;
    let off = routed_proxy(&controller, app.addr, &["--learned-routes-max", "0"]).await;
    let paths: Vec<String> = ["/a", "/b/1", "/b/2", "/c", "/d"]
        .map(String::from)
        .to_vec();
    send_all(small.outbound_addr, paths.clone(), 1, |_| 200).await;
    send_all(off.outbound_addr, paths, 1, |_| 200).await;
    let m = metrics_when(small.admin_addr, "five route responses", |m| {
        m.sum("route_response_total", &[]) >= 5.0
    })
    .await;
    assert_eq!(route_series(&m), ["GET /a", "GET /b/{id}", "_overflow"]);
    assert_eq!(
        m.sum("learned_routes_overflow_total", &[("reason", "budget")]),
        2.0
    );
    let m = metrics_when(off.admin_addr, "five responses", |m| {
        m.sum("response_total", &[]) >= 5.0
    })
    .await;
    assert!(route_series(&m).is_empty(), "{}", m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_route_wins_over_a_learned_one() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let controller = Controller::start().await;
    controller.set_profile(
        AUTHORITY,
        profile::of(vec![profile::route("votes", "/api/vote/.*")], None),
    );
    let proxy = routed_proxy(&controller, app.addr, &[]).await;
    let mut paths: Vec<String> = (0..50).map(|i| format!("/api/vote/{i}")).collect();
    paths.extend((0..20).map(|i| format!("/api/list/{i}")));
    send_all(proxy.outbound_addr, paths, 2, |_| 200).await;
    let m = metrics_when(proxy.admin_addr, "70 route responses", |m| {
        m.sum("route_response_total", &[("authority", AUTHORITY)]) >= 70.0
    })
    .await;
    assert_eq!(route_series(&m), ["GET /api/list/{id}", "votes"]);
    let (votes, _) = m
        .matching("route_request_total", &[("route", "votes")])
        .next()
        .expect("the profile route's series");
    assert!(!votes.contains_key("learned"), "{votes:?}");
    assert_eq!(m.sum("route_request_total", &[("route", "votes")]), 50.0);
    let learned = [("route", "GET /api/list/{id}"), ("learned", "true")];
    assert_eq!(m.sum("route_request_total", &learned), 20.0);
}
