//! Tap history: indexing throughput while metric ingest runs, then search
//! latency over the whole index (10 M events by default), for the query
//! forms of issue 6.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conduit_api::proto::mesh::v1::{DeploymentRef, Direction, TcpAddress};
use conduit_api::proto::tap::v1::{Peer, TapEvent};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{ProxyMeta, Report};

use super::http;
use super::stream::Rng;

const EVENTS_PER_REPORT: usize = 1000;
const STREAMS: usize = 4;

pub(crate) struct TapFigures {
    pub(crate) events: u64,
    pub(crate) events_per_sec: f64,
    pub(crate) metric_samples_per_sec: f64,
    pub(crate) dropped: u64,
    /// (query, p50 ms, p99 ms, hits)
    pub(crate) searches: Vec<(String, f64, f64, usize)>,
    /// Seconds from the last event indexed until the store was idle.
    pub(crate) settle_secs: f64,
}

/// Waits (at most a minute) until the store uses under 5% of a core:
/// after a burst of events the index merges its segments in the
/// background, and searches timed during that measure the merge's
/// competition for the 2 cores, not the search.
async fn settle(cpu_seconds: &impl Fn() -> f64) -> Duration {
    let began = Instant::now();
    let mut before = cpu_seconds();
    while began.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_seconds();
        if now - before < 0.05 {
            break;
        }
        before = now;
    }
    began.elapsed()
}

fn event(rng: &mut Rng, t_us: i64) -> TapEvent {
    let deployments = ["web", "voting", "emoji", "vote-bot", "db"];
    let src = deployments[(rng.next() % 5) as usize];
    let dst = format!(
        "{}-{}",
        deployments[(rng.next() % 5) as usize],
        rng.next() % 20
    );
    let status = match rng.next() % 100 {
        0..=2 => 500 + (rng.next() % 4) as u32,
        3..=7 => 404,
        _ => 200,
    };
    let path = match rng.next() % 4 {
        0 => format!("/api/vote/{}", rng.next() % 500),
        1 => format!("/api/list/{}", rng.next() % 200),
        2 => "/healthz".to_string(),
        _ => format!("/static/{}.js", rng.next() % 1000),
    };
    let latency_us = if rng.next().is_multiple_of(50) {
        200_000 + rng.next() % 800_000
    } else {
        300 + rng.next() % 40_000
    };
    let peer = |d: &str| {
        Some(Peer {
            address: Some(TcpAddress {
                ip: vec![10, 1, 2, 3],
                port: 8080,
            }),
            deployment: Some(DeploymentRef {
                namespace: "bench".into(),
                name: d.to_string(),
            }),
            identity: format!("{d}.bench.serviceaccount.identity.conduit.cluster.local"),
        })
    };
    TapEvent {
        request_id: format!("{:016x}", rng.next()),
        direction: Direction::Outbound as i32,
        source: peer(src),
        destination: peer(&dst),
        tls: true,
        method: if rng.next().is_multiple_of(3) {
            "POST"
        } else {
            "GET"
        }
        .into(),
        scheme: "http".into(),
        authority: format!("{dst}.bench:8080"),
        path,
        request_start_unix_us: t_us,
        response_latency_us: latency_us,
        response_duration_us: latency_us + 200,
        http_status: status,
        grpc_status: None,
        request_bytes: rng.next() % 2000,
        response_bytes: rng.next() % 20_000,
        error: if status >= 500 {
            "upstream error".into()
        } else {
            String::new()
        },
        kept: 0,
        error_reason: if status >= 500 {
            "upstream_reset".into()
        } else {
            String::new()
        },
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Indexes `total` events (while `metric_load` runs, if given), then
/// times searches once the store (its process's `cpu_seconds`) is idle.
pub(crate) async fn run(
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    total: u64,
    metric_load: impl std::future::Future<Output = Result<(u64, Duration), String>>,
    cpu_seconds: impl Fn() -> f64,
) -> Result<TapFigures, String> {
    let client = http::client();
    let metrics = || async {
        http::get(&client, &format!("http://{http_addr}/metrics"))
            .await
            .map(|(_, m)| m)
    };
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let sent = Arc::new(AtomicU64::new(0));
    let indexed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // Keeps producers at most 200 k events ahead of the indexer, so the
    // whole set is indexed (the store would drop, and count, the rest).
    let monitor = {
        let (indexed, client) = (indexed.clone(), http::client());
        tokio::spawn(async move {
            loop {
                if let Ok((_, m)) = http::get(&client, &format!("http://{http_addr}/metrics")).await
                {
                    indexed.store(
                        metric(&m, "conduit_store_tap_events_indexed_total"),
                        Ordering::Relaxed,
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let start_us = (crate::report::now_ms() - 3_600_000) * 1000;
    let mut producers = tokio::task::JoinSet::new();
    for s in 0..STREAMS {
        let (channel, sent, indexed) = (channel.clone(), sent.clone(), indexed.clone());
        producers.spawn(async move {
            let mut rng = Rng::new(s as u64 + 11);
            let mut telemetry = TelemetryClient::new(channel);
            let per_stream = total / STREAMS as u64;
            let mut k = 0u64;
            while k < per_stream {
                while sent.load(Ordering::Relaxed) > indexed.load(Ordering::Relaxed) + 200_000 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let n = EVENTS_PER_REPORT.min((per_stream - k) as usize);
                let events: Vec<TapEvent> = (0..n)
                    .map(|i| {
                        event(
                            &mut rng,
                            start_us + ((k + i as u64) * STREAMS as u64 + s as u64) as i64 * 300,
                        )
                    })
                    .collect();
                let report = Report {
                    proxy: Some(ProxyMeta {
                        pod: format!("bench-{s}"),
                        ..Default::default()
                    }),
                    end_unix_ms: crate::report::now_ms(),
                    tap_events: events,
                    ..Default::default()
                };
                telemetry
                    .report(tokio_stream::iter(vec![report]))
                    .await
                    .map_err(|e| e.to_string())?;
                k += n as u64;
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        });
    }
    let metrics_run = metric_load.await?;
    while let Some(r) = producers.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    monitor.abort();
    // Wait for the indexer to finish what was queued.
    let mut last = (0, Instant::now());
    loop {
        let m = metrics().await?;
        let indexed = metric(&m, "conduit_store_tap_events_indexed_total");
        let dropped = metric(&m, "conduit_store_tap_events_dropped_total");
        if indexed + dropped >= sent.load(Ordering::Relaxed) {
            break;
        }
        if indexed != last.0 {
            last = (indexed, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            return Err(format!("the tap indexer stalled at {indexed} events"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    let m = metrics().await?;
    let indexed = metric(&m, "conduit_store_tap_events_indexed_total");
    let dropped = metric(&m, "conduit_store_tap_events_dropped_total");
    let settle_secs = settle(&cpu_seconds).await.as_secs_f64();
    let searches = search_latencies(&client, http_addr).await?;
    Ok(TapFigures {
        settle_secs,
        events: indexed,
        events_per_sec: indexed as f64 / elapsed.as_secs_f64(),
        metric_samples_per_sec: metrics_run.0 as f64 / metrics_run.1.as_secs_f64(),
        dropped,
        searches,
    })
}

async fn search_latencies(
    client: &http::HttpClient,
    addr: SocketAddr,
) -> Result<Vec<(String, f64, f64, usize)>, String> {
    let queries = [
        "dst_deployment:voting-3 AND status:[500 TO 599] AND path:/api/vote*",
        "latency_ms:>250",
        "src_deployment:web AND method:POST AND status:404",
        "request_id:0123456789abcdef",
        "path:/healthz AND NOT status:200",
        "",
    ];
    let mut out = Vec::new();
    for q in queries {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..50 {
            let began = Instant::now();
            let (status, body) = http::get(
                client,
                &format!(
                    "http://{addr}/api/v1/tap/search?q={}&limit=100",
                    conduit_testbed::query_escape(q)
                ),
            )
            .await?;
            times.push(began.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                return Err(format!("tap search {q:?}: {status} {body}"));
            }
            hits = body.matches("\"request_id\"").count();
        }
        times.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        out.push((
            if q.is_empty() {
                "(all, newest 100)".to_string()
            } else {
                q.to_string()
            },
            p(0.5),
            p(0.99),
            hits,
        ));
    }
    Ok(out)
}
