//! `conduit demo`: the whole mesh on this machine, one command.
//!
//! Starts the controller (static discovery, identity, dashboard), the
//! telemetry store and the emoji-vote application with a real
//! `conduit-proxy` beside every pod, all on loopback and all mTLS with
//! identities the controller issues; prints where to look; supervises everything until
//! Ctrl-C or `--duration`, then stops every process it started.
//!
//! With `--rollout`, a second version of voting (slower, failing more)
//! starts beside the first partway through, as more pods of the same
//! Deployment, so `conduit stat --by version` can compare them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::cmd::block_on;
use crate::output::outln;

mod ready;
mod supervisor;
mod topology;

use ready::Probe;
use supervisor::{Restarted, Supervisor};
use topology::{NAMESPACE, Settings, Topology};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Where the store keeps its data and every component its log
    /// [default: $XDG_DATA_HOME/conduit/demo or ~/.local/share/conduit/demo]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Requests per second the traffic generator sends to web
    #[arg(long, default_value_t = 50)]
    rps: u32,
    /// Share of voting's Vote calls that fail
    #[arg(long, default_value_t = 0.1)]
    failure_rate: f64,
    /// Stop by itself after this long (e.g. 60s, 10m); runs until Ctrl-C if unset
    #[arg(long, value_parser = conduit_api::duration::parse)]
    duration: Option<Duration>,
    /// Add this to every port the demo uses, to run beside something that
    /// holds the defaults
    #[arg(long, default_value_t = 0)]
    port_offset: u16,
    /// Also run an unmeshed client that calls voting and vote-store
    /// directly, which the demo's policy denies (see `conduit authz`)
    #[arg(long)]
    with_intruder: bool,
    /// Partway through, start a second version of voting (`v2`: 50 ms
    /// slower, 30 points more failures) beside the first (`v1`), as more
    /// pods of the same Deployment, so web's traffic splits between them
    /// (compare with `conduit stat deploy/voting --by version`)
    #[arg(long)]
    rollout: bool,
    /// When --rollout starts the second version [default: halfway through
    /// --duration, else 30s]
    #[arg(long, requires = "rollout", value_parser = conduit_api::duration::parse)]
    rollout_after: Option<Duration>,
    /// Have the controller read stat, routes, edges and the dashboard's
    /// charts from a Prometheus-compatible engine
    /// (`prometheus:http://HOST:PORT`) instead of the demo's store; feed
    /// it with --remote-write-url (or have it scrape the proxies)
    #[arg(long, value_name = "BACKEND", default_value = "embedded")]
    metrics_backend: conduit_api::metrics_backend::MetricsBackend,
    /// Have the demo's store forward every series to this remote-write
    /// endpoint (e.g. http://127.0.0.1:9090/api/v1/write)
    #[arg(long, value_name = "URL", value_parser = crate::args::remote_write_url)]
    remote_write_url: Option<String>,
}

/// When `--rollout` starts the second version without `--duration` or
/// `--rollout-after`.
const DEFAULT_ROLLOUT_AFTER: Duration = Duration::from_secs(30);

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The token that opens tap, in the data directory (owner-only), made anew
/// at every start; the CLI finds it there by itself.
pub(crate) const API_TOKEN_FILE: &str = "api-token";

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rps > 0, "--rps must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.failure_rate),
        "--failure-rate must be between 0 and 1"
    );
    let settings = Settings {
        port_offset: args.port_offset,
        rps: args.rps,
        failure_rate: args.failure_rate,
        data_dir: args.data_dir.map_or_else(default_data_dir, Ok)?,
        bin_dir: bin_dir()?,
        with_intruder: args.with_intruder,
        rollout: args.rollout,
        metrics_backend: args.metrics_backend,
        remote_write_url: args.remote_write_url,
    };
    let rollout_after = args.rollout.then(|| {
        args.rollout_after
            .or(args.duration.map(|d| d / 2))
            .unwrap_or(DEFAULT_ROLLOUT_AFTER)
    });
    let topology = Topology::new(settings)?;
    ready::ports_free(&topology.listeners())?;
    prepare_dirs(&topology)?;
    block_on(run_demo(topology, args.duration, rollout_after))
}

async fn run_demo(
    topology: Topology,
    duration: Option<Duration>,
    rollout_after: Option<Duration>,
) -> anyhow::Result<()> {
    let (mut supervisor, restarts) = Supervisor::new();
    let started = start_all(&topology, &mut supervisor).await;
    if let Err(e) = started {
        supervisor.shutdown().await;
        return Err(e.context(format!(
            "the demo could not start; logs are in {}",
            topology.log_dir().display()
        )));
    }
    if let Err(e) = print_ready(&topology, rollout_after) {
        supervisor.shutdown().await;
        return Err(e.into());
    }
    let outcome = run_with_rollout(
        &topology,
        &mut supervisor,
        restarts,
        duration,
        rollout_after,
    )
    .await;
    eprintln!("\nStopping the demo...");
    supervisor.shutdown().await;
    eprintln!("Stopped; every demo process has exited.");
    outcome
}

/// Supervises until the end, rolling voting's second version out on the
/// way when asked.
async fn run_with_rollout(
    topology: &Topology,
    supervisor: &mut Supervisor,
    mut restarts: tokio::sync::mpsc::UnboundedReceiver<Restarted>,
    duration: Option<Duration>,
    rollout_after: Option<Duration>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let Some(after) = rollout_after.filter(|a| duration.is_none_or(|d| *a < d)) else {
        return supervise(&mut restarts, duration).await.map(drop);
    };
    if supervise(&mut restarts, Some(after)).await? == Ended::Stopped {
        return Ok(());
    }
    roll_out(topology, supervisor).await?;
    supervise(
        &mut restarts,
        duration.map(|d| d.saturating_sub(started.elapsed())),
    )
    .await
    .map(drop)
}

/// Starts voting's second version and adds it to voting's endpoints.
async fn roll_out(topology: &Topology, supervisor: &mut Supervisor) -> anyhow::Result<()> {
    let Some(pod) = &topology.rollout else {
        return Ok(());
    };
    eprintln!("\nRolling out voting {}...", pod.version);
    step(
        &format!("{} with its proxy", pod.name),
        supervisor,
        vec![topology.app(pod), topology.proxy(pod)],
        &[
            (Probe::Tcp(pod.app), pod.name.clone()),
            (
                Probe::Http(pod.admin, "/ready"),
                format!("proxy of {}", pod.name),
            ),
        ],
    )
    .await?;
    write_discovery(topology, true)?;
    let api = api_flags(topology);
    outln!(
        "\nvoting {} now runs beside {} (slower, failing more) and takes part of web's traffic. \
         Compare them:\n  conduit stat deploy/voting -n {NAMESPACE} --by version{api}",
        pod.version,
        topology::FIRST_VERSION,
    )?;
    Ok(())
}

/// Starts the components in dependency order, reporting each as it comes up.
async fn start_all(topology: &Topology, supervisor: &mut Supervisor) -> anyhow::Result<()> {
    let c = &topology.control;
    step(
        "controller",
        supervisor,
        vec![topology.controller()],
        &[
            (Probe::Tcp(c.controller_grpc), "controller gRPC".into()),
            (
                Probe::Http(c.controller_http, "/healthz"),
                "controller HTTP".into(),
            ),
        ],
    )
    .await?;
    // The store certifies itself with the controller's identity service.
    step(
        "telemetry store",
        supervisor,
        vec![topology.store()],
        &[(
            Probe::Http(c.store_http, "/-/ready"),
            "telemetry store".into(),
        )],
    )
    .await?;

    let (bots, servers): (Vec<_>, Vec<_>) = topology
        .pods
        .iter()
        .partition(|p| p.deployment == "vote-bot");
    let mut specs = Vec::new();
    let mut probes = Vec::new();
    for pod in &servers {
        specs.push(topology.app(pod));
        specs.push(topology.proxy(pod));
        probes.push((Probe::Tcp(pod.app), pod.name.clone()));
        probes.push((
            Probe::Http(pod.admin, "/ready"),
            format!("proxy of {}", pod.name),
        ));
    }
    step(
        &format!("{} application pods with their proxies", servers.len()),
        supervisor,
        specs,
        &probes,
    )
    .await?;

    let mut specs = Vec::new();
    let mut probes = Vec::new();
    for pod in &bots {
        specs.push(topology.proxy(pod));
        specs.push(topology.app(pod));
        probes.push((
            Probe::Http(pod.admin, "/ready"),
            format!("proxy of {}", pod.name),
        ));
    }
    step("traffic generator (vote-bot)", supervisor, specs, &probes).await?;
    match topology.intruder() {
        Some(intruder) if topology.settings.with_intruder => {
            step(
                "intruder (unmeshed, denied by policy)",
                supervisor,
                vec![intruder],
                &[],
            )
            .await
        }
        _ => Ok(()),
    }
}

async fn step(
    what: &str,
    supervisor: &mut Supervisor,
    specs: Vec<supervisor::Spec>,
    probes: &[(Probe, String)],
) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("  starting {what}...");
    for spec in specs {
        supervisor.start(spec)?;
    }
    ready::wait_for(probes, READY_TIMEOUT).await?;
    eprintln!(
        "  ready    {what} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The flags a printed command needs to reach this demo.
fn api_flags(topology: &Topology) -> String {
    let mut api = if topology.settings.port_offset == 0 {
        String::new()
    } else {
        format!(" --api-addr {}", topology.control.controller_grpc)
    };
    if default_data_dir().ok().as_ref() != Some(&topology.settings.data_dir) {
        api += &format!(" --api-token-file {}", topology.api_token_path().display());
    }
    api
}

fn print_ready(topology: &Topology, rollout_after: Option<Duration>) -> std::io::Result<()> {
    let c = &topology.control;
    let api = api_flags(topology);
    outln!(
        "\nConduit demo is running: namespace `{NAMESPACE}`, {} Deployments, {} pods, {} requests/s.\n",
        topology.deployment_count(),
        topology.pods.len(),
        topology.settings.rps
    )?;
    let session = conduit_identity::bearer::BearerToken::read(&topology.api_token_path())
        .map(|t| format!("/auth?token={}", t.secret()))
        .unwrap_or_default();
    outln!(
        "  Dashboard:            http://{}{session}",
        c.controller_http
    )?;
    outln!(
        "  Grafana data source:  http://{}  (type Prometheus)",
        c.store_http
    )?;
    outln!("  Logs:                 {}", topology.log_dir().display())?;
    outln!("\nTry:")?;
    outln!("  conduit stat deploy -n {NAMESPACE}{api}")?;
    outln!("  conduit tap deploy/web -n {NAMESPACE}{api}")?;
    outln!("  conduit edges deploy -n {NAMESPACE}{api}")?;
    outln!("  conduit identity deploy/web -n {NAMESPACE}{api}")?;
    outln!("  conduit authz deploy/vote-store -n {NAMESPACE}{api}")?;
    if topology.settings.with_intruder {
        outln!(
            "\nAn intruder (unmeshed) calls voting and vote-store directly every 500 ms; the policy \
             denies it:\n  conduit authz deploy/voting -n {NAMESPACE}{api}\n  \
             conduit tap deploy/voting -n {NAMESPACE}{api}"
        )?;
    }
    if let Some(after) = rollout_after {
        outln!(
            "\nIn {}, voting {} rolls out beside {}; then compare the versions:\n  \
             conduit stat deploy/voting -n {NAMESPACE} --by version{api}",
            conduit_api::duration::format(after),
            topology::ROLLOUT_VERSION,
            topology::FIRST_VERSION,
        )?;
    }
    outln!("\nCtrl-C stops everything.")
}

/// Why supervision ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Ctrl-C or SIGTERM.
    Stopped,
    /// The time given ran out.
    Elapsed,
}

/// Reports restarts until Ctrl-C, SIGTERM or the duration ends.
async fn supervise(
    restarts: &mut tokio::sync::mpsc::UnboundedReceiver<Restarted>,
    duration: Option<Duration>,
) -> anyhow::Result<Ended> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            Some(r) = restarts.recv() => {
                eprintln!("! {} exited ({}); restarting it", r.name, r.status);
            }
            _ = tokio::signal::ctrl_c() => return Ok(Ended::Stopped),
            _ = terminate.recv() => return Ok(Ended::Stopped),
            _ = &mut deadline => return Ok(Ended::Elapsed),
        }
    }
}

fn prepare_dirs(topology: &Topology) -> anyhow::Result<()> {
    let logs = topology.log_dir();
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    topology.identity_files().generate(&topology.identities())?;
    let token = topology.api_token_path();
    conduit_identity::bearer::BearerToken::generate()
        .write(&token)
        .with_context(|| format!("cannot write {}", token.display()))?;
    write_discovery(topology, false)
}

/// Writes the discovery file whole (the controller follows it live and
/// must never read half of it).
fn write_discovery(topology: &Topology, rolled_out: bool) -> anyhow::Result<()> {
    let discovery = serde_saphyr::to_string(&topology.discovery(rolled_out))
        .context("cannot encode the discovery file")?;
    let path = topology.discovery_path();
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, discovery).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Where the demo keeps its state unless `--data-dir` says otherwise.
pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .context("neither XDG_DATA_HOME nor HOME is set; pass --data-dir")?,
        )
        .join(".local/share"),
    };
    Ok(base.join("conduit").join("demo"))
}

/// The other Conduit binaries sit next to `conduit` (cargo puts them there,
/// and so do releases).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the conduit binary")?;
    let dir = exe
        .parent()
        .context("conduit binary has no directory")?
        .to_path_buf();
    for needed in [
        "conduit-proxy",
        "conduit-telemetry-store",
        "conduit-controller",
        "conduit-demo-app",
    ] {
        anyhow::ensure!(
            dir.join(needed).exists(),
            "{needed} is missing next to {}: build everything with `cargo build --bins` \
             (or run `cargo xtask demo`)",
            exe.display()
        );
    }
    Ok(dir)
}
