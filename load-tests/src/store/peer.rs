//! The databases under test, each a real process on loopback ports with
//! its data in a temporary directory: the Conduit store (the release
//! binary next to this one), Prometheus and VictoriaMetrics (Debian
//! packages), all receiving the same remote-write stream.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Conduit,
    Prometheus,
    Victoria,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Conduit => "conduit-telemetry-store",
            Kind::Prometheus => "Prometheus 2.42",
            Kind::Victoria => "VictoriaMetrics 1.79",
        }
    }
}

pub(crate) struct Peer {
    pub(crate) kind: Kind,
    pub(crate) http: SocketAddr,
    pub(crate) grpc: Option<SocketAddr>,
    pub(crate) dir: PathBuf,
    child: Child,
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn binary(kind: Kind) -> Result<PathBuf, String> {
    let (path, hint) = match kind {
        Kind::Conduit => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe.parent().ok_or("no exe dir")?;
            let dir = if dir.ends_with("deps") {
                dir.parent().ok_or("no target dir")?
            } else {
                dir
            };
            (
                dir.join("conduit-telemetry-store"),
                "build it with `cargo build --release -p conduit-telemetry-store` (`cargo xtask bench` does)",
            )
        }
        Kind::Prometheus => (
            PathBuf::from("/usr/bin/prometheus"),
            "apt-get install prometheus",
        ),
        Kind::Victoria => (
            PathBuf::from("/usr/bin/victoria-metrics"),
            "apt-get install victoria-metrics",
        ),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} not found: {hint}", path.display()))
    }
}

impl Peer {
    pub(crate) fn start(kind: Kind, root: &Path) -> Result<Self, String> {
        Self::start_named(kind, root, &format!("{kind:?}").to_lowercase(), &[])
    }

    /// A peer in `root/name`, with extra flags.
    pub(crate) fn start_named(
        kind: Kind,
        root: &Path,
        name: &str,
        extra: &[String],
    ) -> Result<Self, String> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let http = free_addr();
        let mut grpc = None;
        let mut cmd = Command::new(binary(kind)?);
        match kind {
            Kind::Conduit => {
                let g = free_addr();
                grpc = Some(g);
                let token = dir.join("token");
                std::fs::write(&token, super::http::TOKEN).map_err(|e| e.to_string())?;
                cmd.arg("--remote-write-token-file")
                    .arg(&token)
                    .arg("--tap-token-file")
                    .arg(&token);
                cmd.args([
                    "--http-listen",
                    &http.to_string(),
                    "--grpc-listen",
                    &g.to_string(),
                ])
                .arg("--data-dir")
                .arg(dir.join("data"))
                .args([
                    "--max-active-series",
                    "5000000",
                    "--retention-time",
                    "30d",
                    "--maintenance-interval",
                    "5s",
                ])
                .env("RUST_LOG", "warn");
            }
            Kind::Prometheus => {
                let config = dir.join("prometheus.yml");
                std::fs::write(&config, "global:\n  scrape_interval: 1m\n")
                    .map_err(|e| e.to_string())?;
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.join("data").display()
                    ))
                    .arg(format!("--web.listen-address={http}"))
                    .args([
                        "--web.enable-remote-write-receiver",
                        "--storage.tsdb.retention.time=30d",
                        "--log.level=warn",
                    ]);
            }
            Kind::Victoria => {
                cmd.arg(format!("-storageDataPath={}", dir.join("data").display()))
                    .arg(format!("-httpListenAddr={http}"))
                    .args(["-retentionPeriod=1y", "-loggerLevel=WARN"]);
            }
        }
        cmd.args(extra);
        let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", kind.name()))?;
        let peer = Self {
            kind,
            http,
            grpc,
            dir,
            child,
        };
        peer.wait_ready()?;
        Ok(peer)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let path = if self.kind == Kind::Victoria {
            "/health"
        } else {
            "/-/ready"
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if super::http::get_blocking(&format!("http://{}{path}", self.http))
                .is_ok_and(|(s, _)| s == 200)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "{} did not become ready; see {}",
            self.kind.name(),
            self.dir.join("log").display()
        ))
    }

    pub(crate) fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.http)
    }

    /// Resident memory of the process, from /proc.
    pub(crate) fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// CPU time the process has used, all threads, in seconds.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the parenthesized command name: utime and stime are the
        // 12th and 13th fields, in USER_HZ (100 per second on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (ticks(11) + ticks(12)) as f64 / 100.0
    }

    pub(crate) fn data_bytes(&self) -> u64 {
        dir_bytes(&self.dir.join("data"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
