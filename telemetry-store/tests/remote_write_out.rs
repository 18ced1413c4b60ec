//! Remote write out to a real Prometheus (Debian `prometheus`, with its
//! remote-write receiver): everything the store ingests is forwarded, and
//! when Prometheus is stopped mid-run and started again the WAL-backed
//! queue drains — Prometheus ends up with exactly the store's samples.
//! After an outage, the backlog goes out in batches of the configured
//! size, within a real VictoriaMetrics' request size limit.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";

struct Prometheus {
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &std::path::Path, addr: SocketAddr) -> Prometheus {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} not found: the remote-write test needs Prometheus (apt-get install prometheus)"
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .args(["--web.enable-remote-write-receiver", "--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    Prometheus { child }
}

async fn wait_ready(addr: SocketAddr) {
    let started = Instant::now();
    while get_ok(&format!("http://{addr}/-/ready")).await != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET that tolerates a refused connection.
async fn get_ok(url: &str) -> Option<u16> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(url.parse().ok()?))
        .await
        .ok()?
        .ok()?;
    Some(resp.status().as_u16())
}

/// Writes batch `k` of the run: 30 series, one sample each, plus a
/// series the filter leaves out.
async fn write_batch(store: SocketAddr, t0: i64, k: i64) {
    let ids: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    let mut series: Vec<WriteSeries<'_>> = ids
        .iter()
        .map(|id| {
            (
                vec![
                    ("__name__", "forwarded_total"),
                    ("id", id.as_str()),
                    ("pod", "p-1"),
                ],
                vec![(t0 + k * 1000, (k * 10) as f64 + 0.5)],
            )
        })
        .collect();
    series.push((
        vec![("__name__", "private_metric")],
        vec![(t0 + k * 1000, 1.0)],
    ));
    let (status, body) = post(
        &format!("http://{store}/api/v1/write"),
        "application/x-protobuf",
        write_request(&series),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

fn metric(m: &str, name: &str) -> u64 {
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {m}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_everything_and_survives_a_prometheus_restart() {
    let prom_dir = tempfile::tempdir().unwrap();
    let prom_addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut prometheus = Some(start_prometheus(prom_dir.path(), prom_addr));
    wait_ready(prom_addr).await;
    let store = start_store(|c| {
        c.remote_write_url = Some(format!("http://{prom_addr}/api/v1/write"));
        c.remote_write_match = vec!["{__name__=~\"forwarded_.*\"}".into()];
        c.remote_write_drop_label = vec!["pod".into()];
        c.remote_write_external_label = vec!["cluster=test".into()];
        c.remote_write_batch = 50;
    })
    .await;
    let t0 = now_ms() - 120_000;
    for k in 0..20 {
        write_batch(store.http(), t0, k).await;
        if k == 8 {
            // Prometheus goes away mid-run; the store keeps ingesting.
            drop(prometheus.take());
        }
        if k == 14 {
            prometheus = Some(start_prometheus(prom_dir.path(), prom_addr));
            wait_ready(prom_addr).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The queue drains.
    let started = Instant::now();
    loop {
        let (_, m) = get(&format!("http://{}/metrics", store.http())).await;
        if metric(&m, "conduit_store_remote_write_sent_samples_total") == 600
            && metric(&m, "conduit_store_remote_write_pending_bytes") == 0
        {
            assert!(
                metric(&m, "conduit_store_remote_write_retries_total") > 0,
                "Prometheus was down but nothing was retried"
            );
            assert_eq!(
                metric(&m, "conduit_store_remote_write_failed_samples_total"),
                0
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "remote write did not drain:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Prometheus has exactly the store's samples, relabelled.
    let at = t0 + 20_000;
    let q = "count_over_time(forwarded_total[5m])";
    let ours = query(store.http(), q, at).await;
    let theirs = query(
        prom_addr,
        "count_over_time(forwarded_total{cluster=\"test\"}[5m])",
        at,
    )
    .await;
    assert_eq!(ours["data"]["result"].as_array().unwrap().len(), 30);
    assert_eq!(
        theirs["data"]["result"].as_array().unwrap().len(),
        30,
        "{theirs}"
    );
    for s in theirs["data"]["result"].as_array().unwrap() {
        assert_eq!(s["value"][1], "20", "{s}");
        assert!(s["metric"].get("pod").is_none(), "pod was not dropped: {s}");
    }
    let sum = |v: &serde_json::Value| {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        sum(&query(store.http(), "sum(sum_over_time(forwarded_total[5m]))", at).await),
        sum(&query(prom_addr, "sum(sum_over_time(forwarded_total[5m]))", at).await)
    );
    // The filter kept the private series at home.
    let private = query(prom_addr, "count_over_time(private_metric[5m])", at).await;
    assert!(
        private["data"]["result"].as_array().unwrap().is_empty(),
        "{private}"
    );
}

/// A real VictoriaMetrics (Debian `victoria-metrics`) taking requests of
/// at most `max_request` bytes (unpacked), killed on drop.
fn start_victoria_metrics(dir: &std::path::Path, addr: SocketAddr, max_request: u32) -> Prometheus {
    const VM: &str = "/usr/bin/victoria-metrics";
    assert!(
        std::path::Path::new(VM).exists(),
        "{VM} not found: apt-get install victoria-metrics"
    );
    let child = Command::new(VM)
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg(format!("-httpListenAddr={addr}"))
        .arg(format!("-maxInsertRequestSize={max_request}"))
        .args([
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start victoria-metrics");
    Prometheus { child }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_goes_out_in_batches_a_receiver_takes() {
    let vm_dir = tempfile::tempdir().unwrap();
    let vm_addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let store = start_store(|c| {
        c.remote_write_url = Some(format!("http://{vm_addr}/api/v1/write"));
        c.remote_write_batch = 100;
    })
    .await;
    // The receiver is down while 60 writes (1 860 samples) come in: they
    // wait in the WAL and are read back in one piece.
    let t0 = now_ms() - 120_000;
    for k in 0..60 {
        write_batch(store.http(), t0, k).await;
    }
    // 16 KiB: the whole backlog in one request (about 35 KiB unpacked)
    // would be refused for good; a batch of 100 is about 3 KiB.
    let _vm = start_victoria_metrics(vm_dir.path(), vm_addr, 16 << 10);
    let started = Instant::now();
    loop {
        let (_, m) = get(&format!("http://{}/metrics", store.http())).await;
        assert_eq!(
            metric(&m, "conduit_store_remote_write_failed_samples_total"),
            0,
            "a batch was refused:\n{m}"
        );
        if metric(&m, "conduit_store_remote_write_sent_samples_total") == 1860 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "remote write did not drain:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // VictoriaMetrics makes fresh samples searchable within a few seconds.
    let q = "sum(count_over_time(forwarded_total[5m]))";
    loop {
        let v = query(vm_addr, q, t0 + 60_000).await;
        if v["data"]["result"][0]["value"][1] == "1800" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "VictoriaMetrics does not hold the 1 800 samples: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
