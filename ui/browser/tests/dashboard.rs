//! The dashboard in a real browser: headless Chromium (Debian `chromium`
//! and `chromium-driver`) opens the bundle `cargo xtask ui` built, served
//! by the real controller, which reads the real telemetry store fed by
//! real proxies carrying known traffic: the mesh of
//! [`conduit_ui_browser::mesh`] (web calls voting, which fails every 10th
//! request, and emoji, which never fails).
//!
//! One test walks through the dashboard as a person would, because the
//! mesh takes seconds to start: the overview lists the Deployments with
//! the numbers `conduit stat -o json` prints (success rate within 2
//! points, RPS within 20 %: the page and the command read the same
//! one-minute window a moment apart while traffic ramps up), sorting works,
//! the Deployment page draws charts with points, lists its edges and shows
//! its authorization policy with the allowed and denied counts
//! `GET /api/v1/authz` answers (voting admits web's identity only; the
//! mesh's intruder calls voting's pod in plaintext and is denied), tap
//! shows live requests (filtered, paused and resumed), top lists the
//! paths, and when the controller is killed the page says so and recovers
//! once it is back. Screenshots of every step go to
//! `target/ui-screenshots/`.

use std::net::SocketAddr;
use std::time::Duration;

use conduit_api::json::Stat;
use conduit_ui_browser::mesh::{self, Mesh, VOTING_AUTHORIZATION, VOTING_PATHS, VOTING_SERVER};
use conduit_ui_browser::thirtyfour::prelude::*;
use conduit_ui_browser::{Browser, wait_for};

/// Waiting is generous (a loaded two-core machine, debug binaries);
/// assertions on what is shown are strict.
const WAIT: Duration = Duration::from_secs(30);

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

/// The authorization panel's row of `authorization` on voting's Server
/// (`""`: the row of denials).
fn authz_row(authorization: &str) -> String {
    format!(
        "tr[data-testid=authz-row][data-server=\"{VOTING_SERVER}\"][data-authorization=\"{authorization}\"]"
    )
}

/// Voting's counts as the panel shows them: (allowed by web's
/// authorization, denied), once both are above zero.
async fn authz_figures(b: &Browser) -> Result<Option<(f64, f64)>, String> {
    let allowed = b
        .texts(&format!("{} td.allowed", authz_row(VOTING_AUTHORIZATION)))
        .await?;
    let denied = b.texts(&format!("{} td.denied", authz_row(""))).await?;
    Ok(
        match (
            allowed.first().and_then(|s| number(s)),
            denied.first().and_then(|s| number(s)),
        ) {
            (Some(a), Some(d)) if a > 0.0 && d > 0.0 => Some((a, d)),
            _ => None,
        },
    )
}

/// Whether `api`, a count the API gave between two panel readings, lies
/// between them: counts over a window move, and `increase` extrapolates,
/// so with 10 % and one request of slack.
fn between(api: f64, before: f64, after: f64) -> bool {
    let (lo, hi) = (before.min(after), before.max(after));
    api >= lo * 0.9 - 1.0 && api <= hi * 1.1 + 1.0
}

/// How the page's wasm arrived (Resource Timing, bytes).
#[derive(Debug)]
struct Transfer {
    /// On the wire: 0 when it came from the cache.
    transfer: u64,
    /// The body as sent (compressed).
    encoded: u64,
    /// The body after decoding.
    decoded: u64,
}

async fn wasm_timing(b: &Browser) -> Transfer {
    let v = b
        .eval(
            "const r = performance.getEntriesByType('resource').find(e => e.name.endsWith('.wasm'));
             return r ? [r.transferSize, r.encodedBodySize, r.decodedBodySize] : null;",
        )
        .await
        .unwrap();
    let n = |i: usize| {
        v[i].as_u64()
            .unwrap_or_else(|| panic!("no wasm resource timing: {v}"))
    };
    Transfer {
        transfer: n(0),
        encoded: n(1),
        decoded: n(2),
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Saves a screenshot; the log line says when, to see where time goes.
async fn shot(b: &Browser, name: &str) {
    let path = b.screenshot(name).await.expect("screenshot");
    eprintln!("{} screenshot: {}", unix_ms(), path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_live_mesh_and_survives_a_controller_restart() {
    eprintln!("{} starting the mesh", unix_ms());
    let bundle = mesh::bundle().unwrap_or_else(|e| panic!("{e}"));
    let mut mesh = tokio::task::spawn_blocking(move || Mesh::start(&bundle))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let grpc = mesh.controller.grpc;

    eprintln!("{} mesh ready", unix_ms());
    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    let base = mesh.base_url();

    // Overview: every Deployment, with the numbers `conduit stat` prints.
    // Opened as `conduit dashboard` opens it: through `/auth`, which sets
    // the session tap and top need and goes on to `/`.
    b.driver.goto(mesh.session_url()).await.unwrap();
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
    // The page updates every second while traffic ramps up, so its
    // figures are read from an update computed before the command ran and
    // from one computed after it; the command's must lie between them.
    for name in ["voting", "emoji"] {
        let before = wait_for(WAIT, &format!("{name}'s figures"), || {
            overview_figures(&b, name)
        })
        .await
        .unwrap();
        let cli = cli_stat(grpc);
        let ran = unix_ms();
        wait_for(WAIT, "an update computed after `conduit stat`", || async {
            let t = b
                .attrs("[data-testid=overview-table]", "data-updated")
                .await?;
            Ok(t.first()
                .and_then(|t| t.parse::<i64>().ok())
                .filter(|t| *t > ran))
        })
        .await
        .unwrap();
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
    // The sparklines start from the controller's history (60 points over
    // 15 minutes), not only from what arrived since the page opened.
    wait_for(WAIT, "voting's sparkline history", || async {
        let points = b
            .attrs("tr[data-name=voting] svg.sparkline", "data-points")
            .await?;
        Ok(points
            .first()
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|n| *n >= 30))
    })
    .await
    .unwrap();
    // The wasm came compressed (the controller's precompressed variant).
    let wasm = wasm_timing(&b).await;
    assert!(
        wasm.encoded > 0 && wasm.encoded * 2 < wasm.decoded,
        "the wasm was not served compressed: {wasm:?}"
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
    // Success rate and latency exist only while there is traffic; the
    // request rate is known (zero before the load started) over the whole
    // five minutes of history.
    for (chart, at_least) in [
        ("chart-success", 3),
        ("chart-rps", 30),
        ("chart-latency", 3),
    ] {
        b.wait_for_points(chart, at_least, WAIT).await.unwrap();
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

    // Authorization: voting's Server admits web's identity only, so web's
    // calls are allowed and the intruder's plaintext ones denied. The
    // panel refreshes every few seconds, so its counts are read before
    // and after the API's, as the overview's are.
    let before = wait_for(WAIT, "voting's allowed and denied counts", || {
        authz_figures(&b)
    })
    .await
    .unwrap();
    let api = mesh.authz("voting").expect("GET /api/v1/authz");
    let ran = unix_ms();
    wait_for(WAIT, "a panel refresh asked after the API", || async {
        let t = b.attrs("[data-testid=authz-table]", "data-updated").await?;
        Ok(t.first()
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|t| *t > ran))
    })
    .await
    .unwrap();
    let after = authz_figures(&b).await.unwrap().expect("the counts stay");
    let api_row = |authorization: &str| {
        api.rows
            .iter()
            .find(|r| r.server == VOTING_SERVER && r.authorization == authorization)
            .unwrap_or_else(|| panic!("no row of {authorization:?} in {api:?}"))
    };
    let (allowed, denied) = (api_row(VOTING_AUTHORIZATION), api_row(""));
    assert!(
        allowed.allowed > 0.0 && denied.denied > 0.0,
        "the API counts nothing: {api:?}"
    );
    assert!(
        between(allowed.allowed, before.0, after.0),
        "page shows {} .. {} allowed, the API {}",
        before.0,
        after.0,
        allowed.allowed
    );
    assert!(
        between(denied.denied, before.1, after.1),
        "page shows {} .. {} denied, the API {}",
        before.1,
        after.1,
        denied.denied
    );
    // The API's rows in its order, worded as `conduit authz -o wide`:
    // server, port, route, authorization, whom it admits; the denials
    // marked; the default policy of the other ports.
    let servers = b
        .attrs("tr[data-testid=authz-row]", "data-server")
        .await
        .unwrap();
    let authorizations = b
        .attrs("tr[data-testid=authz-row]", "data-authorization")
        .await
        .unwrap();
    let shown: Vec<(&str, &str)> = servers
        .iter()
        .map(String::as_str)
        .zip(authorizations.iter().map(String::as_str))
        .collect();
    let listed: Vec<(&str, &str)> = api
        .rows
        .iter()
        .map(|r| (r.server.as_str(), r.authorization.as_str()))
        .collect();
    assert_eq!(shown, listed);
    let cells = b
        .texts(&format!("{} td", authz_row(VOTING_AUTHORIZATION)))
        .await
        .unwrap();
    let port = allowed.port.to_string();
    assert_eq!(
        cells[..5],
        [
            VOTING_SERVER,
            port.as_str(),
            allowed.route.as_str(),
            VOTING_AUTHORIZATION,
            allowed.admits.as_str()
        ],
        "{cells:?}"
    );
    assert!(allowed.admits.contains("demo/web"), "{allowed:?}");
    let denials = b
        .texts(&format!("{} td.authorization", authz_row("")))
        .await
        .unwrap();
    assert_eq!(denials, ["(none: denied)"]);
    let class = b.attrs(&authz_row(""), "class").await.unwrap();
    assert!(
        class[0].split(' ').any(|c| c == "denying"),
        "denials not marked: {class:?}"
    );
    let default = b.texts("[data-testid=authz-default]").await.unwrap();
    assert_eq!(
        default,
        [format!("Ports no Server selects: {}", api.default_policy)]
    );
    b.driver
        .find(By::Css("[data-testid=authz-table]"))
        .await
        .unwrap()
        .scroll_into_view()
        .await
        .unwrap();
    shot(&b, "02b-authorization").await;

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
    // A fresh page load takes the content-hashed wasm from the cache.
    let wasm = wasm_timing(&b).await;
    assert_eq!(wasm.transfer, 0, "the wasm was fetched again: {wasm:?}");

    // A Deployment nobody knows gets a clear answer, not endless loading.
    b.driver
        .goto(format!("{base}/deployments/demo/no-such-thing"))
        .await
        .unwrap();
    let said = wait_for(WAIT, "the unknown Deployment's message", || async {
        let mut t = b.texts("[data-testid=empty]").await?;
        t.extend(b.texts("[data-testid=stream-error]").await?);
        Ok(t.into_iter().find(|t| t.contains("no-such-thing")))
    })
    .await
    .unwrap();
    assert!(
        b.texts("[data-testid=loading]").await.unwrap().is_empty(),
        "still loading after saying {said:?}"
    );

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

    // Top: the paths that were sent (the intruder's too, answered by
    // the proxy itself), most requests first.
    b.driver
        .goto(format!("{base}/top/demo/voting"))
        .await
        .unwrap();
    wait_for(WAIT, "top paths", || async {
        let paths = b.attrs("tr[data-testid=top-row]", "data-path").await?;
        Ok(VOTING_PATHS
            .iter()
            .all(|p| paths.iter().any(|t| t == p))
            .then_some(()))
    })
    .await
    .unwrap();
    shot(&b, "04-top").await;

    // The controller goes away: a banner says so; it comes back: data flows.
    b.driver.goto(format!("{base}/")).await.unwrap();
    wait_for(WAIT, "the overview again", || {
        overview_figures(&b, "voting")
    })
    .await
    .unwrap();
    mesh.kill_controller();
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
    mesh.restart_controller()
        .unwrap_or_else(|e| panic!("controller did not come back: {e}"));
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
