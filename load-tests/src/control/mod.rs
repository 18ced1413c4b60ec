//! `conduit-load-tests control`: how long a change in the controller's
//! input takes to reach the proxies that watch it.
//!
//! A real `conduit-controller` in local mode, with identity on as
//! `conduit demo` runs it, reads a static discovery file. N simulated
//! proxies ([`subscriber`]) hold the watches conduit-proxy holds, each on
//! its own mTLS connection; one real conduit-proxy runs beside them and is
//! asked, request by request, what it does ([`probe`]). Each round
//! rewrites the file atomically and times, from the rename, each simulated
//! proxy's receipt of the update and the real proxy's first request that
//! behaves the new way. Two kinds of change, one phase each: the
//! destination of a service (its pod replaced by another) and the inbound
//! policy of a port (an authorization added or removed). A round waits
//! until everyone has the change before the next write, so N × rounds
//! samples per kind.

mod discovery;
mod probe;
mod subscriber;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conduit_api::IdentityName;
use conduit_api::identity::{CONTROL_PLANE_NAMESPACE, DEFAULT_TRUST_DOMAIN};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_identity::tls::{Alpn, client_config};
use conduit_identity::{Credentials, TrustAnchors};
use conduit_testbed::{Controller, MeshIdentity, Upstream, wait_for_http};

use self::discovery::{NAMESPACE, State, WORKLOAD};
use self::probe::{Answer, Client, Pod, Probe};
use self::subscriber::{Seen, Watches};
use crate::args::Flags;
use crate::mtls::name;
use crate::proxy::peers;
use crate::report;
use crate::scratch::ScratchDir;

const USAGE: &str = "usage: conduit-load-tests control [--subscribers N] [--rounds R]

  --subscribers N  simulated proxies, each on its own mTLS connection to the controller with a destination
                   and a policy watch (100; 1 to 10000)
  --rounds R       changes of each kind (destination, policy), each awaited by everyone before the next (20; 1 to 200)";

const MAX_SUBSCRIBERS: usize = 10_000;
const MAX_ROUNDS: usize = 200;
/// A change not delivered to everyone by then fails the run.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The goal: every proxy has a change within this, at p99.
const GOAL_P99: Duration = Duration::from_secs(1);
/// The number of proxies the goal is stated for.
const GOAL_SUBSCRIBERS: usize = 100;
/// Descriptors the harness and the controller need beyond one per
/// subscriber.
const SPARE_FDS: usize = 256;
/// The controller's `--grpc-max-connections` default; more subscribers
/// need it raised.
const CONTROLLER_MAX_CONNECTIONS: usize = 10_000;
/// Where no store runs: nothing here reads metrics.
const NO_STORE: &str = "http://127.0.0.1:9";

struct Options {
    subscribers: usize,
    rounds: usize,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        subscribers: GOAL_SUBSCRIBERS,
        rounds: 20,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--subscribers" => o.subscribers = flags.number(flag, 1..=MAX_SUBSCRIBERS)?,
            "--rounds" => o.rounds = flags.number(flag, 1..=MAX_ROUNDS)?,
            _ => return Err(flags.unknown(flag)),
        }
    }
    Ok(o)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let o = options(args)?;
    let nofile = crate::store::sizing::open_files_limit()?;
    if nofile < o.subscribers + SPARE_FDS {
        return Err(format!(
            "{} subscribers need {} open files in this process and in the controller; the limit is {nofile}: \
             raise it (ulimit -n) or run fewer subscribers",
            o.subscribers,
            o.subscribers + SPARE_FDS
        ));
    }
    peers::binary("conduit-controller")?;
    peers::proxy_binary()?;
    let load_before = report::loadavg();
    let began = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let run = rt.block_on(bench(&o))?;
    let load = format!("{load_before} before, {} after", report::loadavg());
    eprintln!("control: done in {:.1} s", began.elapsed().as_secs_f64());
    write_report(&o, &load, &run)
}

/// One kind of change.
#[derive(Clone, Copy)]
enum Kind {
    Destination,
    Policy,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Destination => "destination",
            Kind::Policy => "policy",
        }
    }
}

/// The figures of one kind of change.
struct Phase {
    kind: Kind,
    /// Every simulated proxy's delay in every round, sorted, ms.
    simulated_ms: Vec<f64>,
    /// Per round, the last simulated proxy's delay minus the first's, sorted, ms.
    spread_ms: Vec<f64>,
    /// Per round, the real proxy's delay until it applied the change, sorted, ms.
    proxy_ms: Vec<f64>,
    proxy_requests: u64,
    /// The time the real proxy was polled, over all rounds.
    proxy_polled: Duration,
    /// The real proxy's answers that were neither the old nor the new.
    stray: Vec<Answer>,
    controller_cpu: f64,
}

struct Run {
    phases: Vec<Phase>,
    /// From the first dial to every subscriber's first answers.
    connect: Duration,
    /// The controller's resident memory with every subscriber connected.
    controller_rss_mib: f64,
    max_connections: Option<usize>,
}

/// The processes of a run, killed when it is dropped (the controller
/// before the file it watches goes).
struct Mesh {
    controller: Controller,
    _proxy: peers::Process,
    pods: [Upstream; 2],
    _app: Upstream,
    file: std::path::PathBuf,
    _identity: MeshIdentity,
    _scratch: ScratchDir,
}

async fn bench(o: &Options) -> Result<Run, String> {
    let scratch = ScratchDir::new("conduit-lt-control")?;
    let fleet_id = name("fleet");
    let identity = MeshIdentity::new(&[name(WORKLOAD), fleet_id.clone()]);
    let pods = [
        Upstream::start(Default::default()),
        Upstream::start(Default::default()),
    ];
    let app = Upstream::start(Default::default());
    let file = scratch.path().join("discovery.yaml");
    let mut state = State {
        backend: pods[0].addr,
        app_port: app.addr.port(),
        admitting: Some("round-0".into()),
    };
    state.write(&file)?;

    eprintln!("control: starting the controller and conduit-proxy");
    let mut args = identity.controller_args("24h");
    let max_connections = (o.subscribers + SPARE_FDS > CONTROLLER_MAX_CONNECTIONS)
        .then_some(o.subscribers + SPARE_FDS);
    if let Some(max) = max_connections {
        args.extend(["--grpc-max-connections".into(), max.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let controller = Controller::start_with_args(NO_STORE, &file, &args);
    // `peers::proxy` runs it as Deployment bench/bench, WORKLOAD.
    let mut flags = identity.workload_args(&controller, &name(WORKLOAD));
    flags.extend([
        "--service-account".into(),
        WORKLOAD.into(),
        "--destination-addr".into(),
        format!("https://{}", controller.mesh),
    ]);
    let (proxy, addrs) = peers::proxy(None, app.addr, &flags)?;
    wait_for_http(addrs.admin, "/ready", Duration::from_secs(20))
        .map_err(|e| format!("conduit-proxy never became ready: {e}"))?;

    let (config, creds) = certify(&identity, &controller, fleet_id).await?;
    let watches = Watches {
        authority: discovery::authority(),
        workload: DeploymentRef {
            namespace: NAMESPACE.into(),
            name: WORKLOAD.into(),
        },
        port: app.addr.port(),
    };
    eprintln!("control: connecting {} subscribers", o.subscribers);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let dialled = Instant::now();
    let _fleet =
        subscriber::connect(o.subscribers, controller.mesh, config, creds, &watches, &tx).await?;
    let first = [
        Seen::Endpoint(pods[0].addr),
        Seen::Policy(vec!["round-0".into()]),
    ];
    subscriber::delivered(
        &mut events,
        o.subscribers,
        &first,
        Instant::now(),
        DELIVERY_TIMEOUT,
    )
    .await
    .map_err(|e| format!("the subscribers' first answers: {e}"))?;
    let connect = dialled.elapsed();
    let controller_rss_mib = peers::rss_kib(controller.process.id())?.0 as f64 / 1024.0;

    let mut destination = Probe::Destination {
        client: Client::new(addrs.outbound, &discovery::authority()),
        pods: pods
            .iter()
            .map(|u| Pod {
                addr: u.addr,
                served: u.served.clone(),
            })
            .collect(),
    };
    let mut policy = Probe::Policy {
        client: Client::new(addrs.inbound, "bench.bench"),
    };
    // The proxy watches the service from its first request on.
    let warm = |what: &'static str| move |e: String| format!("conduit-proxy, {what}: {e}");
    destination
        .until(
            Answer::Status(0),
            Answer::Pod(pods[0].addr),
            Instant::now(),
            DELIVERY_TIMEOUT,
        )
        .await
        .map_err(warm("before the first destination round"))?;
    policy
        .until(
            Answer::Status(0),
            Answer::Status(200),
            Instant::now(),
            DELIVERY_TIMEOUT,
        )
        .await
        .map_err(warm("before the first policy round"))?;

    let mesh = Mesh {
        controller,
        _proxy: proxy,
        pods,
        _app: app,
        file,
        _identity: identity,
        _scratch: scratch,
    };
    let mut phases = Vec::new();
    for (kind, probe) in [
        (Kind::Destination, &mut destination),
        (Kind::Policy, &mut policy),
    ] {
        phases.push(rounds(o, kind, &mesh, &mut state, &mut events, probe).await?);
    }
    Ok(Run {
        phases,
        connect,
        controller_rss_mib,
        max_connections,
    })
}

/// The simulated proxies' mesh certificate (one identity for all, as the
/// pods of one Deployment share theirs), from the identity service.
async fn certify(
    identity: &MeshIdentity,
    controller: &Controller,
    id: IdentityName,
) -> Result<(Arc<rustls::ClientConfig>, Arc<Credentials>), String> {
    let anchors = TrustAnchors::read(&identity.files.trust_anchors()).map_err(|e| e.to_string())?;
    let creds = conduit_identity::certify::start(
        id.clone(),
        &format!("https://{}", controller.mesh),
        &anchors,
        identity.files.token(&id),
        IdentityName::controller(CONTROL_PLANE_NAMESPACE, DEFAULT_TRUST_DOMAIN),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !creds.is_ready() {
        if Instant::now() > deadline {
            return Err(
                "the simulated proxies got no certificate from the identity service".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config =
        client_config(&anchors, Some(creds.clone()), Alpn::H2).map_err(|e| e.to_string())?;
    Ok((config, creds))
}

/// Round `r`'s change of `kind`: applied to `state`; what the subscribers
/// are then told, and what the real proxy answered before and after.
fn change(kind: Kind, r: usize, state: &mut State, pods: &[Upstream; 2]) -> (Seen, Answer, Answer) {
    match kind {
        Kind::Destination => {
            let (old, new) = (state.backend, pods[r % 2].addr);
            state.backend = new;
            (Seen::Endpoint(new), Answer::Pod(old), Answer::Pod(new))
        }
        Kind::Policy => match state.admitting.take() {
            Some(_) => (
                Seen::Policy(vec![]),
                Answer::Status(200),
                Answer::Status(403),
            ),
            None => {
                let name = format!("round-{r}");
                state.admitting = Some(name.clone());
                (
                    Seen::Policy(vec![name]),
                    Answer::Status(403),
                    Answer::Status(200),
                )
            }
        },
    }
}

/// The pause after round `r` has settled: 250 to 450 ms, spread so the
/// writes fall at every phase of the controller's 200 ms look at the file
/// rather than at one.
fn pause(r: usize) -> Duration {
    const GOLDEN: f64 = 0.618_033_988_75;
    let phase = (r as f64 * GOLDEN).fract();
    Duration::from_millis(250) + Duration::from_millis(200).mul_f64(phase)
}

async fn rounds(
    o: &Options,
    kind: Kind,
    mesh: &Mesh,
    state: &mut State,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<subscriber::Event>,
    probe: &mut Probe,
) -> Result<Phase, String> {
    eprintln!("control: {} rounds of {} changes", o.rounds, kind.name());
    let pid = mesh.controller.process.id();
    let cpu_before = peers::cpu_seconds(pid)?;
    let mut phase = Phase {
        kind,
        simulated_ms: Vec::new(),
        spread_ms: Vec::new(),
        proxy_ms: Vec::new(),
        proxy_requests: 0,
        proxy_polled: Duration::ZERO,
        stray: Vec::new(),
        controller_cpu: 0.0,
    };
    for r in 1..=o.rounds {
        let (seen, old, new) = change(kind, r, state, &mesh.pods);
        let want = [seen];
        let written = state.write(&mesh.file)?;
        let (simulated, applied) = tokio::join!(
            subscriber::delivered(events, o.subscribers, &want, written, DELIVERY_TIMEOUT),
            probe.until(old, new, written, DELIVERY_TIMEOUT),
        );
        let round = |e: String| format!("{} round {r}: {e}", kind.name());
        let simulated = simulated.map_err(round)?;
        let applied = applied.map_err(round)?;
        let ms: Vec<f64> = simulated.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let (first, last) = ms
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        phase.spread_ms.push(last - first);
        phase.simulated_ms.extend(ms);
        phase.proxy_ms.push(applied.after.as_secs_f64() * 1000.0);
        phase.proxy_requests += applied.requests;
        phase.proxy_polled += applied.after;
        phase.stray.extend(applied.stray);
        tokio::time::sleep(pause(r)).await;
    }
    phase.controller_cpu = peers::cpu_seconds(pid)? - cpu_before;
    for v in [
        &mut phase.simulated_ms,
        &mut phase.spread_ms,
        &mut phase.proxy_ms,
    ] {
        v.sort_by(f64::total_cmp);
    }
    eprintln!(
        "control: {}: simulated p50 {:.0} ms p99 {:.0} ms, conduit-proxy p50 {:.0} ms p99 {:.0} ms",
        kind.name(),
        report::pct(&phase.simulated_ms, 0.5),
        report::pct(&phase.simulated_ms, 0.99),
        report::pct(&phase.proxy_ms, 0.5),
        report::pct(&phase.proxy_ms, 0.99),
    );
    Ok(phase)
}

fn write_report(o: &Options, load: &str, run: &Run) -> Result<(), String> {
    let n = o.subscribers;
    let options = format!("--subscribers {n} --rounds {}", o.rounds);
    let (command, build) = if cfg!(debug_assertions) {
        (
            format!("`cargo run -p conduit-load-tests -- control {options}`"),
            "debug (unoptimized)",
        )
    } else {
        (
            format!(
                "`cargo xtask bench control` (= `cargo run --release -p conduit-load-tests -- control {options}`)"
            ),
            "release",
        )
    };
    let mut md = format!(
        "## control: a change in the controller's input reaching {n} proxies ({})\n\n\
         Command: {command}; {build} build of conduit {} (controller, proxy and harness from one build) on {}, \
         shared by the controller, the simulated proxies, the real proxy and other work; load average (1, 5, 15 min) {load}. \
         No peer runs here: the goal's second is what Linkerd's destination service is known to propagate \
         within, not a figure measured on this machine.\n\n\
         A real `conduit-controller` in local mode, with identity on as `conduit demo` runs it, reads a static \
         discovery file. {n} simulated proxies in the harness each dial its mesh port on their own connection, \
         over mTLS with a certificate from its identity service, and hold the two watches conduit-proxy holds: \
         `Destination.Get` on `{}` and `InboundServerPolicies.WatchPort` on the application port of Deployment \
         `{NAMESPACE}/{WORKLOAD}`. One real conduit-proxy of that Deployment runs beside them. Each round rewrites \
         the file atomically (write, then rename) and times from the rename:\n\n\
         - **destination**: the service's one pod is replaced by another (one endpoint removed, one added: a \
         rolling restart's step). A simulated proxy has it when the `add` naming the new pod arrives; the real \
         proxy has applied it when a request sent through its outbound side is answered by the new pod.\n\
         - **policy**: the Server on the application port gets, or loses, the AuthorizationPolicy admitting \
         loopback clients. A simulated proxy has it when the `WatchPort` update with the new authorizations \
         arrives; the real proxy has applied it when its inbound side's answer to a loopback request flips \
         between 200 and 403.\n\n\
         The real proxy is polled: one request, then a {} ms pause ({:.1} ms per request on average here), so \
         its figures hold up to that much of polling. A round waits until every subscriber and the real proxy have the change, then 250 to \
         450 ms more (varied so the writes fall at every phase of the controller's look at the file); {} \
         rounds of each kind.\n\n\
         | change | receiver | samples | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|\n",
        report::today(),
        conduit_api::VERSION,
        report::machine(),
        discovery::authority(),
        probe::POLL.as_millis(),
        poll_cycle_ms(&run.phases),
        o.rounds,
    );
    for p in &run.phases {
        let what = match p.kind {
            Kind::Destination => "destination: pod replaced",
            Kind::Policy => "policy: authorization added or removed",
        };
        let real = match p.kind {
            Kind::Destination => "conduit-proxy: requests reach the new pod (applied)",
            Kind::Policy => "conduit-proxy: inbound answer flips (applied)",
        };
        for (receiver, v) in [
            (
                format!("{n} simulated proxies: update received"),
                &p.simulated_ms,
            ),
            (real.to_string(), &p.proxy_ms),
        ] {
            md += &format!(
                "| {what} | {receiver} | {} | {} | {} | {} |\n",
                v.len(),
                report::ms(report::pct(v, 0.5)),
                report::ms(report::pct(v, 0.99)),
                report::ms(report::pct(v, 1.0)),
            );
        }
    }
    md += "\nThe controller looks at the file every 200 ms (`POLL_INTERVAL` in \
           `api/controller/src/discovery/static_file.rs`), so each figure holds a wait of 0 to 200 ms (100 on \
           average) before it has read the change at all; the rest is parsing, diffing and the fan-out (and, for \
           the real proxy, applying it). ";
    for p in &run.phases {
        md += &format!(
            "Within a {} round the last simulated proxy had the change {} after the first (p50 over rounds; at \
             most {}). ",
            p.kind.name(),
            report::ms(report::pct(&p.spread_ms, 0.5)),
            report::ms(report::pct(&p.spread_ms, 1.0)),
        );
    }
    md += "\n\n";
    for p in &run.phases {
        md += &format!(
            "- {}: the controller used {:.2} CPU-seconds over the {} rounds; the real proxy got {} probe \
             requests, {}.\n",
            p.kind.name(),
            p.controller_cpu,
            o.rounds,
            p.proxy_requests,
            stray(&p.stray),
        );
    }
    md += &format!(
        "- The {n} subscribers took {:.1} s to connect and get their first answers; the controller's RSS with \
         them connected: {:.1} MiB{}.\n\n",
        run.connect.as_secs_f64(),
        run.controller_rss_mib,
        run.max_connections.map_or(String::new(), |m| format!(
            " (started with `--grpc-max-connections {m}`, above the default {CONTROLLER_MAX_CONNECTIONS})"
        )),
    );
    md += &format!(
        "With {} rounds, the real proxy's p99 is its slowest round.\n\n\
         | goal | measured p99 | p99 ÷ goal | |\n|---|---:|---:|---|\n",
        o.rounds
    );
    let goal_ms = GOAL_P99.as_secs_f64() * 1000.0;
    for p in &run.phases {
        for (receiver, v) in [
            ("simulated proxies received", &p.simulated_ms),
            ("conduit-proxy applied", &p.proxy_ms),
        ] {
            let p99 = report::pct(v, 0.99);
            let verdict = match (n >= GOAL_SUBSCRIBERS, p99 <= goal_ms) {
                (false, _) => format!("not judged (the goal is for {GOAL_SUBSCRIBERS} proxies)"),
                (true, true) => "met".into(),
                (true, false) => "**not met**".into(),
            };
            md += &format!(
                "| a {} change, {receiver}, within {} s at p99 with {GOAL_SUBSCRIBERS} proxies | {} | {:.2}× | {verdict} |\n",
                p.kind.name(),
                GOAL_P99.as_secs(),
                report::ms(p99),
                p99 / goal_ms,
            );
        }
    }
    report::write_section("control", &md)?;
    print!("{md}");
    Ok(())
}

/// How often the real proxy was asked, on average: a request and a pause.
fn poll_cycle_ms(phases: &[Phase]) -> f64 {
    let polled: Duration = phases.iter().map(|p| p.proxy_polled).sum();
    let requests: u64 = phases.iter().map(|p| p.proxy_requests).sum();
    polled.as_secs_f64() * 1000.0 / requests.max(1) as f64
}

/// The real proxy's answers that were neither the old nor the new, in words.
fn stray(answers: &[Answer]) -> String {
    if answers.is_empty() {
        return "each answered the old way or the new, none failed".into();
    }
    let mut by_status = std::collections::BTreeMap::new();
    for a in answers {
        let key = match a {
            Answer::Status(0) => "no answer".to_string(),
            Answer::Status(s) => format!("status {s}"),
            Answer::Pod(addr) => format!("pod {addr}"),
        };
        *by_status.entry(key).or_insert(0) += 1;
    }
    let list: Vec<String> = by_status
        .iter()
        .map(|(k, n)| format!("{n} × {k}"))
        .collect();
    format!(
        "{} of them answered neither the old way nor the new ({}) while a change went in",
        answers.len(),
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_and_limits() {
        let o = options(&[]).unwrap();
        assert_eq!((o.subscribers, o.rounds), (100, 20));
        let o = options(&args(&["--subscribers", "10000", "--rounds", "1"])).unwrap();
        assert_eq!((o.subscribers, o.rounds), (10_000, 1));
        for (bad, says) in [
            (&["--subscribers", "0"][..], "expected 1 to 10000"),
            (&["--subscribers", "10001"], "expected 1 to 10000"),
            (&["--rounds", "201"], "expected 1 to 200"),
            (&["--rounds", "many"], "invalid --rounds \"many\""),
            (&["--rounds"], "--rounds needs a value"),
            (&["--seconds", "5"], "unknown option --seconds"),
        ] {
            let err = options(&args(bad)).err().unwrap();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn pauses_spread_over_the_file_check() {
        let ms: Vec<u128> = (1..=20).map(|r| pause(r).as_millis()).collect();
        assert!(ms.iter().all(|m| (250..=450).contains(m)), "{ms:?}");
        assert!(ms.iter().any(|m| *m < 300) && ms.iter().any(|m| *m > 400));
    }
}
