//! Full TLS handshakes as fast as a few connections can make them: each
//! connection does a mutual TLS 1.3 handshake (no resumption), one
//! HTTP/1.1 request with `Connection: close`, reads the whole answer and
//! closes, which is what a new meshed connection costs the server side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::Resumption;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// A TLS server to handshake with, and the name its certificate must carry.
pub(crate) struct TlsTarget {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) server_name: String,
}

/// `config` with session resumption off, so every connection pays a full
/// handshake.
pub(crate) fn full_handshakes(config: &ClientConfig) -> Arc<ClientConfig> {
    let mut config = config.clone();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

async fn one(t: &TlsTarget, connector: &TlsConnector) -> Result<(), String> {
    let tcp = TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("{}: connect: {e}", t.name))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = conduit_identity::tls::server_name(&t.server_name).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{}: handshake: {e}", t.name))?;
    tls.write_all(b"GET /bench HTTP/1.1\r\nHost: web.bench\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::with_capacity(2048);
    // A server may close without close_notify once it has answered.
    let _ = tls.read_to_end(&mut answer).await;
    if !answer.starts_with(b"HTTP/1.1 200") || answer.len() < super::super::proxy::BODY_BYTES {
        let head = String::from_utf8_lossy(&answer[..answer.len().min(80)]).into_owned();
        return Err(format!("{}: answered {head:?}", t.name));
    }
    Ok(())
}

/// Completed handshakes (each with its request) per second over `conns`
/// concurrent connections for `duration`.
pub(crate) async fn rate(
    t: &Arc<TlsTarget>,
    config: Arc<ClientConfig>,
    duration: Duration,
    conns: usize,
) -> Result<f64, String> {
    let deadline = Instant::now() + duration;
    let connector = TlsConnector::from(config);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (t, connector) = (t.clone(), connector.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                one(&t, &connector).await?;
                n += 1;
            }
            Ok::<_, String>(n)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / duration.as_secs_f64())
}
