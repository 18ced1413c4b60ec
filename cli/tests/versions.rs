//! `conduit stat --by version` end to end: two versions of one Deployment
//! run side by side behind real proxies (each with its own
//! `--workload-version`), web's traffic splits between them through the
//! real balancer, and the real store and controller must report each
//! version's own success rate and request count; a Deployment with one
//! version gets one row.
//!
//! ```text
//! load ──> web-0 proxy ──┬─> voting-v1 proxy (version v1) ──> upstream: every 20th request 500
//!                        ├─> voting-v2 proxy (version v2) ──> upstream: every 2nd request 500
//!                        └─> emoji-0 proxy (version e1)   ──> upstream: never fails
//! ```
//!
//! Tolerances: counts within 2 % of what each upstream served (a report in
//! flight), success rates within 2 points of the upstream's exact share.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use conduit_api::json::{Stat, StatRow};
use conduit_testbed::discovery::Discovery;
use conduit_testbed::{
    Controller, Proxy, ProxySpec, Store, TempDir, Upstream, UpstreamSpec, drive_load, http_get,
    http_get_with,
};

const VOTING: &str = "voting.demo:8080";
const EMOJI: &str = "emoji.demo:8080";

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "conduit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Pod {
    proxy: Proxy,
    app: Upstream,
}

struct Mesh {
    _dir: TempDir,
    _store: Store,
    controller: Controller,
    web: Proxy,
    _web_app: Upstream,
    v1: Pod,
    v2: Pod,
    emoji: Pod,
}

fn mesh() -> Mesh {
    let dir = TempDir::new("versions");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let store = Store::start();
    let controller = Controller::start(&store, &discovery);
    let proxy = |deployment: &str, pod: &str, version: Option<&str>, app: SocketAddr| {
        let extra = version.map_or_else(Vec::new, |v| vec!["--workload-version".into(), v.into()]);
        Proxy::start(ProxySpec {
            namespace: "demo",
            deployment,
            pod,
            app,
            telemetry: Some(store.grpc_url()),
            destination: Some(controller.destination_url()),
            extra,
        })
    };
    let pod = |deployment: &str, name: &str, version: &str, spec: UpstreamSpec| {
        let app = Upstream::start(spec);
        Pod {
            proxy: proxy(deployment, name, Some(version), app.addr),
            app,
        }
    };
    let v1 = pod(
        "voting",
        "voting-v1",
        "v1",
        UpstreamSpec {
            delay: Duration::from_millis(1),
            fail_every: 20,
        },
    );
    let v2 = pod(
        "voting",
        "voting-v2",
        "v2",
        // As fast as v1: the balancer's peak-EWMA would send a slower
        // version almost nothing while the load is light.
        UpstreamSpec {
            delay: Duration::from_millis(1),
            fail_every: 2,
        },
    );
    let emoji = pod("emoji", "emoji-0", "e1", UpstreamSpec::default());
    let web_app = Upstream::start(UpstreamSpec::default());
    let web = proxy("web", "web-0", None, web_app.addr);
    Discovery::new("demo")
        .deployment("web", vec![web.discovery_pod("web-0")])
        .deployment(
            "voting",
            vec![
                v1.proxy.discovery_pod("voting-v1"),
                v2.proxy.discovery_pod("voting-v2"),
            ],
        )
        .deployment("emoji", vec![emoji.proxy.discovery_pod("emoji-0")])
        .service("voting", 8080)
        .service("emoji", 8080)
        .write(&discovery);
    Mesh {
        _dir: dir,
        _store: store,
        controller,
        web,
        _web_app: web_app,
        v1,
        v2,
        emoji,
    }
}

fn stat_by_version(mesh: &Mesh, target: &str) -> Stat {
    let out = mesh.controller.conduit(&[
        "stat", target, "-n", "demo", "-t", "5m", "--by", "version", "-o", "json",
    ]);
    serde_json::from_str(&ok(out)).unwrap()
}

fn version_row<'a>(stat: &'a Stat, name: &str, version: &str) -> Option<&'a StatRow> {
    stat.rows
        .iter()
        .find(|r| r.name == name && r.version.as_deref() == Some(version))
}

fn total(row: Option<&StatRow>) -> u64 {
    row.and_then(|r| r.metrics.as_ref())
        .map_or(0, |m| m.total())
}

/// Sends traffic until both voting versions have answered some and
/// discovery has reached web (until then it answers 404).
fn drive(mesh: &Mesh) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (v, _) = drive_load(
            mesh.web.outbound,
            VOTING,
            &["/api/vote"],
            100,
            Duration::from_secs(3),
        );
        let (e, _) = drive_load(
            mesh.web.outbound,
            EMOJI,
            &["/api/list"],
            20,
            Duration::from_secs(1),
        );
        let routed = v.keys().chain(e.keys()).all(|s| *s == 200 || *s == 500);
        let both = [&mesh.v1, &mesh.v2]
            .iter()
            .all(|p| p.app.served.load(Ordering::Relaxed) >= 40);
        if routed && both {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "traffic never reached both versions: {v:?} {e:?}"
        );
    }
}

/// Waits until the store has every request each upstream served.
fn settle(mesh: &Mesh) -> Stat {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = stat_by_version(mesh, "deploy");
        let caught_up = [
            ("voting", "v1", &mesh.v1),
            ("voting", "v2", &mesh.v2),
            ("emoji", "e1", &mesh.emoji),
        ]
        .iter()
        .all(|(name, v, pod)| {
            total(version_row(&s, name, v)) >= pod.app.served.load(Ordering::Relaxed)
        });
        if caught_up || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The success rate an upstream that fails every `k`-th request gave.
fn exact_success(served: u64, k: u64) -> f64 {
    1.0 - (served / k) as f64 / served as f64
}

#[test]
fn stat_by_version_gives_each_version_its_own_row_and_success_rate() {
    let mesh = mesh();
    drive(&mesh);
    let stat = settle(&mesh);

    for (pod, version, k) in [(&mesh.v1, "v1", 20), (&mesh.v2, "v2", 2)] {
        let served = pod.app.served.load(Ordering::Relaxed);
        let row = version_row(&stat, "voting", version)
            .unwrap_or_else(|| panic!("no voting {version} row: {stat:#?}"));
        let m = row.metrics.as_ref().expect("metrics");
        let seen = m.total() as f64;
        assert!(
            (seen - served as f64).abs() <= served as f64 * 0.02,
            "voting {version}: {seen} requests reported, {served} served"
        );
        let expected = exact_success(served, k);
        assert!(
            (m.success_rate - expected).abs() <= 0.02,
            "voting {version}: success {} instead of {expected}",
            m.success_rate
        );
        assert_eq!((row.meshed_pods, row.total_pods), (1, 1), "{row:?}");
    }
    let rate = |v| {
        version_row(&stat, "voting", v)
            .and_then(|r| r.metrics.as_ref())
            .map(|m| m.success_rate)
            .unwrap()
    };
    assert!(rate("v2") < rate("v1") - 0.3, "v2 is clearly worse");
    let voting_rows = stat.rows.iter().filter(|r| r.name == "voting").count();
    assert_eq!(voting_rows, 2, "{stat:#?}");

    // One version, one row.
    let emoji = stat_by_version(&mesh, "deploy/emoji");
    assert_eq!(emoji.rows.len(), 1, "{emoji:#?}");
    assert_eq!(emoji.rows[0].version.as_deref(), Some("e1"));
    assert!(total(emoji.rows.first()) > 0);

    // Without --by, one row per Deployment and no version.
    let plain: Stat = serde_json::from_str(&ok(mesh.controller.conduit(&[
        "stat",
        "deploy/voting",
        "-n",
        "demo",
        "-t",
        "5m",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(plain.rows.len(), 1);
    assert_eq!(plain.rows[0].version, None);
    let both =
        total(version_row(&stat, "voting", "v1")) + total(version_row(&stat, "voting", "v2"));
    assert!(total(plain.rows.first()) >= both, "{plain:#?}");

    // The table names each version.
    let table = ok(mesh.controller.conduit(&[
        "stat",
        "deploy/voting",
        "-n",
        "demo",
        "-t",
        "5m",
        "--by",
        "version",
        "-o",
        "wide",
    ]));
    let header = table.lines().next().unwrap();
    assert!(header.contains("VERSION"), "{table}");
    for v in ["v1", "v2"] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some(v)),
            "{table}"
        );
    }

    // The proxies' own /metrics carry the version too.
    let (_, _, metrics) = http_get(mesh.v2.proxy.admin, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"pod_template_hash="v2""#),
        "no version on /metrics"
    );
}

#[test]
fn by_version_refuses_from_and_unknown_groupings() {
    let dir = TempDir::new("versions");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let store = Store::start();
    let controller = Controller::start(&store, &discovery);
    let out = controller.conduit(&[
        "stat",
        "deploy",
        "-n",
        "demo",
        "--by",
        "version",
        "--from",
        "deploy/web",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--from"), "{err}");
    let out = controller.conduit(&["stat", "deploy", "--by", "pod"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version"), "{err}");
    let (status, _, body) = http_get_with(
        controller.http,
        "/api/v1/stat?namespace=demo&by=replicaset",
        &[("authorization", &controller.bearer())],
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`deployment` or `version`"), "{body}");
}

#[test]
fn the_proxy_refuses_a_version_no_pod_label_could_hold() {
    let out = Command::new(conduit_testbed::bin("conduit-proxy"))
        .args(["run", "--workload-version", "v 2/b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pod-template-hash"), "{err}");
}
