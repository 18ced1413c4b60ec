//! Load balancing and circuit breaking over real upstreams.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use crate::support::*;

/// Four concurrent clients sending `total` requests in all; returns the
/// statuses seen.
async fn load(proxy: std::net::SocketAddr, host: &'static str, total: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move {
            let client = http1_client();
            let mut statuses = Vec::new();
            for _ in 0..total / 4 {
                statuses.push(get(&client, proxy, host, "/").await.0);
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_gets_little_load() {
    let fast_a = upstream(|_| async { text(200, "a") }).await;
    let fast_b = upstream(|_| async { text(200, "b") }).await;
    let slow = upstream(|_| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        text(200, "slow")
    })
    .await;
    let endpoints: Vec<String> = [&fast_a, &fast_b, &slow]
        .iter()
        .map(|u| format!("svc.test:80={}", u.addr))
        .collect();
    let mut args = Vec::new();
    for e in &endpoints {
        args.extend(["--outbound-endpoint", e.as_str()]);
    }
    let proxy = proxy(&args).await;
    let statuses = load(proxy.outbound_addr, "svc.test", 1000).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let total = fast_a.hits() + fast_b.hits() + slow.hits();
    assert_eq!(total, 1000);
    assert!(
        slow.hits() < 100,
        "the slow endpoint got {} of 1000",
        slow.hits()
    );
    assert!(
        fast_a.hits() > 200 && fast_b.hits() > 200,
        "both fast endpoints share the load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_then_probed_back() {
    // The healthy endpoint is the slower one, so the balancer's latency
    // estimate prefers the dead endpoint's fast 500s: only the breaker
    // keeps requests away from it.
    let healthy = upstream(|_| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        text(200, "ok")
    })
    .await;
    let dead = Arc::new(AtomicBool::new(true));
    let d = dead.clone();
    let flaky = upstream(move |_| {
        let status = if d.load(SeqCst) { 500 } else { 200 };
        async move { text(status, "") }
    })
    .await;
    let (a, b) = (
        format!("svc.test:80={}", healthy.addr),
        format!("svc.test:80={}", flaky.addr),
    );
    let proxy = proxy(&[
        "--outbound-endpoint",
        &a,
        "--outbound-endpoint",
        &b,
        "--failure-accrual-consecutive",
        "3",
        "--failure-accrual-backoff",
        "300ms",
    ])
    .await;
    let client = http1_client();
    let start = std::time::Instant::now();
    let mut failures = 0;
    for _ in 0..200 {
        if get(&client, proxy.outbound_addr, "svc.test", "/").await.0 != 200 {
            failures += 1;
        }
    }
    let elapsed = start.elapsed();
    // Three failures trip the breaker; afterwards only probes get through,
    // the first after 300 ms, then 600 ms, 1.2 s... (at most 3 s).
    let probes = probes_within(elapsed, Duration::from_millis(300));
    assert_eq!(
        failures,
        flaky.hits(),
        "every request the dead endpoint got failed"
    );
    assert!(
        flaky.hits() >= 3 && flaky.hits() <= 3 + probes,
        "the dead endpoint got {} requests in {elapsed:?} (at most {} expected)",
        flaky.hits(),
        3 + probes
    );

    dead.store(false, SeqCst);
    let before = flaky.hits();
    eventually("the recovered endpoint to be probed back", || async {
        let status = get(&client, proxy.outbound_addr, "svc.test", "/").await.0;
        assert_eq!(status, 200, "no failure after recovery");
        (flaky.hits() > before + 20).then_some(())
    })
    .await;
}

/// How many probes a doubling backoff allows in `elapsed`.
fn probes_within(elapsed: Duration, first: Duration) -> usize {
    let (mut at, mut step, mut n) = (first, first, 0);
    while at <= elapsed + Duration::from_millis(100) {
        n += 1;
        step = (step * 2).min(first * 10);
        at += step;
    }
    n
}
