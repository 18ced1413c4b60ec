//! Is a port free, is a component up: the checks between "starting" and
//! "ready" that the demo reports as it goes.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fails on the first address something else already listens on, naming
/// it and the way around it.
pub(crate) fn ports_free(listeners: &[(SocketAddr, String)]) -> anyhow::Result<()> {
    for (addr, what) in listeners {
        if let Err(e) = TcpListener::bind(addr) {
            anyhow::bail!(
                "port {} ({what}) is not available: {e}. Stop whatever uses it \
                 (another `conduit demo`?), or move every demo port with --port-offset N",
                addr.port()
            );
        }
    }
    Ok(())
}

/// How a component shows it is ready.
#[derive(Clone, Debug)]
pub(crate) enum Probe {
    /// Accepts TCP connections.
    Tcp(SocketAddr),
    /// Answers `GET path` with a 2xx status.
    Http(SocketAddr, &'static str),
}

impl Probe {
    async fn ok(&self) -> bool {
        match self {
            Self::Tcp(addr) => TcpStream::connect(addr).await.is_ok(),
            Self::Http(addr, path) => http_ok(*addr, path).await,
        }
    }
}

/// Waits until every probe passes; fails naming the first that did not.
pub(crate) async fn wait_for(probes: &[(Probe, String)], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for (probe, what) in probes {
        while !probe.ok().await {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{what} did not become ready within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A one-shot HTTP/1.1 GET: enough to read a readiness status line without
/// pulling an HTTP client into the CLI.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head.starts_with(b"HTTP/1.1 2") || head.starts_with(b"HTTP/1.0 2"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .is_ok_and(|r| r.unwrap_or(false))
}
