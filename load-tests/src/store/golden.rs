//! The `stat`-style query: success rate, requests per second and latency
//! p50/p95/p99 for every Deployment over one minute.
//!
//! The Conduit store is fed what proxies send (one report per Deployment
//! per second: cumulative counters plus an HdrHistogram of the second)
//! and answers with one `Golden` call. Prometheus is fed the same traffic
//! as Linkerd's series (counters and `le` buckets, remote-written at the
//! same times) and answers the four queries Linkerd's `viz stat` makes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit_api::histogram;
use conduit_api::metrics::{self, LATENCY_BUCKETS_MS};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::store::v1::query_client::QueryClient;
use conduit_api::proto::store::v1::{GoldenRequest, Matcher, matcher};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{CounterSeries, HistogramSeries, ProxyMeta, Report};

use super::http::{self, HttpClient};
use super::stream::{Rng, encode_series};
use crate::report::labels;

const NAMESPACE: &str = "stat";
const INTERVALS: i64 = 70;

/// Medians in ms: (Golden on Conduit, the four PromQL queries on
/// Prometheus, the same four on Conduit).
pub(crate) struct StatTimes {
    pub(crate) golden_ms: f64,
    pub(crate) prometheus_ms: f64,
    pub(crate) conduit_promql_ms: f64,
    pub(crate) rows: usize,
}

fn queries() -> [String; 4] {
    let sel = format!("namespace=\"{NAMESPACE}\", direction=\"inbound\"");
    let q = |p: f64| {
        format!(
            "histogram_quantile({p}, sum(irate(response_latency_ms_bucket{{{sel}}}[1m])) by (le, deployment))"
        )
    };
    [
        format!("sum(increase(response_total{{{sel}}}[1m])) by (deployment, classification)"),
        q(0.5),
        q(0.95),
        q(0.99),
    ]
}

/// Feeds both stores the same minute of traffic of `deployments`
/// Deployments; returns the time the data ends.
pub(crate) async fn load(
    conduit_grpc: SocketAddr,
    prometheus: SocketAddr,
    deployments: usize,
) -> Result<i64, String> {
    let end = crate::report::now_ms() - 2_000;
    let start = end - INTERVALS * 1000;
    let channel = tonic::transport::Channel::from_shared(format!("http://{conduit_grpc}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 8;
    for w in 0..workers {
        let channel = channel.clone();
        let client = http::client();
        tasks.spawn(async move {
            let mut telemetry = TelemetryClient::new(channel);
            for d in (w..deployments).step_by(workers) {
                let (reports, bodies) = traffic(d, start);
                telemetry
                    .report(tokio_stream::iter(reports))
                    .await
                    .map_err(|e| e.to_string())?;
                for body in bodies {
                    let headers = [
                        ("content-encoding", "snappy"),
                        ("content-type", "application/x-protobuf"),
                    ];
                    let (status, msg) = http::send(
                        &client,
                        hyper::Method::POST,
                        &format!("http://{prometheus}/api/v1/write"),
                        &headers,
                        body,
                    )
                    .await?;
                    if !(200..300).contains(&status) {
                        return Err(format!("prometheus refused the stat data: {status} {msg}"));
                    }
                }
            }
            Ok::<_, String>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    Ok(end)
}

/// One Deployment's reports, and the same data as Linkerd series in
/// remote-write bodies (one per interval).
fn traffic(d: usize, start: i64) -> (Vec<Report>, Vec<Bytes>) {
    let name = format!("deploy-{d:04}");
    let mut rng = Rng::new(d as u64 + 1);
    let base = [("direction", "inbound"), ("authority", "svc:8080")];
    let (mut ok, mut failed, mut sum) = (0u64, 0u64, 0.0f64);
    let mut buckets = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
    let mut reports = Vec::new();
    let mut bodies = Vec::new();
    for k in 0..INTERVALS {
        let end = start + (k + 1) * 1000;
        let mut h = histogram::new_latency_histogram();
        let mut interval_sum = 0.0;
        for _ in 0..(10 + rng.next() % 20) {
            let us = if rng.next().is_multiple_of(20) {
                50_000 + rng.next() % 500_000
            } else {
                500 + rng.next() % 20_000
            };
            histogram::record_latency_us(&mut h, us);
            interval_sum += us as f64 / 1000.0;
            let ms = us as f64 / 1000.0;
            let first = LATENCY_BUCKETS_MS.partition_point(|&b| b < ms);
            for b in &mut buckets[first..] {
                *b += 1;
            }
            if rng.next().is_multiple_of(50) {
                failed += 1;
            } else {
                ok += 1;
            }
        }
        sum += interval_sum;
        let l = |extra: &[(&str, &str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            labels(&v)
        };
        reports.push(Report {
            proxy: Some(ProxyMeta {
                deployment: Some(DeploymentRef {
                    namespace: NAMESPACE.into(),
                    name: name.clone(),
                }),
                pod: format!("{name}-0"),
                ..Default::default()
            }),
            sequence: k as u64,
            start_unix_ms: end - 1000,
            end_unix_ms: end,
            counters: vec![
                CounterSeries {
                    metric: metrics::RESPONSE_TOTAL.into(),
                    labels: l(&[("classification", "success"), ("status_code", "200")]),
                    value: ok as f64,
                },
                CounterSeries {
                    metric: metrics::RESPONSE_TOTAL.into(),
                    labels: l(&[("classification", "failure"), ("status_code", "500")]),
                    value: failed as f64,
                },
            ],
            histograms: vec![HistogramSeries {
                metric: metrics::RESPONSE_LATENCY_MS.into(),
                labels: l(&[]),
                hdr: histogram::encode(&h).expect("encodes"),
                value_scale: histogram::LATENCY_VALUE_SCALE,
                sum: interval_sum,
                exemplars: Vec::new(),
            }],
            ..Default::default()
        });
        let mut body = Vec::new();
        let series_labels = |name_: &str, extra: &[(&str, String)]| {
            let mut v: Vec<(String, String)> = vec![
                ("__name__".into(), name_.into()),
                ("namespace".into(), NAMESPACE.into()),
                ("deployment".into(), name.clone()),
                ("pod".into(), format!("{name}-0")),
                ("direction".into(), "inbound".into()),
                ("authority".into(), "svc:8080".into()),
            ];
            v.extend(extra.iter().map(|(n, x)| (n.to_string(), x.clone())));
            v.sort();
            v
        };
        encode_series(
            &mut body,
            &series_labels(
                "response_total",
                &[
                    ("classification", "success".into()),
                    ("status_code", "200".into()),
                ],
            ),
            end,
            ok as f64,
        );
        encode_series(
            &mut body,
            &series_labels(
                "response_total",
                &[
                    ("classification", "failure".into()),
                    ("status_code", "500".into()),
                ],
            ),
            end,
            failed as f64,
        );
        for (i, le) in LATENCY_BUCKETS_MS
            .iter()
            .map(|b| format!("{b}"))
            .chain(["+Inf".to_string()])
            .enumerate()
        {
            encode_series(
                &mut body,
                &series_labels("response_latency_ms_bucket", &[("le", le)]),
                end,
                buckets[i] as f64,
            );
        }
        encode_series(
            &mut body,
            &series_labels("response_latency_ms_sum", &[]),
            end,
            sum,
        );
        encode_series(
            &mut body,
            &series_labels("response_latency_ms_count", &[]),
            end,
            (ok + failed) as f64,
        );
        bodies.push(Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&body)
                .expect("snappy"),
        ));
    }
    (reports, bodies)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

async fn promql(client: &HttpClient, addr: SocketAddr, end: i64) -> Result<f64, String> {
    let began = Instant::now();
    for q in queries() {
        let url = format!(
            "http://{addr}/api/v1/query?query={}&time={}",
            conduit_testbed::query_escape(&q),
            end as f64 / 1000.0
        );
        let (status, body) = http::get(client, &url).await?;
        if status != 200 || !body.contains("\"result\":[{") {
            return Err(format!(
                "{addr}: {q}: {status} {}",
                &body[..body.len().min(300)]
            ));
        }
    }
    Ok(began.elapsed().as_secs_f64() * 1000.0)
}

/// `stat`'s question of the store: the inbound golden signals of every
/// Deployment of `namespace` over the minute up to `end`.
pub(crate) fn request(namespace: &str, end: i64) -> GoldenRequest {
    GoldenRequest {
        matchers: vec![
            Matcher {
                name: "namespace".into(),
                op: matcher::Op::Equal as i32,
                value: namespace.into(),
            },
            Matcher {
                name: "direction".into(),
                op: matcher::Op::Equal as i32,
                value: "inbound".into(),
            },
        ],
        group_by: vec!["deployment".into()],
        window: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        end_unix_ms: end,
        start_unix_ms: 0,
    }
}

pub(crate) async fn measure(
    conduit_http: SocketAddr,
    conduit_grpc: SocketAddr,
    prometheus: SocketAddr,
    end: i64,
    runs: usize,
) -> Result<StatTimes, String> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{conduit_grpc}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut q = QueryClient::new(channel);
    let client = http::client();
    let request = request(NAMESPACE, end);
    let (mut golden, mut prom, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = 0;
    for _ in 0..runs {
        let began = Instant::now();
        let resp = q
            .golden(request.clone())
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        golden.push(began.elapsed().as_secs_f64() * 1000.0);
        rows = resp.rows.len();
        prom.push(promql(&client, prometheus, end).await?);
        ours.push(promql(&client, conduit_http, end).await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(StatTimes {
        golden_ms: median(golden),
        prometheus_ms: median(prom),
        conduit_promql_ms: median(ours),
        rows,
    })
}
