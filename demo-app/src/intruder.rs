//! `intruder`: an unmeshed client inside the cluster that tries what the
//! demo's policy forbids, so `conduit authz`, tap and the dashboard have
//! denials to show. It calls voting (only web may) and vote-store (only
//! voting may) straight at their pods, in plaintext, with no identity.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// voting's pod (its proxy's inbound): HTTP requests
    #[arg(long)]
    voting: SocketAddr,
    /// vote-store's pod (its proxy's inbound): the opaque TCP protocol
    #[arg(long)]
    vote_store: SocketAddr,
    /// Attempts per second at each
    #[arg(long, default_value_t = 2)]
    rate: u32,
}

/// Gives up on a peer that neither answers nor closes.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Tally {
    http_denied: u64,
    http_other: u64,
    tcp_refused: u64,
    tcp_answered: u64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0, "--rate must be at least 1");
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate);
    let mut report = tokio::time::interval(Duration::from_secs(10));
    let mut tally = Tally::default();
    tracing::info!(voting = %args.voting, vote_store = %args.vote_store, "intruder started");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = report.tick() => {
                tracing::info!(
                    http_denied = tally.http_denied,
                    http_other = tally.http_other,
                    tcp_refused = tally.tcp_refused,
                    tcp_answered = tally.tcp_answered,
                    "intruder so far"
                );
                continue;
            }
        }
        match http_status(args.voting).await {
            Some(403) => tally.http_denied += 1,
            _ => tally.http_other += 1,
        }
        if vote_store_answers(args.vote_store).await {
            tally.tcp_answered += 1;
        } else {
            tally.tcp_refused += 1;
        }
    }
}

/// The status voting's pod answers a plaintext vote with, if any.
async fn http_status(addr: SocketAddr) -> Option<u16> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let request = "POST /emojivoto.v1.VotingService/VoteIntruder HTTP/1.1\r\n\
                       Host: voting.demo.svc.cluster.local:8080\r\ncontent-length: 0\r\n\
                       connection: close\r\n\r\n";
        s.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
}

/// Whether vote-store's pod lets a plaintext client in: it speaks first,
/// so an admitted connection reads its banner; a denied one is closed.
async fn vote_store_answers(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return Some(false);
        }
        s.write_all(b"INCR :smiling_imp:\n").await.ok()?;
        Some(true)
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
