//! `conduit check`'s look at the control plane from an attacker's seat:
//! which listeners answer a caller that proves nothing.
//!
//! The gRPC listeners (the store's, the controller's mesh port, every
//! proxy's tap server) must be mTLS when identity is on. Each is probed
//! the way an intruder would try it: a plaintext HTTP/2 connection
//! preface. A listener that answers with HTTP/2 SETTINGS speaks gRPC to
//! anyone who can reach it; a TLS listener answers with an alert or
//! closes. Tap on the public API is checked by what guards it.

use std::net::SocketAddr;
use std::time::Duration;

use conduit_api::proto::public::v1 as pb;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::PublicApi;
use super::check::{ok, result};
use crate::access::Access;

const SECURITY: &str = "conduit-security";
/// A probe gives up after this: a silent listener is not an open one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Proxies probed at once, and at most in all.
const PROBES_IN_FLIGHT: usize = 16;
const MAX_PROXIES: usize = 500;
/// Listeners named in a hint at most.
const NAMED: usize = 5;

/// The client connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const SETTINGS_FRAME: u8 = 0x04;

/// Whether `addr` answers a plaintext HTTP/2 preface with a SETTINGS frame.
async fn speaks_plaintext_h2(addr: SocketAddr) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(H2_PREFACE).await.ok()?;
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        Some(head[3] == SETTINGS_FRAME)
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

impl PublicApi {
    pub(super) async fn exposure_checks(&self) -> Vec<pb::CheckResult> {
        let mut out = vec![self.tap_access_check()];
        if self.inner.issuer.is_none() {
            out.push(result(
                SECURITY,
                "control-plane links are mTLS",
                pb::CheckStatus::Failed,
                "identity is off: the controller runs without --identity-trust-anchors, so the \
                 proxies' control-plane links and their traffic are plaintext",
            ));
            return out;
        }
        out.push(self.store_exposure().await);
        out.push(self.proxies_exposure().await);
        out
    }

    fn tap_access_check(&self) -> pb::CheckResult {
        let how = match &self.inner.settings.access {
            Access::Local(_) => "the API token",
            Access::Kubernetes(_) => "Kubernetes RBAC (verb tap)",
            Access::Closed => "nobody: no --api-token-file",
        };
        ok(
            SECURITY,
            format!("tap, tap search and top are authorized ({how})"),
        )
    }

    async fn store_exposure(&self) -> pb::CheckResult {
        const WHAT: &str = "the store's gRPC API refuses callers without a mesh certificate";
        for addr in self.store().addrs() {
            let Some(socket) = crate::store::socket_addr(addr) else {
                return result(
                    SECURITY,
                    WHAT,
                    pb::CheckStatus::Warning,
                    format!("{addr} is not an address this check can probe"),
                );
            };
            if speaks_plaintext_h2(socket).await {
                return result(
                    SECURITY,
                    WHAT,
                    pb::CheckStatus::Failed,
                    format!(
                        "{socket} answers plaintext gRPC: anyone who reaches it can send telemetry \
                         and read the tap history; start the store with --identity-addr"
                    ),
                );
            }
        }
        ok(SECURITY, WHAT)
    }

    async fn proxies_exposure(&self) -> pb::CheckResult {
        let snapshot = self.snapshot();
        let taps: Vec<(String, SocketAddr)> = snapshot
            .deployments
            .iter()
            .flat_map(|(d, info)| {
                info.pods
                    .iter()
                    .filter_map(move |p| Some((format!("{}/{}", d.namespace, p.name), p.tap?)))
            })
            .take(MAX_PROXIES)
            .collect();
        let probed = taps.len();
        let open: Vec<String> = futures_util::stream::iter(taps)
            .map(|(pod, addr)| async move { speaks_plaintext_h2(addr).await.then_some(pod) })
            .buffer_unordered(PROBES_IN_FLIGHT)
            .filter_map(|open| async move { open })
            .collect()
            .await;
        let description = "proxies' tap servers answer the controller's identity only";
        if open.is_empty() {
            return ok(SECURITY, format!("{description} ({probed} probed)"));
        }
        let more = open.len().saturating_sub(NAMED);
        result(
            SECURITY,
            description,
            pb::CheckStatus::Failed,
            format!(
                "{} of {probed} tap servers answer plaintext gRPC, so anyone who reaches them \
                 sees their requests: {}{}; inject those pods with --identity-trust-anchors-file",
                open.len(),
                open.iter()
                    .take(NAMED)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plaintext_grpc_server_answers_the_probe_and_a_silent_port_does_not() {
        // A real HTTP/2-capable server over plaintext.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, axum::Router::new()).await;
        });
        assert!(speaks_plaintext_h2(addr).await);

        // A listener that reads and never answers (as a TLS server waiting
        // for a ClientHello would) is not open.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = silent.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        assert!(!speaks_plaintext_h2(silent_addr).await);
    }
}
