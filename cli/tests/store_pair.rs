//! A pair of telemetry stores behind one controller (`--store-addr A,B`),
//! both fed by every proxy: one store killed with SIGKILL under steady
//! traffic costs `conduit stat` no answer, and `conduit check` names the
//! store that is down. (The restarted store catching up is proven in the
//! store's own tests, `telemetry-store/tests/store_pair.rs`.)

use std::time::{Duration, Instant};

use conduit_api::json::Stat;
use conduit_testbed::web_voting::{VOTING, WebVoting, WebVotingSpec};
use conduit_testbed::{Controller, Store, TempDir, UpstreamSpec, drive_load};

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
