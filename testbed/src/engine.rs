//! Prometheus-compatible engines the project measures against or reads
//! through (Debian's `prometheus` and `victoria-metrics`), on loopback:
//! both take remote write, answer the Prometheus query API, and Prometheus
//! scrapes the proxies listed in its `targets.json`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TempDir, free_addr, http_get, query_escape, wait_for_http};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Prometheus,
    VictoriaMetrics,
}

/// Scrapes the proxies listed in `targets.json` (written once they run)
/// every second; `honor_labels` keeps the proxies' own `namespace` and
/// `pod` labels rather than the scrape's.
pub const SCRAPE_CONFIG: &str = "global:
  scrape_interval: 1s
scrape_configs:
  - job_name: conduit-proxies
    honor_labels: true
    file_sd_configs:
      - files: [targets.json]
        refresh_interval: 1s
";

/// A Prometheus-compatible engine on loopback, killed on drop.
pub struct Engine {
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Engine {
    /// Prometheus with [`SCRAPE_CONFIG`], or VictoriaMetrics.
    pub fn start(kind: Kind) -> Self {
        Self::start_with(kind, SCRAPE_CONFIG)
    }

    /// Prometheus runs with `config_text` as its configuration;
    /// VictoriaMetrics takes none.
    pub fn start_with(kind: Kind, config_text: &str) -> Self {
        let (dir, addr) = (TempDir::new("engine"), free_addr());
        let data = dir.path().join("data").display().to_string();
        let (bin, args) = match kind {
            Kind::Prometheus => {
                let config = dir.path().join("prometheus.yml");
                std::fs::write(&config, config_text).unwrap();
                (
                    "/usr/bin/prometheus",
                    vec![
                        format!("--config.file={}", config.display()),
                        format!("--storage.tsdb.path={data}"),
                        format!("--web.listen-address={addr}"),
                        "--web.enable-remote-write-receiver".into(),
                        "--log.level=warn".into(),
                    ],
                )
            }
            Kind::VictoriaMetrics => (
                "/usr/bin/victoria-metrics",
                vec![
                    format!("-storageDataPath={data}"),
                    format!("-httpListenAddr={addr}"),
                    // Answer up to now, uncached: the test reads right
                    // after writing.
                    "-search.latencyOffset=0s".into(),
                    "-search.disableCache".into(),
                    "-loggerLevel=ERROR".into(),
                ],
            ),
        };
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} not found: `cargo xtask test` installs it (apt-get install prometheus victoria-metrics)"
        );
        let child = Command::new(bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let ready = match kind {
            Kind::Prometheus => "/-/ready",
            Kind::VictoriaMetrics => "/health",
        };
        wait_for_http(addr, ready, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{kind:?} never became ready: {e}"));
        Self { child, addr, dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Has Prometheus scrape `targets` from now on.
    pub fn scrape(&self, targets: &[SocketAddr]) {
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let json = format!("[{{\"targets\": [{}]}}]", list.join(", "));
        let path = self.dir.path().join("targets.json");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// The newest sample time (Unix s) of `response_total` it holds.
    pub fn newest_sample(&self) -> f64 {
        self.value("max(timestamp(response_total))")
    }

    /// Waits until `n` scrape targets are up: Prometheus applies new
    /// targets every few seconds, and a window that starts before the
    /// first scrape would be counted short.
    pub fn wait_scraping(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.value(r#"count(up{job="conduit-proxies"} == 1)"#) < n as f64 {
            assert!(
                Instant::now() < deadline,
                "Prometheus never scraped the proxies"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The first value of instant query `expr`, 0 without one.
    pub fn value(&self, expr: &str) -> f64 {
        query_value(self.addr, expr)
    }
}

/// The first value of instant query `expr` on the Prometheus query API at
/// `addr` (an engine's, or a telemetry store's), 0 without one.
pub fn query_value(addr: SocketAddr, expr: &str) -> f64 {
    let q = query_escape(expr);
    let Ok(answer) = http_get(addr, &format!("/api/v1/query?query={q}")) else {
        return 0.0;
    };
    let v: serde_json::Value = serde_json::from_str(&answer.2).unwrap_or_default();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}
