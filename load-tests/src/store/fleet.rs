//! `conduit-load-tests fleet`: whether the store's tap history keeps up
//! with the flight recorders of 1 000 proxies (issue 22).
//!
//! A fleet of simulated proxies reports to one real store the way
//! conduit-proxy does: each over its own connection, one long-lived
//! `Telemetry.Stream` call (reports out, acknowledgements back), one report a second
//! (staggered across proxies), each report carrying the proxy's metric
//! series (cumulative counters, interval latency histograms) and the tap
//! events its recorder kept that second: failed and slow requests with
//! `kept` set. The per-proxy event rate starts at the recorder's default
//! budget (20/s: 20 000 events/s from 1 000 proxies) and is then raised
//! step by step (sampled events come on top of the recorder's in a real
//! fleet) until the store no longer keeps up.
//!
//! Per step: events sent and indexed per second, events the store dropped
//! (its queue full) or refused, the lag from a report's send until a
//! search finds one of its events by request id (two sampled markers a
//! second, all pending ones looked for by one search every 100 ms), the
//! store's CPU and RSS.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conduit_api::histogram;
use conduit_api::metrics::{self as names, label};
use conduit_api::proto::mesh::v1::{DeploymentRef, Direction, TcpAddress};
use conduit_api::proto::tap::v1::{Kept, Peer, TapEvent};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{
    CounterSeries, GaugeSeries, HistogramSeries, ProxyMeta, Report,
};
use conduit_testbed::Store;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::http;
use crate::args::Flags;
use crate::proxy::peers;
use crate::report::{self, labels, now_ms};
use crate::scratch::ScratchDir;

const USAGE: &str = "usage: conduit-load-tests fleet [--proxies N] [--seconds S] [--rates R,R,...]

  --proxies N    simulated proxies, each with its own connection and report stream (1000)
  --seconds S    length of the first step, at the recorder's default budget; later steps take half (60)
  --rates R,...  tap events per proxy per second, step by step (20,30,40,55,70); the ramp stops at the
                 first step the store does not keep up with";

pub(crate) const NAMESPACE: &str = "bench";
/// Pods per Deployment: 1 000 proxies are 200 Deployments.
pub(crate) const PODS: usize = 5;
/// Reports a proxy keeps while its stream is slow, as `--telemetry-buffer`.
pub(crate) const BUFFER: usize = 60;
/// Markers searched for per second.
const MARKERS_PER_SEC: u64 = 2;
/// Markers looked for by one search at most.
const MAX_MARKERS_PER_QUERY: usize = 50;
/// A marker not found by then counts as lost.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);
/// Keeping up: no event dropped, at most this lag at p99, and at most one
/// second's worth of events still unindexed when a step ends.
const MAX_LAG_P99: Duration = Duration::from_secs(5);
/// The recorder's default budget, the goal's rate.
const BUDGET: u32 = 20;

struct Options {
    proxies: usize,
    seconds: u64,
    rates: Vec<u32>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        proxies: 1000,
        seconds: 60,
        rates: vec![BUDGET, 30, 40, 55, 70],
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--proxies" => o.proxies = flags.number(flag, 1..=1000)?,
            "--seconds" => o.seconds = flags.number(flag, 2..=600)?,
            "--rates" => o.rates = flags.numbers(flag, 1..=1000, false)?,
            _ => return Err(flags.unknown(flag)),
        }
    }
    Ok(o)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let load_before = report::loadavg();
    eprintln!("fleet: starting the store");
    let scratch = ScratchDir::new("conduit-lt-fleet")?;
    // Tap searches need a reader's token.
    let token = scratch.path().join("tap-token");
    std::fs::write(&token, http::TOKEN).map_err(|e| e.to_string())?;
    let store = Store::start_with_args(&["--tap-token-file".into(), token.display().to_string()]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (steps, reports, acked) = rt.block_on(ramp(&o, &store))?;
    let load = format!("{load_before} before, {} after", report::loadavg());
    write_report(&o, &load, &steps, reports, acked)
}

/// What the whole fleet has done so far.
#[derive(Default)]
pub(crate) struct Sent {
    pub(crate) events: AtomicU64,
    pub(crate) reports: AtomicU64,
    /// Reports the store acknowledged (committed).
    pub(crate) acked: AtomicU64,
    /// Reports a proxy dropped because its stream was backed up.
    pub(crate) reports_dropped: AtomicU64,
    pub(crate) streams_failed: AtomicU64,
    /// Per acknowledged report: when it was sent, and how long its
    /// acknowledgement took.
    pub(crate) ack_lags: Mutex<Vec<(Instant, Duration)>>,
}

/// Markers sent and not found yet: request id → when its report was sent.
pub(crate) type Markers = Mutex<HashMap<String, Instant>>;
/// Markers done: when each was sent, and its lag unless it was never found.
type Lags = Mutex<Vec<(Instant, Option<Duration>)>>;

/// One simulated proxy: its connection, its report stream, its reports.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn proxy(
    p: usize,
    mut sim: Simulated,
    channel: tonic::transport::Channel,
    rate: Arc<AtomicU32>,
    sent: Arc<Sent>,
    markers: Arc<Markers>,
    stop: Arc<tokio::sync::Notify>,
    proxies: usize,
) {
    let (tx, rx) = mpsc::channel::<Report>(BUFFER);
    let mut client = TelemetryClient::new(channel);
    let acked = sent.clone();
    // Reports sent and not acknowledged yet: (sequence, when sent).
    let unacked: Arc<Mutex<VecDeque<(u64, Instant)>>> = Arc::default();
    let pending = unacked.clone();
    let stream = tokio::spawn(async move {
        let mut acks = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        while let Some(ack) = acks.message().await? {
            acked.acked.fetch_add(1, Relaxed);
            let mut pending = lock(&pending);
            while let Some(&(sequence, at)) = pending.front().filter(|(s, _)| *s <= ack.sequence) {
                pending.pop_front();
                if sequence == ack.sequence {
                    lock(&acked.ack_lags).push((at, at.elapsed()));
                }
            }
        }
        Ok::<_, tonic::Status>(())
    });
    // Proxies start at different times: their reports do not line up.
    let offset = Duration::from_secs_f64(p as f64 / proxies as f64);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = ticker.tick() => {}
        }
        let n = rate.load(Relaxed) as usize;
        let report = sim.report(n);
        // One event in the fleet's (2 a second) becomes a marker.
        let marker = (sim.sequence * proxies as u64 + p as u64)
            .is_multiple_of(proxies as u64 / MARKERS_PER_SEC.min(proxies as u64))
            .then(|| report.tap_events.first().map(|e| e.request_id.clone()))
            .flatten();
        let events = report.tap_events.len() as u64;
        let sequence = report.sequence;
        lock(&unacked).push_back((sequence, Instant::now()));
        match tx.try_send(report) {
            Ok(()) => {
                sent.events.fetch_add(events, Relaxed);
                sent.reports.fetch_add(1, Relaxed);
                if let Some(id) = marker {
                    lock(&markers).insert(id, Instant::now());
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                lock(&unacked).pop_back();
                sent.reports_dropped.fetch_add(1, Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                sent.streams_failed.fetch_add(1, Relaxed);
                return;
            }
        }
    }
    drop(tx);
    if !matches!(stream.await, Ok(Ok(_))) {
        sent.streams_failed.fetch_add(1, Relaxed);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The series one simulated proxy reports: the fleet's lean mix (no peer
/// labels, success/200 and failure/500), or a pod's (per destination
/// Deployment: requests, three status classes, a learned route, a
/// latency histogram and five tcp series).
#[derive(Clone, Copy)]
pub(crate) struct Mix {
    /// Destination Deployments per direction (0: no `dst_*` labels).
    pub(crate) peers: usize,
    /// Status classes of `response_total`: (classification, status_code).
    pub(crate) statuses: &'static [(&'static str, &'static str)],
    /// The five tcp series per direction and peer.
    pub(crate) tcp: bool,
}

impl Mix {
    pub(crate) const FLEET: Mix = Mix {
        peers: 0,
        statuses: &[("success", "200"), ("failure", "500")],
        tcp: false,
    };
    pub(crate) const POD: Mix = Mix {
        peers: 6,
        statuses: &[("success", "200"), ("success", "404"), ("failure", "503")],
        tcp: true,
    };

    /// Series in one report (counters, gauges, histograms).
    pub(crate) fn series(&self) -> usize {
        let per_peer = 1 + self.statuses.len() + 1 + 1 + if self.tcp { 5 } else { 0 };
        2 * self.peers.max(1) * per_peer + 4
    }
}

/// How a counter of the template grows every second.
#[derive(Clone, Copy)]
enum Grows {
    /// Requests: 100 a second per direction and peer.
    Requests,
    /// The share of requests in one status class.
    Status {
        index: usize,
        of: usize,
    },
    /// A fixed amount a second (tcp opens, closes, bytes).
    By(u64),
    Recorded,
    Overflow,
    Sent,
}

/// A proxy's state between reports: its series, built once (labels are
/// the expensive part; a real proxy interns them too), and its counters.
pub(crate) struct Simulated {
    p: usize,
    deployment: String,
    sequence: u64,
    started_ms: i64,
    requests: u64,
    failures: u64,
    recorded: u64,
    events: u64,
    counters: Vec<(CounterSeries, Grows)>,
    gauges: Vec<GaugeSeries>,
    histograms: Vec<HistogramSeries>,
}

impl Simulated {
    pub(crate) fn new(p: usize, mix: Mix) -> Self {
        let deployment = format!("d{:03}", p / PODS);
        let mut counters = Vec::new();
        let mut gauges = Vec::new();
        let mut histograms = Vec::new();
        let counter = |metric: &str, labels, grows| {
            (
                CounterSeries {
                    metric: metric.into(),
                    labels,
                    value: 0.0,
                },
                grows,
            )
        };
        for direction in ["inbound", "outbound"] {
            for peer in 0..mix.peers.max(1) {
                let dst = format!("d{:03}", (p / PODS + 1 + peer * 7) % 200);
                let mut base: Vec<(&str, &str)> = vec![
                    (label::DIRECTION, direction),
                    (label::NAMESPACE, NAMESPACE),
                    (label::DEPLOYMENT, &deployment),
                ];
                if mix.peers > 0 {
                    base.push((label::DST_NAMESPACE, NAMESPACE));
                    base.push((label::DST_DEPLOYMENT, &dst));
                }
                let with = |extra: &[(&str, &str)]| {
                    let mut l = base.clone();
                    l.extend_from_slice(extra);
                    labels(&l)
                };
                counters.push(counter(names::REQUEST_TOTAL, with(&[]), Grows::Requests));
                for (index, (class, code)) in mix.statuses.iter().enumerate() {
                    counters.push(counter(
                        names::RESPONSE_TOTAL,
                        with(&[(label::CLASSIFICATION, class), (label::STATUS_CODE, code)]),
                        Grows::Status {
                            index,
                            of: mix.statuses.len(),
                        },
                    ));
                }
                counters.push(counter(
                    names::ROUTE_REQUEST_TOTAL,
                    with(&[
                        (label::ROUTE, "GET /api/vote/{id}"),
                        (label::LEARNED, "true"),
                    ]),
                    Grows::Requests,
                ));
                histograms.push(latency(with(&[]), p));
                if mix.tcp {
                    for (metric, by) in [
                        (names::TCP_OPEN_TOTAL, 2),
                        (names::TCP_CLOSE_TOTAL, 2),
                        (names::TCP_READ_BYTES_TOTAL, 40_000),
                        (names::TCP_WRITE_BYTES_TOTAL, 120_000),
                    ] {
                        counters.push(counter(metric, with(&[]), Grows::By(by)));
                    }
                    gauges.push(GaugeSeries {
                        metric: names::TCP_OPEN_CONNECTIONS.into(),
                        labels: with(&[]),
                        value: 4.0,
                    });
                }
            }
        }
        let own = labels(&[
            (label::NAMESPACE, NAMESPACE),
            (label::DEPLOYMENT, &deployment),
        ]);
        for (metric, grows) in [
            (names::TAP_EVENTS_RECORDED_TOTAL, Grows::Recorded),
            (names::TAP_RECORDER_OVERFLOW_TOTAL, Grows::Overflow),
            (names::TELEMETRY_REPORTS_SENT_TOTAL, Grows::Sent),
        ] {
            counters.push(counter(metric, own.clone(), grows));
        }
        gauges.push(GaugeSeries {
            metric: names::TCP_OPEN_CONNECTIONS.into(),
            labels: own,
            value: 4.0,
        });
        Self {
            p,
            deployment,
            sequence: 0,
            started_ms: now_ms(),
            requests: 0,
            failures: 0,
            recorded: 0,
            events: 0,
            counters,
            gauges,
            histograms,
        }
    }

    /// The next second's report with `n` recorder events.
    pub(crate) fn report(&mut self, n: usize) -> Report {
        self.sequence += 1;
        let end_ms = now_ms();
        // 100 requests a second, 2 % failing, per direction and peer.
        self.requests += 100;
        self.failures += 2;
        self.recorded += n as u64;
        let events = (0..n).map(|i| self.event(i, end_ms)).collect();
        let seconds = self.sequence;
        let counters = self
            .counters
            .iter()
            .map(|(series, grows)| {
                let value = match *grows {
                    Grows::Requests => self.requests,
                    // The last class is the failing one; the others share
                    // the successes, the first most of them.
                    Grows::Status { index, of } if index + 1 == of => self.failures,
                    Grows::Status { index: 0, of } => {
                        self.requests - self.failures - (of as u64 - 2) * seconds
                    }
                    Grows::Status { .. } => seconds,
                    Grows::By(by) => by * seconds,
                    Grows::Recorded => self.recorded,
                    Grows::Overflow => self.failures.saturating_sub(self.recorded),
                    Grows::Sent => self.sequence - 1,
                };
                CounterSeries {
                    value: value as f64,
                    ..series.clone()
                }
            })
            .collect();
        Report {
            proxy: Some(ProxyMeta {
                deployment: Some(DeploymentRef {
                    namespace: NAMESPACE.into(),
                    name: self.deployment.clone(),
                }),
                pod: format!("{}-{}", self.deployment, self.p % PODS),
                identity: String::new(),
                version: conduit_api::VERSION.into(),
                process_start_unix_ms: self.started_ms,
                ..Default::default()
            }),
            sequence: self.sequence,
            start_unix_ms: end_ms - 1000,
            end_unix_ms: end_ms,
            counters,
            gauges: self.gauges.clone(),
            histograms: self.histograms.clone(),
            tap_events: events,
            dropped_reports: 0,
            dropped_tap_events: 0,
        }
    }

    /// A request the recorder kept in the last second: a failure (3 in
    /// 4) or a slow success, outbound from this proxy's Deployment.
    fn event(&mut self, i: usize, end_ms: i64) -> TapEvent {
        self.events += 1;
        let k = self.events;
        let failed = !k.is_multiple_of(4);
        let dst = format!("d{:03}", (self.p * 7 + i) % 200);
        let latency_us = if failed {
            800 + k % 5000
        } else {
            250_000 + k % 750_000
        };
        let peer = |d: &str, ip: u8| {
            Some(Peer {
                address: Some(TcpAddress {
                    ip: vec![10, 1, (self.p / 250) as u8, ip],
                    port: 8080,
                }),
                deployment: Some(DeploymentRef {
                    namespace: NAMESPACE.into(),
                    name: d.to_string(),
                }),
                identity: format!("{d}.{NAMESPACE}.serviceaccount.identity.conduit.cluster.local"),
            })
        };
        let start_us = (end_ms - 1000) * 1000 + (i as i64 * 997) % 1_000_000;
        TapEvent {
            // Unique per event, and as random-looking as a proxy's own.
            request_id: format!(
                "{:016x}",
                ((self.p as u64) << 40 | k).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ),
            direction: Direction::Outbound as i32,
            source: peer(&self.deployment, (self.p % 250) as u8),
            destination: peer(&dst, (i % 250) as u8),
            tls: true,
            method: if k.is_multiple_of(3) { "POST" } else { "GET" }.into(),
            scheme: "http".into(),
            authority: format!("{dst}.{NAMESPACE}.svc.cluster.local:8080"),
            path: format!("/api/vote/{}", k % 500),
            request_start_unix_us: start_us,
            response_latency_us: latency_us,
            response_duration_us: latency_us + 150,
            http_status: if failed { 500 + (k % 4) as u32 } else { 200 },
            grpc_status: None,
            request_bytes: k % 2000,
            response_bytes: if failed { 64 } else { 1024 + k % 20_000 },
            error: if failed {
                "upstream returned 503".into()
            } else {
                String::new()
            },
            kept: if failed { Kept::Failed } else { Kept::Slow } as i32,
            error_reason: if failed {
                "upstream_5xx".into()
            } else {
                String::new()
            },
        }
    }
}

/// One second's latencies of one direction, as an interval histogram.
fn latency(labels: Vec<conduit_api::proto::mesh::v1::Label>, p: usize) -> HistogramSeries {
    let mut h = histogram::new_latency_histogram();
    for r in 0..100u64 {
        histogram::record_latency_us(&mut h, 500 + (r * 397 + p as u64) % 40_000);
    }
    let sum = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum::<f64>()
        / 1000.0;
    HistogramSeries {
        metric: names::RESPONSE_LATENCY_MS.into(),
        labels,
        hdr: histogram::encode(&h).expect("encode histogram"),
        value_scale: histogram::LATENCY_VALUE_SCALE,
        sum,
        exemplars: Vec::new(),
    }
}

/// Searches for the pending markers every 100 ms, all in one query (so
/// the searches cost the store the same however many are pending), and
/// records each one's lag when found.
async fn find_markers(http_addr: std::net::SocketAddr, markers: Arc<Markers>, lags: Arc<Lags>) {
    let client = http::client();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticker.tick().await;
        let pending: Vec<(String, Instant)> = {
            let mut m = lock(&markers);
            let mut l = lock(&lags);
            m.retain(|_, sent| {
                let lost = sent.elapsed() > MARKER_TIMEOUT;
                if lost {
                    l.push((*sent, None));
                }
                !lost
            });
            let mut pending: Vec<_> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
            // The oldest first, and few enough for one query's limits.
            pending.sort_by_key(|(_, sent)| *sent);
            pending.truncate(MAX_MARKERS_PER_QUERY);
            pending
        };
        if pending.is_empty() {
            continue;
        }
        let q = pending
            .iter()
            .map(|(id, _)| format!("request_id:{id}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let since = (now_ms() - MARKER_TIMEOUT.as_millis() as i64 - 60_000) / 1000;
        let url = format!(
            "http://{http_addr}/api/v1/tap/search?q={}&limit={}&start={since}",
            conduit_testbed::query_escape(&q),
            pending.len()
        );
        let Ok((200, body)) = http::get(&client, &url).await else {
            continue;
        };
        for (id, sent) in pending {
            if body.contains(&id) {
                lock(&markers).remove(&id);
                lock(&lags).push((sent, Some(sent.elapsed())));
            }
        }
    }
}

/// The store's counters of tap events: indexed, dropped (queue full),
/// refused (dated in the future; another workload's side).
async fn store_counters(
    client: &http::HttpClient,
    http_addr: std::net::SocketAddr,
) -> Result<[u64; 4], String> {
    let (_, m) = http::get(client, &format!("http://{http_addr}/metrics")).await?;
    let v = |name: &str| conduit_testbed::metric_sum(&m, name, &[]) as u64;
    Ok([
        v("conduit_store_tap_events_indexed_total"),
        v("conduit_store_tap_events_dropped_total"),
        v("conduit_store_tap_events_refused_time_total"),
        v("conduit_store_tap_events_refused_total"),
    ])
}

struct Step {
    rate: u32,
    secs: f64,
    sent: u64,
    indexed: u64,
    dropped: u64,
    refused: u64,
    /// Events sent but not indexed (nor dropped) when the step ended.
    backlog: u64,
    reports_dropped: u64,
    /// Lag of the markers found, sorted, in ms; markers never found.
    lags_ms: Vec<f64>,
    lost: usize,
    store_cpu: f64,
    generator_cpu: f64,
    rss_mib: f64,
}

impl Step {
    fn keeps_up(&self) -> bool {
        self.dropped == 0
            && self.lost == 0
            && self.reports_dropped == 0
            && self.backlog <= self.sent / self.secs.max(1.0) as u64
            && report::pct(&self.lags_ms, 0.99) <= MAX_LAG_P99.as_secs_f64() * 1000.0
    }
}

/// The steps, and the fleet's reports: sent, and acknowledged by the store.
async fn ramp(o: &Options, store: &Store) -> Result<(Vec<Step>, u64, u64), String> {
    let http_addr = store.http;
    let pid = store.process.id();
    let client = http::client();
    let rate = Arc::new(AtomicU32::new(o.rates[0]));
    let sent = Arc::new(Sent::default());
    let markers: Arc<Markers> = Arc::default();
    let lags: Arc<Lags> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    eprintln!("fleet: connecting {} proxies", o.proxies);
    let mut fleet = tokio::task::JoinSet::new();
    for p in 0..o.proxies {
        // Its own connection, as every proxy has.
        let channel = tonic::transport::Endpoint::from_shared(store.grpc_url())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("proxy {p}: {e}"))?;
        fleet.spawn(proxy(
            p,
            Simulated::new(p, Mix::FLEET),
            channel,
            rate.clone(),
            sent.clone(),
            markers.clone(),
            stop.clone(),
            o.proxies,
        ));
    }
    let finder = tokio::spawn(find_markers(http_addr, markers.clone(), lags.clone()));
    let mut steps = Vec::new();
    for (i, &r) in o.rates.iter().enumerate() {
        rate.store(r, Relaxed);
        let secs = if i == 0 {
            o.seconds
        } else {
            (o.seconds / 2).max(2)
        };
        eprintln!(
            "fleet: {r} events/s from each of {} proxies for {secs} s",
            o.proxies
        );
        // A second for every proxy to send at the new rate.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let began = Instant::now();
        let before = store_counters(&client, http_addr).await?;
        let (sent_before, dropped_reports_before) = (
            sent.events.load(Relaxed),
            sent.reports_dropped.load(Relaxed),
        );
        let cpu_before = peers::cpu_seconds(pid)?;
        let gen_before = peers::cpu_seconds(std::process::id())?;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let total_sent = sent.events.load(Relaxed);
        let after = store_counters(&client, http_addr).await?;
        let elapsed = began.elapsed().as_secs_f64();
        let step_sent = total_sent - sent_before;
        let store_cpu = (peers::cpu_seconds(pid)? - cpu_before) / elapsed;
        let generator_cpu = (peers::cpu_seconds(std::process::id())? - gen_before) / elapsed;
        let rss_mib = peers::rss_kib(pid)?.0 as f64 / 1024.0;
        // Markers of this step: sent after it began, looked for until found
        // or timed out (the next step's load delays them, as in a real ramp).
        let wait = Instant::now();
        while wait.elapsed() < MARKER_TIMEOUT
            && lock(&markers)
                .values()
                .any(|s| *s >= began && *s <= began + Duration::from_secs(secs))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (lags_ms, lost) = {
            let l = lock(&lags);
            let of_step: Vec<_> = l
                .iter()
                .filter(|(s, _)| *s >= began && *s <= began + Duration::from_secs(secs))
                .collect();
            let lost = of_step.iter().filter(|(_, d)| d.is_none()).count();
            let lags = of_step
                .iter()
                .filter_map(|(_, d)| d.map(|d| d.as_secs_f64() * 1000.0))
                .collect();
            (report::sorted(lags), lost)
        };
        let step = Step {
            rate: r,
            secs: elapsed,
            sent: step_sent,
            indexed: after[0] - before[0],
            dropped: after[1] - before[1],
            refused: (after[2] + after[3]) - (before[2] + before[3]),
            backlog: total_sent.saturating_sub(after[0] + after[1] + after[2] + after[3]),
            reports_dropped: sent.reports_dropped.load(Relaxed) - dropped_reports_before,
            lags_ms,
            lost,
            store_cpu,
            generator_cpu,
            rss_mib,
        };
        eprintln!(
            "fleet: {r}/s: sent {:.0}/s, indexed {:.0}/s, dropped {}, backlog {}, lag p50 {:.0} ms p99 {:.0} ms, store CPU {:.0} %",
            step.sent as f64 / step.secs,
            step.indexed as f64 / step.secs,
            step.dropped,
            step.backlog,
            report::pct(&step.lags_ms, 0.5),
            report::pct(&step.lags_ms, 0.99),
            step.store_cpu * 100.0
        );
        let kept_up = step.keeps_up();
        steps.push(step);
        if !kept_up {
            break;
        }
    }
    stop.notify_waiters();
    finder.abort();
    while fleet.join_next().await.is_some() {}
    let failed = sent.streams_failed.load(Relaxed);
    if failed > 0 {
        return Err(format!("{failed} report streams failed"));
    }
    Ok((steps, sent.reports.load(Relaxed), sent.acked.load(Relaxed)))
}

fn write_report(
    o: &Options,
    load: &str,
    steps: &[Step],
    reports: u64,
    acked: u64,
) -> Result<(), String> {
    let mut md = format!(
        "## fleet: the tap history fed by {} proxies' flight recorders ({})\n\n\
         Command: `cargo xtask bench fleet` (= `cargo run --release -p conduit-load-tests -- fleet --proxies {} --seconds {} --rates {}`); \
         2 cores shared by the store, the simulated fleet and other work; load average (1, 5, 15 min) {load}.\n\n\
         {} simulated proxies in {} Deployments report to one store as conduit-proxy does: each over its own connection, \
         one long-lived `Telemetry.Stream` call (reports out, acknowledgements back), one report a second (staggered), with its metric series (11 counters, \
         2 interval latency histograms, a gauge) and the events its recorder kept that second (3 in 4 failures, the rest \
         slow; `kept` set). The first step is the recorder's default budget ({BUDGET}/s per proxy); each later one (half as \
         long) raises the rate, as sampled events would on top, until the store no longer keeps up. Lag: from a report's \
         send until `/api/v1/tap/search?q=request_id:…` finds its first event ({MARKERS_PER_SEC} markers a second, all pending \
         ones searched for in one query every 100 ms, so lags are rounded up to the next search). Keeping up: no event dropped or lost, \
         lag p99 ≤ {} s, at most a second's worth unindexed at the step's end.\n\n\
         | events/s per proxy | sent/s | indexed/s | dropped | refused | unindexed at end | lag p50 | lag p99 | markers | store CPU | store RSS | fleet CPU | keeps up |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        o.proxies,
        report::today(),
        o.proxies,
        o.seconds,
        o.rates
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        o.proxies,
        o.proxies.div_ceil(PODS),
        MAX_LAG_P99.as_secs(),
    );
    for s in steps {
        md += &format!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {:.0} ms | {:.0} ms | {} ({} lost) | {:.0} % | {:.0} MiB | {:.0} % | {} |\n",
            s.rate,
            s.sent as f64 / s.secs,
            s.indexed as f64 / s.secs,
            s.dropped,
            s.refused,
            s.backlog,
            report::pct(&s.lags_ms, 0.5),
            report::pct(&s.lags_ms, 0.99),
            s.lags_ms.len() + s.lost,
            s.lost,
            s.store_cpu * 100.0,
            s.rss_mib,
            s.generator_cpu * 100.0,
            if s.keeps_up() { "yes" } else { "**no**" },
        );
    }
    let at_budget = steps.iter().find(|s| s.rate == BUDGET);
    let highest = steps.iter().filter(|s| s.keeps_up()).map(|s| s.rate).max();
    let first_miss = steps.iter().find(|s| !s.keeps_up()).map(|s| s.rate);
    md += &format!(
        "\nThe store acknowledged {acked} of the {reports} reports sent. Headroom: the store kept up with {}; {}. \
         The machine is shared: where the ramp stops moves with the other work on it (see the load average).\n\n",
        highest.map_or("none of the rates".into(), |r| format!(
            "up to {r} events/s per proxy ({} from the fleet)",
            r as usize * o.proxies
        )),
        first_miss.map_or(
            "every step kept up (raise `--rates` to find the limit)".to_string(),
            |r| format!("at {r} it no longer did")
        ),
    );
    if let (Some(last), Some(kept)) = (
        steps.last().filter(|s| !s.keeps_up()),
        steps.iter().rev().find(|s| s.keeps_up()),
    ) && last.indexed as f64 / last.secs < kept.indexed as f64 / kept.secs
    {
        md += "Past its limit the store indexed fewer events a second than at the last rate it kept up with: \
               with its queue full it drops events, and the index does not hold its best rate (why has not been \
               profiled).\n\n";
    }
    let verdict = match at_budget {
        Some(s) if o.proxies == 1000 && s.keeps_up() => "met",
        Some(_) if o.proxies == 1000 => "**not met**",
        _ => "not measured (run with 1000 proxies and rate 20)",
    };
    md += &format!(
        "| goal | measured | |\n|---|---:|---|\n\
         | the tap history keeps up with 20 000 events/s from 1 000 proxies (the recorder's default budget) | {} | {verdict} |\n",
        at_budget.map_or("–".into(), |s| format!(
            "{:.0} indexed/s of {:.0} sent/s, {} dropped, lag p99 {:.0} ms",
            s.indexed as f64 / s.secs,
            s.sent as f64 / s.secs,
            s.dropped,
            report::pct(&s.lags_ms, 0.99)
        )),
    );
    report::write_section("fleet", &md)?;
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Mix, Simulated};

    #[test]
    fn a_report_holds_its_mix_of_series() {
        for (mix, series) in [(Mix::FLEET, 14), (Mix::POD, 136)] {
            let r = Simulated::new(7, mix).report(3);
            let sent = r.counters.len() + r.gauges.len() + r.histograms.len();
            assert_eq!((sent, mix.series()), (series, series));
            assert_eq!(r.tap_events.len(), 3);
        }
    }

    #[test]
    fn status_classes_add_up_to_the_requests() {
        let mut sim = Simulated::new(0, Mix::POD);
        sim.report(0);
        let r = sim.report(0);
        let value = |metric: &str| {
            r.counters
                .iter()
                .filter(|c| c.metric == metric)
                .map(|c| c.value)
                .sum::<f64>()
        };
        let requests = value(conduit_api::metrics::REQUEST_TOTAL);
        assert_eq!(requests, 2.0 * 6.0 * 200.0);
        assert_eq!(value(conduit_api::metrics::RESPONSE_TOTAL), requests);
    }
}
