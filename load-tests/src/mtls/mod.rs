//! `conduit-load-tests mtls`: what mutual TLS costs between two proxies,
//! against the same two proxies in plaintext and against a pair of
//! haproxies doing the same with and without TLS, in one run.
//!
//! Each pair is a client-side proxy (the caller's sidecar) forwarding to a
//! server-side proxy (the callee's) in front of the application. The
//! conduit pairs get their certificates from a real controller's identity
//! service; the haproxy TLS pair presents a leaf of the same issuer. Three
//! phases, all with the processes of every pair pinned to core 1 and the
//! generator, upstream and controller on core 0:
//! - latency at a fixed rate over reused keep-alive connections, so the
//!   handshake is paid once and what is left is the record layer;
//! - requests per CPU-second of the pair (both processes' CPU) with 16
//!   connections sending back to back;
//! - full mutual handshakes per CPU-second of the server side, each with
//!   one request, from a rustls client holding a mesh certificate.

mod handshake;
mod haproxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conduit_api::IdentityName;
use conduit_api::identity::{CONTROL_PLANE_NAMESPACE, DEFAULT_TRUST_DOMAIN};
use conduit_identity::TrustAnchors;
use conduit_identity::tls::{Alpn, client_config};
use conduit_testbed::{Controller, MeshIdentity, wait_for_http};
use hdrhistogram::Histogram;

use self::handshake::TlsTarget;
use crate::proxy::load::{self, Target};
use crate::proxy::peers::{self, Pinned, Process, ProxyAddrs};
use crate::proxy::{Options, options, us};
use crate::scratch::ScratchDir;
use crate::{plot, report};

const USAGE: &str = "usage: conduit-load-tests mtls [--rate RPS] [--seconds S] [--rounds R]";

/// Concurrent connections of the throughput and handshake phases.
const CONNECTIONS: usize = 16;
const HANDSHAKE_CONNECTIONS: usize = 8;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = options(args, USAGE)?;
    let cores = match peers::run_pinned("mtls", args)? {
        Pinned::Here(cores) => cores,
        Pinned::Done => return Ok(()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(bench(opts, cores))
}

pub(crate) fn name(sa: &str) -> IdentityName {
    IdentityName::new(sa, "bench")
}

/// A client-side and a server-side process, measured together.
pub(crate) struct Pair {
    pub(crate) name: &'static str,
    client: Process,
    server: Process,
    /// Where requests enter the pair.
    pub(crate) target: Target,
}

impl Pair {
    fn cpu_seconds(&self) -> Result<f64, String> {
        Ok(self.client.cpu_seconds()? + self.server.cpu_seconds()?)
    }
}

struct Measured {
    name: &'static str,
    latency: Histogram<u64>,
    rps: f64,
    cpu: f64,
}

struct Handshakes {
    name: &'static str,
    rate: f64,
    cpu: f64,
}

/// A conduit pair: `server` in front of `app`, and a client proxy that
/// reaches it as `web.bench:80`, meshed (HTTP/2 between the proxies) and
/// with mTLS when `identity` is given; `server_extra` adds flags to the
/// server side.
pub(crate) async fn conduit_pair(
    name: &'static str,
    core: Option<usize>,
    app: SocketAddr,
    identity: Option<(&MeshIdentity, &Controller)>,
    server_extra: &[String],
) -> Result<(Pair, ProxyAddrs), String> {
    let flags = |sa: &str| match identity {
        Some((mesh, controller)) => {
            let mut f = mesh.workload_args(controller, &self::name(sa));
            f.extend(["--service-account".into(), sa.into()]);
            f
        }
        None => Vec::new(),
    };
    let mut server_flags = flags("web");
    server_flags.extend_from_slice(server_extra);
    let (server, server_addrs) = peers::proxy(core, app, &server_flags)?;
    let endpoint = match identity {
        Some(_) => format!(
            "web.bench:80={};h2;identity={}",
            server_addrs.inbound,
            self::name("web")
        ),
        None => format!("web.bench:80={};h2", server_addrs.inbound),
    };
    let mut client_flags = flags("client");
    client_flags.extend(["--outbound-endpoint".into(), endpoint]);
    let (client, client_addrs) = peers::proxy(core, app, &client_flags)?;
    for addrs in [&server_addrs, &client_addrs] {
        peers::wait_listening(addrs.inbound, name).await?;
        // Ready means certified when there is an identity.
        wait_for_http(addrs.admin, "/ready", Duration::from_secs(20))
            .map_err(|e| format!("{name} never became ready: {e}"))?;
    }
    let pair = Pair {
        name,
        client,
        server,
        target: Target {
            name: name.into(),
            addr: client_addrs.outbound,
            host: "web.bench".into(),
        },
    };
    Ok((pair, server_addrs))
}

fn haproxy_pair(name: &'static str, p: haproxy::Pair) -> Pair {
    Pair {
        name,
        client: p.client,
        server: p.server,
        target: Target {
            name: name.into(),
            addr: p.listen,
            host: "web.bench".into(),
        },
    }
}

/// The generator's own mesh certificate, from the identity service.
async fn generator_config(
    mesh: &MeshIdentity,
    controller: &Controller,
) -> Result<rustls::ClientConfig, String> {
    let anchors = TrustAnchors::read(&mesh.files.trust_anchors()).map_err(|e| e.to_string())?;
    let me = name("bench-generator");
    let creds = conduit_identity::certify::start(
        me.clone(),
        &format!("https://{}", controller.mesh),
        &anchors,
        mesh.files.token(&me),
        IdentityName::controller(CONTROL_PLANE_NAMESPACE, DEFAULT_TRUST_DOMAIN),
    )?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !creds.is_ready() {
        if tokio::time::Instant::now() > deadline {
            return Err("the generator got no certificate from the identity service".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = client_config(&anchors, Some(creds), Alpn::Http1).map_err(|e| e.to_string())?;
    Ok((*config).clone())
}

async fn bench(o: Options, cores: usize) -> Result<(), String> {
    let (gen_core, proxy_core) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let scratch = ScratchDir::new("conduit-lt-mtls")?;
    let mesh = MeshIdentity::new(&[name("web"), name("client"), name("bench-generator")]);
    let discovery = scratch.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").map_err(|e| e.to_string())?;
    peers::binary("conduit-controller")?;
    let args = mesh.controller_args("24h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // No store: nothing here reads metrics through the controller.
    let controller = Controller::start_with_args("http://127.0.0.1:9", &discovery, &args);

    let (_upstream, apps) = peers::upstream(gen_core, 1)?;
    let app = apps[0];
    let (plain, _) = conduit_pair("conduit, plaintext", proxy_core, app, None, &[]).await?;
    let (mtls, mtls_server) = conduit_pair(
        "conduit, mTLS",
        proxy_core,
        app,
        Some((&mesh, &controller)),
        &[],
    )
    .await?;

    let haproxy_name = name("haproxy").to_string();
    let crt = haproxy::certificate(&mesh, &haproxy_name, scratch.path())?;
    let anchors_file = mesh.files.trust_anchors();
    let tls = haproxy::Tls {
        crt: &crt,
        anchors: &anchors_file,
        name: &haproxy_name,
    };
    let h_plain = haproxy::pair(proxy_core, app, None, scratch.path(), "plain")?;
    let h_tls = haproxy::pair(proxy_core, app, Some(&tls), scratch.path(), "tls")?;
    let h_tls_server = h_tls.server_listen;
    for addr in [
        h_plain.listen,
        h_plain.server_listen,
        h_tls.listen,
        h_tls.server_listen,
    ] {
        peers::wait_listening(addr, "haproxy").await?;
    }
    let pairs = [
        plain,
        mtls,
        haproxy_pair("haproxy, plaintext", h_plain),
        haproxy_pair("haproxy, mTLS", h_tls),
    ];

    let direct = Target {
        name: "direct".into(),
        addr: app,
        host: "web.bench".into(),
    };
    let mut latency = fixed_rate_rounds(&o, &direct, &pairs).await?;
    let direct_latency = latency.remove(0);
    let mut measured = Vec::new();
    for (pair, latency) in pairs.iter().zip(latency) {
        eprintln!("max rate: {}", pair.name);
        let period = Duration::from_secs(o.seconds);
        let before = pair.cpu_seconds()?;
        let rps = load::max_rate(&pair.target, period, CONNECTIONS).await?;
        let cpu = (pair.cpu_seconds()? - before) / period.as_secs_f64();
        measured.push(Measured {
            name: pair.name,
            latency,
            rps,
            cpu,
        });
    }

    let config = handshake::full_handshakes(&generator_config(&mesh, &controller).await?);
    let servers = [
        (
            &pairs[1].server,
            TlsTarget {
                name: "conduit-proxy inbound",
                addr: mtls_server.inbound,
                server_name: name("web").to_string(),
            },
        ),
        (
            &pairs[3].server,
            TlsTarget {
                name: "haproxy",
                addr: h_tls_server,
                server_name: haproxy_name.clone(),
            },
        ),
    ];
    let mut handshakes = Vec::new();
    for (process, target) in servers {
        eprintln!("handshakes: {}", target.name);
        let target = Arc::new(target);
        let period = Duration::from_secs(o.seconds);
        handshake::rate(&target, config.clone(), Duration::from_secs(1), 2).await?;
        let before = process.cpu_seconds()?;
        let rate = handshake::rate(&target, config.clone(), period, HANDSHAKE_CONNECTIONS).await?;
        let cpu = (process.cpu_seconds()? - before) / period.as_secs_f64();
        handshakes.push(Handshakes {
            name: target.name,
            rate,
            cpu,
        });
    }
    report(&o, cores, &direct_latency, &measured, &handshakes)
}

/// Latency of `direct` and of each pair at the fixed rate, in interleaved
/// rounds so that drift on a shared machine hits them alike.
pub(crate) async fn fixed_rate_rounds(
    o: &Options,
    direct: &Target,
    pairs: &[Pair],
) -> Result<Vec<Histogram<u64>>, String> {
    let targets: Vec<&Target> = std::iter::once(direct)
        .chain(pairs.iter().map(|p| &p.target))
        .collect();
    eprintln!("warming up");
    for t in &targets {
        load::fixed_rate(t, o.rate, Duration::from_secs(1), 4).await?;
    }
    let mut all: Vec<Histogram<u64>> = targets
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"))
        .collect();
    let period = Duration::from_secs(o.seconds);
    for round in 1..=o.rounds {
        for (t, h) in targets.iter().zip(&mut all) {
            eprintln!(
                "round {round}/{}: {} at {} RPS for {period:?}",
                o.rounds, t.name, o.rate
            );
            let got = load::fixed_rate(t, o.rate, period, 4).await?;
            h.add(got).map_err(|e| format!("{e:?}"))?;
        }
    }
    Ok(all)
}

fn find<'a>(m: &'a [Measured], name: &str) -> &'a Measured {
    m.iter()
        .find(|m| m.name == name)
        .expect("every pair is measured")
}

fn report(
    o: &Options,
    cores: usize,
    direct: &Histogram<u64>,
    measured: &[Measured],
    handshakes: &[Handshakes],
) -> Result<(), String> {
    let mut md = format!(
        "## mtls: mutual TLS between two proxies, conduit vs haproxy\n\n\
         Command: `cargo run --release -p conduit-load-tests -- mtls --rate {} --seconds {} --rounds {}` \
         ({cores} cores; generator, upstream and controller pinned to core 0, every proxy to core 1 with one \
         worker thread; {} rounds of {} s per path at {} RPS over 4 reused connections, interleaved). \
         Each pair is a client-side proxy forwarding to a server-side proxy in front of the application \
         (1 KiB responses); conduit's pairs speak HTTP/2 between the proxies, haproxy's HTTP/1.1; both TLS \
         pairs use TLS 1.3 and ECDSA P-256 certificates of one issuer, and verify each other; conduit's key \
         exchange is the hybrid post-quantum X25519MLKEM768, haproxy's X25519 (OpenSSL 3.0 has no ML-KEM).\n\n\
         | path | requests | p50 | p99 | added p50 | added p99 | RPS (16 conns) | pair CPU | RPS per CPU-second |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | direct | {} | {:.0} µs | {:.0} µs | – | – | – | – | – |\n",
        o.rate,
        o.seconds,
        o.rounds,
        o.rounds,
        o.seconds,
        o.rate,
        direct.len(),
        us(direct, 0.5),
        us(direct, 0.99),
    );
    for m in measured {
        let h = &m.latency;
        md += &format!(
            "| {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} | {:.0} % | {:.0} |\n",
            m.name,
            h.len(),
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.5) - us(direct, 0.5),
            us(h, 0.99) - us(direct, 0.99),
            m.rps,
            m.cpu * 100.0,
            m.rps / m.cpu.max(1e-9),
        );
    }
    md += &format!(
        "\n| full mutual handshakes ({HANDSHAKE_CONNECTIONS} conns, one request each) | per second | server CPU | per CPU-second |\n\
         |---|---:|---:|---:|\n"
    );
    for h in handshakes {
        md += &format!(
            "| {} | {:.0} | {:.0} % | {:.0} |\n",
            h.name,
            h.rate,
            h.cpu * 100.0,
            h.rate / h.cpu.max(1e-9)
        );
    }

    let tls_cost = |tls: &str, plain: &str, q: f64| {
        us(&find(measured, tls).latency, q) - us(&find(measured, plain).latency, q)
    };
    let conduit50 = tls_cost("conduit, mTLS", "conduit, plaintext", 0.5);
    let conduit99 = tls_cost("conduit, mTLS", "conduit, plaintext", 0.99);
    let haproxy50 = tls_cost("haproxy, mTLS", "haproxy, plaintext", 0.5);
    let per_cpu = |name: &str| {
        let m = find(measured, name);
        m.rps / m.cpu.max(1e-9)
    };
    let throughput_kept = per_cpu("conduit, mTLS") / per_cpu("conduit, plaintext").max(1e-9);
    let haproxy_kept = per_cpu("haproxy, mTLS") / per_cpu("haproxy, plaintext").max(1e-9);
    let hs = |i: usize| handshakes[i].rate / handshakes[i].cpu.max(1e-9);
    let hs_ratio = hs(0) / hs(1).max(1e-9);
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    md += &format!(
        "\nmTLS over plaintext on reused connections: conduit {conduit50:+.0} µs at p50 and {conduit99:+.0} µs at p99; \
         haproxy {haproxy50:+.0} µs at p50. Requests per CPU-second kept with mTLS: conduit {:.0} %, haproxy {:.0} %.\n\n\
         | goal | measured | |\n|---|---:|---|\n\
         | mTLS adds ≤ 30 µs p50 over plaintext (reused connections) | {conduit50:+.0} µs | {} |\n\
         | handshakes per CPU-second ≥ haproxy's | {hs_ratio:.2}× | {} |\n\n\
         ![latency percentiles](plots/mtls-latency.svg)\n\n",
        throughput_kept * 100.0,
        haproxy_kept * 100.0,
        verdict(conduit50 <= 30.0),
        verdict(hs_ratio >= 1.0),
    );
    md += NOTES;

    let mut series = vec![("direct".to_string(), percentiles(direct))];
    series.extend(
        measured
            .iter()
            .map(|m| (m.name.to_string(), percentiles(&m.latency))),
    );
    let svg = plot::percentiles(
        &format!(
            "Latency through a proxy pair at {} RPS, 1 KiB responses",
            o.rate
        ),
        &series,
    );
    report::write_plot("mtls-latency.svg", &svg)?;
    report::write_section("mtls", &md)?;
    print!("{md}");
    Ok(())
}

fn percentiles(h: &Histogram<u64>) -> Vec<f64> {
    plot::PERCENTILES.iter().map(|q| us(h, q / 100.0)).collect()
}

const NOTES: &str = "How to read these figures: the latency rows are end to end through both proxies of a \
pair, so \"added\" is the cost of two proxy hops; the difference between a pair's mTLS and plaintext rows is \
what encryption, decryption and the record layer cost on connections that are already open (the handshake \
is paid once per connection and pooled connections are reused). Requests per CPU-second divide what a pair \
served by the CPU time of both its processes. Handshakes per CPU-second divide the full mutual TLS 1.3 \
handshakes (session resumption off, a new TCP connection each, one request on it) by the server side's CPU \
time: the key exchange (for conduit, X25519 plus an ML-KEM-768 encapsulation), one ECDSA signature and the verification of the client's chain dominate it. \
The haproxy here is Debian 12's 2.6 built on OpenSSL 3.0, whose full-handshake rate is well below OpenSSL \
1.1.1's (as the haproxy project itself has reported); the handshake ratio is against that build, not against \
haproxy on every TLS library. Where conduit's mTLS time goes on reused connections (the p50 difference, \
and the requests per CPU-second it gives up) has not been profiled yet.\n";
