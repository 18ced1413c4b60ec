//! `conduit-load-tests h2`: conduit-proxy over HTTP/2 and gRPC unary,
//! against haproxy in h2 mode and (for gRPC) nginx's `grpc_pass`, with
//! Debian's `h2load` as the client of every path.
//!
//! The layout is the `proxy` scenario's: the upstream (HTTP/2 prior
//! knowledge, 1 KiB answers; a gRPC call gets one 1 KiB message and
//! `grpc-status: 0`) and h2load on one core, each proxy alone on the
//! other with one thread. Latency comes from h2load's per-request log
//! over one connection at a fixed rate, rounds interleaved across paths;
//! throughput from 16 connections × 10 streams, turned into requests per
//! CPU-second of the proxy, with its memory read under that load.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::peers::{self, Memory, Pinned, Process};
use super::{Options, mib, options, us};
use crate::report;
use crate::scratch::ScratchDir;

const USAGE: &str = "usage: conduit-load-tests h2 [--rate RPS] [--seconds S] [--rounds R]";

/// Connections and streams per connection of the throughput phase.
const CONNECTIONS: usize = 16;
const STREAMS: usize = 10;
/// The gRPC request message (a small request, as most unary calls are).
const REQUEST_MESSAGE_BYTES: usize = 64;

/// What the client sends: a GET, or a gRPC unary call.
#[derive(Clone, Copy, PartialEq)]
enum Call {
    Http2,
    Grpc,
}

impl Call {
    fn title(self) -> &'static str {
        match self {
            Call::Http2 => "HTTP/2 GET, 1 KiB responses",
            Call::Grpc => "gRPC unary, 64 B request, 1 KiB reply",
        }
    }
}

/// One way to the upstream, and the process to measure on it.
struct Way<'a> {
    name: &'static str,
    addr: SocketAddr,
    process: Option<&'a Process>,
}

struct Measured {
    name: &'static str,
    latency: Histogram<u64>,
    rps: f64,
    cpu: f64,
    memory: Option<Memory>,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = options(args, USAGE)?;
    let cores = match peers::run_pinned("h2", args)? {
        Pinned::Here(cores) => cores,
        Pinned::Done => return Ok(()),
    };
    for program in ["h2load", "haproxy", "nginx"] {
        if !peers::has(program) {
            return Err(format!(
                "{program} not found: `cargo xtask bench h2` installs it (Debian: nghttp2-client, haproxy, nginx)"
            ));
        }
    }
    let (gen_core, proxy_core) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let dir = ScratchDir::new("bench-h2")?;
    let (_upstream, apps) = peers::upstream(gen_core, 1)?;
    let app = apps[0];
    let (proxy, proxy_addrs) = peers::proxy(proxy_core, app, &[])?;
    let (haproxy, haproxy_addr) = peers::haproxy_h2(proxy_core, app, dir.path())?;
    let (nginx, nginx_addr) = peers::nginx_grpc(proxy_core, app, dir.path())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        peers::wait_listening(proxy_addrs.inbound, "conduit-proxy").await?;
        peers::wait_listening(haproxy_addr, "haproxy").await?;
        peers::wait_listening(nginx_addr, "nginx").await
    })?;
    let request = dir.path().join("request.grpc");
    std::fs::write(&request, grpc_request()).map_err(|e| e.to_string())?;
    let client = Client {
        core: gen_core,
        request: &request,
        scratch: dir.path(),
    };

    let mut md = header(&opts, cores);
    for call in [Call::Http2, Call::Grpc] {
        let mut ways = vec![
            Way {
                name: "direct",
                addr: app,
                process: None,
            },
            Way {
                name: "conduit-proxy",
                addr: proxy_addrs.inbound,
                process: Some(&proxy),
            },
            Way {
                name: "haproxy",
                addr: haproxy_addr,
                process: Some(&haproxy),
            },
        ];
        if call == Call::Grpc {
            ways.push(Way {
                name: "nginx",
                addr: nginx_addr,
                process: Some(&nginx),
            });
        }
        let measured = measure(&client, call, &ways, &opts)?;
        md += &section(call, &measured);
    }
    md += NOTES;
    report::write_section("h2", &md)?;
    print!("{md}");
    Ok(())
}

/// h2load, pinned with the upstream.
struct Client<'a> {
    core: Option<usize>,
    request: &'a Path,
    scratch: &'a Path,
}

impl Client<'_> {
    fn command(&self, call: Call, addr: SocketAddr) -> std::process::Command {
        let mut cmd = peers::pinned(self.core, Path::new("h2load"));
        cmd.args(["-t", "1"]);
        match call {
            Call::Http2 => cmd.arg(format!("http://{addr}/")),
            Call::Grpc => cmd
                .arg("-d")
                .arg(self.request)
                .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
                .arg(format!("http://{addr}/bench.Echo/Unary")),
        };
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Requests over one connection at `rate` for `period`, each one's
    /// latency.
    fn latency(
        &self,
        call: Call,
        addr: SocketAddr,
        rate: u32,
        period: Duration,
    ) -> Result<Histogram<u64>, String> {
        let log = self.scratch.join("h2load-requests.tsv");
        // h2load appends to its log.
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command(call, addr);
        cmd.args(["-c", "1", "-m", "1"])
            .arg(format!("--rps={rate}"))
            .arg(format!("--duration={}", period.as_secs()))
            .arg(format!("--log-file={}", log.display()));
        let out = cmd.output().map_err(|e| format!("h2load: {e}"))?;
        summary(&String::from_utf8_lossy(&out.stdout))?;
        let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for line in text.lines() {
            let mut cols = line.split('\t');
            let (Some(_), Some(status), Some(us)) = (cols.next(), cols.next(), cols.next()) else {
                continue;
            };
            if status != "200" {
                return Err(format!("{addr}: a request answered {status}"));
            }
            let us: u64 = us
                .trim()
                .parse()
                .map_err(|_| format!("h2load log line {line:?}"))?;
            h.record(us.max(1)).map_err(|e| e.to_string())?;
        }
        Ok(h)
    }

    /// As many requests as [`CONNECTIONS`] × [`STREAMS`] keep in flight
    /// for `period`: requests per second, and the process's memory three
    /// quarters in.
    fn throughput(
        &self,
        call: Call,
        way: &Way<'_>,
        period: Duration,
    ) -> Result<(f64, Option<Memory>), String> {
        let mut cmd = self.command(call, way.addr);
        cmd.args(["-c", &CONNECTIONS.to_string(), "-m", &STREAMS.to_string()])
            .arg(format!("--duration={}", period.as_secs()));
        let child = cmd.spawn().map_err(|e| format!("h2load: {e}"))?;
        std::thread::sleep(period * 3 / 4);
        let memory = way.process.map(Process::memory).transpose()?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok((summary(&String::from_utf8_lossy(&out.stdout))?, memory))
    }
}

/// The request rate of h2load's summary, when every request succeeded.
fn summary(out: &str) -> Result<f64, String> {
    let requests = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .ok_or_else(|| format!("h2load printed no summary:\n{out}"))?;
    let count = |what: &str| -> u64 {
        requests
            .split(',')
            .find(|p| p.trim().ends_with(what))
            .and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(0)
    };
    if count("succeeded") == 0 || count("failed") + count("errored") + count("timeout") > 0 {
        return Err(format!("h2load: not every request succeeded: {requests}"));
    }
    out.lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.trim_end_matches(" req/s").parse().ok())
        .ok_or_else(|| format!("h2load printed no rate:\n{out}"))
}

/// A gRPC message frame: not compressed, its length, its bytes.
fn grpc_request() -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(REQUEST_MESSAGE_BYTES as u32).to_be_bytes());
    frame.extend(std::iter::repeat_n(b'r', REQUEST_MESSAGE_BYTES));
    frame
}

fn measure(
    client: &Client<'_>,
    call: Call,
    ways: &[Way<'_>],
    o: &Options,
) -> Result<Vec<Measured>, String> {
    let period = Duration::from_secs(o.seconds);
    eprintln!("{}: warming up", call.title());
    for w in ways {
        client.latency(call, w.addr, o.rate, Duration::from_secs(1))?;
    }
    let mut latency: Vec<Histogram<u64>> = ways
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"))
        .collect();
    for round in 1..=o.rounds {
        for (w, h) in ways.iter().zip(&mut latency) {
            eprintln!(
                "{}: round {round}/{}: {} at {} RPS",
                call.title(),
                o.rounds,
                w.name,
                o.rate
            );
            h.add(client.latency(call, w.addr, o.rate, period)?)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    let mut measured = Vec::new();
    for (w, latency) in ways.iter().zip(latency) {
        eprintln!("{}: max rate through {}", call.title(), w.name);
        let before = w.process.map(Process::cpu_seconds).transpose()?;
        let (rps, memory) = client.throughput(call, w, period)?;
        let after = w.process.map(Process::cpu_seconds).transpose()?;
        let cpu = before
            .zip(after)
            .map_or(0.0, |(b, a)| (a - b) / period.as_secs_f64());
        measured.push(Measured {
            name: w.name,
            latency,
            rps,
            cpu,
            memory,
        });
    }
    Ok(measured)
}

fn header(o: &Options, cores: usize) -> String {
    format!(
        "## h2: conduit-proxy vs haproxy and nginx, HTTP/2 and gRPC unary ({})\n\n\
         Command: `cargo xtask bench h2` (= `cargo run --release -p conduit-load-tests -- h2 --rate {} --seconds {} --rounds {}`). \
         {cores} cores: the upstream and h2load (`-t 1`) pinned to core 0, each proxy to core 1 with one worker thread \
         (haproxy `nbthread 1`, `proto h2` on both sides; nginx one process, `grpc_pass`, upstream keep-alive). \
         Latency: one connection at {} RPS, {} rounds of {} s per path, interleaved; throughput: {CONNECTIONS} connections × \
         {STREAMS} streams for {} s. Peers: {}.\n\n",
        report::today(),
        o.rate,
        o.seconds,
        o.rounds,
        o.rate,
        o.rounds,
        o.seconds,
        o.seconds,
        report::peer_versions(&["nghttp2-client", "haproxy", "nginx"]).join(", "),
    )
}

fn section(call: Call, m: &[Measured]) -> String {
    let direct = &m[0].latency;
    let added = |h: &Histogram<u64>, q| us(h, q) - us(direct, q);
    let mut md = format!(
        "### {}\n\n| path | requests | p50 | p99 | p99.9 | added p50 | added p99 | RPS ({CONNECTIONS}×{STREAMS}) | proxy CPU | RPS per CPU-second | RSS under load | anonymous |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        call.title()
    );
    for x in m {
        let h = &x.latency;
        let is_direct = x.name == "direct";
        let dash = || "–".to_string();
        let (a50, a99) = if is_direct {
            (dash(), dash())
        } else {
            (
                format!("{:.0} µs", added(h, 0.5)),
                format!("{:.0} µs", added(h, 0.99)),
            )
        };
        let per_cpu = if x.cpu > 0.0 {
            format!("{:.0}", x.rps / x.cpu)
        } else {
            dash()
        };
        let (rss, anon) = x.memory.map_or_else(
            || (dash(), dash()),
            |m| (mib(m.rss_kib), mib(m.anonymous_kib)),
        );
        md += &format!(
            "| {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {a50} | {a99} | {:.0} | {} | {per_cpu} | {rss} | {anon} |\n",
            x.name,
            h.len(),
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.999),
            x.rps,
            if is_direct {
                dash()
            } else {
                format!("{:.0} %", x.cpu * 100.0)
            },
        );
    }
    let ours = &m[1];
    md += "\n| goal | ";
    let peers: Vec<&Measured> = m[2..].iter().collect();
    md += &peers
        .iter()
        .map(|p| format!("vs {} | ", p.name))
        .collect::<String>();
    md += "\n|---|";
    md += &"---|".repeat(peers.len());
    md += "\n";
    let judged: Vec<[(&str, f64, bool); 4]> =
        peers.iter().map(|p| judge(ours, p, direct)).collect();
    for (i, (goal, _, _)) in judged[0].iter().enumerate() {
        md += &format!("| {goal} | ");
        for row in &judged {
            let (_, ratio, met) = row[i];
            md += &format!("{ratio:.2}× {} | ", if met { "met" } else { "**not met**" });
        }
        md += "\n";
    }
    md + "\n"
}

/// Each goal, conduit-proxy's ratio to `peer` and whether it is met.
fn judge(
    ours: &Measured,
    peer: &Measured,
    direct: &Histogram<u64>,
) -> [(&'static str, f64, bool); 4] {
    let per_cpu = |x: &Measured| x.rps / x.cpu.max(1e-9);
    let added = |x: &Measured, q| (us(&x.latency, q) - us(direct, q)).max(1.0);
    let rss = |x: &Measured| x.memory.map_or(0, |m| m.rss_kib).max(1) as f64;
    let throughput = per_cpu(ours) / per_cpu(peer);
    let p50 = added(ours, 0.5) / added(peer, 0.5);
    let p99 = added(ours, 0.99) / added(peer, 0.99);
    let memory = rss(ours) / rss(peer);
    [
        (
            "RPS per CPU-second ≥ 1.2× the peer's",
            throughput,
            throughput >= 1.2,
        ),
        ("added p50 ≤ the peer's", p50, p50 <= 1.0),
        ("added p99 ≤ the peer's", p99, p99 <= 1.0),
        ("RSS under load ≤ the peer's", memory, memory <= 1.0),
    ]
}

const NOTES: &str = "Ratios are conduit-proxy's figure over the peer's (for latency, over the peer's added latency). \
h2load's per-request time runs from the request's first byte written to the response's last byte read. \
gRPC success is the HTTP status h2load checks (200); the upstream always answers `grpc-status: 0`.\n";
