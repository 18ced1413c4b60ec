//! The flight recorder end to end: real requests through a real
//! `conduit-proxy` that samples nothing (`--tap-sample-rate 0`) into a
//! real store. Failed and slow requests are in the tap history anyway,
//! fast successes are not; the recorder's budget holds and its overflow
//! is counted; the store's exemplars name requests tap search finds.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::*;

async fn proxy(store: &TestStore, app: SocketAddr, extra: &[&str]) -> conduit_proxy::Proxy {
    let extra = [&["--tap-sample-rate=0"], extra].concat();
    start_proxy(app, &[store.grpc()], &extra).await
}

/// Sends `path` with `x-request-id: id`; its status.
async fn call(proxy: &conduit_proxy::Proxy, path: &str, id: &str) -> u16 {
    let req = hyper::Request::get(format!("http://{}{path}", proxy.inbound_addr))
        .header("x-request-id", id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(req).await.0
}

/// The tap history's events matching `q`, as JSON.
async fn search(store: &TestStore, q: &str) -> Vec<serde_json::Value> {
    let url = format!(
        "http://{}/api/v1/tap/search?limit=1000&q={}",
        store.http(),
        enc(q)
    );
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["data"].as_array().unwrap().clone()
}

fn ids(events: &[serde_json::Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `q` finds `n` events (or more).
async fn wait_for(store: &TestStore, q: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = search(store, q).await;
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{q}: {} of {n} events",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_and_slow_requests_are_recorded_at_a_zero_sample_rate() {
    let store = start_store(|_| {}).await;
    let app = path_backend(&[("/slow", 150, 200), ("/fail", 0, 503)], (0, 200)).await;
    let proxy = proxy(&store, app, &["--recorder-slow-threshold=100ms"]).await;
    let started = now_ms();
    for i in 0..20 {
        assert_eq!(call(&proxy, "/fast", &format!("fast-{i}")).await, 200);
    }
    for i in 0..3 {
        assert_eq!(call(&proxy, "/fail", &format!("fail-{i}")).await, 503);
    }
    for i in 0..2 {
        assert_eq!(call(&proxy, "/slow", &format!("slow-{i}")).await, 200);
    }

    let failed = wait_for(&store, "kept:failed", 3).await;
    let slow = wait_for(&store, "kept:slow", 2).await;
    assert_eq!(
        ids(&failed),
        BTreeSet::from(["fail-0", "fail-1", "fail-2"].map(String::from))
    );
    assert_eq!(
        ids(&slow),
        BTreeSet::from(["slow-0", "slow-1"].map(String::from))
    );
    for e in &failed {
        assert_eq!(e["status"], 503);
        assert_eq!(e["kept"], "failed");
        assert_eq!(e["path"], "/fail");
    }
    for e in &slow {
        assert!(e["latency_ms"].as_f64().unwrap() >= 150.0, "{e}");
    }
    // A report later, nothing else came: fast successes are not sampled.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = search(&store, "").await;
    assert_eq!(all.len(), 5, "{all:?}");

    // Exemplars: the recorded requests, in the bucket of their latency.
    let url = format!(
        "http://{}/api/v1/query_exemplars?query={}&start={}&end={}",
        store.http(),
        enc(
            r#"histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{deployment="web",direction="inbound"}[1m])) by (le))"#
        ),
        started / 1000 - 1,
        now_ms() / 1000 + 1,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let data = loop {
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        assert_eq!(v["status"], "success");
        let data = v["data"].as_array().unwrap().clone();
        let n: usize = data
            .iter()
            .map(|s| s["exemplars"].as_array().unwrap().len())
            .sum();
        if n >= 5 {
            break data;
        }
        assert!(Instant::now() < deadline, "exemplars: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut named = BTreeSet::new();
    for series in &data {
        let labels = &series["seriesLabels"];
        assert_eq!(labels["__name__"], "response_latency_ms_bucket");
        assert_eq!(labels["deployment"], "web");
        let le = labels["le"].as_str().unwrap();
        for e in series["exemplars"].as_array().unwrap() {
            let id = e["labels"]["trace_id"].as_str().unwrap().to_string();
            let value: f64 = e["value"].as_str().unwrap().parse().unwrap();
            let t = e["timestamp"].as_f64().unwrap();
            assert!(t * 1000.0 >= started as f64 - 1000.0, "{e}");
            if id.starts_with("slow") {
                assert!(value >= 150.0 && le == "200", "{le} {e}");
            }
            // Each one leads to its tap event.
            let found = search(&store, &format!("request_id:{id}")).await;
            assert_eq!(found.len(), 1, "{id}");
            named.insert(id);
        }
    }
    assert_eq!(named, ids(&failed).union(&ids(&slow)).cloned().collect());

    // Prometheus' errors for bad exemplar queries.
    for (query, want) in [
        ("query=sum(", "bad_data"),
        ("query=up&start=10&end=5", "bad_data"),
        ("query=up&start=yesterday", "bad_data"),
    ] {
        let (status, body) = get(&format!(
            "http://{}/api/v1/query_exemplars?{query}",
            store.http()
        ))
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        let v = json(&body);
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], want, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recorder_budget_holds_and_counts_its_overflow() {
    let store = start_store(|_| {}).await;
    let app = path_backend(&[("/slow", 150, 200), ("/fail", 0, 503)], (0, 200)).await;
    let proxy = proxy(&store, app, &["--recorder-max-rps=5"]).await;
    let began = Instant::now();
    let sent = 60;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let addr = proxy.inbound_addr;
        tasks.push(tokio::spawn(async move {
            for i in 0..sent / 6 {
                let req = hyper::Request::get(format!("http://{addr}/fail"))
                    .header("x-request-id", format!("burst-{t}-{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(send(req).await.0, 503);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = began.elapsed().as_secs_f64();
    // A full bucket of one second's worth, then 5 a second.
    let ceiling = 5 + (5.0 * secs).ceil() as usize + 1;

    let metrics = || async {
        let (_, text) = get(&format!("http://{}/metrics", proxy.admin_addr)).await;
        let recorded = conduit_testbed::metric_sum(&text, "tap_events_recorded_total", &[]);
        let overflow = conduit_testbed::metric_sum(&text, "tap_recorder_overflow_total", &[]);
        (recorded as usize, overflow as usize)
    };
    let (recorded, overflow) = metrics().await;
    assert!(
        (5..=ceiling).contains(&recorded),
        "{recorded} in {secs:.2} s"
    );
    assert_eq!(
        recorded + overflow,
        sent,
        "every failure is recorded or counted"
    );

    let found = wait_for(&store, "kept:failed", recorded).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        search(&store, "kept:failed").await.len(),
        recorded,
        "{found:?}"
    );

    // The overflow reaches the store like any counter.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = query(store.http(), "tap_recorder_overflow_total", now_ms()).await;
        let value = v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string);
        if value.as_deref() == Some(overflow.to_string().as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
