//! Queries have limits that hold: text too long or too deeply nested is
//! refused before any parser runs (a query of 20 000 nested parentheses
//! used to overflow the stack and kill the store); queries past the
//! concurrency limit wait in line until their timeout; a query stops when
//! its client goes away; the sample budget stops a query while it loads.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::*;

async fn still_serving(addr: SocketAddr) {
    let v = query(addr, "vector(1) + 1", now_ms()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");
}

fn assert_bad_data(status: u16, body: &str, mentions: &str) {
    assert_eq!(status, 400, "{body}");
    let v = json(body);
    assert_eq!(v["status"], "error", "{body}");
    assert_eq!(v["errorType"], "bad_data", "{body}");
    assert!(
        v["error"].as_str().unwrap().contains(mentions),
        "{body} should mention {mentions}"
    );
}

/// A query that evaluates for far longer than any test waits: the inner
/// subquery has 172 800 steps, each a window of 86 400 points.
const ENDLESS: &str = "sum_over_time(sum_over_time(vector(1)[1d:1s])[1d:1s])";

/// The value of a counter or gauge on the store's `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, text) = get(&format!("http://{addr}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_or_long_queries_are_refused_before_parsing_and_the_store_lives_on() {
    let s = start_store(|_| {}).await;
    let base = format!("http://{}/api/v1", s.http());
    let parens = format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000));
    let chain = format!("1{}", "+1".repeat(20_000));
    let minus = format!("{}1", "-".repeat(20_000));
    let calls = format!("{}up{}", "abs(".repeat(5_000), ")".repeat(5_000));
    for q in [&parens, &chain, &minus, &calls] {
        // As a form, as Grafana posts it.
        let (status, body) = post(
            &format!("{base}/query"),
            "application/x-www-form-urlencoded",
            format!("query={}", enc(q)),
        )
        .await;
        assert_bad_data(status, &body, "--query-max-depth");
        let (status, body) = post(
            &format!("{base}/query_range"),
            "application/x-www-form-urlencoded",
            format!("query={}&start=0&end=60&step=15", enc(q)),
        )
        .await;
        assert_bad_data(status, &body, "--query-max-depth");
    }
    let shorter = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let (status, body) = get(&format!("{base}/query?query={}", enc(&shorter))).await;
    assert_bad_data(status, &body, "--query-max-depth");
    let (status, body) = post(
        &format!("{base}/series"),
        "application/x-www-form-urlencoded",
        format!("match[]={}", enc(&parens)),
    )
    .await;
    assert_bad_data(status, &body, "--query-max-depth");
    let long = format!("up{{pod=~\"{}\"}}", "p|".repeat(40_000));
    let (status, body) = post(
        &format!("{base}/query"),
        "application/x-www-form-urlencoded",
        format!("query={}", enc(&long)),
    )
    .await;
    assert_bad_data(status, &body, "--query-max-length");
    // Tap searches share the limits.
    let tap = format!("{}status:500{}", "(".repeat(20_000), ")".repeat(20_000));
    let (status, body) = post(
        &format!("{base}/tap/search"),
        "application/x-www-form-urlencoded",
        format!("q={}", enc(&tap)),
    )
    .await;
    assert_bad_data(status, &body, "--query-max-depth");
    // A query within the limits still works, nested as deep as allowed.
    let ok = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    let v = query(s.http(), &ok, now_ms()).await;
    assert_eq!(v["data"]["result"][1], "1", "{v}");
    still_serving(s.http()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_past_the_concurrency_limit_wait_in_line_until_their_timeout() {
    let s = start_store(|c| {
        c.query_max_concurrency = 1;
        c.query_timeout = Duration::from_secs(20);
    })
    .await;
    let base = format!("http://{}/api/v1", s.http());
    // Holds the one slot for 1.5 s, then times out.
    let url = format!("{base}/query?query={}&timeout=1.5", enc(ENDLESS));
    let slow = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Waits 0.3 s in line, then gives up.
    let started = Instant::now();
    let (status, body) = get(&format!("{base}/query?query=vector(1)&timeout=0.3")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("query queue"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Waits in line until the slow one is done, then answers.
    let started = Instant::now();
    let v = query(s.http(), "vector(7)", now_ms()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "answered after {:?}, while the slot was busy",
        started.elapsed()
    );
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("timed out in expression evaluation"),
        "{body}"
    );
    assert_eq!(
        metric(s.http(), "conduit_store_query_queue_timeouts_total").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_stops_when_its_client_goes_away() {
    let s = start_store(|c| {
        c.query_max_concurrency = 1;
        c.query_timeout = Duration::from_secs(60);
    })
    .await;
    let mut conn = TcpStream::connect(s.http()).await.unwrap();
    let request = format!(
        "GET /api/v1/query?query={} HTTP/1.1\r\nhost: store\r\n\r\n",
        enc(ENDLESS)
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(conn);
    // The slot is free long before the 60 s timeout.
    let started = Instant::now();
    let v = query(s.http(), "vector(3)", now_ms()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "3", "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(s.http(), "conduit_store_queries_canceled_total").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_budget_stops_a_query_while_it_loads() {
    const SERIES: usize = 400;
    const SAMPLES: i64 = 100;
    const BUDGET: usize = 1_000;
    let s = start_store(|c| c.query_max_samples = BUDGET).await;
    let t = now_ms();
    let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    let series: Vec<WriteSeries<'_>> = ids
        .iter()
        .map(|id| {
            (
                vec![("__name__", "loaded"), ("id", id.as_str())],
                (0..SAMPLES)
                    .map(|k| (t - 200_000 + k * 1000, k as f64))
                    .collect(),
            )
        })
        .collect();
    let (status, body) = post(
        &format!("http://{}/api/v1/write", s.http()),
        "application/x-protobuf",
        write_request(&series),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let before = metric(s.http(), "conduit_store_query_samples_loaded_total").await;
    let v = query(s.http(), "count_over_time(loaded[10m])", t).await;
    assert_eq!(v["errorType"], "execution", "{v}");
    let loaded = metric(s.http(), "conduit_store_query_samples_loaded_total").await - before;
    // It stopped at the series that went over the budget, not after
    // reading all 40 000 samples.
    assert!(
        loaded <= (BUDGET as i64 + SAMPLES) as f64,
        "loaded {loaded} samples for a budget of {BUDGET}"
    );
    // Instant selectors count what they keep (one sample a series), not
    // what they read: the same data fits when asked as Prometheus would.
    let v = query(s.http(), "count(loaded)", t).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "400", "{v}");
}
