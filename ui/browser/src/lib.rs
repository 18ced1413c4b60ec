//! Headless Chromium, driven over WebDriver, for the dashboard's browser
//! tests and the `ui` load-test scenario.
//!
//! [`Browser::start`] runs Debian's `chromedriver` on a free loopback port
//! and opens a session of Debian's `chromium` with a fresh profile and
//! every background service off (this machine has no network, and an idle
//! Chromium otherwise keeps dialling out). The WebDriver client is
//! `thirtyfour` without its reqwest/TLS stack: requests go over
//! hyper-util's plain HTTP/1.1 client, since chromedriver is on loopback.
//!
//! Screenshots go to `target/ui-screenshots/`, kept after every run.
//! [`mesh`] starts what the browser looks at.

mod http;
pub mod mesh;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use thirtyfour::common::capabilities::chromium::ChromiumLikeCapabilities;
use thirtyfour::prelude::*;

pub use thirtyfour;

/// Chromium's switches: headless, and nothing that reaches for the
/// network or the GPU on its own.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-default-browser-check",
    "--window-size=1400,1000",
];

/// Replaces the page's `EventSource` with a subclass that keeps a list of
/// its instances.
const WATCH_EVENT_SOURCES: &str = r"
(() => {
  const Real = window.EventSource;
  const all = [];
  window.__conduitEventSources = all;
  window.EventSource = class extends Real {
    constructor(...args) { super(...args); all.push(this); }
  };
})();
";

/// How long chromedriver may take to answer after starting.
const DRIVER_START: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running chromedriver with one Chromium session.
pub struct Browser {
    pub driver: WebDriver,
    screenshots: PathBuf,
    /// Dropped after `driver`: the session ends before its chromedriver.
    process: Chromedriver,
}

/// The chromedriver process and the profile directory, gone on drop.
struct Chromedriver {
    child: Child,
    profile: PathBuf,
}

impl Chromedriver {
    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // Chromium is chromedriver's child and exits with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Fails with the
    /// Debian packages to install when either program is missing.
    pub async fn start() -> Result<Self, String> {
        let chromium = program("CONDUIT_CHROMIUM", "chromium")?;
        let chromedriver_bin = program("CONDUIT_CHROMEDRIVER", "chromedriver")?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("conduit-ui-browser-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)
            .map_err(|e| format!("cannot create {}: {e}", profile.display()))?;

        let port = free_port()?;
        let log =
            std::fs::File::create(profile.join("chromedriver.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&chromedriver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromedriver_bin.display()))?;
        let process = Chromedriver { child, profile };
        let server = format!("http://127.0.0.1:{port}");
        http::wait_ready(&server, DRIVER_START).await.map_err(|e| {
            format!(
                "chromedriver never answered on {server}: {e}; log: {}",
                process.log()
            )
        })?;

        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(&chromium.display().to_string())
            .map_err(|e| e.to_string())?;
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg).map_err(|e| e.to_string())?;
        }
        caps.add_arg(&format!(
            "--user-data-dir={}",
            process.profile.join("chromium").display()
        ))
        .map_err(|e| e.to_string())?;
        let driver = WebDriver::builder(server, caps)
            .client(http::Client::new())
            .await
            .map_err(|e| {
                format!(
                    "cannot open a Chromium session: {e}; log: {}",
                    process.log()
                )
            })?;
        Ok(Self {
            driver,
            screenshots: screenshot_dir(),
            process,
        })
    }

    /// Saves a PNG of the page as `target/ui-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.screenshots).map_err(|e| e.to_string())?;
        let path = self.screenshots.join(format!("{name}.png"));
        let png = self
            .driver
            .screenshot_as_png()
            .await
            .map_err(|e| e.to_string())?;
        std::fs::write(&path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// The text of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for e in self
            .driver
            .find_all(By::Css(css))
            .await
            .map_err(|e| e.to_string())?
        {
            // An element re-rendered between finding and reading is skipped;
            // callers poll until what they expect is there.
            if let Ok(t) = e.text().await {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Attribute `name` of every element matching `css`.
    pub async fn attrs(&self, css: &str, name: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for e in self
            .driver
            .find_all(By::Css(css))
            .await
            .map_err(|e| e.to_string())?
        {
            if let Ok(Some(v)) = e.attr(name).await {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Waits until the chart `svg[data-testid=CHART]` draws at least
    /// `at_least` points (its `data-points` attribute).
    pub async fn wait_for_points(
        &self,
        chart: &str,
        at_least: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let css = format!("svg[data-testid={chart}]");
        wait_for(
            timeout,
            &format!("{at_least} points in {chart}"),
            || async {
                let points = self.attrs(&css, "data-points").await?;
                Ok(points
                    .first()
                    .and_then(|p| p.parse::<usize>().ok())
                    .filter(|n| *n >= at_least)
                    .map(|_| ()))
            },
        )
        .await
    }

    /// Runs a script in the page and returns its JSON result.
    pub async fn eval(&self, script: &str) -> Result<serde_json::Value, String> {
        let ret = self
            .driver
            .execute(script, Vec::<serde_json::Value>::new())
            .await
            .map_err(|e| e.to_string())?;
        Ok(ret.json().clone())
    }

    /// From the next page load on, records every `EventSource` the page
    /// opens (in `window.__conduitEventSources`), for
    /// [`Self::open_event_sources`]: the page's own code runs unchanged.
    pub async fn watch_event_sources(&self) -> Result<(), String> {
        self.driver
            .cdp()
            .send_raw(
                "Page.addScriptToEvaluateOnNewDocument",
                serde_json::json!({ "source": WATCH_EVENT_SOURCES }),
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The URLs of the page's `EventSource`s that are not closed
    /// (connecting or open), once [`Self::watch_event_sources`] watches.
    pub async fn open_event_sources(&self) -> Result<Vec<String>, String> {
        let v = self
            .eval(
                "const all = window.__conduitEventSources;\n\
                 if (!all) { throw new Error('EventSources are not watched'); }\n\
                 return all.filter(s => s.readyState !== EventSource.CLOSED).map(s => s.url);",
            )
            .await?;
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// Ends the session, then chromedriver.
    pub async fn quit(self) {
        let Self {
            driver, process, ..
        } = self;
        let _ = driver.quit().await;
        drop(process);
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after
/// `timeout` saying what it waited for and what it saw last.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what} (last error: {last})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An executable from `env` or the standard Debian location.
fn program(env: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let path = Path::new("/usr/bin").join(name);
    if path.is_file() {
        return Ok(path);
    }
    Err(format!(
        "{name} is not installed: the dashboard's browser tests need the Debian packages \
         `chromium` and `chromium-driver` (`apt-get install chromium chromium-driver`; \
         `cargo xtask test` installs them), or set {env}"
    ))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// `target/ui-screenshots`: `CARGO_TARGET_DIR` when set, else the target
/// dir the running binary was built into (the one holding `CACHEDIR.TAG`).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|d| d.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("ui-screenshots")
}
