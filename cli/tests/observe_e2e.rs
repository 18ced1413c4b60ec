//! `conduit stat / tap / top / edges` end to end on loopback: the real
//! telemetry store, the real controller (static discovery) and real
//! proxies carry known traffic to test upstreams with known delays and
//! failure shares, and the commands must report what was sent.
//!
//! Topology (namespace `demo`):
//!
//! ```text
//! load ──> web-0 proxy (outbound) ──┬─> voting-0 proxy (inbound) ──> upstream: 25 ms, every 10th request 500
//!                                   └─> emoji-0 proxy (inbound)  ──> upstream: 2 ms, never fails
//! ```
//!
//! Tolerances: counts within 2 % (a report in flight at the edge of a
//! window), success rates within 2 points, RPS within 20 % (a window's
//! edges and the one-second report interval), the latency median at least
//! the upstream's delay and below delay + 20 ms, the tail ordered and below
//! a second (debug builds on a loaded two-core machine).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use conduit_api::json::{Edges, Stat, TapEvent, Top};
use conduit_testbed::discovery::Discovery;
use conduit_testbed::{
    Controller, Proxy, ProxySpec, Store, TempDir, Upstream, UpstreamSpec, drive_load,
};

const VOTING: &str = "voting.demo.svc.cluster.local:8080";
const EMOJI: &str = "emoji.demo:8080";
const VOTING_DELAY_MS: f64 = 25.0;
const EMOJI_DELAY_MS: f64 = 2.0;
/// Above the delay, for the median.
const SLACK_MS: f64 = 20.0;
const TAIL_LIMIT_MS: f64 = 1000.0;

fn conduit(c: &Controller, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .args(["--api-addr", &c.grpc.to_string()])
        .env("CONDUIT_API_TOKEN_FILE", &c.api_token_file)
        .output()
        .expect("run conduit");
    assert!(
        out.status.success(),
        "conduit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Mesh {
    _dir: TempDir,
    store: Store,
    controller: Controller,
    web: Proxy,
    _voting: (Proxy, Upstream),
    _emoji: (Proxy, Upstream),
    _web_app: Upstream,
}

/// Starts the store, an empty-discovery controller, the proxies, then
/// publishes the proxies in the discovery file (which the controller
/// picks up live, as with `conduit demo`).
fn mesh() -> Mesh {
    let dir = TempDir::new("e2e");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let store = Store::start();
    let controller = Controller::start(&store, &discovery);
    let proxy = |deployment: &str, pod: &str, app: SocketAddr| {
        Proxy::start(ProxySpec {
            namespace: "demo",
            deployment,
            pod,
            app,
            telemetry: Some(store.grpc_url()),
            destination: Some(controller.destination_url()),
            extra: vec![
                "--tap-sample-rate".into(),
                "1".into(),
                "--tap-sample-max-rps".into(),
                "1000".into(),
            ],
        })
    };
    let voting_app = Upstream::start(UpstreamSpec {
        delay: Duration::from_millis(VOTING_DELAY_MS as u64),
        fail_every: 10,
    });
    let emoji_app = Upstream::start(UpstreamSpec {
        delay: Duration::from_millis(EMOJI_DELAY_MS as u64),
        fail_every: 0,
    });
    let web_app = Upstream::start(UpstreamSpec::default());
    let voting = proxy("voting", "voting-0", voting_app.addr);
    let emoji = proxy("emoji", "emoji-0", emoji_app.addr);
    let web = proxy("web", "web-0", web_app.addr);
    Discovery::new("demo")
        .deployment("web", vec![web.discovery_pod("web-0")])
        .deployment("voting", vec![voting.discovery_pod("voting-0")])
        .deployment("emoji", vec![emoji.discovery_pod("emoji-0")])
        .service("web", 8080)
        .service("voting", 8080)
        .service("emoji", 8080)
        .path_routes(
            "voting",
            &[("vote", "^/api/vote.*$"), ("list", "^/api/list$")],
        )
        .write(&discovery);
    Mesh {
        _dir: dir,
        store,
        controller,
        web,
        _voting: (voting, voting_app),
        _emoji: (emoji, emoji_app),
        _web_app: web_app,
    }
}

fn stat(mesh: &Mesh, window: &str) -> Stat {
    let out = conduit(
        &mesh.controller,
        &["stat", "deploy", "-n", "demo", "-t", window, "-o", "json"],
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(stat: &'a Stat, name: &str) -> &'a conduit_api::json::StatRow {
    stat.rows
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row for {name}: {stat:#?}"))
}

/// Waits until the store has every report of the traffic sent so far.
fn settle(mesh: &Mesh, sent: &[(&str, u64)]) -> Stat {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = stat(mesh, "5m");
        let seen = |name| row(&s, name).metrics.as_ref().map_or(0, |m| m.total());
        if sent.iter().all(|(name, n)| seen(name) >= *n) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sends requests until the discovery file has reached the web proxy
/// (until then it answers 404: no route to the authority); returns how
/// many requests voting and emoji answered.
fn warm_up(mesh: &Mesh) -> (u64, u64) {
    let outbound = mesh.web.outbound;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut warm_voting, mut warm_emoji) = (0, 0);
    loop {
        let (v, _) = drive_load(
            outbound,
            VOTING,
            &["/warmup"],
            20,
            Duration::from_millis(500),
        );
        let (e, _) = drive_load(
            outbound,
            EMOJI,
            &["/warmup"],
            20,
            Duration::from_millis(500),
        );
        warm_voting += v.get(&200).unwrap_or(&0) + v.get(&500).unwrap_or(&0);
        warm_emoji += e.get(&200).unwrap_or(&0);
        let routed =
            |m: &std::collections::BTreeMap<u16, u64>| m.keys().all(|s| *s == 200 || *s == 500);
        if routed(&v) && routed(&e) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mesh never routed: {v:?} {e:?}"
        );
    }
    (warm_voting, warm_emoji)
}

fn within(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= expected * relative
}

#[test]
fn stat_tap_top_and_edges_report_what_was_sent() {
    let mesh = mesh();
    let outbound = mesh.web.outbound;

    let (warm_voting, warm_emoji) = warm_up(&mesh);
    let before = settle(&mesh, &[("voting", warm_voting), ("emoji", warm_emoji)]);
    let base = |name: &str| {
        row(&before, name)
            .metrics
            .as_ref()
            .map_or((0, 0), |m| (m.success_count, m.failure_count))
    };
    let (voting_ok0, voting_fail0) = base("voting");
    let (emoji_ok0, _) = base("emoji");

    // Live views need live traffic: tap and top run while load flows.
    let api = &mesh.controller;
    let load_started = Instant::now();
    let load = std::thread::spawn(move || {
        let voting = std::thread::spawn(move || {
            drive_load(
                outbound,
                VOTING,
                &["/api/vote", "/api/vote", "/api/list"],
                60,
                Duration::from_secs(12),
            )
        });
        let emoji = drive_load(
            outbound,
            EMOJI,
            &["/emoji/all"],
            30,
            Duration::from_secs(12),
        );
        (voting.join().unwrap(), emoji)
    });
    std::thread::sleep(Duration::from_secs(2));

    let mut tap = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args([
            "tap",
            "deploy/voting",
            "-n",
            "demo",
            "--path",
            "/api/vote",
            "--limit",
            "20",
            "-o",
            "json",
        ])
        .args(["--api-addr", &api.grpc.to_string()])
        .env("CONDUIT_API_TOKEN_FILE", &api.api_token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let top = conduit(
        api,
        &["top", "deploy/voting", "-n", "demo", "--once", "-o", "json"],
    );

    let events: Vec<TapEvent> = BufReader::new(tap.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let tap_status = tap.wait().unwrap();
    assert!(tap_status.success(), "tap ended with {tap_status}");
    assert_eq!(events.len(), 20, "tap --limit 20 printed 20 events");
    for e in &events {
        assert!(
            e.path.starts_with("/api/vote"),
            "filtered tap saw {}",
            e.path
        );
        assert_eq!(e.authority, VOTING);
        assert!(e.http_status == 200 || e.http_status == 500, "{e:?}");
    }

    let top: Top = serde_json::from_slice(&top.stdout).unwrap();
    let paths: Vec<&str> = top.rows.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        &paths[..2],
        ["/api/vote", "/api/list"],
        "busiest first: {top:#?}"
    );
    let (vote, list) = (
        top.rows[0].metrics.total() as f64,
        top.rows[1].metrics.total() as f64,
    );
    assert!(
        within(vote / list, 2.0, 0.35),
        "two votes per list: {vote} vs {list}"
    );

    // RPS over the last 10 s of the 12 s of load (the newest second may not
    // be reported yet: 10 % low at worst).
    std::thread::sleep(
        (load_started + Duration::from_secs(11)).saturating_duration_since(Instant::now()),
    );
    let live = stat(&mesh, "10s");
    let voting_live = row(&live, "voting")
        .metrics
        .clone()
        .expect("voting traffic");
    let emoji_live = row(&live, "emoji").metrics.clone().expect("emoji traffic");
    assert!(
        within(voting_live.rps, 60.0, 0.2),
        "voting rps {}",
        voting_live.rps
    );
    assert!(
        within(emoji_live.rps, 30.0, 0.2),
        "emoji rps {}",
        emoji_live.rps
    );

    let ((voting_sent, _), (emoji_sent, _)) = load.join().unwrap();
    let voting_ok = voting_sent.get(&200).copied().unwrap_or(0);
    let voting_fail = voting_sent.get(&500).copied().unwrap_or(0);
    let emoji_ok = emoji_sent.get(&200).copied().unwrap_or(0);
    assert_eq!(
        voting_ok + voting_fail,
        720,
        "every request got an answer: {voting_sent:?}"
    );
    assert_eq!(emoji_ok, 360, "{emoji_sent:?}");

    let after = settle(
        &mesh,
        &[
            ("voting", voting_ok0 + voting_fail0 + 720),
            ("emoji", emoji_ok0 + emoji_ok),
        ],
    );
    let voting = row(&after, "voting");
    assert_eq!(voting.meshed_pods, 1);
    assert_eq!(voting.total_pods, 1);
    let m = voting.metrics.as_ref().unwrap();
    let ok = (m.success_count - voting_ok0) as f64;
    let fail = (m.failure_count - voting_fail0) as f64;
    assert!(
        within(ok, voting_ok as f64, 0.02),
        "voting successes {ok} vs {voting_ok} sent"
    );
    assert!(
        within(fail, voting_fail as f64, 0.02),
        "voting failures {fail} vs {voting_fail} sent"
    );
    assert!(
        (m.success_rate - 0.9).abs() < 0.02,
        "voting success rate {}",
        m.success_rate
    );
    // The median is the upstream's delay plus the mesh's overhead; the
    // tail, on a loaded machine, only has to be ordered and sane.
    assert!(
        (VOTING_DELAY_MS..VOTING_DELAY_MS + SLACK_MS).contains(&m.latency_ms_p50),
        "voting p50: {m:?}"
    );
    assert!(
        m.latency_ms_p50 <= m.latency_ms_p95
            && m.latency_ms_p95 <= m.latency_ms_p99
            && m.latency_ms_p99 < TAIL_LIMIT_MS,
        "voting quantiles: {m:?}"
    );
    let e = row(&after, "emoji").metrics.clone().unwrap();
    let ok = (e.success_count - emoji_ok0) as f64;
    assert!(
        within(ok, emoji_ok as f64, 0.02),
        "emoji successes {ok} vs {emoji_ok} sent"
    );
    assert_eq!(e.failure_count, 0);
    assert!(
        e.latency_ms_p50 >= EMOJI_DELAY_MS && e.latency_ms_p50 < VOTING_DELAY_MS,
        "{e:?}"
    );

    // The dashboard's history: points every 5 s over the last minute.
    let (status, _, body) = conduit_testbed::http_get(
        mesh.controller.http,
        "/api/v1/stat/history?namespace=demo&range=1m&step=5s&window=10s",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let history: conduit_api::json::StatHistory = serde_json::from_str(&body).unwrap();
    let voting_points = &history
        .series
        .iter()
        .find(|s| s.name == "voting")
        .expect("voting series")
        .points;
    assert_eq!(voting_points.len(), 12);
    assert!(
        voting_points
            .windows(2)
            .all(|w| w[1].time_unix_ms - w[0].time_unix_ms == 5000)
    );
    assert!(
        voting_points[0].metrics.is_none(),
        "no traffic a minute ago: {voting_points:#?}"
    );
    let peak = voting_points
        .iter()
        .filter_map(|p| p.metrics.as_ref())
        .map(|m| m.rps)
        .fold(0.0, f64::max);
    assert!(
        within(peak, 60.0, 0.25),
        "the 60 rps of the load show in the history: {voting_points:#?}"
    );

    // Routes: counted by the client (web) per route of voting's profile.
    let out = conduit(
        api,
        &[
            "routes",
            "deploy/voting",
            "-n",
            "demo",
            "-t",
            "5m",
            "-o",
            "json",
        ],
    );
    let routes: conduit_api::json::Routes = serde_json::from_slice(&out.stdout).unwrap();
    let route = |name: &str| {
        routes
            .rows
            .iter()
            .find(|r| r.route == name)
            .unwrap_or_else(|| panic!("no route {name}: {routes:#?}"))
    };
    assert_eq!(route("vote").authority, "voting.demo.svc.cluster.local");
    let vote = route("vote").metrics.clone().expect("vote traffic");
    let list = route("list").metrics.clone().expect("list traffic");
    // The load sent 480 votes and 240 lists (plus warm-up on no route).
    assert!(within(vote.total() as f64, 480.0, 0.05), "{vote:?}");
    assert!(within(list.total() as f64, 240.0, 0.05), "{list:?}");
    assert!(vote.latency_ms_p50 >= VOTING_DELAY_MS, "{vote:?}");

    // --to: the outbound traffic of web to voting.
    let out = conduit(
        api,
        &[
            "stat",
            "deploy",
            "-n",
            "demo",
            "--to",
            "deploy/voting",
            "-t",
            "5m",
            "-o",
            "json",
        ],
    );
    let to: Stat = serde_json::from_slice(&out.stdout).unwrap();
    let web_to_voting = row(&to, "web").metrics.clone().expect("web→voting traffic");
    assert!(
        within(
            web_to_voting.total() as f64,
            (voting_ok0 + voting_fail0 + 720) as f64,
            0.05
        ),
        "{web_to_voting:?}"
    );
    assert!(to.rows.iter().all(|r| r.name == "web"), "{to:#?}");

    let out = conduit(api, &["edges", "deploy", "-n", "demo", "-o", "json"]);
    let edges: Edges = serde_json::from_slice(&out.stdout).unwrap();
    let mut pairs: Vec<(String, String)> = edges
        .edges
        .iter()
        .map(|e| (e.src.name.clone(), e.dst.name.clone()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("web".into(), "emoji".into()),
            ("web".into(), "voting".into())
        ],
        "{edges:#?}"
    );
    assert!(
        edges
            .edges
            .iter()
            .all(|e| !e.secured && e.no_tls_reason.starts_with("disabled"))
    );

    let table = conduit(api, &["stat", "deploy", "-n", "demo"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NAME "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("voting ") && l.contains("1/1")),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args([
            "stat",
            "deploy/nope",
            "-n",
            "demo",
            "--api-addr",
            &api.grpc.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("demo/nope not found"));
    drop(mesh.store);
}

#[test]
fn history_search_finds_a_past_request_by_path() {
    let mesh = mesh();
    warm_up(&mesh);
    drive_load(
        mesh.web.outbound,
        VOTING,
        &["/needle/42"],
        1,
        Duration::from_secs(1),
    );
    drive_load(
        mesh.web.outbound,
        VOTING,
        &["/hay"],
        20,
        Duration::from_secs(1),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = conduit(
            &mesh.controller,
            &[
                "tap",
                "deploy/voting",
                "-n",
                "demo",
                "--since",
                "5m",
                "--query",
                "path:\"/needle/42\"",
                "-o",
                "json",
            ],
        );
        let found: conduit_api::json::TapSearch = serde_json::from_slice(&out.stdout).unwrap();
        if !found.events.is_empty() {
            assert!(
                found.events.iter().all(|e| e.path == "/needle/42"),
                "{found:#?}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the past request was never found"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `conduit diagnostics` reads each proxy through the controller: what the
/// web proxy resolved while carrying traffic, its metrics text, the policy
/// the voting proxy enforces, and a clear error for a pod that is not there.
#[test]
fn diagnostics_show_what_each_proxy_sees() {
    let mesh = mesh();
    warm_up(&mesh);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = conduit(&mesh.controller, args);
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let pods = json(&[
        "diagnostics",
        "endpoints",
        "deploy/web",
        "-n",
        "demo",
        "-o",
        "json",
    ]);
    assert_eq!(pods[0]["pod"], "web-0", "{pods:#}");
    let destinations = pods[0]["destinations"].as_array().unwrap();
    let voting = destinations
        .iter()
        .find(|d| d["authority"] == VOTING)
        .unwrap_or_else(|| panic!("the web proxy resolved {VOTING}: {pods:#}"));
    let endpoint = &voting["endpoints"][0];
    assert_eq!(endpoint["address"], mesh._voting.0.inbound.to_string());
    assert_eq!(endpoint["deployment"]["name"], "voting");
    assert_eq!(endpoint["protocol_hint"], "h2", "a meshed endpoint");
    assert_eq!(endpoint["available"], true);
    assert_eq!(voting["fallback"], false, "resolved by the controller");

    let table = conduit(
        &mesh.controller,
        &["diagnostics", "endpoints", "deploy/web", "-n", "demo"],
    );
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("# POD web-0\nAUTHORITY"), "{table}");
    assert!(
        table.contains(&mesh._voting.0.inbound.to_string()),
        "{table}"
    );

    let metrics = conduit(
        &mesh.controller,
        &[
            "diagnostics",
            "proxy-metrics",
            "deploy/web",
            "-n",
            "demo",
            "--pod",
            "web-0",
        ],
    );
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.starts_with("# POD web-0\n"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("request_total{") && l.contains("dst_deployment=\"voting\"")),
        "the raw metrics of the web proxy: {metrics}"
    );

    let policy = json(&[
        "diagnostics",
        "policy",
        "deploy/voting",
        "-n",
        "demo",
        "-o",
        "json",
    ]);
    let ports = policy[0]["policies"].as_array().unwrap();
    let app_port = u64::from(mesh._voting.1.addr.port());
    assert!(
        ports
            .iter()
            .any(|p| p["port"] == app_port && !p["server"].as_str().unwrap().is_empty()),
        "the policy of the application's port: {policy:#}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args([
            "diagnostics",
            "policy",
            "deploy/web",
            "-n",
            "demo",
            "--pod",
            "web-9",
        ])
        .args(["--api-addr", &mesh.controller.grpc.to_string()])
        .env("CONDUIT_API_TOKEN_FILE", &mesh.controller.api_token_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no meshed pod named \"web-9\""), "{err}");
}

/// Routes that discover themselves: emoji has no profile, yet `conduit
/// routes` shows its traffic per learned path template, through the real
/// store and controller.
#[test]
fn routes_show_learned_templates_without_a_profile() {
    const IDS: usize = 50;
    const RPS: u32 = 100;
    const SECONDS: u64 = 5;
    /// `increase` extrapolates a series that lived five seconds by up to
    /// half a report interval at each end.
    const EXTRAPOLATED: f64 = 0.12;
    let mesh = mesh();
    warm_up(&mesh);
    let paths: Vec<String> = (0..IDS).map(|i| format!("/emoji/{}", 1000 + i)).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (sent, _) = drive_load(
        mesh.web.outbound,
        EMOJI,
        &paths,
        RPS,
        Duration::from_secs(SECONDS),
    );
    let sent = sent.get(&200).copied().unwrap_or(0);
    assert_eq!(sent, u64::from(RPS) * SECONDS, "every request answered");
    let args = |extra: &[&'static str]| {
        let mut a = vec!["routes", "deploy/emoji", "-n", "demo", "-t", "5m"];
        a.extend_from_slice(extra);
        a
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    let learned = loop {
        let out = conduit(&mesh.controller, &args(&["--learned", "-o", "json"]));
        let routes: conduit_api::json::Routes = serde_json::from_slice(&out.stdout).unwrap();
        let total = |name: &str| {
            routes
                .rows
                .iter()
                .find(|r| r.route == name)
                .and_then(|r| r.metrics.as_ref())
                .map_or(0, |m| m.total())
        };
        let counted = total("GET /emoji/{id}") as f64;
        // The warm-up is one burst: its series may hold a single sample,
        // which `increase` reads as 0, so it is only required to be listed.
        let warm_up_listed = routes.rows.iter().any(|r| r.route == "GET /warmup");
        if counted >= sent as f64 * 0.98 && warm_up_listed {
            break routes;
        }
        assert!(
            Instant::now() < deadline,
            "the learned routes never showed: {routes:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut names: Vec<&str> = learned.rows.iter().map(|r| r.route.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["GET /emoji/{id}", "GET /warmup"], "{learned:#?}");
    assert!(learned.rows.iter().all(|r| r.learned));
    let ids = learned.rows.iter().find(|r| r.route == "GET /emoji/{id}");
    let m = ids.and_then(|r| r.metrics.clone()).expect("traffic");
    assert!(within(m.total() as f64, sent as f64, EXTRAPOLATED), "{m:?}");
    assert_eq!(m.failure_count, 0);
    assert!(m.latency_ms_p50 >= EMOJI_DELAY_MS, "{m:?}");

    // The plain table marks them learned; `--learned -o wide` adds latency.
    let out = conduit(&mesh.controller, &args(&[]));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("GET /emoji/{id}"))
        .unwrap_or_else(|| panic!("no learned route in\n{text}"));
    assert!(line.contains("learned"), "{text}");
    let out = conduit(&mesh.controller, &args(&["--learned", "-o", "wide"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap_or_default();
    for column in ["TEMPLATE", "REQUESTS", "LATENCY_P99"] {
        assert!(header.contains(column), "{text}");
    }
    let requests: u64 = text
        .lines()
        .find(|l| l.starts_with("GET /emoji/{id}"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in\n{text}"));
    assert!(within(requests as f64, sent as f64, EXTRAPOLATED), "{text}");
}
