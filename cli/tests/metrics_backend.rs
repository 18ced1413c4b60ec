//! `--metrics-backend prometheus:URL` end to end: real proxies carry
//! traffic into a real store that forwards everything with remote write
//! to a real Prometheus (Debian `prometheus`) or VictoriaMetrics (Debian
//! `victoria-metrics`), or that Prometheus scrapes the proxies' own
//! `/metrics` instead; a controller reading that engine must agree with
//! one reading the store: `stat` within 1 % on success rate and RPS and
//! within a histogram bucket on latency, `routes` likewise (VictoriaMetrics
//! to a report interval: it does not extrapolate), `edges` on the
//! same pairs, the dashboard's history points closely. A backend that is
//! down, slow, or answers garbage or an endless body is an error naming
//! it, within the limits.
//!
//! Topology (namespace `demo`): load ──> web-0 proxy (outbound) ──>
//! voting-0 proxy (inbound) ──> upstream (every 10th request fails).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conduit_api::json::{Edges, Golden, Routes, Stat, StatHistory, StatPoint};
use conduit_api::time_range::Rfc3339;
use conduit_testbed::agreement::{
    LONG_WINDOW, SHORT_WINDOW, Tolerance, agree, bucket, row, within,
};
use conduit_testbed::discovery::{Discovery, pod};
use conduit_testbed::engine::{Engine, Kind};
use conduit_testbed::web_voting::{VOTING, WebVoting, WebVotingSpec};
use conduit_testbed::{
    Controller, Store, TempDir, UpstreamSpec, drive_load, free_addr, http_get, query_escape,
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The stderr of a command that must fail.
fn fails(c: &Controller, args: &[&str]) -> String {
    let out = c.conduit(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "conduit {args:?}: {stderr}");
    stderr
}

/// How the proxies' series reach the engine.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Feed {
    /// The store forwards what it ingests (`--remote-write-url`).
    RemoteWrite,
    /// The engine scrapes every proxy's `/metrics` each second.
    Scrape,
}

struct Mesh {
    _dir: TempDir,
    _store: Store,
    embedded: Controller,
    external: Controller,
    pair: WebVoting,
}

fn mesh(engine: &Engine, feed: Feed) -> Mesh {
    let dir = TempDir::new("metrics-backend");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let forward = match feed {
        Feed::RemoteWrite => vec![
            "--remote-write-url".into(),
            format!("{}/api/v1/write", engine.url()),
        ],
        Feed::Scrape => vec![],
    };
    let store = Store::start_with_args(&forward);
    let embedded = Controller::start(&store, &discovery);
    let backend = format!("prometheus:{}", engine.url());
    let external = Controller::start_with_args(
        &store.grpc_url(),
        &discovery,
        &["--metrics-backend", &backend],
    );
    let pair = WebVoting::start(WebVotingSpec {
        telemetry: store.grpc_url(),
        destination: embedded.destination_url(),
        discovery: &discovery,
        // 12 ms: the quantiles fall inside the (10, 20] ms bucket.
        voting: UpstreamSpec {
            delay: Duration::from_millis(12),
            fail_every: 10,
        },
    });
    if feed == Feed::Scrape {
        engine.scrape(&[pair.web.admin, pair.voting.admin]);
    }
    Mesh {
        _dir: dir,
        _store: store,
        embedded,
        external,
        pair,
    }
}

/// Sends `rps` requests a second for `secs` seconds.
fn traffic(mesh: &Mesh, rps: u32, secs: u64) {
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
}

fn vote_route(routes: &Routes) -> &Golden {
    routes
        .rows
        .iter()
        .find(|r| r.route == "vote")
        .and_then(|r| r.metrics.as_ref())
        .unwrap_or_else(|| panic!("no vote route figures: {routes:#?}"))
}

/// The voting points of a stat history answer.
fn history(c: &Controller, path: &str) -> Vec<StatPoint> {
    let (status, _, body) = http_get(c.http, path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    let history: StatHistory = serde_json::from_str(&body).unwrap();
    history
        .series
        .into_iter()
        .find(|s| s.name == "voting")
        .unwrap_or_else(|| panic!("no voting series: {body}"))
        .points
}

fn edge_pairs(edges: &Edges) -> Vec<(String, String, bool)> {
    let mut pairs: Vec<_> = edges
        .edges
        .iter()
        .map(|e| (e.src.name.clone(), e.dst.name.clone(), e.secured))
        .collect();
    pairs.sort();
    pairs
}

fn engines_agree_with_the_store(kind: Kind, feed: Feed) {
    let engine = Engine::start(kind);
    let mesh = mesh(&engine, feed);
    if feed == Feed::Scrape {
        engine.wait_scraping(2);
    }
    mesh.pair.warm_up();
    let started = now_ms();
    traffic(&mesh, 100, 20);
    let stopped = now_ms();
    // A window of steady traffic, clear of its start (the route series
    // begin with it) and its stop.
    // A whole number of seconds, so the store's count (from the last
    // once-a-second report before each edge) covers exactly the window.
    let (since_ms, until_ms) = (started + 3_000, started + 19_000);
    assert!(until_ms < stopped, "the load ended early");
    let (since, until) = (Rfc3339(since_ms).to_string(), Rfc3339(until_ms).to_string());
    // Remote write and scrapes are asynchronous: wait for samples past the
    // window.
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.newest_sample() * 1000.0 < (until_ms + 2_000) as f64 {
        assert!(
            Instant::now() < deadline,
            "{kind:?} never received samples past the window ({feed:?})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let window = ["--since", &since, "--until", &until, "-o", "json"];
    let args = [&["stat", "deploy", "-n", "demo"][..], &window].concat();
    let (ours, theirs): (Stat, Stat) = (mesh.embedded.json(&args), mesh.external.json(&args));
    let (o, t) = (row(&ours, "voting"), row(&theirs, "voting"));
    assert!(o.total() > 1200, "too little traffic to compare: {o:?}");
    assert!(o.failure_count > 0, "every 10th request fails: {o:?}");
    agree("stat voting", o, t, LONG_WINDOW);
    assert_eq!(ours.span, theirs.span, "both answer the window asked");
    eprintln!("{kind:?} {feed:?} stat: embedded {o:?}\n  external {t:?}");

    let args = [&["routes", "deploy/voting", "-n", "demo"][..], &window].concat();
    let (ours, theirs): (Routes, Routes) = (mesh.embedded.json(&args), mesh.external.json(&args));
    // The store's route figures are PromQL `increase()`s, extrapolated to
    // the window's edges as Prometheus does; MetricsQL's `increase()`
    // counts from the last sample before the window instead, so against
    // VictoriaMetrics they agree to a report interval (1 s) of traffic.
    let report_interval = match kind {
        Kind::Prometheus => 0.0,
        Kind::VictoriaMetrics => 1_000.0 / (until_ms - since_ms) as f64,
    };
    agree(
        "route vote",
        vote_route(&ours),
        vote_route(&theirs),
        Tolerance::both(LONG_WINDOW.rps + report_interval),
    );

    let args = [&["edges", "deploy", "-n", "demo"][..], &window].concat();
    let (ours, theirs): (Edges, Edges) = (mesh.embedded.json(&args), mesh.external.json(&args));
    assert!(
        edge_pairs(&ours).contains(&("web".into(), "voting".into(), false)),
        "{ours:#?}"
    );
    assert_eq!(edge_pairs(&ours), edge_pairs(&theirs));

    // The dashboard's charts: two 8 s points over the same window, which
    // agree as short windows do.
    let path = format!(
        "/api/v1/stat/history?namespace=demo&since={}&until={}&step=8s&window=8s",
        query_escape(&Rfc3339(until_ms - 16_000).to_string()),
        query_escape(&until),
    );
    let (ours, theirs) = (
        history(&mesh.embedded, &path),
        history(&mesh.external, &path),
    );
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert_eq!(
        ours.iter().map(|p| p.time_unix_ms).collect::<Vec<_>>(),
        theirs.iter().map(|p| p.time_unix_ms).collect::<Vec<_>>()
    );
    for (o, t) in ours.iter().zip(&theirs) {
        let what = format!("history point at {}", o.time_unix_ms);
        let (o, t) = (o.metrics.as_ref().unwrap(), t.metrics.as_ref().unwrap());
        within(&format!("{what} RPS"), o.rps, t.rps, SHORT_WINDOW.rps);
        within(
            &format!("{what} success rate"),
            o.success_rate,
            t.success_rate,
            SHORT_WINDOW.success_rate,
        );
        assert!(
            bucket(o.latency_ms_p50).abs_diff(bucket(t.latency_ms_p50)) <= 1,
            "{what}: {o:?} vs {t:?}"
        );
    }

    // `check` vouches for the engine.
    let out = mesh.external.conduit(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&format!("prometheus:{}", engine.url())))
        .unwrap_or_else(|| panic!("check names no metrics backend:\n{text}"));
    assert!(line.starts_with('√'), "{line}");
}

#[test]
fn prometheus_agrees_with_the_store() {
    engines_agree_with_the_store(Kind::Prometheus, Feed::RemoteWrite);
}

#[test]
fn prometheus_scraping_the_proxies_agrees_with_the_store() {
    engines_agree_with_the_store(Kind::Prometheus, Feed::Scrape);
}

#[test]
fn victoria_metrics_agrees_with_the_store() {
    engines_agree_with_the_store(Kind::VictoriaMetrics, Feed::RemoteWrite);
}

/// A loopback HTTP server answering every request with `answer`, after
/// `delay`, then writing `endless` forever (while the client reads).
fn hostile_backend(answer: &'static [u8], delay: Duration, endless: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(delay);
                if conn.write_all(answer).is_err() || !endless {
                    return;
                }
                let chunk = [b'['; 64 * 1024];
                while conn.write_all(&chunk).is_ok() {}
            });
        }
    });
    addr
}

#[test]
fn a_broken_backend_is_an_error_naming_it_within_the_limits() {
    let dir = TempDir::new("metrics-backend-bad");
    let discovery = dir.path().join("discovery.yaml");
    Discovery::new("demo")
        .deployment("web", vec![pod("web-0", free_addr())])
        .service("web", 8080)
        .write(&discovery);
    let store = Store::start();
    let controller = |url: &str, extra: &[&str]| {
        let backend = format!("prometheus:{url}");
        let mut args = vec!["--metrics-backend", &backend];
        args.extend_from_slice(extra);
        Controller::start_with_args(&store.grpc_url(), &discovery, &args)
    };
    let stat = ["stat", "deploy", "-n", "demo"];

    // Down: nothing listens.
    let down = format!("http://{}", free_addr());
    let c = controller(&down, &[]);
    for args in [
        &stat[..],
        &["routes", "deploy/web", "-n", "demo"],
        &["edges", "deploy", "-n", "demo"],
    ] {
        let e = fails(&c, args);
        assert!(
            e.contains(&format!("metrics backend prometheus:{down}")) && e.contains("cannot reach"),
            "{args:?}: {e}"
        );
    }
    let out = c.conduit(&["check"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("prometheus:{down}")) && l.contains('×')),
        "{text}"
    );
    drop(c);

    // Garbage: a web server that is no query API.
    let garbage = hostile_backend(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 22\r\nconnection: close\r\n\r\n<html>hello</html>\r\n\r\n",
        Duration::ZERO,
        false,
    );
    let c = controller(&format!("http://{garbage}"), &[]);
    let e = fails(&c, &stat);
    assert!(
        e.contains(&format!("prometheus:http://{garbage}"))
            && e.contains("not query API JSON")
            && e.contains("<html>"),
        "{e}"
    );
    drop(c);

    // Endless: the default body limit (16 MiB) ends it.
    let endless = hostile_backend(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
        Duration::ZERO,
        true,
    );
    let c = controller(&format!("http://{endless}"), &[]);
    let asked = Instant::now();
    let e = fails(&c, &stat);
    assert!(
        e.contains("larger than 16777216 bytes (--metrics-backend-max-body)"),
        "{e}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    drop(c);
    // ...and a smaller one set by the flag.
    let c = controller(
        &format!("http://{endless}"),
        &["--metrics-backend-max-body", "1000"],
    );
    let e = fails(&c, &stat);
    assert!(e.contains("larger than 1000 bytes"), "{e}");
    drop(c);

    // Slow: answers after 30 s; the default timeout (10 s) and the flag's.
    let slow = hostile_backend(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        Duration::from_secs(30),
        false,
    );
    for (flag, want) in [
        (None, Duration::from_secs(10)),
        (Some("1s"), Duration::from_secs(1)),
    ] {
        let extra: Vec<&str> = flag
            .map(|f| vec!["--metrics-backend-timeout", f])
            .unwrap_or_default();
        let c = controller(&format!("http://{slow}"), &extra);
        let asked = Instant::now();
        let e = fails(&c, &stat);
        let took = asked.elapsed();
        assert!(
            e.contains(&format!(
                "did not answer within {} (--metrics-backend-timeout)",
                conduit_api::duration::format(want)
            )),
            "{e}"
        );
        assert!(
            took >= want && took < want + Duration::from_secs(5),
            "{took:?}"
        );
    }
}

/// `conduit install --prometheus-scrape-config`, applied by a real
/// Prometheus. Debian's Prometheus is built without Kubernetes service
/// discovery and no API server runs here, so the pods come as static
/// targets carrying the labels Kubernetes discovery gives a pod; the job's
/// own relabeling must then keep exactly the running pods meshed with this
/// control plane, at their proxy's admin port.
#[test]
fn the_scrape_job_finds_each_meshed_proxys_admin_port() {
    let out = Command::new(conduit_testbed::bin("conduit"))
        .args(["install", "--prometheus-scrape-config", "-n", "mesh"])
        .output()
        .expect("run conduit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = String::from_utf8(out.stdout).unwrap();
    let pods = [
        ("meshed", "mesh", "Running", "10.1.2.3"),
        ("meshed-v6", "mesh", "Running", "fd00::3"),
        ("other-mesh", "elsewhere", "Running", "10.1.2.4"),
        ("pending", "mesh", "Pending", "10.1.2.5"),
    ];
    let statics: Vec<String> = pods
        .iter()
        .map(|(name, ns, phase, ip)| {
            format!(
                "      - targets: ['{name}:80']\n        labels: {{__meta_kubernetes_pod_label_conduit_io_control_plane_ns: {ns}, __meta_kubernetes_pod_phase: {phase}, __meta_kubernetes_pod_ip: '{ip}'}}\n"
            )
        })
        .collect();
    let discovery = "  kubernetes_sd_configs:\n    - role: pod\n";
    assert!(job.contains(discovery), "{job}");
    let config = format!(
        "scrape_configs:\n{}",
        job.replace(
            discovery,
            &format!("  static_configs:\n{}", statics.concat())
        )
    );
    let engine = Engine::start_with(Kind::Prometheus, &config);
    let deadline = Instant::now() + Duration::from_secs(30);
    let kept = loop {
        let answer = http_get(engine.addr, "/api/v1/targets").expect("targets");
        let v: serde_json::Value = serde_json::from_str(&answer.2).unwrap();
        let mut kept: Vec<String> = v["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["labels"]["instance"].as_str().unwrap().to_string())
            .collect();
        kept.sort();
        let dropped = v["data"]["droppedTargets"].as_array().map_or(0, Vec::len);
        if kept.len() + dropped == pods.len() {
            break kept;
        }
        assert!(Instant::now() < deadline, "targets never settled: {v}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(kept, ["10.1.2.3:4191", "[fd00::3]:4191"]);
}
