//! `conduit stat|routes|edges --since/--until` end to end: real proxies
//! carry traffic in one period and none in the next, into a real store,
//! and windows over each period must report exactly that — also after more
//! traffic has come in since, which a window ending in the past ignores.
//!
//! Topology (namespace `demo`): load ──> web-0 proxy (outbound) ──>
//! voting-0 proxy (inbound) ──> upstream (every 10th request fails).
//!
//! Periods are separated by quiet gaps longer than the proxies' 1 s
//! report interval, so no report of one period is dated in another.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conduit_api::json::{Edges, Routes, Stat};
use conduit_api::time_range::Rfc3339;
use conduit_testbed::discovery::{self, Discovery};
use conduit_testbed::web_voting::{VOTING, WebVoting, WebVotingSpec};
use conduit_testbed::{Controller, Store, TempDir, UpstreamSpec, drive_load};

/// Longer than a report interval plus a report's trip to the store.
const GAP: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ok(c: &Controller, args: &[&str]) -> Vec<u8> {
    let out = c.conduit(args);
    assert!(
        out.status.success(),
        "conduit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The stderr of a command that must fail with `code`.
fn fails(c: &Controller, args: &[&str], code: i32) -> String {
    let out = c.conduit(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "conduit {args:?}: {stderr}");
    stderr
}

struct Mesh {
    _dir: TempDir,
    _store: Store,
    controller: Controller,
    pair: WebVoting,
}

fn mesh() -> Mesh {
    let dir = TempDir::new("window");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    // A short retention, so a window beyond it is easy to ask for.
    let store = Store::start_with_args(&["--retention-time".into(), "1h".into()]);
    let controller = Controller::start(&store, &discovery);
    let pair = WebVoting::start(WebVotingSpec {
        telemetry: store.grpc_url(),
        destination: controller.destination_url(),
        discovery: &discovery,
        voting: UpstreamSpec {
            delay: Duration::from_millis(2),
            fail_every: 10,
        },
    });
    Mesh {
        _dir: dir,
        _store: store,
        controller,
        pair,
    }
}

/// Sends `rps` requests a second for `secs` seconds; returns how many
/// voting answered.
fn traffic(mesh: &Mesh, rps: u32, secs: u64) -> u64 {
    let (codes, _) = drive_load(
        mesh.pair.web.outbound,
        VOTING,
        &["/api/vote/1", "/api/vote/2"],
        rps,
        Duration::from_secs(secs),
    );
    assert!(
        codes.keys().all(|s| *s == 200 || *s == 500),
        "not all routed: {codes:?}"
    );
    codes.values().sum()
}

fn stat_between(mesh: &Mesh, since: &str, until: Option<&str>) -> Stat {
    let mut args = vec![
        "stat", "deploy", "-n", "demo", "--since", since, "-o", "json",
    ];
    if let Some(until) = until {
        args.extend(["--until", until]);
    }
    serde_json::from_slice(&ok(&mesh.controller, &args)).unwrap()
}

/// Requests voting served in a stat answer.
fn voting_total(stat: &Stat) -> Option<u64> {
    let row = stat
        .rows
        .iter()
        .find(|r| r.name == "voting")
        .unwrap_or_else(|| panic!("no voting row: {stat:#?}"));
    row.metrics.as_ref().map(|m| m.total())
}

/// Waits until the store has every report of the traffic sent so far in
/// the window from `since`.
fn settle(mesh: &Mesh, since: &str, want: u64) -> Stat {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = stat_between(mesh, since, None);
        if voting_total(&s) >= Some(want) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn windows_in_the_past_count_their_own_traffic_only() {
    let before_mesh = Rfc3339(now_ms() - 5_000).to_string();
    let before_mesh_end = Rfc3339(now_ms() - 3_000).to_string();
    let mesh = mesh();
    mesh.pair.warm_up();
    std::thread::sleep(GAP);

    // Period A: traffic. Period B: none. Then traffic again (period C).
    let a_start_ms = now_ms();
    let a_start = Rfc3339(a_start_ms).to_string();
    let sent_a = traffic(&mesh, 100, 2);
    settle(&mesh, &a_start, sent_a);
    std::thread::sleep(GAP);
    let a_end = Rfc3339(now_ms()).to_string();
    std::thread::sleep(GAP);
    let b_end = Rfc3339(now_ms()).to_string();
    let b_start = a_end.clone();

    let a = stat_between(&mesh, &a_start, Some(&a_end));
    assert_eq!(voting_total(&a), Some(sent_a), "period A: {a:#?}");
    let m = a.rows.iter().find(|r| r.name == "voting").unwrap();
    let m = m.metrics.as_ref().unwrap();
    assert_eq!(m.failure_count, sent_a / 10, "every 10th request fails");
    assert!(m.latency_ms_p50 >= 2.0, "{m:?}");
    // The JSON names the window it answers.
    assert_eq!(a.span.start, a_start);
    assert_eq!(a.span.end, a_end);
    assert_eq!(a.span.start_unix_ms, a_start_ms);
    // Recent data: quantiles merged the proxies' one-second reports.
    assert!(
        (1000..2000).contains(&a.latency_resolution_ms),
        "{}",
        a.latency_resolution_ms
    );

    let b = stat_between(&mesh, &b_start, Some(&b_end));
    assert_eq!(voting_total(&b), None, "period B had no traffic: {b:#?}");

    let sent_c = traffic(&mesh, 50, 1);
    let since_a = settle(&mesh, &a_start, sent_a + sent_c);
    assert_eq!(voting_total(&since_a), Some(sent_a + sent_c));
    // Windows that ended before period C are what they were.
    assert_eq!(stat_between(&mesh, &a_start, Some(&a_end)), a);
    assert_eq!(
        voting_total(&stat_between(&mesh, &b_start, Some(&b_end))),
        None
    );
    // How long ago, as people type it: from a second before A to now.
    let ago = format!("{}s", (now_ms() - a_start_ms) / 1000 + 1);
    assert_eq!(
        voting_total(&stat_between(&mesh, &ago, None)),
        Some(sent_a + sent_c)
    );

    // Routes over the same windows.
    let routes = |since: &str, until: &str| -> Routes {
        let args = [
            "routes",
            "deploy/voting",
            "-n",
            "demo",
            "--since",
            since,
            "--until",
            until,
            "-o",
            "json",
        ];
        serde_json::from_slice(&ok(&mesh.controller, &args)).unwrap()
    };
    let vote = |r: &Routes| {
        r.rows
            .iter()
            .find(|r| r.route == "vote")
            .and_then(|r| r.metrics.as_ref())
            .map(|m| m.total())
    };
    // Route figures are PromQL `increase()`s, extrapolated to the window's
    // edges like Prometheus', so only whether there was traffic is exact.
    let ra = routes(&a_start, &a_end);
    let counted = vote(&ra).unwrap_or_else(|| panic!("no vote route: {ra:#?}"));
    assert!(counted > 0, "{ra:#?}");
    assert_eq!(ra.span.end, a_end);
    assert_eq!(vote(&routes(&b_start, &b_end)).unwrap_or(0), 0);

    // Edges: web → voting in period A, nothing before the mesh existed.
    let edges = |since: &str, until: &str| -> Edges {
        let args = [
            "edges", "deploy", "-n", "demo", "--since", since, "--until", until, "-o", "json",
        ];
        serde_json::from_slice(&ok(&mesh.controller, &args)).unwrap()
    };
    let ea = edges(&a_start, &a_end);
    assert!(
        ea.edges
            .iter()
            .any(|e| e.src.name == "web" && e.dst.name == "voting"),
        "{ea:#?}"
    );
    assert_eq!(ea.span.start, a_start);
    let none = edges(&before_mesh, &before_mesh_end);
    assert!(none.edges.is_empty(), "{none:#?}");
}

#[test]
fn bad_windows_say_what_to_do() {
    let dir = TempDir::new("window-bad");
    let discovery = dir.path().join("discovery.yaml");
    write_discovery(&discovery);
    let store = Store::start_with_args(&["--retention-time".into(), "1h".into()]);
    let c = Controller::start(&store, &discovery);
    let stat = |extra: &[&'static str]| {
        let mut args = vec!["stat", "deploy", "-n", "demo"];
        args.extend_from_slice(extra);
        args
    };
    // Reversed, future, unparseable: refused before any request.
    let e = fails(&c, &stat(&["--since", "1h", "--until", "2h"]), 1);
    assert!(e.contains("--since must be earlier than --until"), "{e}");
    let future = Rfc3339(now_ms() + 3_600_000).to_string();
    let e = fails(
        &c,
        &[
            "stat", "deploy", "-n", "demo", "--since", "1m", "--until", &future,
        ],
        1,
    );
    assert!(e.contains("in the future") && e.contains("--until"), "{e}");
    let e = fails(&c, &stat(&["--since", "yesterday"]), 2);
    assert!(e.contains("RFC 3339") && e.contains("2h"), "{e}");
    let e = fails(&c, &stat(&["-t", "5m", "--since", "1h"]), 2);
    assert!(e.contains("cannot be used with"), "{e}");
    // Beyond the store's retention: the store's and the controller's
    // checks name the retention and the flag that sets it.
    for command in [
        vec!["stat", "deploy", "-n", "demo"],
        vec!["routes", "deploy/voting", "-n", "demo"],
        vec!["edges", "deploy", "-n", "demo"],
    ] {
        let mut args = command.clone();
        args.extend(["--since", "2h", "--until", "90m"]);
        let e = fails(&c, &args, 1);
        assert!(
            e.contains("retention of 1h") && e.contains("--retention-time"),
            "{command:?}: {e}"
        );
    }
}

fn write_discovery(path: &Path) {
    let unreachable = "127.0.0.1:1".parse().unwrap();
    Discovery::new("demo")
        .deployment("voting", vec![discovery::pod("voting-0", unreachable)])
        .write(path);
}
