//! The Deployment page's drawings, measured in a real browser: headless
//! Chromium on the bundle `cargo xtask ui` built, served by the real
//! controller over the mesh of [`conduit_ui_browser::mesh`] (web calls
//! voting and emoji through mTLS).
//!
//! - Time labels: the last label of a chart was cut off at its right edge
//!   (`03:1` for `03:15`), and the first hung over its left edge. Ticks
//!   move with the clock, so the test watches the charts until a tick has
//!   reached the plot's right edge and checks, at every update on the way,
//!   that each time label (its `getBBox()`) lies within the plot's
//!   horizontal extent and the SVG's viewBox.
//!
//! Screenshots go to `target/ui-screenshots/`.

use std::cell::Cell;
use std::time::Duration;

use conduit_ui_browser::mesh::{self, Mesh};
use conduit_ui_browser::{Browser, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
/// A minute-long tick step sweeps a tick across the whole five-minute
/// chart in a minute; the watch lasts that and the page's slack.
const SWEEP: Duration = Duration::from_secs(90);
/// How close to the plot's right edge a tick must have come for the
/// watch to have seen the case the issue showed.
const AT_THE_EDGE: f64 = 4.0;
const CHARTS: [&str; 3] = ["chart-success", "chart-rps", "chart-latency"];

async fn start() -> (Mesh, Browser) {
    let bundle = mesh::bundle().unwrap_or_else(|e| panic!("{e}"));
    let mesh = tokio::task::spawn_blocking(move || Mesh::start(&bundle))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    (mesh, b)
}

/// Opens Deployment `demo/NAME`'s page over five minutes.
async fn open(b: &Browser, mesh: &Mesh, name: &str) {
    b.driver
        .goto(format!(
            "{}/deployments/demo/{name}?range=5m",
            mesh.base_url()
        ))
        .await
        .unwrap();
}

/// Waits until every chart draws live points.
async fn wait_for_points(b: &Browser) {
    for chart in CHARTS {
        wait_for(WAIT, &format!("points in {chart}"), || async {
            let points = b
                .attrs(&format!("svg[data-testid={chart}]"), "data-points")
                .await?;
            Ok(points
                .first()
                .and_then(|p| p.parse::<usize>().ok())
                .filter(|n| *n >= 3))
        })
        .await
        .unwrap();
    }
}

/// Per chart: the viewBox width, the plot's horizontal extent (its
/// horizontal gridlines), the ticks (its vertical gridlines) and the
/// extent of every label below the plot (the time labels).
const MEASURE_TIME_LABELS: &str = r#"
const num = a => a.baseVal.value;
return [...document.querySelectorAll('svg[data-testid^="chart-"]')].map(svg => {
  const grid = [...svg.querySelectorAll('line.grid')];
  const across = grid.filter(l => num(l.y1) === num(l.y2));
  const ticks = grid.filter(l => num(l.x1) === num(l.x2)).map(l => num(l.x1));
  const bottom = Math.max(...across.map(l => num(l.y1)));
  const labels = [...svg.querySelectorAll('text')]
    .filter(t => t.getBBox().y >= bottom)
    .filter(t => !t.classList.contains('no-data'))
    .map(t => { const b = t.getBBox(); return [t.textContent, b.x, b.x + b.width]; });
  return {
    chart: svg.dataset.testid,
    width: svg.viewBox.baseVal.width,
    left: Math.min(...across.map(l => num(l.x1))),
    right: Math.max(...across.map(l => num(l.x2))),
    ticks,
    labels,
  };
});
"#;

/// Checks one measurement; returns whether a tick sat at a chart's
/// right edge.
fn check_time_labels(charts: &Value) -> bool {
    let charts = charts.as_array().expect("a list of charts");
    assert_eq!(charts.len(), CHARTS.len(), "{charts:?}");
    let mut at_edge = false;
    for c in charts {
        let f = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("{k} of {c}"));
        let (width, left, right) = (f("width"), f("left"), f("right"));
        let ticks: Vec<f64> = c["ticks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let labels = c["labels"].as_array().unwrap();
        assert!(ticks.len() >= 4, "too few time ticks: {c}");
        assert_eq!(labels.len(), ticks.len(), "a tick without a label: {c}");
        for l in labels {
            let (text, from, to) = (&l[0], l[1].as_f64().unwrap(), l[2].as_f64().unwrap());
            // Half a unit of slack for anti-aliasing of glyph bounds.
            assert!(
                from >= left - 0.5 && to <= right + 0.5,
                "{}: label {text} spans {from:.1}..{to:.1}, outside the plot {left}..{right}",
                c["chart"]
            );
            assert!(
                from >= 0.0 && to <= width,
                "{}: label {text} spans {from:.1}..{to:.1}, outside the SVG 0..{width}",
                c["chart"]
            );
        }
        at_edge |= ticks.iter().any(|t| right - t <= AT_THE_EDGE);
    }
    at_edge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_labels_stay_inside_every_chart() {
    let (mesh, b) = start().await;
    open(&b, &mesh, "voting").await;
    wait_for_points(&b).await;
    let samples = Cell::new(0);
    wait_for(SWEEP, "a time tick at a chart's right edge", || async {
        let charts = b.eval(MEASURE_TIME_LABELS).await?;
        samples.set(samples.get() + 1);
        Ok(check_time_labels(&charts).then_some(()))
    })
    .await
    .unwrap();
    b.screenshot("deployment-time-labels").await.unwrap();
    eprintln!(
        "time labels inside every chart in {} samples",
        samples.get()
    );
    b.quit().await;
}
