//! PromQL compatibility against a real Prometheus (Debian `prometheus`,
//! 2.42): Prometheus scrapes a deterministic exporter served by this test
//! every second (counters with resets, gauges, NaN, Linkerd-style
//! request/response/latency-histogram/TCP metrics, churning series, and a
//! failing scrape now and then), and remote-writes everything it scrapes
//! to the store. Then every query below runs on both, as instant queries
//! at several times and as range queries with several steps, and must
//! return the same series with values equal to 1e-9 relative — including
//! the same errors for queries Prometheus refuses.
//!
//! The store cuts 30 s blocks during the run, so answers come from blocks
//! and the head together.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Seconds of scraped data before comparing.
const DATA_SECS: i64 = 70;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exporter's page at scrape `n`: a pure function of `n`.
fn exposition(n: u64) -> String {
    let mut out = String::new();
    let nf = n as f64;
    out.push_str("# TYPE test_counter_total counter\n");
    let counters = [
        ("web", "demo", "200", nf * 3.0 + (n % 7) as f64),
        ("web", "demo", "500", (n / 4) as f64),
        // Resets every 20 scrapes, like a restarting process.
        ("api", "demo", "200", ((n % 20) * 10 + n % 3) as f64),
        ("db", "other", "200", nf * 0.5),
    ];
    for (d, ns, code, v) in counters {
        out += &format!(
            "test_counter_total{{code=\"{code}\",deployment=\"{d}\",namespace=\"{ns}\"}} {v}\n"
        );
    }
    out.push_str("# TYPE test_gauge gauge\n");
    let gauges = [
        ("web", "demo", (nf / 5.0).sin() * 100.0 + 0.25),
        ("api", "demo", -((n % 13) as f64) * 1.5),
        ("db", "other", (n % 9) as f64 / 4.0 + 1e-3),
    ];
    for (d, ns, v) in gauges {
        out += &format!("test_gauge{{deployment=\"{d}\",namespace=\"{ns}\"}} {v}\n");
    }
    out += &format!(
        "test_nan_gauge{{kind=\"a\"}} {}\ntest_nan_gauge{{kind=\"b\"}} {}\n",
        if n.is_multiple_of(3) {
            "NaN".to_string()
        } else {
            format!("{}", nf)
        },
        if n.is_multiple_of(5) {
            "+Inf".to_string()
        } else {
            format!("{}", -nf)
        }
    );
    // Series that come and go: Prometheus writes staleness markers.
    for id in (n / 8)..(n / 8 + 3) {
        if !(id + n).is_multiple_of(4) {
            out += &format!("test_churn{{id=\"{}\"}} {}\n", id % 6, id * 10 + n % 5);
        }
    }
    linkerd_metrics(n, &mut out);
    out
}

/// Linkerd's metric names and labels, for the dashboard queries.
fn linkerd_metrics(n: u64, out: &mut String) {
    let buckets = conduit_api::metrics::LATENCY_BUCKETS_MS;
    for (i, d) in ["web", "voting", "emoji"].iter().enumerate() {
        let i = i as u64 + 1;
        let reqs = n * 10 * i + n % (3 + i);
        let failures = n * i / 3;
        for dir in ["inbound", "outbound"] {
            let base =
                format!("namespace=\"demo\",deployment=\"{d}\",pod=\"{d}-1\",direction=\"{dir}\"");
            let dst = if dir == "outbound" {
                format!(",dst_namespace=\"demo\",dst_deployment=\"db{}\"", i % 2)
            } else {
                String::new()
            };
            let l = format!("{base}{dst},authority=\"{d}.demo.svc:8080\",tls=\"true\"");
            *out += &format!("request_total{{{l}}} {reqs}\n");
            *out += &format!(
                "response_total{{{l},classification=\"success\",status_code=\"200\"}} {}\n",
                reqs - failures
            );
            *out += &format!(
                "response_total{{{l},classification=\"failure\",status_code=\"500\"}} {failures}\n"
            );
            // Cumulative buckets: observations spread by a fixed shape.
            let mut cum = 0u64;
            for (k, le) in buckets.iter().enumerate() {
                cum += (reqs * (k as u64 % 5 + 1)) / (20 + i * 3) + (k as u64) * n / 50;
                *out += &format!("response_latency_ms_bucket{{{l},le=\"{le}\"}} {cum}\n");
            }
            *out += &format!(
                "response_latency_ms_bucket{{{l},le=\"+Inf\"}} {}\n",
                cum + n
            );
            *out += &format!(
                "response_latency_ms_sum{{{l}}} {}\n",
                reqs as f64 * 12.5 + n as f64 * 0.125
            );
            *out += &format!("response_latency_ms_count{{{l}}} {}\n", cum + n);
            *out += &format!("tcp_open_total{{{l}}} {}\n", n / 2 + i);
            *out += &format!("tcp_open_connections{{{l}}} {}\n", (n + i) % 6);
            *out += &format!(
                "tcp_read_bytes_total{{{l}}} {}\n",
                n * 1500 * i + (n % 11) * 7
            );
        }
    }
}

/// Serves the exporter; every 25th scrape fails (Prometheus marks
/// everything stale then).
async fn serve_exporter() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scrapes = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                    async move {
                        let (status, body) = if n.is_multiple_of(25) {
                            (503, String::new())
                        } else {
                            (200, exposition(n))
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(
    dir: &std::path::Path,
    exporter: SocketAddr,
    store: SocketAddr,
) -> (KillOnDrop, SocketAddr) {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} not found: the PromQL compatibility test needs Prometheus (apt-get install prometheus)"
    );
    let token = token_file().display().to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{exporter}']\n\
         remote_write:\n  - url: http://{store}/api/v1/write\n    authorization:\n      credentials_file: {token}\n    queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 50ms\n      max_backoff: 1s\n"
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start prometheus");
    (KillOnDrop(child), addr)
}

/// The latest `up` sample time, in ms.
async fn latest_up(addr: SocketAddr) -> Option<i64> {
    let v = query(addr, "max(timestamp(up))", now_ms()).await;
    let s = v["data"]["result"][0]["value"][1].as_str()?;
    Some((s.parse::<f64>().ok()? * 1000.0).round() as i64)
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str().unwrap_or_default() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or_else(|_| panic!("bad value {v}")),
    }
}

fn same(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn metric_key(m: &Value) -> String {
    let map: BTreeMap<&String, &Value> = m.as_object().expect("metric object").iter().collect();
    serde_json::to_string(&map).unwrap()
}

fn points(v: &Value) -> Vec<(f64, f64)> {
    match v {
        Value::Array(a) if a.len() == 2 && !a[0].is_array() => {
            vec![(a[0].as_f64().unwrap(), parse_value(&a[1]))]
        }
        Value::Array(a) => a.iter().flat_map(points).collect(),
        _ => panic!("unexpected point {v}"),
    }
}

/// Compares two API answers; `ordered` also compares the order of a
/// vector (for `sort`).
fn compare(prom: &Value, ours: &Value, ordered: bool) -> Result<usize, String> {
    if prom["status"] != ours["status"] {
        return Err(format!("status differs: prometheus {prom} vs ours {ours}"));
    }
    if prom["status"] == "error" {
        return if prom["errorType"] == ours["errorType"] {
            Ok(0)
        } else {
            Err(format!("error types differ: {prom} vs {ours}"))
        };
    }
    let (pd, od) = (&prom["data"], &ours["data"]);
    if pd["resultType"] != od["resultType"] {
        return Err(format!("result types differ: {pd} vs {od}"));
    }
    let rt = pd["resultType"].as_str().unwrap();
    if rt == "scalar" || rt == "string" {
        let (p, o) = (&pd["result"], &od["result"]);
        let ok = p[0] == o[0]
            && (rt == "string" && p[1] == o[1]
                || rt == "scalar" && same(parse_value(&p[1]), parse_value(&o[1])));
        return if ok {
            Ok(1)
        } else {
            Err(format!("{p} vs {o}"))
        };
    }
    let field = if rt == "vector" { "value" } else { "values" };
    let to_map = |d: &Value| -> BTreeMap<String, Vec<(f64, f64)>> {
        d["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (metric_key(&s["metric"]), points(&s[field])))
            .collect()
    };
    let (p, o) = (to_map(pd), to_map(od));
    if p.keys().ne(o.keys()) {
        return Err(format!(
            "series differ:\n prometheus {:?}\n ours       {:?}",
            p.keys(),
            o.keys()
        ));
    }
    let mut n = 0;
    for (k, pp) in &p {
        let op = &o[k];
        if pp.len() != op.len() {
            return Err(format!(
                "{k}: {} points vs {} points\n prometheus {pp:?}\n ours       {op:?}",
                pp.len(),
                op.len()
            ));
        }
        for (a, b) in pp.iter().zip(op) {
            if a.0 != b.0 || !same(a.1, b.1) {
                return Err(format!("{k}: prometheus {a:?} vs ours {b:?}"));
            }
            n += 1;
        }
    }
    if ordered {
        let order = |d: &Value| -> Vec<f64> {
            d["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| parse_value(&s["value"][1]))
                .collect()
        };
        let (a, b) = (order(pd), order(od));
        if !a.iter().zip(&b).all(|(x, y)| same(*x, *y)) {
            return Err(format!("order differs: {a:?} vs {b:?}"));
        }
    }
    Ok(n)
}

/// The queries, `{at}` replaced by a time inside the data.
fn queries() -> Vec<&'static str> {
    vec![
        // Selectors and matchers.
        "test_counter_total",
        "test_counter_total{code=\"200\"}",
        "test_counter_total{code!=\"200\"}",
        "test_counter_total{deployment=~\"web|api\"}",
        "test_counter_total{deployment!~\"w.*\"}",
        "{__name__=~\"test_gauge|test_counter_total\", namespace=\"demo\"}",
        "test_gauge offset 10s",
        "test_gauge @ {at}",
        "rate(test_counter_total[20s] @ {at})",
        "test_gauge @ end()",
        "rate(test_counter_total[15s] @ start())",
        "test_counter_total[20s]",
        "test_gauge[15s] offset 5s",
        "test_churn",
        "up",
        "test_nan_gauge",
        // Range functions.
        "rate(test_counter_total[30s])",
        "rate(test_counter_total[10s] offset 7s)",
        "irate(test_counter_total[15s])",
        "increase(test_counter_total[45s])",
        "delta(test_gauge[30s])",
        "idelta(test_gauge[30s])",
        "deriv(test_gauge[40s])",
        "predict_linear(test_gauge[30s], 60)",
        "holt_winters(test_gauge[30s], 0.5, 0.3)",
        "resets(test_counter_total[60s])",
        "changes(test_gauge[60s])",
        "avg_over_time(test_gauge[30s])",
        "min_over_time(test_gauge[30s])",
        "max_over_time(test_gauge[30s])",
        "sum_over_time(test_gauge[30s])",
        "count_over_time(test_churn[30s])",
        "last_over_time(test_gauge[30s])",
        "present_over_time(test_churn[20s])",
        "stddev_over_time(test_gauge[30s])",
        "stdvar_over_time(test_gauge[30s])",
        "quantile_over_time(0.9, test_gauge[40s])",
        "max_over_time(test_nan_gauge[10s])",
        "absent_over_time(test_churn{id=\"1\"}[5s])",
        "absent_over_time(nonexistent_metric{job=\"x\"}[10s])",
        // Instant-vector functions.
        "absent(nonexistent_metric{job=\"x\", a=~\"b\"})",
        "absent(test_gauge)",
        "label_replace(test_gauge, \"dst\", \"$1-x\", \"deployment\", \"(.*)\")",
        "label_replace(test_gauge, \"deployment\", \"\", \"deployment\", \"web\")",
        "label_join(test_gauge, \"combo\", \"/\", \"namespace\", \"deployment\")",
        "abs(test_gauge)",
        "ceil(test_gauge)",
        "floor(test_gauge)",
        "round(test_gauge)",
        "round(test_gauge, 0.25)",
        "clamp(test_gauge, -5, 5)",
        "clamp_min(test_gauge, 0)",
        "clamp_max(test_gauge, 10)",
        "sort(test_gauge)",
        "sort_desc(test_counter_total)",
        "time()",
        "timestamp(test_gauge)",
        "timestamp(rate(test_counter_total[30s]))",
        "vector(1)",
        "vector(time())",
        "scalar(sum(test_gauge))",
        "scalar(test_gauge)",
        "exp(test_gauge / 100)",
        "ln(abs(test_gauge) + 1)",
        "sqrt(abs(test_gauge))",
        "log2(test_counter_total + 1)",
        "log10(test_counter_total + 1)",
        "sgn(test_gauge)",
        "minute()",
        "hour(timestamp(test_gauge))",
        "day_of_week()",
        "day_of_month()",
        "days_in_month()",
        "day_of_year()",
        "month()",
        "year()",
        // Aggregations.
        "sum(test_counter_total)",
        "sum by (deployment) (test_counter_total)",
        "sum without (code) (test_counter_total)",
        "avg by (namespace) (test_gauge)",
        "min(test_gauge)",
        "max by (deployment) (test_gauge)",
        "max(test_nan_gauge)",
        "sum(test_nan_gauge)",
        "count(test_churn)",
        "group by (deployment) (test_counter_total)",
        "stddev(test_gauge)",
        "stdvar by (namespace) (test_gauge)",
        "topk(2, test_counter_total)",
        "bottomk(1, test_gauge)",
        "topk by (deployment) (1, test_counter_total)",
        "quantile(0.5, test_gauge)",
        "quantile by (namespace) (0.75, test_counter_total)",
        "count_values(\"value\", round(test_gauge))",
        "count_values without (code) (\"v\", test_counter_total % 2)",
        // Operators.
        "-test_gauge",
        "test_counter_total + 1",
        "2 * test_gauge",
        "test_gauge - test_gauge",
        "test_counter_total / test_counter_total",
        "test_gauge % 3",
        "test_gauge ^ 2",
        "test_gauge atan2 2",
        "1 + 2 * 3 ^ 2",
        "test_gauge > 0",
        "test_gauge > bool 0",
        "0 < test_gauge",
        "test_counter_total == bool test_counter_total",
        "1 > bool 2",
        "test_gauge != 0",
        "test_nan_gauge > 0",
        "test_counter_total / on(deployment, namespace) group_left sum by (deployment, namespace) (test_counter_total)",
        "sum by (deployment, namespace) (test_counter_total) * on (deployment, namespace) group_right test_counter_total",
        "test_counter_total * ignoring(code) group_left test_gauge",
        "test_counter_total + on(deployment) group_left(namespace) test_gauge",
        "test_counter_total and test_counter_total{code=\"200\"}",
        "test_counter_total or test_gauge",
        "test_counter_total unless on(deployment) test_gauge{deployment=\"web\"}",
        "test_counter_total + on(deployment) test_gauge",
        "rate({__name__=~\"test_counter_total|test_counter_total_copy\"}[30s])",
        // Subqueries.
        "max_over_time(rate(test_counter_total[10s])[30s:5s])",
        "avg_over_time(test_gauge[20s:2s])",
        "rate(test_counter_total[30s:3s])",
        "min_over_time(sum(test_gauge)[25s:])",
        // Linkerd's Grafana dashboards.
        "sum(irate(request_total{deployment=~\".*\", namespace=~\"demo\", direction=\"inbound\"}[30s])) by (deployment)",
        "sum(irate(response_total{classification=\"success\", deployment=~\"web|voting\", direction=\"inbound\"}[30s])) by (deployment) / sum(irate(response_total{deployment=~\"web|voting\", direction=\"inbound\"}[30s])) by (deployment)",
        "histogram_quantile(0.95, sum(irate(response_latency_ms_bucket{deployment=~\".*\", direction=\"inbound\"}[30s])) by (le, deployment))",
        "histogram_quantile(0.5, sum(irate(response_latency_ms_bucket{direction=\"inbound\"}[30s])) by (le, deployment))",
        "histogram_quantile(0.99, sum(irate(response_latency_ms_bucket{direction=\"outbound\"}[30s])) by (le, dst_deployment))",
        "histogram_quantile(0.9, rate(response_latency_ms_bucket[30s]))",
        "sum(irate(response_total{classification=\"failure\", direction=\"outbound\"}[30s])) by (dst_deployment)",
        "sum(tcp_open_connections{direction=\"inbound\"}) by (deployment)",
        "sum(irate(tcp_read_bytes_total{direction=\"inbound\"}[30s])) by (deployment)",
        "sum(irate(tcp_open_total{direction=\"inbound\"}[30s])) by (deployment)",
        "topk(2, sum by (deployment) (irate(request_total[30s])))",
        "sum(irate(response_latency_ms_sum[30s])) by (deployment) / sum(irate(response_latency_ms_count[30s])) by (deployment)",
        "sum(increase(response_total{direction=\"inbound\"}[1m])) by (deployment, classification)",
        // Parse errors are bad_data on both.
        "sum(rate(test_counter_total[5m])",
        "foo bar",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_answers_as_prometheus() {
    let store = start_store(|c| {
        c.block_duration = Duration::from_secs(30);
        c.maintenance_interval = Duration::from_secs(1);
    })
    .await;
    let exporter = serve_exporter().await;
    let prom_dir = tempfile::tempdir().unwrap();
    let (_prometheus, prom) = start_prometheus(prom_dir.path(), exporter, store.http());

    // Wait for Prometheus, then for DATA_SECS of scraped data.
    let started = Instant::now();
    let mut first_up = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(DATA_SECS as u64 + 60),
            "Prometheus did not collect data in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        if get(&format!("http://{prom}/-/ready")).await.0 != 200 {
            continue;
        }
        let Some(latest) = latest_up(prom).await else {
            continue;
        };
        let first = *first_up.get_or_insert(latest);
        if latest - first >= DATA_SECS * 1000 {
            break;
        }
    }
    // Compare up to a little before Prometheus' newest sample, once the
    // store has everything up to Prometheus' newest.
    let prom_latest = latest_up(prom).await.unwrap();
    let end = prom_latest - 2_000;
    let caught_up = Instant::now();
    while latest_up(store.http())
        .await
        .is_none_or(|t| t < prom_latest)
    {
        assert!(
            caught_up.elapsed() < Duration::from_secs(30),
            "remote write did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = first_up.unwrap();
    let at = (start + end) / 2;

    // The store cut blocks from the head while data came in.
    let (_, metrics) = get(&format!("http://{}/metrics", store.http())).await;
    assert!(
        !metrics.contains("conduit_store_blocks_cut_total 0\n"),
        "no block was cut:\n{metrics}"
    );

    let instants = [end, end - 12_345, at + 7, start + 20_500];
    let ranges = [
        (start + 10_000, end, "1"),
        (start, end, "7s"),
        (at, end - 333, "2.5"),
    ];
    let mut failures = Vec::new();
    let mut compared_points = 0;
    let mut evaluations = 0;
    let qs = queries();
    for raw in &qs {
        let q = raw.replace("{at}", &format!("{:.3}", at as f64 / 1000.0));
        let ordered = q.starts_with("sort");
        for t in instants {
            let url = |a: SocketAddr| {
                format!(
                    "http://{a}/api/v1/query?query={}&time={}",
                    enc(&q),
                    t as f64 / 1000.0
                )
            };
            let (p, o) = (
                json(&get(&url(prom)).await.1),
                json(&get(&url(store.http())).await.1),
            );
            evaluations += 1;
            match compare(&p, &o, ordered) {
                Ok(n) => compared_points += n,
                Err(e) => failures.push(format!("{q} @ {t}: {e}")),
            }
        }
        for (s, e, step) in ranges {
            let url = |a: SocketAddr| {
                format!(
                    "http://{a}/api/v1/query_range?query={}&start={}&end={}&step={step}",
                    enc(&q),
                    s as f64 / 1000.0,
                    e as f64 / 1000.0
                )
            };
            // POST form for one of the step sizes, as Grafana sends it.
            let (p, o) = if step == "7s" {
                let body = |a: SocketAddr| url(a).split_once('?').unwrap().1.to_string();
                let post_to = |a: SocketAddr| {
                    let body = body(a);
                    async move {
                        post(
                            &format!("http://{a}/api/v1/query_range"),
                            "application/x-www-form-urlencoded",
                            body,
                        )
                        .await
                    }
                };
                (
                    json(&post_to(prom).await.1),
                    json(&post_to(store.http()).await.1),
                )
            } else {
                (
                    json(&get(&url(prom)).await.1),
                    json(&get(&url(store.http())).await.1),
                )
            };
            evaluations += 1;
            match compare(&p, &o, false) {
                Ok(n) => compared_points += n,
                Err(err) => failures.push(format!("{q} [{s}..{e} step {step}]: {err}")),
            }
        }
    }
    // Byte-for-byte: a sorted range result is formatted identically. (Not
    // the `api` gauge: its -0 reaches the store as 0, because remote
    // write's proto3 encoding omits zero-valued fields.)
    let exact = format!(
        "query={}&start={}&end={}&step=1.5",
        enc("test_gauge{deployment!=\"api\"}"),
        (start + 10_001) as f64 / 1000.0,
        end as f64 / 1000.0
    );
    let (p, o) = (
        get(&format!("http://{prom}/api/v1/query_range?{exact}"))
            .await
            .1,
        get(&format!(
            "http://{}/api/v1/query_range?{exact}",
            store.http()
        ))
        .await
        .1,
    );
    if p != o {
        failures.push(format!(
            "range result bytes differ:\n prometheus {p}\n ours       {o}"
        ));
    }
    // Label and series APIs.
    for path in [
        "/api/v1/labels",
        "/api/v1/label/deployment/values",
        "/api/v1/label/__name__/values",
        "/api/v1/series?match[]=test_counter_total&match[]=test_gauge{deployment=%22web%22}",
    ] {
        let (p, o) = (
            get(&format!("http://{prom}{path}")).await.1,
            get(&format!("http://{}{path}", store.http())).await.1,
        );
        let (mut p, mut o) = (json(&p), json(&o));
        for v in [&mut p, &mut o] {
            if let Some(a) = v["data"].as_array_mut() {
                a.sort_by_key(|x| x.to_string());
            }
        }
        if p["data"] != o["data"] {
            failures.push(format!(
                "{path}:\n prometheus {}\n ours       {}",
                p["data"], o["data"]
            ));
        }
    }
    eprintln!(
        "{} queries, {evaluations} evaluations, {compared_points} points compared, {} failures",
        qs.len(),
        failures.len()
    );
    assert!(qs.len() >= 80, "the suite must keep at least 80 queries");
    assert!(
        compared_points > 10_000,
        "too little data compared: {compared_points}"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
