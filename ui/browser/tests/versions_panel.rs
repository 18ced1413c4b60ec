//! The Deployment page's versions panel in a real browser: absent while
//! voting runs one version; once voting's `v2` rolls out beside `v1`
//! ([`Mesh::roll_out_voting`]: every 2nd request fails against every 10th),
//! a table with one row per version whose success rates are those
//! `GET /api/v1/stat?by=version` gives, `v2`'s clearly worse.

use std::time::Duration;

use conduit_ui_browser::mesh::{self, FIRST_VERSION, Mesh, ROLLOUT_VERSION};
use conduit_ui_browser::{Browser, wait_for};

const WAIT: Duration = Duration::from_secs(60);
const TABLE: &str = "table[data-testid=versions-table]";

/// "87.5%" as 0.875.
fn percent(text: &str) -> Option<f64> {
    text.trim()
        .strip_suffix('%')?
        .parse::<f64>()
        .ok()
        .map(|v| v / 100.0)
}

/// Each version's success rate as the panel shows it.
async fn shown(b: &Browser) -> Result<Vec<(String, f64)>, String> {
    let versions = b
        .attrs(&format!("{TABLE} tr[data-version]"), "data-version")
        .await?;
    let mut out = Vec::new();
    for v in versions {
        let cell = format!("{TABLE} tr[data-version=\"{v}\"] td[data-field=success]");
        if let Some(rate) = b.texts(&cell).await?.first().and_then(|t| percent(t)) {
            out.push((v, rate));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_versions_panel_compares_a_rollouts_versions() {
    let bundle = mesh::bundle().unwrap_or_else(|e| panic!("{e}"));
    let mut mesh = tokio::task::spawn_blocking(move || Mesh::start(&bundle))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(format!("{}/deployments/demo/voting", mesh.base_url()))
        .await
        .unwrap();
    // The page is live (its tiles show figures), and one version draws no panel.
    wait_for(WAIT, "voting's figures", || async {
        let tiles = b.texts(".tile").await?;
        Ok(tiles.iter().any(|t| t.contains('%')).then_some(()))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        b.texts(TABLE).await.unwrap().is_empty(),
        "a versions table with one version"
    );

    let mesh = tokio::task::spawn_blocking(move || mesh.roll_out_voting().map(|()| mesh))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let rate =
        |rows: &[(String, f64)], v: &str| rows.iter().find(|(name, _)| name == v).map(|(_, r)| *r);
    // v2's first requests may all have succeeded: its rate settles as its
    // share of the traffic grows.
    let rows = wait_for(
        WAIT,
        "both versions in the panel, v2 failing more",
        || async {
            let rows = shown(&b).await?;
            let worse = match (rate(&rows, FIRST_VERSION), rate(&rows, ROLLOUT_VERSION)) {
                (Some(v1), Some(v2)) => v2 < v1 - 0.2,
                _ => false,
            };
            Ok((rows.len() == 2 && worse).then_some(rows))
        },
    )
    .await
    .unwrap();

    // The panel's figures are the API's (moving with the window: a few
    // points of slack).
    let (api, mesh) = tokio::task::spawn_blocking(move || (mesh.stat_by_version("voting"), mesh))
        .await
        .unwrap();
    let api = api.expect("stat by version");
    for (version, shown_rate) in &rows {
        let m = api
            .rows
            .iter()
            .find(|r| r.version.as_deref() == Some(version.as_str()))
            .and_then(|r| r.metrics.as_ref())
            .unwrap_or_else(|| panic!("no {version} in {api:?}"));
        assert!(
            (m.success_rate - shown_rate).abs() <= 0.05,
            "{version}: shown {shown_rate}, API {}",
            m.success_rate
        );
    }
    let path = b.screenshot("deployment-versions").await.unwrap();
    eprintln!("screenshot: {}", path.display());
    b.quit().await;
    drop(mesh);
}
