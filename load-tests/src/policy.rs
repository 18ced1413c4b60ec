//! `conduit-load-tests policy`: what inbound authorization costs.
//!
//! Two measurements in one run:
//! - the check itself, in process: the proxy's compiled policy of a Server
//!   with 100 authorizations, asked about one request at a time, for a
//!   client the last authorization admits, one that none admits (every
//!   authorization is tried), and a request on the last of 10 routes;
//! - end to end: two mTLS proxy pairs in front of one application at a
//!   fixed rate, one whose server side enforces that Server (from a real
//!   controller, over `InboundServerPolicies`), one with the default
//!   policy, interleaved, so the difference is what policy adds per
//!   request on top of everything else a hop costs.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use conduit_api::proto::policy::v1 as pb;
use conduit_proxy::policy::{Client, PortPolicy};
use conduit_testbed::{Controller, MeshIdentity, http_get, metric_sum};
use hdrhistogram::Histogram;

use crate::mtls::{Pair, conduit_pair, fixed_rate_rounds, name};
use crate::proxy::load::Target;
use crate::proxy::peers::{self, Pinned};
use crate::proxy::{Options, options, us};
use crate::report;
use crate::scratch::ScratchDir;

const USAGE: &str = "usage: conduit-load-tests policy [--rate RPS] [--seconds S] [--rounds R]";

/// Authorizations on the Server, as the goal states it.
const AUTHORIZATIONS: usize = 100;
const ROUTES: usize = 10;
/// Checks timed one by one per case.
const CHECKS: usize = 200_000;
const TRUST_DOMAIN: &str = "cluster.local";
/// The Server the policy pair's server side enforces.
const SERVER: &str = "bench-http";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = options(args, USAGE)?;
    let cores = match peers::run_pinned("policy", args)? {
        Pinned::Here(cores) => cores,
        Pinned::Done => return Ok(()),
    };
    let checks = time_checks()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (direct, pairs) = rt.block_on(end_to_end(&opts, cores))?;
    report_figures(&opts, cores, &checks, &direct, &pairs)
}

/// The authorization admitting only `identity`.
fn admitting(i: usize, identity: &str) -> pb::Authorization {
    pb::Authorization {
        name: format!("policy-{i:03}"),
        networks: vec![],
        authentication: Some(pb::Authentication {
            permit: Some(pb::authentication::Permit::Tls(pb::authentication::Tls {
                identities: vec![identity.to_string()],
                ..Default::default()
            })),
        }),
    }
}

/// 99 authorizations for other identities, then one for `client`.
fn authorizations(client: &str) -> Vec<pb::Authorization> {
    (0..AUTHORIZATIONS)
        .map(|i| {
            if i + 1 == AUTHORIZATIONS {
                admitting(i, client)
            } else {
                admitting(i, &name(&format!("other-{i}")).to_string())
            }
        })
        .collect()
}

struct CheckCase {
    what: &'static str,
    ns: Histogram<u64>,
}

/// Times `PortPolicy::request` call by call, per case.
fn time_checks() -> Result<Vec<CheckCase>, String> {
    let client = name("client").to_string();
    let flat = PortPolicy::compile(
        &pb::Server {
            name: SERVER.into(),
            authorizations: authorizations(&client),
            ..Default::default()
        },
        TRUST_DOMAIN,
    )?;
    let routes = (0..ROUTES)
        .map(|r| pb::HttpRoute {
            name: format!("route-{r}"),
            matches: vec![pb::RouteMatch {
                path: Some(pb::PathMatch {
                    kind: Some(pb::path_match::Kind::Prefix(format!("/api/r{r}"))),
                }),
                ..Default::default()
            }],
            authorizations: authorizations(&client),
            audit: false,
        })
        .collect();
    let routed = PortPolicy::compile(
        &pb::Server {
            name: SERVER.into(),
            routes,
            ..Default::default()
        },
        TRUST_DOMAIN,
    )?;
    let ip: IpAddr = [10, 1, 2, 3].into();
    let stranger = name("stranger").to_string();
    let request = |path: &str| http::Request::get(path).body(()).map_err(|e| e.to_string());
    let plain = request("/api/list")?;
    let on_last_route = request(&format!("/api/r{}/items", ROUTES - 1))?;
    let cases = [
        (
            "admitted by the 100th authorization",
            &flat,
            Some(client.as_str()),
            &plain,
            true,
        ),
        (
            "denied: none of the 100 admits",
            &flat,
            Some(stranger.as_str()),
            &plain,
            false,
        ),
        ("plaintext client, denied", &flat, None, &plain, false),
        (
            "10th of 10 routes, admitted by its 100th authorization",
            &routed,
            Some(client.as_str()),
            &on_last_route,
            true,
        ),
    ];
    let mut out = vec![CheckCase {
        what: "(timing alone: two clock reads)",
        ns: time(|| {}),
    }];
    for (what, policy, identity, req, admitted) in cases {
        let c = Client { ip, identity };
        if policy.request(c, req).allowed != admitted {
            return Err(format!("{what}: the policy decided otherwise"));
        }
        out.push(CheckCase {
            what,
            ns: time(|| {
                black_box(policy.request(black_box(c), black_box(req)));
            }),
        });
    }
    Ok(out)
}

/// Nanoseconds of each of `CHECKS` calls of `f`, after a warm-up.
fn time(mut f: impl FnMut()) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    for _ in 0..CHECKS / 10 {
        f();
    }
    for _ in 0..CHECKS {
        let start = Instant::now();
        f();
        let ns = start.elapsed().as_nanos() as u64;
        h.record(ns.max(1)).expect("in bounds");
    }
    h
}

/// The discovery file of the policy pair: its workload, and a Server on
/// the application's port with 100 authorizations, the last admitting the
/// client proxy.
fn discovery(app_port: u16) -> String {
    let mut policies = String::new();
    let mut authentications = String::new();
    for (i, a) in authorizations(&name("client").to_string())
        .iter()
        .enumerate()
    {
        let Some(pb::authentication::Permit::Tls(tls)) =
            a.authentication.as_ref().and_then(|x| x.permit.as_ref())
        else {
            continue;
        };
        policies += &format!(
            "        {}: {{target: {{server: {SERVER}}}, required_authentications: [{{mesh_tls: id-{i}}}]}}\n",
            a.name
        );
        authentications += &format!(
            "        id-{i}: {{identities: [\"{}\"]}}\n",
            tls.identities[0]
        );
    }
    format!(
        "version: 1\nnamespaces:\n  bench:\n    deployments:\n      bench: {{service_account: web}}\n    policy:\n      \
         servers:\n        {SERVER}: {{deployment: bench, port: {app_port}}}\n      authorization_policies:\n{policies}      \
         mesh_tls_authentications:\n{authentications}"
    )
}

async fn end_to_end(
    o: &Options,
    cores: usize,
) -> Result<(Histogram<u64>, Vec<(Pair, Histogram<u64>)>), String> {
    let proxy_core = (cores >= 2).then_some(1);
    let gen_core = (cores >= 2).then_some(0);
    let scratch = ScratchDir::new("conduit-lt-policy")?;
    let mesh = MeshIdentity::new(&[name("web"), name("client")]);
    let (_upstream, apps) = peers::upstream(gen_core, 1)?;
    let app = apps[0];
    let file = scratch.path().join("discovery.yaml");
    std::fs::write(&file, discovery(app.port())).map_err(|e| e.to_string())?;
    peers::binary("conduit-controller")?;
    let args = mesh.controller_args("24h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let controller = Controller::start_with_args("http://127.0.0.1:9", &file, &args);

    let (open, _) = conduit_pair(
        "conduit mTLS, default policy",
        proxy_core,
        app,
        Some((&mesh, &controller)),
        &[],
    )
    .await?;
    let watch = [
        "--destination-addr".to_string(),
        format!("https://{}", controller.mesh),
    ];
    let (guarded, guarded_server) = conduit_pair(
        "conduit mTLS, Server with 100 authorizations",
        proxy_core,
        app,
        Some((&mesh, &controller)),
        &watch,
    )
    .await?;
    enforced(&guarded.target, guarded_server.admin).await?;

    let direct = Target {
        name: "direct".into(),
        addr: app,
        host: "web.bench".into(),
    };
    let pairs = [open, guarded];
    let mut latency = fixed_rate_rounds(o, &direct, &pairs).await?;
    let direct_latency = latency.remove(0);
    Ok((direct_latency, pairs.into_iter().zip(latency).collect()))
}

/// Sends requests through the pair until its server side counts them as
/// admitted by the Server's last authorization: the policy is in force.
async fn enforced(target: &Target, admin: std::net::SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        crate::proxy::load::fixed_rate(target, 50, Duration::from_millis(200), 1).await?;
        let m = http_get(admin, "/metrics").map_err(|e| e.to_string())?.2;
        let admitted = metric_sum(
            &m,
            "inbound_http_authz_allow_total",
            &[("srv_name", SERVER), ("authz_name", "policy-099")],
        );
        if admitted > 0.0 {
            return Ok(());
        }
    }
    Err("the policy pair never enforced its Server's policy".into())
}

fn report_figures(
    o: &Options,
    cores: usize,
    checks: &[CheckCase],
    direct: &Histogram<u64>,
    pairs: &[(Pair, Histogram<u64>)],
) -> Result<(), String> {
    let mut md = format!(
        "## policy: what inbound authorization costs\n\n\
         Command: `cargo run --release -p conduit-load-tests -- policy --rate {} --seconds {} --rounds {}` ({cores} cores).\n\n\
         The check alone: `PortPolicy::request` of a Server with {AUTHORIZATIONS} authorizations (each admitting one \
         mesh identity), timed call by call over {CHECKS} calls per case; the first row is the cost of timing \
         itself, included in the others.\n\n\
         | case | p50 | p99 | p99.9 |\n|---|---:|---:|---:|\n",
        o.rate, o.seconds, o.rounds
    );
    for c in checks {
        md += &format!(
            "| {} | {} ns | {} ns | {} ns |\n",
            c.what,
            c.ns.value_at_quantile(0.5),
            c.ns.value_at_quantile(0.99),
            c.ns.value_at_quantile(0.999)
        );
    }
    md += &format!(
        "\nEnd to end: two mTLS proxy pairs in front of one application (1 KiB responses) at {} RPS over 4 reused \
         connections, {} rounds of {} s each, interleaved; proxies pinned to core 1, generator and application to \
         core 0. The policy pair's server side gets its Server from a real controller.\n\n\
         | path | requests | p50 | p99 | added p50 | added p99 |\n|---|---:|---:|---:|---:|---:|\n\
         | direct | {} | {:.0} µs | {:.0} µs | – | – |\n",
        o.rate,
        o.rounds,
        o.seconds,
        direct.len(),
        us(direct, 0.5),
        us(direct, 0.99),
    );
    for (pair, h) in pairs {
        md += &format!(
            "| {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |\n",
            pair.name,
            h.len(),
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.5) - us(direct, 0.5),
            us(h, 0.99) - us(direct, 0.99)
        );
    }
    let worst_p50 = checks
        .iter()
        .skip(1)
        .map(|c| c.ns.value_at_quantile(0.5))
        .max()
        .unwrap_or(0);
    let policy_cost = us(&pairs[1].1, 0.5) - us(&pairs[0].1, 0.5);
    let verdict = if worst_p50 <= 2_000 {
        "met"
    } else {
        "**not met**"
    };
    md += &format!(
        "\nWith the policy, the pair's p50 moves by {policy_cost:+.0} µs against the default policy (run-to-run noise on this \
         shared machine is of the same order).\n\n\
         | goal | measured | |\n|---|---:|---|\n\
         | policy check with {AUTHORIZATIONS} authorizations ≤ 2 µs at p50 (slowest case) | {worst_p50} ns | {verdict} |\n"
    );
    report::write_section("policy", &md)?;
    print!("{md}");
    Ok(())
}
