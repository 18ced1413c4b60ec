//! A pair of telemetry stores behind one controller (`--store-addr A,B`),
//! both fed by every proxy: one store killed with SIGKILL under steady
//! traffic costs `conduit stat` no answer, and `conduit check` names the
//! store that is down. (The restarted store catching up is proven in the
//! store's own tests, `telemetry-store/tests/store_pair.rs`.)
//!
//! Both stores of a pair forwarding with remote write to one real engine
//! (Prometheus, VictoriaMetrics): the engine counts every request once,
//! before and after one store is killed and restarted.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conduit_api::json::Stat;
use conduit_api::time_range::Rfc3339;
use conduit_testbed::agreement::{SHORT_WINDOW, agree, row};
use conduit_testbed::engine::{Engine, Kind, query_value};
use conduit_testbed::web_voting::{VOTING, WebVoting, WebVotingSpec};
use conduit_testbed::{Controller, Store, TempDir, UpstreamSpec, drive_load, http_get, metric_sum};

/// `conduit stat deploy -n demo`: voting's requests and success rate.
fn voting(c: &Controller) -> Result<(u64, f64), String> {
    let out = c.conduit(&["stat", "deploy", "-n", "demo", "-t", "1m", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stat: Stat = serde_json::from_slice(&out.stdout).unwrap();
    let row = stat
        .rows
        .iter()
        .find(|r| r.name == "voting")
        .ok_or_else(|| format!("no voting row: {stat:?}"))?;
    let m = row.metrics.as_ref().ok_or("voting has no traffic")?;
    Ok((m.success_count + m.failure_count, m.success_rate))
}

#[test]
fn killing_one_store_of_a_pair_costs_stat_no_answer() {
    let dir = TempDir::new("store-pair");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let (mut a, b) = (Store::start(), Store::start());
    let stores = format!("{},{}", a.grpc_url(), b.grpc_url());
    let controller = Controller::start_with_store_url(&stores, &discovery);
    let mesh = WebVoting::start(WebVotingSpec {
        telemetry: stores.clone(),
        destination: controller.destination_url(),
        discovery: &discovery,
        voting: UpstreamSpec {
            delay: Duration::from_millis(1),
            fail_every: 10,
        },
    });
    mesh.warm_up();

    let outbound = mesh.web.outbound;
    let load = std::thread::spawn(move || {
        drive_load(outbound, VOTING, &["/"], 50, Duration::from_secs(12))
    });
    // Both stores have some traffic before one goes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        match voting(&controller) {
            Ok((requests, rate)) if requests >= 100 => break rate,
            _ => assert!(Instant::now() < deadline, "no traffic in stat"),
        }
        std::thread::sleep(Duration::from_millis(300));
    };

    a.process.kill();
    // Every answer while A is down comes from B, with the same picture.
    for _ in 0..8 {
        let (requests, rate) = voting(&controller).expect("stat answers with a store down");
        assert!(requests >= 100, "{requests}");
        assert!((rate - before).abs() < 0.1, "{rate} vs {before}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = controller.conduit(&["check"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "check fails with a store down: {text}"
    );
    for want in [
        format!("× the telemetry store at {} answers", a.grpc_url()),
        "its twin answers meanwhile".to_string(),
        format!("√ the telemetry store at {} answers", b.grpc_url()),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }
    let (statuses, _) = load.join().unwrap();
    assert!(statuses.values().sum::<u64>() > 400, "{statuses:?}");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A store's own counter (or gauge) from its `/metrics`.
fn store_metric(store: &Store, name: &str) -> f64 {
    let (status, _, text) = http_get(store.http, "/metrics").expect("the store's /metrics");
    assert_eq!(status, 200, "{text}");
    metric_sum(&text, name, &[])
}

const FAILED: &str = "conduit_store_remote_write_failed_samples_total";
const SENT: &str = "conduit_store_remote_write_sent_samples_total";
const PENDING: &str = "conduit_store_remote_write_pending_bytes";

/// `stat` over `[since_ms, until_ms]` from the controller reading the
/// stores and from the one reading the engine, once the engine holds
/// samples past the window: the same figures, as close as over any window
/// of a few seconds (a doubled count would be 100 % off).
fn stat_agrees(
    what: &str,
    engine: &Engine,
    embedded: &Controller,
    external: &Controller,
    (since_ms, until_ms): (i64, i64),
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.newest_sample() * 1000.0 < (until_ms + 2_000) as f64 {
        assert!(
            Instant::now() < deadline,
            "{what}: the engine never received samples past the window"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (since, until) = (Rfc3339(since_ms).to_string(), Rfc3339(until_ms).to_string());
    let args = [
        "stat", "deploy", "-n", "demo", "--since", &since, "--until", &until, "-o", "json",
    ];
    let (ours, theirs): (Stat, Stat) = (embedded.json(&args), external.json(&args));
    let (o, t) = (row(&ours, "voting"), row(&theirs, "voting"));
    eprintln!("{what}: embedded {o:?}\n  external {t:?}");
    assert!(
        o.total() > 300,
        "{what}: too little traffic to compare: {o:?}"
    );
    assert!(
        o.failure_count > 0,
        "{what}: every 10th request fails: {o:?}"
    );
    agree(what, o, t, SHORT_WINDOW);
}

/// Sends 100 requests a second to voting for `secs` seconds.
fn traffic(mesh: &WebVoting, secs: u64) {
    let (codes, _) = drive_load(
        mesh.web.outbound,
        VOTING,
        &["/api/vote/1"],
        100,
        Duration::from_secs(secs),
    );
    assert!(
        codes.keys().all(|s| *s == 200 || *s == 500),
        "not all routed: {codes:?}"
    );
}

/// What an engine does with a sample older than the newest it holds of
/// that series: the restarted store's catch-up, which its twin forwarded
/// first.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Late {
    /// Prometheus by default: the whole request is refused (400, "out of
    /// order sample") and the store counts its samples as failed.
    RefusedAsOutOfOrder,
    /// VictoriaMetrics, and Prometheus with an out-of-order window: taken
    /// (an exact duplicate changes nothing).
    Accepted,
}

/// Prometheus taking samples up to 10 minutes older than a series' newest.
const OUT_OF_ORDER_WINDOW: &str = "storage:
  tsdb:
    out_of_order_time_window: 10m
";

/// Why the engine refused a store's batches, from the store's log.
fn refusals(store: &Store) -> Vec<String> {
    store
        .process
        .log()
        .lines()
        .filter_map(|l| l.split_once("refused a batch for good: "))
        .map(|(_, why)| why.to_string())
        .collect()
}

/// Both stores forward every sample; the engine must count each request
/// once, and never see two values for one sample.
fn a_pair_forwarding_to_one_engine_counts_once(engine: Engine, late: Late) {
    let dir = TempDir::new("store-pair-forward");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let write = [
        "--remote-write-url".to_string(),
        format!("{}/api/v1/write", engine.url()),
    ];
    let (mut a, b) = (
        Store::start_with_args(&write),
        Store::start_with_args(&write),
    );
    let stores = format!("{},{}", a.grpc_url(), b.grpc_url());
    let embedded = Controller::start_with_store_url(&stores, &discovery);
    let backend = format!("prometheus:{}", engine.url());
    let external =
        Controller::start_with_args(&stores, &discovery, &["--metrics-backend", &backend]);
    let mesh = WebVoting::start(WebVotingSpec {
        telemetry: stores.clone(),
        destination: embedded.destination_url(),
        discovery: &discovery,
        // 12 ms: the quantiles fall inside the (10, 20] ms bucket.
        voting: UpstreamSpec {
            delay: Duration::from_millis(12),
            fail_every: 10,
        },
    });
    mesh.warm_up();

    // Both stores up: each sends every sample, the engine keeps one.
    let started = now_ms();
    traffic(&mesh, 7);
    stat_agrees(
        "both stores up",
        &engine,
        &embedded,
        &external,
        (started + 1_000, started + 6_000),
    );
    for (name, store) in [("A", &a), ("B", &b)] {
        assert!(
            store_metric(store, SENT) > 0.0,
            "store {name} forwarded nothing"
        );
    }

    // A crashes under traffic and comes back on its data directory: it
    // forwards what it had not yet sent, and what the proxies kept for it.
    let started = now_ms();
    let load = {
        let outbound = mesh.web.outbound;
        std::thread::spawn(move || {
            drive_load(
                outbound,
                VOTING,
                &["/api/vote/1"],
                100,
                Duration::from_secs(9),
            )
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    a.process.kill();
    std::thread::sleep(Duration::from_secs(3));
    a.restart();
    let (codes, _) = load.join().unwrap();
    assert!(codes.keys().all(|s| *s == 200 || *s == 500), "{codes:?}");
    // Caught up: A counts what B counts and has forwarded all it holds.
    let total = r#"sum(response_total{deployment="voting",direction="inbound"})"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ours, twin) = (query_value(a.http, total), query_value(b.http, total));
        if ours > 0.0 && ours == twin && store_metric(&a, PENDING) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never caught up: {ours} requests vs B's {twin}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    stat_agrees(
        "over A's outage",
        &engine,
        &embedded,
        &external,
        (started + 1_000, started + 8_000),
    );

    let failed = (store_metric(&a, FAILED), store_metric(&b, FAILED));
    eprintln!(
        "{late:?}: restarted A sent {} samples, {} refused; B sent {}, {} refused",
        store_metric(&a, SENT),
        failed.0,
        store_metric(&b, SENT),
        failed.1,
    );
    match late {
        Late::Accepted => assert_eq!(failed, (0.0, 0.0), "the engine refused samples"),
        // Refused only for coming second, never for another value
        // ("duplicate sample for timestamp"): the stores agree on every
        // sample.
        Late::RefusedAsOutOfOrder => {
            for why in refusals(&a).iter().chain(&refusals(&b)) {
                assert!(why.contains("out of order sample"), "{why}");
            }
        }
    }
}

#[test]
fn a_pair_forwarding_to_one_prometheus_counts_once() {
    a_pair_forwarding_to_one_engine_counts_once(
        Engine::start(Kind::Prometheus),
        Late::RefusedAsOutOfOrder,
    );
}

#[test]
fn a_pair_forwarding_to_prometheus_with_an_out_of_order_window_loses_no_sample() {
    a_pair_forwarding_to_one_engine_counts_once(
        Engine::start_with(Kind::Prometheus, OUT_OF_ORDER_WINDOW),
        Late::Accepted,
    );
}

#[test]
fn a_pair_forwarding_to_one_victoria_metrics_counts_once() {
    a_pair_forwarding_to_one_engine_counts_once(
        Engine::start(Kind::VictoriaMetrics),
        Late::Accepted,
    );
}
