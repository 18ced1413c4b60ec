//! `conduit-load-tests proxy`: the cost of conduit-proxy on the request
//! path, against a direct connection and against haproxy in the same run.
//!
//! HTTP/1.1 keep-alive requests for 1 KiB responses at a fixed rate
//! (1 000 RPS by default) measure latency; each path is run in several
//! short interleaved rounds so slow drift on a shared machine hits all of
//! them alike. Then each proxy gets as many requests as 16 connections can
//! send; the proxy's CPU time over that phase turns its throughput into
//! requests per CPU-second, which is what "max RPS on one core" means even
//! when the load generator, not the proxy, is the bottleneck. The outbound
//! side is measured too, balancing over one endpoint and over ten
//! (P2C/peak-EWMA). Figures go to `load-tests/RESULTS.md` and
//! `load-tests/plots/proxy-latency.svg`.

mod authorities;
pub(crate) mod h2;
pub(crate) mod load;
pub(crate) mod peers;

use std::time::Duration;

use hdrhistogram::Histogram;

use self::load::Target;
use self::peers::Process;
use crate::args::Flags;
use crate::scratch::ScratchDir;
use crate::{plot, report};

/// Outbound authorities resolved for the per-authority memory figure: the
/// proxy's default `--outbound-max-authorities`.
const AUTHORITIES: usize = 1000;

/// Every response's body size.
pub(crate) const BODY_BYTES: usize = 1024;

const USAGE: &str = "usage: conduit-load-tests proxy [--rate RPS] [--seconds S] [--rounds R]";

pub(crate) struct Options {
    pub(crate) rate: u32,
    pub(crate) seconds: u64,
    pub(crate) rounds: usize,
}

/// `--rate`, `--seconds` and `--rounds`, shared with the mTLS scenario.
pub(crate) fn options(args: &[String], usage: &str) -> Result<Options, String> {
    let defaults = Options {
        rate: 1000,
        seconds: 5,
        rounds: 2,
    };
    options_from(defaults, args, usage)
}

/// Like [`options`], for a scenario with other defaults.
pub(crate) fn options_from(
    defaults: Options,
    args: &[String],
    usage: &str,
) -> Result<Options, String> {
    let mut o = defaults;
    let mut flags = Flags::new(args, usage);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--rate" => o.rate = flags.number(flag, 1..=100_000)?,
            "--seconds" => o.seconds = flags.number(flag, 1..=600)?,
            "--rounds" => o.rounds = flags.number(flag, 1..=20)?,
            _ => return Err(flags.unknown(flag)),
        }
    }
    Ok(o)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--upstream") {
        let n = args.get(1).and_then(|n| n.parse().ok()).ok_or(USAGE)?;
        return peers::serve_upstream(n);
    }
    let opts = options(args, USAGE)?;
    let cores = match peers::run_pinned("proxy", args)? {
        peers::Pinned::Here(cores) => cores,
        peers::Pinned::Done => return Ok(()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(bench(opts, cores))
}

struct Path {
    target: Target,
    latency: Histogram<u64>,
}

struct Throughput {
    name: &'static str,
    rps: f64,
    cpu: f64,
    /// Read during the phase; `None` for the direct path.
    memory: Option<peers::Memory>,
}

async fn bench(o: Options, cores: usize) -> Result<(), String> {
    let (gen_core, proxy_core) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let (_upstream, apps) = peers::upstream(gen_core, 11)?;
    let app = apps[0];
    let mut endpoints = vec![
        "--outbound-endpoint".to_string(),
        format!("one.bench:80={app}"),
    ];
    for e in &apps[1..] {
        endpoints.extend([
            "--outbound-endpoint".to_string(),
            format!("ten.bench:80={e}"),
        ]);
    }
    let (proxy, proxy_addrs) = peers::proxy(proxy_core, app, &endpoints)?;
    let scratch = ScratchDir::new("conduit-lt-proxy")?;
    let (haproxy, haproxy_addr) = peers::haproxy(proxy_core, app, scratch.path())?;
    peers::wait_listening(proxy_addrs.inbound, "conduit-proxy").await?;
    peers::wait_listening(proxy_addrs.admin, "conduit-proxy admin").await?;
    peers::wait_listening(haproxy_addr, "haproxy").await?;

    let target = |name: &str, addr, host: &str| Target {
        name: name.into(),
        addr,
        host: host.into(),
    };
    let mut paths: Vec<Path> = [
        target("direct", app, "app.bench"),
        target("conduit-proxy", proxy_addrs.inbound, "app.bench"),
        target("haproxy", haproxy_addr, "app.bench"),
        target(
            "conduit-proxy outbound, 1 endpoint",
            proxy_addrs.outbound,
            "one.bench",
        ),
        target(
            "conduit-proxy outbound, 10 endpoints",
            proxy_addrs.outbound,
            "ten.bench",
        ),
    ]
    .into_iter()
    .map(|target| Path {
        target,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
    })
    .collect();

    let period = Duration::from_secs(o.seconds);
    eprintln!("warming up");
    for p in &paths {
        load::fixed_rate(&p.target, o.rate, Duration::from_secs(1), 4).await?;
    }
    for round in 1..=o.rounds {
        for p in &mut paths {
            eprintln!(
                "round {round}/{}: {} at {} RPS for {period:?}",
                o.rounds, p.target.name, o.rate
            );
            let h = load::fixed_rate(&p.target, o.rate, period, 4).await?;
            p.latency.add(h).map_err(|e| format!("{e:?}"))?;
        }
    }
    let mut throughput = Vec::new();
    for (p, process) in [
        (&paths[1], Some(&proxy)),
        (&paths[2], Some(&haproxy)),
        (&paths[0], None),
    ] {
        eprintln!("max rate: {}", p.target.name);
        let before = process.map(Process::cpu_seconds).transpose()?;
        // Memory is read under the load, with every connection open.
        let (rps, memory) = tokio::join!(load::max_rate(&p.target, period, 16), async {
            tokio::time::sleep(period * 3 / 4).await;
            process.map(Process::memory).transpose()
        });
        let (rps, memory) = (rps?, memory?);
        let after = process.map(Process::cpu_seconds).transpose()?;
        let cpu = before
            .zip(after)
            .map_or(0.0, |(b, a)| (a - b) / period.as_secs_f64());
        throughput.push(Throughput {
            name: match process {
                Some(p) => p.name,
                None => "direct",
            },
            rps,
            cpu,
            memory,
        });
    }
    eprintln!("resolving {AUTHORITIES} outbound authorities through a controller");
    let authorities = authorities::measure(gen_core, proxy_core, AUTHORITIES).await?;
    report(&o, cores, &paths, &throughput, &authorities)
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The `q` quantile of a latency histogram, in µs.
pub(crate) fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64
}

fn report(
    o: &Options,
    cores: usize,
    paths: &[Path],
    tp: &[Throughput],
    authorities: &authorities::AuthorityCost,
) -> Result<(), String> {
    let direct = &paths[0].latency;
    let mut md = format!(
        "## proxy: conduit-proxy vs haproxy, HTTP/1.1 keep-alive, 1 KiB responses\n\n\
         Command: `cargo run --release -p conduit-load-tests -- proxy --rate {} --seconds {} --rounds {}` \
         ({} cores; generator and upstream pinned to core 0, each proxy to core 1 with one worker thread; \
         {} rounds of {} s per path at {} RPS over 4 connections, interleaved).\n\n\
         | path | requests | p50 | p99 | p99.9 | added p50 | added p99 |\n|---|---:|---:|---:|---:|---:|---:|\n",
        o.rate, o.seconds, o.rounds, cores, o.rounds, o.seconds, o.rate
    );
    for p in paths {
        let h = &p.latency;
        let added = |q| us(h, q) - us(direct, q);
        let (a50, a99) = if p.target.name == "direct" {
            ("–".to_string(), "–".to_string())
        } else {
            (
                format!("{:.0} µs", added(0.5)),
                format!("{:.0} µs", added(0.99)),
            )
        };
        md += &format!(
            "| {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {a50} | {a99} |\n",
            p.target.name,
            h.len(),
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.999),
        );
    }
    let proxy = &paths[1].latency;
    let added50 = us(proxy, 0.5) - us(direct, 0.5);
    let added99 = us(proxy, 0.99) - us(direct, 0.99);
    let one = &paths[3].latency;
    let ten = &paths[4].latency;
    md += &format!(
        "\nBalancing over 10 endpoints instead of 1 changes p50 by {:+.0} µs and p99 by {:+.0} µs.\n\n",
        us(ten, 0.5) - us(one, 0.5),
        us(ten, 0.99) - us(one, 0.99)
    );

    md += "| max throughput (16 connections) | RPS | proxy CPU | RPS per CPU-second | RSS under load | anonymous | file-backed |\n\
           |---|---:|---:|---:|---:|---:|---:|\n";
    for t in tp {
        let per_cpu = if t.cpu > 0.0 {
            format!("{:.0}", t.rps / t.cpu)
        } else {
            "–".into()
        };
        let memory = t.memory.map_or_else(
            || "– | – | –".to_string(),
            |m| {
                format!(
                    "{} | {} | {}",
                    mib(m.rss_kib),
                    mib(m.anonymous_kib),
                    mib(m.file_kib)
                )
            },
        );
        md += &format!(
            "| {} | {:.0} | {:.0} % | {per_cpu} | {memory} |\n",
            t.name,
            t.rps,
            t.cpu * 100.0
        );
    }
    let per_cpu = |name: &str| {
        tp.iter()
            .find(|t| t.name == name)
            .map_or(0.0, |t| t.rps / t.cpu.max(1e-9))
    };
    let ratio = per_cpu("conduit-proxy") / per_cpu("haproxy").max(1e-9);
    let memory = |name: &str| {
        tp.iter()
            .find(|t| t.name == name)
            .and_then(|t| t.memory)
            .unwrap_or_default()
    };
    let (ours, theirs) = (memory("conduit-proxy"), memory("haproxy"));
    let haproxy = &paths[2].latency;
    let haproxy50 = us(haproxy, 0.5) - us(direct, 0.5);
    let haproxy99 = us(haproxy, 0.99) - us(direct, 0.99);
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    md += &format!(
        "\nMemory is read from `/proc/PID/smaps_rollup` three quarters into each proxy's throughput phase, \
         with its 16 connections open: anonymous pages (heap, stacks, buffers) are what one more sidecar costs; \
         file-backed ones (binary, libraries) are shared by every copy of the same binary on a host.\n\n\
         | goal (against haproxy in the same run) | conduit-proxy | haproxy | ratio | |\n|---|---:|---:|---:|---|\n\
         | RPS per CPU-second ≥ 1.2× haproxy | {:.0} | {:.0} | {ratio:.2}× | {} |\n\
         | added p50 ≤ haproxy's | {added50:.0} µs | {haproxy50:.0} µs | {:.2}× | {} |\n\
         | added p99 ≤ haproxy's | {added99:.0} µs | {haproxy99:.0} µs | {:.2}× | {} |\n\
         | RSS under load ≤ haproxy's | {} | {} | {:.2}× | {} |\n\
         | anonymous memory under load (what each sidecar adds) | {} | {} | {:.2}× | |\n\n\
         ![latency percentiles](plots/proxy-latency.svg)\n\n",
        per_cpu("conduit-proxy"),
        per_cpu("haproxy"),
        verdict(ratio >= 1.2),
        added50 / haproxy50.max(1e-9),
        verdict(added50 <= haproxy50),
        added99 / haproxy99.max(1e-9),
        verdict(added99 <= haproxy99),
        mib(ours.rss_kib),
        mib(theirs.rss_kib),
        ours.rss_kib as f64 / theirs.rss_kib.max(1) as f64,
        verdict(ours.rss_kib <= theirs.rss_kib),
        mib(ours.anonymous_kib),
        mib(theirs.anonymous_kib),
        ours.anonymous_kib as f64 / theirs.anonymous_kib.max(1) as f64,
    );
    let (in_use, idle) = authorities.per_authority_kib();
    md += &format!(
        "{} outbound authorities resolved through a real controller (one request each over one connection; \
         reports pushed to a real store every second): anonymous memory {} after the first {}, {} after all \
         (**{:.1} KiB per authority** in use: its destination subscription, balancer, connection pool and metric \
         series), {} three report intervals later (**{:.1} KiB per idle authority**).\n\n",
        authorities.authorities,
        mib(authorities.before.anonymous_kib),
        authorities.warm,
        mib(authorities.after.anonymous_kib),
        in_use,
        mib(authorities.idle.anonymous_kib),
        idle,
    );
    md += &format!(
        "A hop through haproxy itself adds {haproxy50:.0} µs at p50 here: the floor a proxy hop costs on \
         this machine (two more loopback connections, each write waking a process on the other core); \
         the p99 of both proxies is set by scheduling (their core is shared with other work) as much as by their code.\n\n",
    );
    md += NOTES;

    let series: Vec<(String, Vec<f64>)> = paths
        .iter()
        .map(|p| {
            let v = plot::PERCENTILES
                .iter()
                .map(|q| us(&p.latency, q / 100.0))
                .collect();
            (p.target.name.clone(), v)
        })
        .collect();
    let svg = plot::percentiles(
        &format!("Latency at {} RPS, 1 KiB responses", o.rate),
        &series,
    );
    report::write_plot("proxy-latency.svg", &svg)?;
    report::write_section("proxy", &md)?;
    print!("{md}");
    Ok(())
}

const NOTES: &str = "How to read these figures: latency is measured by the generator from the moment each \
request is written until its whole response is read, so \"added\" is what a proxy hop costs end to end \
(two extra loopback hops, parsing, routing, metrics). Throughput per CPU-second divides the requests a proxy \
served by the CPU time it used, which is the one-core capacity even when the single-core generator saturates \
first. The machine is shared (2 cores, other builds running), so absolute figures move between runs; the \
paths of one run are interleaved so that they are comparable with each other. A profile (`perf`) of conduit-proxy at full load shows about 60 % of its CPU in the \
kernel's TCP stack (four syscalls per request: read, write upstream, read, write downstream) and the rest spread \
over hyper's HTTP/1 codec, its client pool and the runtime; the proxy's own routing and metrics are a few percent.\n\n\
Where an outbound authority's memory goes (heaptrack of a `--profile profiling` proxy holding the 1 000 authorities, \
the live heap per authority, 2026-12-07): 16 KiB hyper's HTTP/2 client write buffer to the endpoint (a meshed endpoint \
is spoken to over HTTP/2), 16 KiB the endpoint series' empty latency HdrHistogram (three significant digits allocate \
their counts up front), 12 KiB the HTTP/2 client's request channel (tokio's unbounded mpsc allocates a block of 32 \
slots), 8 KiB the HTTP/2 read buffer, 8 KiB the destination watch's gRPC decode buffer, about 7 KiB of tasks; about \
70 KiB of live heap, the rest of the figure above being the allocator's. Freed memory is not given back to the \
system, so the idle figure stays at the in-use one.\n";
