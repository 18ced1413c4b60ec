//! The Deployment page over a window of the past, in a real browser: the
//! mesh of [`conduit_ui_browser::mesh`] with its steady load paused, so
//! voting gets a known number of requests in period A, none in period B,
//! and the steady load again from then on (period C).
//!
//! - The URL `?since=A&until=A_END` shows A's exact request count and the
//!   rate that count makes over the window; B's says it had no traffic,
//!   instead of figures of zero; one beyond the store's retention shows
//!   the API's error.
//! - A past window is a still picture: while period C's traffic comes in,
//!   the page holds no open `EventSource` and asks for nothing more (the
//!   authorization table's answer time stays), and its figures stay.
//! - Reload, back and forward show the window the URL names; the picker
//!   makes the same URL from its inputs, refuses a reversed window with
//!   the API's words, and "Back to live" opens the stream again.
//!
//! Screenshot: `target/ui-screenshots/deployment-window-picker.png`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conduit_api::time_range::Rfc3339;
use conduit_ui_browser::mesh::{self, Mesh};
use conduit_ui_browser::thirtyfour::prelude::*;
use conduit_ui_browser::{Browser, wait_for};

const WAIT: Duration = Duration::from_secs(30);
/// Longer than a proxy's report interval plus a report's trip to the
/// store: no report of one period is dated in the next.
const GAP: Duration = Duration::from_secs(3);
/// Period A's traffic: `A_RPS` requests a second for `A_SECS` seconds.
const A_RPS: u32 = 20;
const A_SECS: u64 = 3;
const FIXED: &str = "[data-testid=fixed-window]";
const SHOT: &str = "deployment-window-picker";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Now, down to the whole second: what a `datetime-local` input can
/// name.
fn whole_second() -> i64 {
    now_ms() / 1000 * 1000
}

fn rfc(ms: i64) -> String {
    Rfc3339(ms).to_string()
}

/// The text of tile `label`, once the page shows it.
async fn tile(b: &Browser, label: &str) -> Result<Option<String>, String> {
    let css = format!("[data-tile={label}]");
    Ok(b.texts(&css)
        .await?
        .into_iter()
        .next()
        .filter(|t| !t.is_empty()))
}

/// Waits for the requests tile to read `want`; returns the rps tile.
async fn wait_for_requests(b: &Browser, want: u64) -> String {
    wait_for(WAIT, &format!("{want} requests on the page"), || async {
        let requests = tile(b, "requests").await?;
        if requests.as_deref() != Some(want.to_string().as_str()) {
            return Err(format!("the requests tile reads {requests:?}"));
        }
        tile(b, "rps").await
    })
    .await
    .unwrap()
}

/// The fixed-window notice's start and end (RFC 3339), once it shows.
/// The error line under the picker, once it says something.
async fn window_error(b: &Browser, what: &str) -> String {
    wait_for(WAIT, what, || async {
        Ok(b.texts("[data-testid=window-error]")
            .await?
            .into_iter()
            .next())
    })
    .await
    .unwrap()
}

async fn notice(b: &Browser) -> (String, String) {
    wait_for(WAIT, "the fixed-window notice", || async {
        let start = b.attrs(FIXED, "data-start").await?;
        let end = b.attrs(FIXED, "data-end").await?;
        Ok(start.into_iter().next().zip(end.into_iter().next()))
    })
    .await
    .unwrap()
}

/// Sets the picker's inputs to `since` and `until` (Unix ms, shown in
/// the browser's time zone, as a person picks them) and applies them.
async fn pick(b: &Browser, since: i64, until: i64) {
    let script = format!(
        "const local = ms => {{
           const d = new Date(ms), p = n => String(n).padStart(2, '0');
           return `${{d.getFullYear()}}-${{p(d.getMonth() + 1)}}-${{p(d.getDate())}}T${{p(d.getHours())}}:${{p(d.getMinutes())}}:${{p(d.getSeconds())}}`;
         }};
         document.querySelector('input[name=since]').value = local({since});
         document.querySelector('input[name=until]').value = local({until});
         return true;"
    );
    b.eval(&script).await.unwrap();
    b.driver
        .find(By::Css("[data-testid=apply-window]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_window_is_a_still_picture_of_its_own_traffic() {
    let bundle = mesh::bundle().unwrap_or_else(|e| panic!("{e}"));
    let mut mesh = tokio::task::spawn_blocking(move || {
        let mut mesh = Mesh::start(&bundle)?;
        mesh.pause_load();
        std::thread::sleep(GAP);
        Ok::<_, String>(mesh)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));

    // Period A: a known number of requests; then B: none.
    let a_start = whole_second();
    let (sent_a, mesh_back) =
        tokio::task::spawn_blocking(move || (mesh.send_to_voting(A_RPS, A_SECS), mesh))
            .await
            .unwrap();
    mesh = mesh_back;
    let sent_a = sent_a.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sent_a, u64::from(A_RPS) * A_SECS);
    tokio::time::sleep(GAP).await;
    let a_end = whole_second();
    tokio::time::sleep(GAP).await;
    let b_end = whole_second();
    mesh.resume_load();
    let (since_a, until_a) = (rfc(a_start), rfc(a_end));
    // The API's answer for A, which the page must show, once the store
    // holds every report of A (reports are dated by the proxies, so a
    // late one still falls in A).
    let api_a = wait_for(WAIT, "all of period A in the store", || async {
        let m = mesh
            .stat_between("voting", &since_a, &until_a)
            .and_then(|s| s.rows.into_iter().next())
            .and_then(|r| r.metrics);
        match m {
            Some(m) if m.total() == sent_a => Ok(Some(m)),
            other => Err(format!("voting's figures over A: {other:?}")),
        }
    })
    .await
    .unwrap();

    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    b.watch_event_sources().await.unwrap();
    let page = format!("{}/deployments/demo/voting", mesh.base_url());
    let url_a = format!("{page}?since={since_a}&until={until_a}");
    b.driver.goto(&url_a).await.unwrap();

    // A's exact count, and the rate it makes over the window.
    let rps = wait_for_requests(&b, sent_a).await;
    let window_secs = (a_end - a_start) as f64 / 1000.0;
    let want_rps = sent_a as f64 / window_secs;
    let shown: f64 = rps.parse().unwrap_or_else(|_| panic!("rps tile {rps:?}"));
    assert!(
        (api_a.rps - want_rps).abs() <= want_rps * 0.01,
        "the API's rate {}, {sent_a} requests over {window_secs}s make {want_rps:.2}",
        api_a.rps
    );
    assert!(
        (shown - api_a.rps).abs() <= 0.051,
        "rps tile {rps}, the API's rate {}",
        api_a.rps
    );
    assert_eq!(notice(&b).await, (since_a.clone(), until_a.clone()));
    // The charts cover the window too, a point a second.
    b.wait_for_points("chart-rps", 3, WAIT).await.unwrap();
    let text = b.texts(FIXED).await.unwrap().join(" ");
    assert!(text.contains("Back to live"), "{text}");

    // A still picture: no stream, no polls, while period C's traffic
    // comes in (longer than the polls' five seconds).
    let authz = "table[data-testid=authz-table]";
    let asked = wait_for(WAIT, "the authorization table", || async {
        Ok(b.attrs(authz, "data-updated").await?.into_iter().next())
    })
    .await
    .unwrap();
    let tiles_before = b.texts(".tile-value").await.unwrap();
    let open = b.open_event_sources().await.unwrap();
    assert!(
        open.is_empty(),
        "a past window holds streams open: {open:?}"
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(b.texts(".tile-value").await.unwrap(), tiles_before);
    assert_eq!(
        b.attrs(authz, "data-updated").await.unwrap(),
        vec![asked.clone()],
        "the past window's authorization was asked for again"
    );
    let open = b.open_event_sources().await.unwrap();
    assert!(
        open.is_empty(),
        "a past window holds streams open: {open:?}"
    );
    let live_now = mesh
        .stat_between("voting", "10s", "0s")
        .and_then(|s| s.rows.into_iter().next())
        .and_then(|r| r.metrics)
        .map_or(0, |m| m.total());
    assert!(live_now > 0, "period C's traffic reaches voting");

    // A reload shows the same window.
    b.driver.refresh().await.unwrap();
    wait_for_requests(&b, sent_a).await;
    assert_eq!(notice(&b).await, (since_a.clone(), until_a.clone()));

    // Period B: no traffic, said as such; no tiles of zeros.
    let url_b = format!("{page}?since={until_a}&until={}", rfc(b_end));
    b.driver.goto(&url_b).await.unwrap();
    let said = wait_for(WAIT, "B's no-traffic message", || async {
        Ok(b.texts("[data-testid=no-traffic]")
            .await?
            .into_iter()
            .next())
    })
    .await
    .unwrap();
    assert!(
        said.starts_with("No requests reached voting from "),
        "{said}"
    );
    assert!(
        b.texts(".tile").await.unwrap().is_empty(),
        "tiles in a window without traffic"
    );

    // Back and forward: A, then B again.
    b.driver.back().await.unwrap();
    wait_for_requests(&b, sent_a).await;
    assert_eq!(notice(&b).await, (since_a.clone(), until_a.clone()));
    b.driver.forward().await.unwrap();
    wait_for(WAIT, "B again", || async {
        Ok(b.texts("[data-testid=no-traffic]")
            .await?
            .into_iter()
            .next())
    })
    .await
    .unwrap();

    // Beyond the store's retention (a week): the API's words.
    b.driver
        .goto(format!(
            "{page}?since=2000-01-01T00:00:00Z&until=2000-01-01T01:00:00Z"
        ))
        .await
        .unwrap();
    let error = window_error(&b, "the API's retention error").await;
    assert!(error.contains("retention"), "{error}");
    assert!(
        b.texts(".tile").await.unwrap().is_empty(),
        "tiles beside an error"
    );

    // The picker: a reversed window is refused with the API's rule...
    b.driver.goto(&page).await.unwrap();
    wait_for(WAIT, "the live page", || async {
        Ok(tile(&b, "requests").await?.filter(|t| t != "—"))
    })
    .await
    .unwrap();
    pick(&b, a_end, a_start).await;
    let refused = window_error(&b, "the picker's refusal").await;
    assert!(refused.contains("must be earlier than"), "{refused}");
    // ...and window A becomes the URL a link to A is.
    pick(&b, a_start, a_end).await;
    wait_for_requests(&b, sent_a).await;
    assert_eq!(notice(&b).await, (since_a.clone(), until_a.clone()));
    let url = b.driver.current_url().await.unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        [
            ("since".to_string(), since_a.clone()),
            ("until".to_string(), until_a.clone())
        ],
        "{url}"
    );
    let open = b.open_event_sources().await.unwrap();
    assert!(open.is_empty(), "streams left open after picking: {open:?}");
    let path = b.screenshot(SHOT).await.unwrap();
    eprintln!("screenshot: {}", path.display());

    // Back to live: the stream opens again and the figures move on.
    b.driver
        .find(By::Css("[data-testid=back-to-live]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let streams = wait_for(WAIT, "the live stat stream", || async {
        let open = b.open_event_sources().await?;
        Ok(open
            .iter()
            .any(|u| u.contains("/api/v1/stat/stream"))
            .then_some(open))
    })
    .await
    .unwrap();
    assert!(b.texts(FIXED).await.unwrap().is_empty(), "{streams:?}");
    wait_for(WAIT, "live figures other than A's", || async {
        Ok(tile(&b, "requests")
            .await?
            .filter(|t| t != "—" && *t != sent_a.to_string()))
    })
    .await
    .unwrap();
    b.quit().await;
    drop(mesh);
}
