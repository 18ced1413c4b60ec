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
//! - The caller/callee graph: voting's page shows web as its caller, web's
//!   page voting and emoji as its callees, exactly the edges
//!   `GET /api/v1/edges` lists, each with a request rate above zero, a
//!   success rate and its mTLS status; callers left of the Deployment,
//!   callees right of it, every text inside the drawing.
//! - The route table: voting has no service profile, yet its page lists
//!   the path templates web's proxy learned for it, each marked learned,
//!   exactly the learned routes `GET /api/v1/routes` lists, with figures.
//!
//! Screenshots go to `target/ui-screenshots/`.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::Duration;

use conduit_api::json::Edges;
use conduit_ui_browser::mesh::{self, Mesh};
use conduit_ui_browser::thirtyfour::prelude::*;
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
        b.wait_for_points(chart, 3, WAIT).await.unwrap();
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

/// The graph as drawn: per edge its role (`caller`/`callee`), peer,
/// `data-secured`, rate and success texts and security note; per node
/// its role, name, text and horizontal extent; and the drawing's width
/// with the extent of all its text.
const READ_GRAPH: &str = r#"
const svg = document.querySelector('svg[data-testid="deployment-graph"]');
if (!svg) return null;
const text = (e, css) => { const t = e.querySelector(css); return t ? t.textContent : ''; };
const texts = [...svg.querySelectorAll('text')].map(t => { const b = t.getBBox(); return [b.x, b.x + b.width]; });
return {
  width: svg.viewBox.baseVal.width,
  texts,
  edges: [...svg.querySelectorAll('g.graph-edge')].map(g => ({
    role: g.dataset.role, peer: g.dataset.peer, secured: g.dataset.secured,
    rps: text(g, '.rps'), success: text(g, '.success'), security: text(g, '.edge-security'),
  })),
  nodes: [...svg.querySelectorAll('g.graph-node')].map(g => {
    const b = g.querySelector('rect').getBBox();
    return { role: g.dataset.role, name: g.dataset.name, text: g.textContent, left: b.x, right: b.x + b.width };
  }),
};
"#;

/// `demo/NAME`'s callers and callees as `GET /api/v1/edges` lists them,
/// with whether each edge is secured.
fn neighbours(edges: &Edges, name: &str) -> BTreeSet<(String, String, bool)> {
    let me = format!("demo/{name}");
    edges
        .edges
        .iter()
        .filter_map(|e| {
            if e.dst.to_string() == me {
                Some(("caller".into(), e.src.to_string(), e.secured))
            } else if e.src.to_string() == me {
                Some(("callee".into(), e.dst.to_string(), e.secured))
            } else {
                None
            }
        })
        .collect()
}

/// The graph's edges as (role, peer, secured), once every edge shows
/// rates: a request rate above zero and a success rate.
fn drawn_edges(graph: &Value) -> Option<BTreeSet<(String, String, bool)>> {
    let edges = graph["edges"].as_array()?;
    let mut out = BTreeSet::new();
    for e in edges {
        let rps: f64 = e["rps"].as_str()?.trim_end_matches(" rps").parse().ok()?;
        let success: f64 = e["success"].as_str()?.trim_end_matches('%').parse().ok()?;
        if rps <= 0.0 || !(0.0..=100.0).contains(&success) {
            return None;
        }
        let secured = e["secured"].as_str()? == "true";
        out.insert((
            e["role"].as_str()?.to_string(),
            e["peer"].as_str()?.to_string(),
            secured,
        ));
    }
    Some(out)
}

/// Waits until `name`'s graph draws the edges the API lists (with rates),
/// then checks where nodes and labels are.
async fn check_graph(b: &Browser, mesh: &Mesh, name: &str, expected: &[(&str, &str)]) {
    let listed = wait_for(WAIT, &format!("{name}'s edges in the API"), || async {
        let listed = neighbours(&mesh.edges().ok_or("no edges")?, name);
        let all = expected
            .iter()
            .all(|(role, peer)| listed.iter().any(|(r, p, _)| r == role && p == peer));
        Ok(all.then_some(listed))
    })
    .await
    .unwrap();
    let graph = wait_for(WAIT, &format!("{name}'s graph with rates"), || async {
        let graph = b.eval(READ_GRAPH).await?;
        let drawn = drawn_edges(&graph);
        Ok((drawn.as_ref() == Some(&listed)).then_some(graph))
    })
    .await
    .unwrap();
    let edges = graph["edges"].as_array().unwrap();
    for e in edges {
        let secured = e["secured"].as_str().unwrap() == "true";
        let note = e["security"].as_str().unwrap();
        assert_eq!(note.contains("mTLS"), secured, "{e}");
    }
    let nodes = graph["nodes"].as_array().unwrap();
    let me = nodes
        .iter()
        .find(|n| n["role"] == "self")
        .unwrap_or_else(|| panic!("no node for {name}: {nodes:?}"));
    assert_eq!(me["name"], format!("demo/{name}"));
    let f = |n: &Value, k: &str| n[k].as_f64().unwrap();
    for n in nodes.iter().filter(|n| n["role"] != "self") {
        let peer = n["name"].as_str().unwrap();
        assert!(
            listed
                .iter()
                .any(|(r, p, _)| n["role"] == r.as_str() && p == peer),
            "a node the API does not list: {n}"
        );
        assert!(n["text"].as_str().unwrap().contains(peer), "{n}");
        match n["role"].as_str().unwrap() {
            "caller" => assert!(f(n, "right") < f(me, "left"), "{n} not left of {me}"),
            _ => assert!(f(n, "left") > f(me, "right"), "{n} not right of {me}"),
        }
    }
    assert_eq!(nodes.len(), listed.len() + 1, "{nodes:?}");
    let width = f(&graph, "width");
    for t in graph["texts"].as_array().unwrap() {
        let (from, to) = (t[0].as_f64().unwrap(), t[1].as_f64().unwrap());
        assert!(
            from >= 0.0 && to <= width,
            "text at {from}..{to} leaves the graph"
        );
    }
    b.driver
        .find(By::Css("svg[data-testid=deployment-graph]"))
        .await
        .unwrap()
        .scroll_into_view()
        .await
        .unwrap();
    let path = b
        .screenshot(&format!("deployment-graph-{name}"))
        .await
        .unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_shows_a_deployments_callers_and_callees() {
    let (mesh, b) = start().await;
    open(&b, &mesh, "voting").await;
    check_graph(&b, &mesh, "voting", &[("caller", "demo/web")]).await;
    open(&b, &mesh, "web").await;
    check_graph(
        &b,
        &mesh,
        "web",
        &[("callee", "demo/voting"), ("callee", "demo/emoji")],
    )
    .await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_shows_learned_routes_without_a_profile() {
    let (mesh, b) = start().await;
    // Voting's paths hold no identifier: each is a template of its own.
    let expected: BTreeSet<String> = mesh::VOTING_PATHS
        .iter()
        .map(|p| format!("GET {p}"))
        .collect();
    let listed = wait_for(WAIT, "voting's learned routes in the API", || async {
        let routes = mesh.routes("voting").ok_or("no routes")?;
        let learned: BTreeSet<String> = routes
            .rows
            .iter()
            .filter(|r| r.learned && r.metrics.is_some())
            .map(|r| r.route.clone())
            .collect();
        Ok((learned == expected).then_some(learned))
    })
    .await
    .unwrap();
    open(&b, &mesh, "voting").await;
    let row = "tr[data-testid=route-row][data-learned=true]";
    wait_for(WAIT, "the learned routes in the table", || async {
        let shown: BTreeSet<String> = b.attrs(row, "data-route").await?.into_iter().collect();
        Ok((shown == listed).then_some(()))
    })
    .await
    .unwrap();
    let badges = b.texts(&format!("{row} td.source")).await.unwrap();
    assert_eq!(badges.len(), listed.len());
    assert!(badges.iter().all(|t| t == "learned"), "{badges:?}");
    let rates = b.texts(&format!("{row} td.success")).await.unwrap();
    assert!(rates.iter().all(|r| r.ends_with('%')), "{rates:?}");
    b.driver
        .find(By::Css("table[data-testid=routes-table]"))
        .await
        .unwrap()
        .scroll_into_view()
        .await
        .unwrap();
    let path = b.screenshot("deployment-routes-voting").await.unwrap();
    eprintln!("screenshot: {}", path.display());
    b.quit().await;
}

/// The flight recorder on the page: a click on a point of voting's
/// success chart opens the failed requests of that minute from the tap
/// history (voting's upstream fails every tenth request), each with why it
/// was kept, its status and its latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_of_the_success_chart_opens_its_failed_requests() {
    let (mesh, b) = start().await;
    // Through `/auth`, as `conduit dashboard` opens it: the tap history
    // needs the session.
    b.driver.goto(mesh.session_url()).await.unwrap();
    open(&b, &mesh, "voting").await;
    wait_for_points(&b).await;
    let chart = b
        .driver
        .find(By::Css("svg[data-testid=chart-success]"))
        .await
        .unwrap();
    // At the right edge: the newest point, whose minute holds the traffic
    // (the mesh has run for less than the chart's five minutes).
    let width = chart.rect().await.unwrap().width;
    let x = (width / 2.0 - 3.0) as i64;
    b.driver
        .action_chain()
        .move_to_element_with_offset(&chart, x, 0)
        .click()
        .perform()
        .await
        .unwrap();
    let title = wait_for(WAIT, "the recorded requests' title", || async {
        let t = b.texts("[data-testid=recorded-title]").await?;
        Ok(t.into_iter().next().filter(|t| !t.is_empty()))
    })
    .await
    .unwrap();
    assert!(title.starts_with("Failed requests "), "{title}");
    let rows = wait_for(WAIT, "recorded failed requests", || async {
        let kept = b
            .texts("table[data-testid=recorded-requests] tr[data-testid=tap-row] td.kept")
            .await?;
        let status = b
            .texts("table[data-testid=recorded-requests] tr[data-testid=tap-row] td.status")
            .await?;
        Ok((!kept.is_empty() && kept.len() == status.len()).then_some((kept, status)))
    })
    .await;
    let section = b.texts("[data-testid=recorded]").await.unwrap_or_default();
    let (kept, status) = rows.unwrap_or_else(|e| panic!("{e}; the page shows {section:?}"));
    assert!(kept.iter().all(|k| k == "failed"), "{kept:?}");
    // Upstream 500s, and the mesh's policy denials (the proxy's own
    // answers, shown with their reason after the status: "403
    // unauthorized").
    let code = |s: &str| s.split_whitespace().next()?.parse::<u16>().ok();
    for s in &status {
        let failed = code(s).is_some_and(|c| c >= 500) || s.ends_with(" unauthorized");
        assert!(failed, "a recorded failure answered {s}");
    }
    assert!(status.iter().any(|s| code(s) == Some(500)), "{status:?}");
    let path = b.screenshot("recorded-failed-requests").await.unwrap();
    eprintln!(
        "{} failed requests; screenshot: {}",
        kept.len(),
        path.display()
    );
    b.quit().await;
}
