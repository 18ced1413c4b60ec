//! A failure the proxy produces itself, shown in the dashboard's tap
//! table with its reason: web's proxy sends requests for
//! [`mesh::GONE`] to a closed port, answers 502 itself, and the live tap
//! of web lists each as `502 unreachable` (the `error_reason` label's
//! value), with the proxy's own words on hover.
//!
//! Screenshot: `target/ui-screenshots/tap-error-reason.png`.

use std::time::Duration;

use conduit_ui_browser::mesh::{self, GONE, Mesh};
use conduit_ui_browser::{Browser, wait_for};

const WAIT: Duration = Duration::from_secs(30);
const ROWS: &str = "table[data-testid=tap-live] tr[data-testid=tap-row]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_table_shows_why_the_proxy_failed_a_request() {
    let bundle = mesh::bundle().unwrap_or_else(|e| panic!("{e}"));
    let mesh = tokio::task::spawn_blocking(move || Mesh::start(&bundle))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    // Through `/auth`, as `conduit dashboard` opens it: tap needs the
    // session.
    b.driver.goto(mesh.session_url()).await.unwrap();
    b.driver
        .goto(format!("{}/tap/demo/web?authority={GONE}", mesh.base_url()))
        .await
        .unwrap();
    // The stream opens with the page; requests sent before it would not
    // show, so they keep coming until one does.
    let mesh = std::sync::Arc::new(mesh);
    let statuses = wait_for(WAIT, "a tapped request to the closed port", || {
        let mesh = mesh.clone();
        let b = &b;
        async move {
            let status = tokio::task::spawn_blocking(move || mesh.call_gone())
                .await
                .map_err(|e| e.to_string())??;
            if status != 502 {
                return Err(format!("web's proxy answered {status}, not 502"));
            }
            let cells = b.texts(&format!("{ROWS} td.status")).await?;
            Ok((!cells.is_empty()).then_some(cells))
        }
    })
    .await
    .unwrap();
    assert!(
        statuses.iter().all(|s| s == "502 unreachable"),
        "{statuses:?}"
    );
    let reasons = b
        .texts(&format!("{ROWS} [data-testid=error-reason]"))
        .await
        .unwrap();
    assert_eq!(reasons.len(), statuses.len(), "{reasons:?}");
    assert!(reasons.iter().all(|r| r == "unreachable"), "{reasons:?}");
    // The proxy's words (which name the endpoint) on hover.
    let words = b
        .attrs(&format!("{ROWS} [data-testid=error-reason]"), "title")
        .await
        .unwrap();
    assert!(
        words.iter().all(|w| !w.is_empty() && w != "unreachable"),
        "{words:?}"
    );
    let paths = b.texts(&format!("{ROWS} td.path")).await.unwrap();
    assert!(paths.iter().all(|p| p == "/gone"), "{paths:?}");
    let path = b.screenshot("tap-error-reason").await.unwrap();
    eprintln!("screenshot: {}", path.display());
    b.quit().await;
}
