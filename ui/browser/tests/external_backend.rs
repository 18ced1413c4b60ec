//! The dashboard rendered from an external engine: the store forwards
//! every series to a real Prometheus (remote write) and the controller
//! reads its figures from it (`--metrics-backend prometheus:URL`). The
//! Deployment page of voting draws its charts from Prometheus' answers
//! and shows voting's success rate (every `VOTING_FAIL_EVERY`-th request
//! fails) as the store itself would; with Prometheus gone, the page says
//! so and names it.
//!
//! Screenshot: `target/ui-screenshots/deployment-external-backend.png`.

use std::time::Duration;

use conduit_testbed::engine::{Engine, Kind};
use conduit_ui_browser::mesh::{self, Mesh, VOTING_FAIL_EVERY};
use conduit_ui_browser::{Browser, wait_for};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_page_renders_from_prometheus() {
    let bundle = mesh::bundle().unwrap_or_else(|e| panic!("{e}"));
    let (engine, mesh) = tokio::task::spawn_blocking(move || {
        let engine = Engine::start(Kind::Prometheus);
        let mesh = Mesh::start_reading(&bundle, Some(&engine));
        (engine, mesh)
    })
    .await
    .unwrap();
    let mesh = mesh.unwrap_or_else(|e| panic!("{e}"));
    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(format!(
            "{}/deployments/demo/voting?range=5m",
            mesh.base_url()
        ))
        .await
        .unwrap();
    for chart in ["chart-success", "chart-rps", "chart-latency"] {
        b.wait_for_points(chart, 3, WAIT).await.unwrap();
    }
    let expected = 1.0 - 1.0 / VOTING_FAIL_EVERY as f64;
    let shown = wait_for(
        WAIT,
        "voting's success rate near its upstream's",
        || async {
            let tile = b.texts("[data-tile=success]").await?;
            let rate = tile
                .first()
                .and_then(|t| t.trim_end_matches('%').parse::<f64>().ok())
                .map(|p| p / 100.0);
            Ok(rate.filter(|r| (r - expected).abs() <= 0.03))
        },
    )
    .await
    .unwrap();
    eprintln!("success rate shown: {shown}");
    let path = b.screenshot("deployment-external-backend").await.unwrap();
    eprintln!("screenshot: {}", path.display());

    // The figures came from Prometheus: without it, the page says so,
    // naming it, where the store alone would still answer.
    let url = engine.url();
    drop(engine);
    b.driver
        .goto(format!(
            "{}/deployments/demo/voting?since=2m&until=1m",
            mesh.base_url()
        ))
        .await
        .unwrap();
    let error = wait_for(WAIT, "the page's error naming the backend", || async {
        let texts = b.texts("[data-testid=window-error]").await?;
        Ok(texts.into_iter().find(|t| t.contains(&url)))
    })
    .await
    .unwrap();
    assert!(error.contains("prometheus:"), "{error}");
    b.quit().await;
    drop(mesh);
}
