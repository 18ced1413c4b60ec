//! `conduit-load-tests sizing`: how many proxies one store serves, measured
//! (issue 24).
//!
//! N simulated proxies (the fleet's simulation, `fleet::proxy`, with a
//! pod's series mix, `Mix::POD`, and no tap events) report to one real
//! store, each over its own connection and `Telemetry.Stream` call, one
//! report a second. N rises step by step, each step against a fresh store,
//! until the store no longer keeps up. Per step: the store's CPU (cores)
//! and resident memory growth from idle (bytes per proxy), samples
//! appended per second, the lag from a report's send to its
//! acknowledgement, reports the proxies had to drop (their stream backed
//! up), and `stat`'s question (one `Golden` gRPC call for every
//! Deployment, as in the `store` scenario) timed under that load. Then the
//! same steps with the store forwarding everything by remote write to
//! VictoriaMetrics: whether forwarding moves the saturation point, and
//! whether VictoriaMetrics keeps up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use conduit_api::proto::store::v1::query_client::QueryClient;

use super::fleet::{self, Mix, Sent, Simulated};
use super::http;
use super::peer::{Kind, Peer};
use crate::args::Flags;
use crate::report::{self, now_ms};
use crate::scratch::ScratchDir;

const USAGE: &str = "usage: conduit-load-tests sizing [--proxies N,N,...] [--seconds S] [--no-forward]

  --proxies N,...  proxies per step, rising (100,250,500,1000,2000,5000,10000); the ramp stops at the first step
                   the store does not keep up with
  --seconds S      measured time per step, after every proxy has reported once (30)
  --no-forward     skip the second ramp, with the store forwarding to VictoriaMetrics";

/// Keeping up: acknowledgements within this at p99, no report dropped
/// by a proxy, every stream alive, and (forwarding) no sample refused and
/// the forwarder's queue grown by at most this much over the step.
const MAX_ACK_P99: Duration = Duration::from_secs(2);
const MAX_QUEUE_GROWTH: u64 = 1 << 20;
/// `stat` queries timed per step.
const STAT_RUNS: usize = 5;
/// Descriptors the generator and the store need beyond one per proxy.
const SPARE_FDS: usize = 256;

struct Options {
    proxies: Vec<usize>,
    seconds: u64,
    forward: bool,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        proxies: vec![100, 250, 500, 1000, 2000, 5000, 10_000],
        seconds: 30,
        forward: true,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--no-forward" => o.forward = false,
            "--proxies" => o.proxies = flags.numbers(flag, 1..=20_000, true)?,
            "--seconds" => o.seconds = flags.number(flag, 2..=600)?,
            _ => return Err(flags.unknown(flag)),
        }
    }
    Ok(o)
}

/// The soft limit of open files of this process (the store, started by
/// it, inherits it).
pub(crate) fn open_files_limit() -> Result<usize, String> {
    let limits = std::fs::read_to_string("/proc/self/limits").map_err(|e| e.to_string())?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no \"Max open files\" in /proc/self/limits".into())
}

struct Step {
    proxies: usize,
    store_cpu: f64,
    generator_cpu: f64,
    rss_mib: f64,
    bytes_per_proxy: f64,
    head_series: u64,
    samples_per_sec: f64,
    reports_per_sec: f64,
    ack_ms: Vec<f64>,
    reports_dropped: u64,
    streams_failed: u64,
    stat_ms: f64,
    stat_rows: usize,
    /// Forwarding: samples sent to VictoriaMetrics a second, failed, and
    /// bytes queued at the step's start and end.
    forwarded: Option<(f64, u64, u64, u64)>,
    /// The 1 minute load average at the step's end.
    load: String,
    /// Why VictoriaMetrics refused forwarded samples, from the store's log.
    refusal: Option<String>,
}

impl Step {
    fn keeps_up(&self) -> bool {
        let forwarder = self
            .forwarded
            .is_none_or(|(_, failed, start, end)| failed == 0 && end <= start + MAX_QUEUE_GROWTH);
        self.reports_dropped == 0
            && self.streams_failed == 0
            && !self.ack_ms.is_empty()
            && report::pct(&self.ack_ms, 0.99) <= MAX_ACK_P99.as_secs_f64() * 1000.0
            && forwarder
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let most = *o.proxies.last().expect("at least one step");
    let nofile = open_files_limit()?;
    if nofile < most + SPARE_FDS {
        return Err(format!(
            "{most} proxies need {} open files in the generator and in the store; the limit is {nofile}: raise it (ulimit -n) or step to fewer proxies",
            most + SPARE_FDS
        ));
    }
    let load_before = report::loadavg();
    let scratch = ScratchDir::new("conduit-lt-sizing")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut ramps = vec![("store alone", ramp(&rt, &o, scratch.path(), false)?)];
    if o.forward {
        ramps.push((
            "store forwarding to VictoriaMetrics",
            ramp(&rt, &o, scratch.path(), true)?,
        ));
    }
    let load = format!("{load_before} before, {} after", report::loadavg());
    write_report(&o, nofile, &load, &ramps)
}

fn ramp(
    rt: &tokio::runtime::Runtime,
    o: &Options,
    root: &std::path::Path,
    forward: bool,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for &n in &o.proxies {
        let name = format!("{}-{n}", if forward { "forward" } else { "alone" });
        let vm = forward
            .then(|| Peer::start_named(Kind::Victoria, root, &format!("vm-{name}"), &[]))
            .transpose()?;
        // One connection per proxy: the default (1 024) would hold the
        // rest back unaccepted.
        let mut extra = vec![
            "--grpc-max-connections".to_string(),
            (n + SPARE_FDS).to_string(),
        ];
        if let Some(vm) = &vm {
            extra.extend(["--remote-write-url".into(), vm.write_url()]);
        }
        let store = Peer::start_named(Kind::Conduit, root, &name, &extra)?;
        eprintln!(
            "sizing: {n} proxies{} for {} s",
            if forward { ", forwarding" } else { "" },
            o.seconds
        );
        let step = rt.block_on(step(&store, n, o.seconds, forward))?;
        eprintln!(
            "sizing: {n}: store CPU {:.2} cores, RSS {:.0} MiB ({:.0} B/proxy), {:.0} samples/s, ack p50 {:.0} ms p99 {:.0} ms, dropped {}, stat {:.1} ms, forwarded {:?}, load {}",
            step.store_cpu,
            step.rss_mib,
            step.bytes_per_proxy,
            step.samples_per_sec,
            report::pct(&step.ack_ms, 0.5),
            report::pct(&step.ack_ms, 0.99),
            step.reports_dropped,
            step.stat_ms,
            step.forwarded,
            report::loadavg()
        );
        let mut step = step;
        if step.forwarded.is_some_and(|(_, failed, _, _)| failed > 0) {
            step.refusal = std::fs::read_to_string(store.dir.join("log"))
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains("refused a batch"))
                .map(str::to_string);
        }
        let kept_up = step.keeps_up();
        steps.push(step);
        drop((store, vm));
        if !kept_up {
            break;
        }
    }
    Ok(steps)
}

/// The store's counters: samples appended, reports received, head series,
/// and the forwarder's samples sent, samples failed, bytes pending.
async fn counters(client: &http::HttpClient, store: &Peer) -> Result<[u64; 6], String> {
    let (_, m) = http::get(client, &format!("http://{}/metrics", store.http)).await?;
    let v = |name: &str| conduit_testbed::metric_sum(&m, name, &[]) as u64;
    Ok([
        v("conduit_store_samples_appended_total"),
        v("conduit_store_reports_received_total"),
        v("conduit_store_head_series"),
        v("conduit_store_remote_write_sent_samples_total"),
        v("conduit_store_remote_write_failed_samples_total"),
        v("conduit_store_remote_write_pending_bytes"),
    ])
}

async fn step(store: &Peer, n: usize, seconds: u64, forwarding: bool) -> Result<Step, String> {
    let client = http::client();
    let grpc = store.grpc.expect("the Conduit store serves gRPC");
    let idle = store.rss_bytes();
    let sent = Arc::new(Sent::default());
    let stop = Arc::new(tokio::sync::Notify::new());
    // No tap events: sizing is about the metric series.
    let rate = Arc::new(AtomicU32::new(0));
    let markers: Arc<fleet::Markers> = Arc::default();
    let mut proxies = tokio::task::JoinSet::new();
    for p in 0..n {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("proxy {p}: {e}"))?;
        proxies.spawn(fleet::proxy(
            p,
            Simulated::new(p, Mix::POD),
            channel,
            rate.clone(),
            sent.clone(),
            markers.clone(),
            stop.clone(),
            n,
        ));
    }
    // Every proxy has reported (and created its series) before the
    // measurement starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let began = Instant::now();
    let before = counters(&client, store).await?;
    let dropped_before = sent.reports_dropped.load(Relaxed);
    let cpu_before = store.cpu_seconds();
    let gen_before = crate::proxy::peers::cpu_seconds(std::process::id())?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = counters(&client, store).await?;
    let secs = began.elapsed().as_secs_f64();
    let store_cpu = (store.cpu_seconds() - cpu_before) / secs;
    let generator_cpu = (crate::proxy::peers::cpu_seconds(std::process::id())? - gen_before) / secs;
    let rss = store.rss_bytes();
    let (stat_ms, stat_rows) = stat(grpc).await?;
    let measured_until = began + Duration::from_secs(seconds);
    // Reports of the window still unacknowledged count with their age.
    tokio::time::sleep(MAX_ACK_P99).await;
    let reports_dropped = sent.reports_dropped.load(Relaxed) - dropped_before;
    stop.notify_waiters();
    while proxies.join_next().await.is_some() {}
    let ack_ms = report::sorted(
        fleet::lock(&sent.ack_lags)
            .iter()
            .filter(|(at, _)| *at >= began && *at <= measured_until)
            .map(|(_, lag)| lag.as_secs_f64() * 1000.0)
            .collect(),
    );
    Ok(Step {
        proxies: n,

        store_cpu,
        generator_cpu,
        rss_mib: rss as f64 / (1 << 20) as f64,
        bytes_per_proxy: rss.saturating_sub(idle) as f64 / n as f64,
        head_series: after[2],
        samples_per_sec: (after[0] - before[0]) as f64 / secs,
        reports_per_sec: (after[1] - before[1]) as f64 / secs,
        ack_ms,
        reports_dropped,
        streams_failed: sent.streams_failed.load(Relaxed),
        stat_ms,
        stat_rows,
        forwarded: forwarding.then(|| {
            (
                (after[3] - before[3]) as f64 / secs,
                after[4] - before[4],
                before[5],
                after[5],
            )
        }),
        load: report::loadavg()
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string(),
        refusal: None,
    })
}

/// `stat`'s question under load: the median of a few `Golden` calls for
/// every Deployment of the fleet, and the rows of the last.
async fn stat(grpc: std::net::SocketAddr) -> Result<(f64, usize), String> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut q = QueryClient::new(channel);
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..STAT_RUNS {
        let began = Instant::now();
        let resp = q
            .golden(super::golden::request(fleet::NAMESPACE, now_ms()))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        times.push(began.elapsed().as_secs_f64() * 1000.0);
        rows = resp.rows.len();
    }
    Ok((report::pct(&report::sorted(times), 0.5), rows))
}

fn write_report(
    o: &Options,
    nofile: usize,
    load: &str,
    ramps: &[(&str, Vec<Step>)],
) -> Result<(), String> {
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mix = Mix::POD;
    let mut md = format!(
        "## sizing: proxies per store, measured ({})\n\n\
         Command: `cargo xtask bench sizing` (= `cargo run --release -p conduit-load-tests -- sizing --proxies {} --seconds {}{}`); \
         2 cores shared by the store, the simulated proxies (one process), VictoriaMetrics when forwarding, and other work; \
         load average (1, 5, 15 min) {load}. Open files limit {nofile} (generator and store); the store runs with \
         `--grpc-max-connections` N + {SPARE_FDS} (its default, 1 024, would leave the rest of the fleet unaccepted).\n\n\
         Each step starts a fresh store and connects N simulated proxies (the `fleet` scenario's simulation), each over its \
         own connection and `Telemetry.Stream` call, one report a second (staggered), no tap events. Series mix per proxy \
         ({} series a report, like a pod talking to {} Deployments): per direction (inbound, outbound) and destination \
         Deployment, `request_total`, `response_total` for {} status classes ({}), a learned route's `route_request_total`, \
         a `response_latency_ms` interval histogram, and the tcp open/close/read/write counters and open-connections gauge; \
         plus 3 of the proxy's own counters and a gauge. 5 pods per Deployment. After every proxy has reported once, \
         {} s are measured: store CPU (cores, from /proc), RSS growth from the idle store divided by N, samples appended \
         a second (the store's counter; a histogram is appended as one window, not as bucket series), the lag from a \
         report's send to its acknowledgement, and `stat`'s question under load (one `Golden` gRPC call for every \
         Deployment, inbound, 1 min, median of {STAT_RUNS}). Keeping up: ack p99 ≤ {} s, no report dropped by a proxy \
         (its {}-report buffer full), no stream failed{}.\n\n",
        report::today(),
        list(&o.proxies),
        o.seconds,
        if o.forward { "" } else { " --no-forward" },
        mix.series(),
        mix.peers,
        mix.statuses.len(),
        mix.statuses
            .iter()
            .map(|(c, s)| format!("{c}/{s}"))
            .collect::<Vec<_>>()
            .join(", "),
        o.seconds,
        MAX_ACK_P99.as_secs(),
        fleet::BUFFER,
        if o.forward {
            format!(
                "; forwarding (with the store's default `--remote-write-shards` and `--remote-write-batch`): \
                 no sample refused by VictoriaMetrics, and the forwarder's queue grown by at most {} KiB over the step \
                 (it forwards what proxies sent, so its samples/s differ from the store's appended ones, which include the series derived from histograms)",
                MAX_QUEUE_GROWTH / 1024
            )
        } else {
            String::new()
        },
    );
    for (title, steps) in ramps {
        md += &format!("### {title}\n\n");
        md += "| proxies | store CPU (cores) | store RSS | RSS growth / proxy | head series | reports/s | samples/s | ack p50 | ack p99 | dropped reports | stat (Golden, all Deployments) | forwarded samples/s (failed, queued start → end) | generator CPU | load (1 min) | keeps up |\n\
               |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
        for s in steps {
            md += &format!(
                "| {} | {:.2} | {:.0} MiB | {:.0} KiB | {} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {} | {:.1} ms ({} rows) | {} | {:.2} | {} | {} |\n",
                s.proxies,
                s.store_cpu,
                s.rss_mib,
                s.bytes_per_proxy / 1024.0,
                s.head_series,
                s.reports_per_sec,
                s.samples_per_sec,
                report::pct(&s.ack_ms, 0.5),
                report::pct(&s.ack_ms, 0.99),
                s.reports_dropped,
                s.stat_ms,
                s.stat_rows,
                s.forwarded
                    .map_or("–".into(), |(sent, failed, start, end)| format!(
                        "{sent:.0} ({failed}, {} → {} KiB)",
                        start / 1024,
                        end / 1024
                    )),
                s.generator_cpu,
                s.load,
                if s.keeps_up() { "yes" } else { "**no**" },
            );
        }
        md += &format!("\n{}\n\n", verdict(steps));
        for s in steps {
            if let Some(why) = &s.refusal {
                md += &format!(
                    "At {} proxies the store's log says, first:\n\n> {}\n\n",
                    s.proxies,
                    why.trim()
                );
            }
        }
    }
    report::write_section("sizing", &md)?;
    print!("{md}");
    Ok(())
}

/// Where a ramp stopped, in words.
fn verdict(steps: &[Step]) -> String {
    let kept = steps
        .iter()
        .filter(|s| s.keeps_up())
        .map(|s| s.proxies)
        .max();
    let missed = steps.iter().find(|s| !s.keeps_up());
    format!(
        "Kept up with {}; {}.",
        kept.map_or("none of the steps".into(), |n| format!("{n} proxies")),
        missed.map_or("every step kept up".to_string(), |s| format!(
            "at {} it did not (ack p99 {:.0} ms, {} reports dropped, {} streams failed, store CPU {:.2} cores, generator CPU {:.2} cores)",
            s.proxies,
            report::pct(&s.ack_ms, 0.99),
            s.reports_dropped,
            s.streams_failed,
            s.store_cpu,
            s.generator_cpu
        ))
    )
}
