//! `store`: the telemetry store against Prometheus 2.42 and
//! VictoriaMetrics 1.79 (Debian packages), same machine, same data:
//!
//! - ingest samples/s of one remote-write stream (Linkerd-style series of
//!   a mesh, several hours at a 15 s interval, sent by 4 connections);
//! - bytes per sample on disk once the data is in blocks;
//! - resident memory per active series;
//! - a `stat`-style query (success rate, RPS, p50/p95/p99 for every
//!   Deployment over 1 min): one `Golden` gRPC call against the four
//!   PromQL queries Linkerd's `viz stat` sends Prometheus.
//!
//! Run `cargo xtask bench store` (or `cargo run --release -p
//! conduit-load-tests -- store [--series N] [--hours H] [--deployments D]`);
//! figures and plots go to `load-tests/RESULTS.md` and
//! `load-tests/plots/store-*.svg`.

pub(crate) mod fleet;
mod forward;
mod golden;
mod http;
mod peer;
pub(crate) mod sizing;
mod stream;
mod tap;

use std::time::{Duration, Instant};

use peer::{Kind, Peer};

use crate::args::Flags;
use crate::report::now_ms;
use crate::scratch::ScratchDir;
use crate::{plot, report};

const USAGE: &str = "usage: conduit-load-tests store [--series N] [--hours H (at least 3.5, so that Prometheus writes a block)] [--deployments D] [--runs R] [--tap-events N] [--settle-seconds S (15)] [--only conduit|prometheus|victoria]";

const SHARDS: usize = 4;
const INTERVAL_MS: i64 = 15_000;
/// Quiet time between a peer's first block and its memory reading.
const SETTLE_SECONDS: u64 = 15;
/// Series of the stream the tap and remote-write-out figures run under
/// (fewer when `--series` asks for fewer).
const SMALL_SERIES: usize = 5000;

struct Options {
    series: usize,
    hours: f64,
    deployments: usize,
    runs: usize,
    /// Run the ingest figures for one peer only (for profiling).
    only: Option<Kind>,
    /// Tap events to index for the tap history figures (0 skips them).
    tap_events: u64,
    /// Quiet time after each peer's first block before its memory is read.
    settle_seconds: u64,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        series: 20_000,
        hours: 5.0,
        deployments: 1000,
        runs: 15,
        only: None,
        tap_events: 10_000_000,
        settle_seconds: SETTLE_SECONDS,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--series" => o.series = flags.number(flag, 1..=10_000_000)?,
            "--hours" => o.hours = flags.number(flag, 3.5..=48.0)?,
            "--deployments" => o.deployments = flags.number(flag, 1..=100_000)?,
            "--runs" => o.runs = flags.number(flag, 1..=1000)?,
            "--tap-events" => o.tap_events = flags.number(flag, 0..=1_000_000_000)?,
            "--settle-seconds" => o.settle_seconds = flags.number(flag, 0..=600)?,
            "--only" => {
                o.only = Some(match flags.value(flag)? {
                    "conduit" => Kind::Conduit,
                    "prometheus" => Kind::Prometheus,
                    "victoria" => Kind::Victoria,
                    other => {
                        return Err(format!(
                            "--only {other:?}: use conduit, prometheus or victoria"
                        ));
                    }
                })
            }
            _ => return Err(flags.unknown(flag)),
        }
    }
    Ok(o)
}

struct Figures {
    kind: Kind,
    samples_per_sec: f64,
    bytes_per_sample: f64,
    rss_per_series: f64,
    rss_mb: f64,
    block_samples: u64,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Declared before the peers: they stop before it is removed.
    let scratch = ScratchDir::new("conduit-bench-store")?;
    let root = scratch.path();
    let points = (o.hours * 3_600_000.0 / INTERVAL_MS as f64) as usize;
    eprintln!("store: generating {} series × {points} samples", o.series);
    let stream = stream::generate(o.series, points, INTERVAL_MS, now_ms() - 60_000, SHARDS);
    eprintln!(
        "store: {} samples in {} requests",
        stream.samples,
        stream.shards.iter().map(Vec::len).sum::<usize>()
    );

    let mut figures = Vec::new();
    let mut peers = Vec::new();
    for kind in [Kind::Conduit, Kind::Prometheus, Kind::Victoria] {
        if o.only.is_some_and(|only| only != kind) {
            continue;
        }
        let peer = Peer::start(kind, root)?;
        let idle = peer.rss_bytes();
        let elapsed = rt.block_on(ingest(&peer, &stream))?;
        let samples_per_sec = stream.samples as f64 / elapsed.as_secs_f64();
        eprintln!(
            "store: {} ingested {:.0} samples/s",
            kind.name(),
            samples_per_sec
        );
        let (bytes, samples) = rt.block_on(settle(&peer, &stream))?;
        // Each peer gets the same quiet time after its first block to
        // finish the cut and give freed memory back (Go's scavenger,
        // glibc's trim): memory per series is the steady state, not the
        // moment the block appears.
        std::thread::sleep(Duration::from_secs(o.settle_seconds));
        let rss = peer.rss_bytes();
        figures.push(Figures {
            kind,
            samples_per_sec,
            bytes_per_sample: bytes as f64 / samples.max(1) as f64,
            rss_per_series: rss.saturating_sub(idle) as f64 / o.series as f64,
            rss_mb: rss as f64 / 1e6,
            block_samples: samples,
        });
        eprintln!(
            "store: {}: {:.2} bytes/sample, {:.0} bytes of memory per series",
            kind.name(),
            figures.last().unwrap().bytes_per_sample,
            figures.last().unwrap().rss_per_series
        );
        peers.push(peer);
    }
    if o.only.is_some() {
        return Ok(());
    }

    let conduit = &peers[0];
    let prometheus = &peers[1];
    eprintln!(
        "store: loading {} Deployments for the stat query",
        o.deployments
    );
    let end = rt.block_on(golden::load(
        conduit.grpc.expect("grpc"),
        prometheus.http,
        o.deployments,
    ))?;
    let stat = rt.block_on(golden::measure(
        conduit.http,
        conduit.grpc.expect("grpc"),
        prometheus.http,
        end,
        o.runs,
    ))?;
    if stat.rows != o.deployments {
        return Err(format!(
            "Golden returned {} rows for {} Deployments",
            stat.rows, o.deployments
        ));
    }
    drop(peers);

    // Issue 6: tap history under metric load, and remote write out.
    let small = stream::generate(
        SMALL_SERIES.min(o.series),
        240,
        INTERVAL_MS,
        now_ms() - 60_000,
        SHARDS,
    );
    let tap = if o.tap_events > 0 {
        let extra: Vec<String> = [
            "--tap-retention-time",
            "30d",
            "--tap-retention-size",
            "50GiB",
            "--tap-queue",
            "1000000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let peer = Peer::start_named(Kind::Conduit, root, "conduit-tap", &extra)?;
        eprintln!(
            "store: indexing {} tap events while ingesting {} metric samples",
            o.tap_events, small.samples
        );
        let load = async {
            let began = Instant::now();
            ingest(&peer, &small).await?;
            Ok((small.samples, began.elapsed()))
        };
        let figures = rt.block_on(tap::run(
            peer.http,
            peer.grpc.expect("grpc"),
            o.tap_events,
            load,
            || peer.cpu_seconds(),
        ))?;
        let bytes = peer::dir_bytes(&peer.dir.join("data").join("tap"));
        Some((figures, bytes))
    } else {
        None
    };
    eprintln!("store: forwarding with remote write to VictoriaMetrics");
    let vm = Peer::start_named(Kind::Victoria, root, "victoria-forward", &[])?;
    let conduit = Peer::start_named(
        Kind::Conduit,
        root,
        "conduit-forward",
        &["--remote-write-url".into(), vm.write_url()],
    )?;
    let forward = rt.block_on(forward::run(&conduit, &small))?;
    drop((conduit, vm));
    report(&o, &stream, &figures, &stat, tap.as_ref(), &forward)
}

/// Sends every shard over its own connection, in order; all samples must
/// be accepted.
async fn ingest(peer: &Peer, stream: &stream::Stream) -> Result<Duration, String> {
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for shard in &stream.shards {
        let (shard, url) = (shard.clone(), peer.write_url());
        tasks.spawn(async move {
            let client = http::client();
            let headers = [
                ("content-encoding", "snappy"),
                ("content-type", "application/x-protobuf"),
                ("x-prometheus-remote-write-version", "0.1.0"),
            ];
            for body in shard {
                let (status, msg) =
                    http::send(&client, hyper::Method::POST, &url, &headers, body).await?;
                if !(200..300).contains(&status) {
                    return Err(format!("{url}: {status} {msg}"));
                }
            }
            Ok::<_, String>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    Ok(began.elapsed())
}

/// Waits until the peer has written its data into blocks (parts for
/// VictoriaMetrics); returns (bytes on disk, samples they hold).
async fn settle(peer: &Peer, stream: &stream::Stream) -> Result<(u64, u64), String> {
    let client = http::client();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let found = match peer.kind {
            Kind::Conduit => {
                let (_, m) = http::get(&client, &format!("http://{}/metrics", peer.http)).await?;
                let value = |name: &str| {
                    m.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name} ")))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let samples = value("conduit_store_block_samples");
                (samples > 0).then(|| (value("conduit_store_block_bytes"), samples))
            }
            Kind::Prometheus => prometheus_blocks(&peer.dir.join("data")),
            Kind::Victoria => {
                http::get(
                    &client,
                    &format!("http://{}/internal/force_flush", peer.http),
                )
                .await?;
                tokio::time::sleep(Duration::from_secs(15)).await;
                Some((peer.data_bytes(), stream.samples))
            }
        };
        if let Some(f) = found {
            return Ok(f);
        }
        if Instant::now() > deadline {
            return Err(format!("{} wrote no block in 4 minutes", peer.kind.name()));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Sizes and sample counts of Prometheus' persisted blocks.
fn prometheus_blocks(dir: &std::path::Path) -> Option<(u64, u64)> {
    let (mut bytes, mut samples) = (0, 0);
    for e in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let Ok(meta) = std::fs::read_to_string(e.path().join("meta.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&meta).ok()?;
        samples += v["stats"]["numSamples"].as_u64().unwrap_or(0);
        bytes += peer::dir_bytes(&e.path());
    }
    (samples > 0).then_some((bytes, samples))
}

fn report(
    o: &Options,
    stream: &stream::Stream,
    figures: &[Figures],
    stat: &golden::StatTimes,
    tap: Option<&(tap::TapFigures, u64)>,
    forward: &forward::ForwardFigures,
) -> Result<(), String> {
    let bar = |f: &Figures, v: f64| plot::Bar {
        label: f.kind.name().to_string(),
        value: v,
    };
    let charts = [
        (
            "store-ingest.svg",
            plot::bars(
                "Remote-write ingest (higher is better)",
                "samples/s",
                &figures
                    .iter()
                    .map(|f| bar(f, f.samples_per_sec))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "store-bytes-per-sample.svg",
            plot::bars(
                "Bytes per sample on disk (lower is better)",
                "B",
                &figures
                    .iter()
                    .map(|f| bar(f, f.bytes_per_sample))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "store-memory-per-series.svg",
            plot::bars(
                "Resident memory per active series (lower is better)",
                "B",
                &figures
                    .iter()
                    .map(|f| bar(f, f.rss_per_series))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "store-stat-query.svg",
            plot::bars(
                &format!(
                    "stat query, {} Deployments, 1 min (lower is better)",
                    o.deployments
                ),
                "ms",
                &[
                    plot::Bar {
                        label: "Conduit Golden (gRPC)".into(),
                        value: stat.golden_ms,
                    },
                    plot::Bar {
                        label: "Prometheus, 4 PromQL".into(),
                        value: stat.prometheus_ms,
                    },
                    plot::Bar {
                        label: "Conduit, same 4 PromQL".into(),
                        value: stat.conduit_promql_ms,
                    },
                ],
            ),
        ),
    ];
    for (name, svg) in &charts {
        report::write_plot(name, svg)?;
    }
    let (c, p, v) = (&figures[0], &figures[1], &figures[2]);
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    md += "## Telemetry store (`store`)\n\n";
    md += &format!(
        "Command: `cargo run --release -p conduit-load-tests -- store --series {} --hours {} --deployments {} --runs {} --tap-events {} --settle-seconds {}` \
         (what `cargo xtask bench store` runs with defaults). Machine: {cores} cores, {cpu}; all processes on it at once.\n\n",
        o.series, o.hours, o.deployments, o.runs, o.tap_events, o.settle_seconds
    );
    md += &format!(
        "Data: {} series of {} proxy endpoints in {} Deployments, moving as Linkerd proxies' do: request and response \
         counters growing with a Poisson-like request count (1–100 requests/s per endpoint, log-uniform), every third \
         cumulative `le` latency bucket, bytes read, open connections (a small integer gauge); one timestamp per pod \
         scrape, with a few ms of jitter on 3 scrapes in 10. {} samples at 15 s ({} h), one remote-write stream of \
         2 000-sample requests sent by {SHARDS} connections to each peer in turn.\n\n",
        stream.series,
        stream.series.div_ceil(14),
        stream.series.div_ceil(14 * 40),
        stream.samples,
        o.hours
    );
    md += "| | conduit-telemetry-store | Prometheus 2.42 | VictoriaMetrics 1.79 | goal | |\n|---|---|---|---|---|---|\n";
    md += &format!(
        "| ingest, samples/s | {:.0} | {:.0} | {:.0} | ≥ 2× Prometheus, ≥ 1× VictoriaMetrics | {} ({:.2}× / {:.2}×) |\n",
        c.samples_per_sec,
        p.samples_per_sec,
        v.samples_per_sec,
        verdict(
            c.samples_per_sec >= 2.0 * p.samples_per_sec && c.samples_per_sec >= v.samples_per_sec
        ),
        c.samples_per_sec / p.samples_per_sec,
        c.samples_per_sec / v.samples_per_sec
    );
    md += &format!(
        "| bytes per sample on disk | {:.3} | {:.3} | {:.3} | ≤ 1.0 | {} |\n",
        c.bytes_per_sample,
        p.bytes_per_sample,
        v.bytes_per_sample,
        verdict(c.bytes_per_sample <= 1.0)
    );
    md += &format!(
        "| memory per active series, bytes (RSS {:.0} / {:.0} / {:.0} MB) | {:.0} | {:.0} | {:.0} | ≤ ⅓ Prometheus | {} ({:.2}×) |\n",
        c.rss_mb,
        p.rss_mb,
        v.rss_mb,
        c.rss_per_series,
        p.rss_per_series,
        v.rss_per_series,
        verdict(c.rss_per_series * 3.0 <= p.rss_per_series),
        c.rss_per_series / p.rss_per_series
    );
    md += &format!(
        "| stat query, {} Deployments, 1 min, median of {} | {:.1} ms (Golden) | {:.1} ms (4 PromQL) | – | ≥ 5× faster | {} ({:.1}×) |\n\n",
        o.deployments,
        o.runs,
        stat.golden_ms,
        stat.prometheus_ms,
        verdict(stat.prometheus_ms >= 5.0 * stat.golden_ms),
        stat.prometheus_ms / stat.golden_ms
    );
    md += &format!(
        "The same four PromQL queries on the Conduit store take {:.1} ms. Bytes per sample count block files only \
         (Prometheus: {} samples in its 2 h blocks; Conduit: {} in its blocks; VictoriaMetrics: its whole data directory \
         after a forced flush). Memory is resident set growth from the idle process to 15 s after its first block is written (the same quiet time for each), per series.\n\n",
        stat.conduit_promql_ms, p.block_samples, c.block_samples
    );
    md += "Where Conduit's memory goes: the head's open chunks take about 2 bytes a sample (integer delta-of-deltas in a \
           varbit code). Full ones are frozen into the smaller of that stream and the block codec (about 1 byte a sample) \
           and appended to one unlinked file per block range in the data directory, so they sit in the page cache, not in \
           the process, as Prometheus's memory-mapped full head chunks do; neither figure counts page cache. The head and \
           every block share one copy of each label set; block postings hold 32-bit row numbers, and a rollup block's \
           index is read only when a query first needs it. Free heap pages go back to the OS after each maintenance pass \
           (`malloc_trim`), and large short-lived buffers are mapped on their own (a pinned mmap threshold) instead of \
           landing between long-lived allocations.\n\n";
    md += "Where Conduit's ingest time goes: the store is bound by CPU (about 1.75 of the 2 cores), and most of that \
           CPU was spent waiting for memory. Finding a series is three dependent cache misses (hash table slot, series, \
           label bytes), and the lock atomics between two lookups kept the CPU from overlapping them. A request's series \
           are now gathered first and looked up stripe by stripe, 16 at a time, with each level prefetched for the whole \
           group; the commit prefetches the series it is about to lock and the end of the chunk it appends to.\n\n";
    for (name, _) in &charts {
        md += &format!("![{name}](plots/{name})\n");
    }
    md += "\n### Tap history and remote write out (issue 6)\n\n";
    if let Some((t, bytes)) = tap {
        md += &format!(
            "Tap indexing: {} events indexed at {:.0} events/s (4 gRPC report streams of 1 000-event reports, producers \
             held within 200 k events of the indexer) while the same store ingested a metric stream at {:.0} samples/s; \
             {} events dropped; index {:.1} bytes/event on disk.\n\n",
            t.events,
            t.events_per_sec,
            t.metric_samples_per_sec,
            t.dropped,
            *bytes as f64 / t.events.max(1) as f64
        );
        md += &format!(
            "Search latency over {} events (`/api/v1/tap/search`, limit 100, 50 runs each; goal p99 ≤ 50 ms), timed once \
             the store was idle (below 5% of a core; the index merges segments in the background after a burst), \
             {:.0} s after the last event was indexed.\n\n| query | hits | p50 ms | p99 ms | |\n|---|---|---|---|---|\n",
            t.events, t.settle_secs
        );
        for (q, p50, p99, hits) in &t.searches {
            md += &format!(
                "| `{q}` | {hits} | {p50:.1} | {p99:.1} | {} |\n",
                verdict(*p99 <= 50.0)
            );
        }
        md += "\n";
    }
    md += &format!(
        "Remote write out: {} samples forwarded to VictoriaMetrics at {:.0} samples/s (from the first ingested sample to \
         the last one acknowledged), {:.0}× the demo's ~{:.0} samples/s; goal ≥ 2×: {}.\n",
        forward.samples,
        forward.samples_per_sec,
        forward.samples_per_sec / forward::DEMO_SAMPLES_PER_SEC,
        forward::DEMO_SAMPLES_PER_SEC,
        verdict(forward.samples_per_sec >= 2.0 * forward::DEMO_SAMPLES_PER_SEC)
    );
    report::write_section("store", &md)?;
    print!("{md}");
    Ok(())
}
