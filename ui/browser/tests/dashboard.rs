//! The dashboard in a real browser: headless Chromium (Debian `chromium`
//! and `chromium-driver`) opens the bundle `cargo xtask ui` built, served
//! by the real controller, which reads the real telemetry store fed by
//! real proxies carrying known traffic:
//!
//! ```text
//! load ──> web-0 proxy (outbound) ──┬─> voting-0 proxy ──> upstream: 20 ms, every 10th request 500
//!                                   └─> emoji-0 proxy  ──> upstream: 2 ms, never fails
//! ```
//!
//! One test walks through the dashboard as a person would, because the
//! mesh takes seconds to start: the overview lists the Deployments with
//! the numbers `conduit stat -o json` prints (success rate within 2
//! points, RPS within 20 %: the page and the command read the same
//! one-minute window a moment apart while traffic ramps up), sorting works,
//! the Deployment page draws charts with points and lists its edges, tap
//! shows live requests (filtered, paused and resumed), top lists the
//! paths, and when the controller is killed the page says so and recovers
//! once it is back. Screenshots of every step go to
//! `target/ui-screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conduit_api::json::Stat;
use conduit_testbed::{
    Controller, Process, Proxy, ProxySpec, Store, TempDir, Upstream, UpstreamSpec, drive_load,
    http_get, wait_for_http,
};
use conduit_ui_browser::thirtyfour::prelude::*;
use conduit_ui_browser::{Browser, wait_for};

const VOTING: &str = "voting.demo.svc.cluster.local:8080";
const EMOJI: &str = "emoji.demo:8080";
const VOTING_PATHS: &[&str] = &["/vote/cat", "/vote/dog", "/results"];
const EMOJI_PATHS: &[&str] = &["/list", "/find/cat"];
/// Requests per second sent to each Deployment.
const VOTING_RPS: u32 = 20;
const EMOJI_RPS: u32 = 10;

/// Waiting is generous (a loaded two-core machine, debug binaries);
/// assertions on what is shown are strict.
const WAIT: Duration = Duration::from_secs(30);

struct Mesh {
    dir: TempDir,
    store: Store,
    controller: Controller,
    web: Proxy,
    _voting: (Proxy, Upstream),
    _emoji: (Proxy, Upstream),
    _web_app: Upstream,
}

impl Mesh {
    fn discovery(&self) -> PathBuf {
        self.dir.path().join("discovery.yaml")
    }

    fn controller_args(&self) -> Vec<String> {
        [
            "--grpc-listen",
            &self.controller.grpc.to_string(),
            "--http-listen",
            &self.controller.http.to_string(),
            "--store-addr",
            &self.store.grpc_url(),
            "--discovery",
            &format!("static:{}", self.discovery().display()),
            "--ui-dir",
            &bundle().display().to_string(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    }
}

/// The bundle `cargo xtask ui` writes (`cargo xtask test` builds it first).
fn bundle() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    assert!(
        dir.join("index.html").is_file(),
        "no dashboard bundle in {}: build it with `cargo xtask ui`",
        dir.display()
    );
    dir
}

fn pod_yaml(name: &str, p: &Proxy) -> String {
    format!(
        "          - {{name: {name}, addr: {}, tap: {}, admin: {}}}\n",
        p.inbound, p.tap, p.admin
    )
}

fn start_mesh() -> Mesh {
    let dir = TempDir::new("ui-browser");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let store = Store::start();
    let ui = bundle().display().to_string();
    let controller = Controller::start_with_args(&store.grpc_url(), &discovery, &["--ui-dir", &ui]);
    let proxy = |deployment: &str, pod: &str, app: SocketAddr| {
        Proxy::start(ProxySpec {
            namespace: "demo",
            deployment,
            pod,
            app,
            telemetry: Some(store.grpc_url()),
            destination: Some(format!("http://{}", controller.grpc)),
            extra: ["--tap-sample-rate", "1", "--tap-sample-max-rps", "1000"]
                .map(String::from)
                .to_vec(),
        })
    };
    let voting_app = Upstream::start(UpstreamSpec {
        delay: Duration::from_millis(20),
        fail_every: 10,
    });
    let emoji_app = Upstream::start(UpstreamSpec {
        delay: Duration::from_millis(2),
        fail_every: 0,
    });
    let web_app = Upstream::start(UpstreamSpec::default());
    let voting = proxy("voting", "voting-0", voting_app.addr);
    let emoji = proxy("emoji", "emoji-0", emoji_app.addr);
    let web = proxy("web", "web-0", web_app.addr);
    let yaml = format!(
        "version: 1
namespaces:
  demo:
    deployments:
      web:
        service_account: web
        pods:
{}      voting:
        service_account: voting
        pods:
{}      emoji:
        service_account: emoji
        pods:
{}    services:
      web: {{deployment: web, ports: [{{port: 8080}}]}}
      voting: {{deployment: voting, ports: [{{port: 8080}}]}}
      emoji: {{deployment: emoji, ports: [{{port: 8080}}]}}
",
        pod_yaml("web-0", &web),
        pod_yaml("voting-0", &voting),
        pod_yaml("emoji-0", &emoji),
    );
    let tmp = discovery.with_extension("tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(tmp, &discovery).unwrap();
    Mesh {
        dir,
        store,
        controller,
        web,
        _voting: (voting, voting_app),
        _emoji: (emoji, emoji_app),
        _web_app: web_app,
    }
}

/// Steady traffic from a thread, one bounded `drive_load` second after
/// another, until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(target: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [
            (VOTING, VOTING_PATHS, VOTING_RPS),
            (EMOJI, EMOJI_PATHS, EMOJI_RPS),
        ]
        .into_iter()
        .map(|(authority, paths, rps)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drive_load(target, authority, paths, rps, Duration::from_secs(1));
                }
            })
        })
        .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn api_stat(controller: SocketAddr) -> Option<Stat> {
    let (status, _, body) = http_get(controller, "/api/v1/stat?namespace=demo&window=1m").ok()?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// `conduit stat deploy -n demo -o json`, the figures the page must match.
fn cli_stat(grpc: SocketAddr) -> Stat {
    let out = std::process::Command::new(conduit_testbed::bin("conduit"))
        .args([
            "stat",
            "deploy",
            "-n",
            "demo",
            "-o",
            "json",
            "--api-addr",
            &grpc.to_string(),
        ])
        .output()
        .expect("run conduit");
    assert!(
        out.status.success(),
        "conduit stat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("conduit stat -o json")
}

/// A table cell's text as a number: `90.12%` → 0.9012, `20.0` → 20.
fn number(text: &str) -> Option<f64> {
    let t = text.trim();
    match t.strip_suffix('%') {
        Some(p) => p.parse::<f64>().ok().map(|v| v / 100.0),
        None => t.parse().ok(),
    }
}

/// The overview row of `name`: (success rate, RPS) as shown.
async fn overview_figures(b: &Browser, name: &str) -> Result<Option<(f64, f64)>, String> {
    let row = format!("tr[data-testid=deployment-row][data-name={name}]");
    let success = b.texts(&format!("{row} td.success")).await?;
    let rps = b.texts(&format!("{row} td.rps")).await?;
    Ok(
        match (
            success.first().and_then(|s| number(s)),
            rps.first().and_then(|s| number(s)),
        ) {
            (Some(s), Some(r)) if r > 0.0 => Some((s, r)),
            _ => None,
        },
    )
}

async fn shot(b: &Browser, name: &str) {
    let path = b.screenshot(name).await.expect("screenshot");
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_live_mesh_and_survives_a_controller_restart() {
    let mut mesh = start_mesh();
    let _load = Load::start(mesh.web.outbound);
    let ctrl = mesh.controller.http;
    let grpc = mesh.controller.grpc;

    // Wait for the store to hold traffic of both upstreams before looking.
    let ready = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            let busy = api_stat(ctrl).is_some_and(|s| {
                ["voting", "emoji"].iter().all(|n| {
                    s.rows.iter().any(|r| {
                        r.name == *n && r.metrics.as_ref().is_some_and(|m| m.total() >= 20)
                    })
                })
            });
            if busy {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    })
    .await
    .unwrap();
    assert!(
        ready,
        "no traffic reached the store; controller says {:?}",
        api_stat(ctrl)
    );

    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{ctrl}");

    // Overview: every Deployment, with the numbers `conduit stat` prints.
    b.driver.goto(format!("{base}/")).await.unwrap();
    let names = wait_for(WAIT, "the overview's rows", || async {
        let names = b
            .attrs("tr[data-testid=deployment-row]", "data-name")
            .await?;
        Ok((names.len() >= 3).then_some(names))
    })
    .await
    .unwrap();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["emoji", "voting", "web"], "rows: {names:?}");
    for name in ["voting", "emoji"] {
        let before = wait_for(WAIT, &format!("{name}'s figures"), || {
            overview_figures(&b, name)
        })
        .await
        .unwrap();
        let cli = cli_stat(grpc);
        let after = overview_figures(&b, name)
            .await
            .unwrap()
            .expect("figures stay");
        let m = cli
            .rows
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.metrics.clone())
            .unwrap_or_else(|| panic!("conduit stat has no traffic for {name}: {cli:?}"));
        let (lo_sr, hi_sr) = (before.0.min(after.0), before.0.max(after.0));
        assert!(
            m.success_rate >= lo_sr - 0.02 && m.success_rate <= hi_sr + 0.02,
            "{name}: page shows success {before:?}..{after:?}, conduit stat says {}",
            m.success_rate
        );
        let (lo, hi) = (before.1.min(after.1), before.1.max(after.1));
        assert!(
            m.rps >= lo * 0.8 && m.rps <= hi * 1.2,
            "{name}: page shows {lo}..{hi} rps, conduit stat says {}",
            m.rps
        );
    }
    let (voting_sr, _) = overview_figures(&b, "voting").await.unwrap().unwrap();
    assert!(
        (voting_sr - 0.9).abs() <= 0.03,
        "voting fails every 10th request; page shows {voting_sr}"
    );
    let class = b
        .attrs("tr[data-name=voting] td.success", "class")
        .await
        .unwrap();
    assert!(
        class[0].contains("warning"),
        "90 % success is a warning: {class:?}"
    );
    let class = b
        .attrs("tr[data-name=emoji] td.success", "class")
        .await
        .unwrap();
    assert!(
        class[0].contains("good"),
        "100 % success is good: {class:?}"
    );
    shot(&b, "01-overview").await;

    // Sorting by RPS, highest first: voting (20 rps) above emoji (10 rps).
    b.driver
        .find(By::Css("th a[data-sort=rps]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(WAIT, "rows sorted by RPS", || async {
        let names = b
            .attrs("tr[data-testid=deployment-row]", "data-name")
            .await?;
        let url = b.driver.current_url().await.map_err(|e| e.to_string())?;
        let voting = names.iter().position(|n| n == "voting");
        let emoji = names.iter().position(|n| n == "emoji");
        Ok((url.query().is_some_and(|q| q.contains("sort=rps")) && voting < emoji).then_some(()))
    })
    .await
    .unwrap();

    // A Deployment: charts with points, edges with the caller.
    b.driver
        .find(By::Css("tr[data-name=voting] a.name"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(WAIT, "the voting page", || async {
        let url = b.driver.current_url().await.map_err(|e| e.to_string())?;
        Ok(url
            .path()
            .ends_with("/deployments/demo/voting")
            .then_some(()))
    })
    .await
    .unwrap();
    for chart in ["chart-success", "chart-rps", "chart-latency"] {
        wait_for(WAIT, &format!("points in {chart}"), || async {
            let points = b
                .attrs(&format!("svg[data-testid={chart}]"), "data-points")
                .await?;
            Ok(points
                .first()
                .and_then(|p| p.parse::<usize>().ok())
                .filter(|n| *n >= 3))
        })
        .await
        .unwrap();
        let paths = b
            .attrs(&format!("svg[data-testid={chart}] path.series"), "d")
            .await
            .unwrap();
        assert!(
            paths.iter().any(|d| d.matches('L').count() >= 2),
            "{chart} draws no line: {paths:?}"
        );
    }
    let edge = wait_for(WAIT, "voting's inbound edge from web", || async {
        let peers = b
            .attrs("tr[data-testid=edge-row][data-way=inbound]", "data-peer")
            .await?;
        Ok(peers.into_iter().find(|p| p == "demo/web"))
    })
    .await
    .unwrap();
    assert_eq!(edge, "demo/web");
    let tiles = b.texts("[data-tile=success]").await.unwrap();
    assert!(tiles[0].ends_with('%'), "success tile: {tiles:?}");
    shot(&b, "02-deployment").await;

    // A deep link loads the same page directly.
    b.driver
        .goto(format!("{base}/deployments/demo/emoji?range=15m"))
        .await
        .unwrap();
    wait_for(WAIT, "emoji's page from a deep link", || async {
        let title = b.texts("[data-testid=deployment-title]").await?;
        let active = b.attrs("a.chip.active[data-range]", "data-range").await?;
        Ok((title.first().is_some_and(|t| t == "emoji") && active == ["15m"]).then_some(()))
    })
    .await
    .unwrap();

    // Tap: live requests, filtered by path, paused and resumed.
    b.driver
        .goto(format!("{base}/tap/demo/voting?path=/vote"))
        .await
        .unwrap();
    let paths = wait_for(WAIT, "live tap events", || async {
        let paths = b.texts("table[data-testid=tap-live] td.path").await?;
        Ok((paths.len() >= 5).then_some(paths))
    })
    .await
    .unwrap();
    assert!(
        paths.iter().all(|p| p.starts_with("/vote/")),
        "the path filter let through {paths:?}"
    );
    shot(&b, "03-tap").await;
    b.driver
        .find(By::Css("[data-testid=tap-pause]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let frozen = b
        .texts("table[data-testid=tap-live] td.time")
        .await
        .unwrap();
    let waiting = wait_for(WAIT, "events held while paused", || async {
        let count = b.texts("[data-testid=tap-count]").await?;
        Ok(count
            .first()
            .filter(|c| c.contains("paused") && !c.contains(" 0 waiting"))
            .cloned())
    })
    .await
    .unwrap();
    let still = b
        .texts("table[data-testid=tap-live] td.time")
        .await
        .unwrap();
    assert_eq!(frozen, still, "rows changed while paused ({waiting})");
    b.driver
        .find(By::Css("[data-testid=tap-pause]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(WAIT, "held events shown after resume", || async {
        let rows = b.texts("table[data-testid=tap-live] td.time").await?;
        Ok((rows.len() > frozen.len() || rows.first() != frozen.first()).then_some(()))
    })
    .await
    .unwrap();

    // Top: the paths that were sent, most requests first.
    b.driver
        .goto(format!("{base}/top/demo/voting"))
        .await
        .unwrap();
    let top = wait_for(WAIT, "top paths", || async {
        let paths = b.attrs("tr[data-testid=top-row]", "data-path").await?;
        Ok((paths.len() >= VOTING_PATHS.len()).then_some(paths))
    })
    .await
    .unwrap();
    for p in VOTING_PATHS {
        assert!(top.iter().any(|t| t == p), "top lacks {p}: {top:?}");
    }
    shot(&b, "04-top").await;

    // The controller goes away: a banner says so; it comes back: data flows.
    b.driver.goto(format!("{base}/")).await.unwrap();
    wait_for(WAIT, "the overview again", || {
        overview_figures(&b, "voting")
    })
    .await
    .unwrap();
    let args = mesh.controller_args();
    mesh.controller.process.kill();
    let banner = wait_for(WAIT, "the unreachable banner", || async {
        let t = b.texts("[data-testid=banner-unreachable]").await?;
        Ok(t.into_iter().next())
    })
    .await
    .unwrap();
    assert!(
        banner.contains("Cannot reach the Conduit controller"),
        "{banner}"
    );
    shot(&b, "05-controller-down").await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restarted = Process::spawn("conduit-controller", &args);
    wait_for_http(ctrl, "/healthz", WAIT).unwrap_or_else(|e| restarted.fail(&e));
    wait_for(WAIT, "the banner to go", || async {
        Ok(b.texts("[data-testid=banner-unreachable]")
            .await?
            .is_empty()
            .then_some(()))
    })
    .await
    .unwrap();
    let footnote = b.texts("p.footnote").await.unwrap();
    wait_for(WAIT, "fresh figures after the restart", || async {
        let now = b.texts("p.footnote").await?;
        let figures = overview_figures(&b, "voting").await?;
        Ok((now != footnote && figures.is_some()).then_some(()))
    })
    .await
    .unwrap();
    shot(&b, "06-controller-back").await;
    b.quit().await;
}
