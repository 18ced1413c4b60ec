//! `ui`: the dashboard's weight and speed. Targets: the bundle at most
//! 600 KB gzipped, the overview's first data row on screen at most 500 ms
//! after navigation in headless Chromium.
//!
//! Setup: the bundle `cargo xtask ui` built, served by the real controller
//! reading the real store, fed by real proxies carrying steady traffic
//! (`conduit_ui_browser::mesh`), viewed by Debian's Chromium through
//! chromedriver. Each run navigates to the overview afresh and reads the
//! `conduit:first-row` performance mark the page sets once its first row
//! is rendered (milliseconds since navigation started). The first run has
//! an empty browser cache; the others load the bundle from cache, as a
//! returning user does. Peer in the same run: a plain HTTP client's time
//! from connecting to the first `stat` event of the same stream, the
//! floor any page showing that data pays.
//!
//! Run with `cargo xtask bench ui` (or `cargo run --release -p
//! conduit-load-tests -- ui [RUNS]`); figures go to
//! `load-tests/RESULTS.md`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use conduit_ui_browser::mesh::{self, Mesh};
use conduit_ui_browser::{Browser, wait_for};

use crate::report::{self, pct, sorted, today};

/// 600 kB, decimal.
const BUDGET_GZIP_BYTES: u64 = 600_000;
const TARGET_FIRST_ROW_MS: f64 = 500.0;

/// What one page load measured, in ms since navigation started.
struct PageLoad {
    first_row: f64,
    response_end: f64,
    dom_content_loaded: f64,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let runs: usize = args
        .first()
        .map_or(Ok(10), |a| a.parse())
        .map_err(|e| format!("RUNS: {e}"))?;
    if runs < 2 {
        return Err("RUNS must be at least 2 (one cold, the rest warm)".into());
    }
    let bundle = mesh::bundle()?;
    let sizes = bundle_sizes(&bundle)?;
    let mesh = Mesh::start(&bundle)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let loads = rt.block_on(page_loads(&mesh.base_url(), runs))?;
    let peer = (0..runs)
        .map(|_| first_event_ms(mesh.controller.http))
        .collect::<Result<Vec<_>, _>>()?;
    report(&sizes, &loads, sorted(peer), runs)
}

async fn page_loads(base: &str, runs: usize) -> Result<Vec<PageLoad>, String> {
    let b = Browser::start().await?;
    let mut loads = Vec::with_capacity(runs);
    for i in 0..runs {
        // A new URL each time: a real navigation, not a same-page no-op.
        b.driver
            .goto(format!("{base}/?run={i}"))
            .await
            .map_err(|e| e.to_string())?;
        let load = wait_for(Duration::from_secs(30), "the first-row mark", || async {
            let v = b.eval(MEASURE).await?;
            Ok(v.get("row")
                .and_then(serde_json::Value::as_f64)
                .map(|row| PageLoad {
                    first_row: row,
                    response_end: v["response_end"].as_f64().unwrap_or(f64::NAN),
                    dom_content_loaded: v["dom"].as_f64().unwrap_or(f64::NAN),
                }))
        })
        .await?;
        loads.push(load);
    }
    b.screenshot("bench-ui-overview").await?;
    b.quit().await;
    Ok(loads)
}

/// Reads the page's timings; `row` is absent until the first row is drawn.
const MEASURE: &str = "
    const row = performance.getEntriesByName('conduit:first-row')[0];
    const nav = performance.getEntriesByType('navigation')[0];
    return row ? {
        row: row.startTime,
        response_end: nav ? nav.responseEnd : null,
        dom: nav ? nav.domContentLoadedEventEnd : null,
    } : {};
";

/// (file, raw bytes, gzip bytes, brotli bytes) of each bundle file.
fn bundle_sizes(dir: &Path) -> Result<Vec<(String, u64, u64, u64)>, String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".gz") || name.ends_with(".br") {
            continue;
        }
        let size = |suffix: &str| {
            std::fs::metadata(dir.join(format!("{name}{suffix}"))).map_or(0, |m| m.len())
        };
        out.push((name.clone(), size(""), size(".gz"), size(".br")));
    }
    out.sort();
    Ok(out)
}

/// Connect, ask for the stat stream, read until its first `stat` event.
fn first_event_ms(addr: SocketAddr) -> Result<f64, String> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /api/v1/stat/stream?all_namespaces=true&window=1m HTTP/1.1\r\nHost: {addr}\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: stat") {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("reading the stream: {e}"))?;
        if n == 0 {
            return Err("the stat stream ended before its first event".into());
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

fn report(
    sizes: &[(String, u64, u64, u64)],
    loads: &[PageLoad],
    peer: Vec<f64>,
    runs: usize,
) -> Result<(), String> {
    let total_gz: u64 = sizes.iter().map(|s| s.2).sum();
    let total_br: u64 = sizes.iter().map(|s| s.3).sum();
    let cold = &loads[0];
    let warm = |f: fn(&PageLoad) -> f64| sorted(loads[1..].iter().map(f).collect());
    let (rows, dom, resp) = (
        warm(|l| l.first_row),
        warm(|l| l.dom_content_loaded),
        warm(|l| l.response_end),
    );
    let mut files = String::new();
    for (name, raw, gz, br) in sizes {
        files.push_str(&format!(
            "| `{name}` | {} | {} | {} |\n",
            kb(*raw),
            kb(*gz),
            kb(*br)
        ));
    }
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let worst_row = rows.last().copied().unwrap_or(f64::NAN).max(cold.first_row);
    let text = format!(
        "## ui — dashboard bundle and first data row\n\n\
         {}, {} build of the controller and store, Chromium {}: \
         `cargo run --release -p conduit-load-tests -- ui {runs}`; {runs} navigations to the \
         overview (the first with an empty cache), `performance` marks read from the page.\n\n\
         | bundle file | raw | gzip | brotli |\n|---|---|---|---|\n{files}\
         | **total** | | **{}** | {} |\n\n\
         Budget ≤ 600 kB gzipped: {}.\n\n\
         | ms after navigation | cold | warm p50 | warm p95 | warm max |\n|---|---|---|---|---|\n\
         | HTML received (`responseEnd`) | {} | {} | {} | {} |\n\
         | DOM ready (`domContentLoadedEventEnd`) | {} | {} | {} | {} |\n\
         | first data row rendered (`conduit:first-row`) | {} | {} | {} | {} |\n\
         | peer: plain HTTP client, connect to first `stat` event | | {} | {} | {} |\n\n\
         Target first row ≤ {TARGET_FIRST_ROW_MS} ms (every run, cold included): {}.\n",
        today(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        chromium_version(),
        kb(total_gz),
        kb(total_br),
        verdict(total_gz <= BUDGET_GZIP_BYTES),
        ms(cold.response_end),
        ms(pct(&resp, 0.5)),
        ms(pct(&resp, 0.95)),
        ms(pct(&resp, 1.0)),
        ms(cold.dom_content_loaded),
        ms(pct(&dom, 0.5)),
        ms(pct(&dom, 0.95)),
        ms(pct(&dom, 1.0)),
        ms(cold.first_row),
        ms(pct(&rows, 0.5)),
        ms(pct(&rows, 0.95)),
        ms(pct(&rows, 1.0)),
        ms(pct(&peer, 0.5)),
        ms(pct(&peer, 0.95)),
        ms(pct(&peer, 1.0)),
        verdict(worst_row <= TARGET_FIRST_ROW_MS),
    );
    print!("{text}");
    report::write_section("ui", &text)
}

fn ms(v: f64) -> String {
    format!("{v:.0} ms")
}

fn kb(bytes: u64) -> String {
    format!("{:.1} kB", bytes as f64 / 1000.0)
}

fn chromium_version() -> String {
    Command::new("chromium")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}
