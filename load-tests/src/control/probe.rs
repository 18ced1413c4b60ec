//! The real conduit-proxy, asked what it does now: a change counts as
//! applied when requests through it behave the new way, not when bytes
//! reached it. Destination: which of the backend's pods answers a request
//! sent through its outbound side. Policy: whether its inbound side admits
//! a loopback client (200) or refuses it (403).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;

use crate::proxy::load::{self, Target};

/// Pause between two requests of a probe.
pub(crate) const POLL: Duration = Duration::from_millis(2);
/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the proxy did with one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Answer {
    /// This pod answered.
    Pod(SocketAddr),
    /// The proxy answered this status itself (0: no answer at all).
    Status(u16),
}

/// A pod behind the backend service, and how many requests it has served.
pub(crate) struct Pod {
    pub(crate) addr: SocketAddr,
    pub(crate) served: Arc<AtomicU64>,
}

pub(crate) enum Probe {
    /// Requests through the outbound side to the backend service.
    Destination { client: Client, pods: Vec<Pod> },
    /// Requests to the inbound side.
    Policy { client: Client },
}

/// How a change was applied.
pub(crate) struct Applied {
    /// From the write to the first answer of the new kind.
    pub(crate) after: Duration,
    pub(crate) requests: u64,
    /// Answers that were neither the old kind nor the new (a request that
    /// failed while the change went in).
    pub(crate) stray: Vec<Answer>,
}

impl Probe {
    async fn answer(&mut self) -> Result<Answer, String> {
        match self {
            Probe::Policy { client } => Ok(Answer::Status(client.status().await?)),
            Probe::Destination { client, pods } => {
                let before: Vec<u64> = pods.iter().map(|p| p.served.load(Relaxed)).collect();
                let status = client.status().await?;
                if status != 200 {
                    return Ok(Answer::Status(status));
                }
                pods.iter()
                    .zip(before)
                    .find(|(p, b)| p.served.load(Relaxed) > *b)
                    .map(|(p, _)| Answer::Pod(p.addr))
                    .ok_or_else(|| "a 200 through the proxy that no backend pod served".into())
            }
        }
    }

    /// Polls every [`POLL`] until the proxy answers `new`, at most until
    /// `since + timeout`; `old` is what it answered before the change.
    pub(crate) async fn until(
        &mut self,
        old: Answer,
        new: Answer,
        since: Instant,
        timeout: Duration,
    ) -> Result<Applied, String> {
        let mut applied = Applied {
            after: Duration::ZERO,
            requests: 0,
            stray: Vec::new(),
        };
        let mut last = old;
        while since.elapsed() < timeout {
            last = self.answer().await?;
            applied.requests += 1;
            if last == new {
                applied.after = since.elapsed();
                return Ok(applied);
            }
            if last != old {
                applied.stray.push(last);
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "conduit-proxy had not applied it within {} s (its last answer: {last:?})",
            timeout.as_secs_f64()
        ))
    }
}

/// A keep-alive HTTP/1.1 connection to one of the proxy's listeners,
/// dialled again when it breaks.
pub(crate) struct Client {
    target: Target,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr, host: &str) -> Self {
        let target = Target {
            name: format!("conduit-proxy {addr}"),
            addr,
            host: host.to_string(),
        };
        Self {
            target,
            sender: None,
        }
    }

    /// The status of one `GET /`; 0 when a fresh connection failed or the
    /// answer took longer than [`REQUEST_TIMEOUT`]. A kept-alive connection
    /// the proxy closed meanwhile is dialled again, not counted; not
    /// reaching the proxy at all is an error.
    async fn status(&mut self) -> Result<u16, String> {
        if let Some(sender) = self.sender.take().filter(|s| !s.is_closed())
            && let Some(status) = self.send(sender).await
        {
            return Ok(status);
        }
        let sender = load::connect(&self.target).await?;
        Ok(self.send(sender).await.unwrap_or(0))
    }

    /// One request on `sender`, kept for the next when it answered.
    async fn send(&mut self, mut sender: SendRequest<Empty<Bytes>>) -> Option<u16> {
        let req = http::Request::get("/")
            .header(http::header::HOST, &self.target.host)
            .body(Empty::new())
            .ok()?;
        let exchange = async {
            sender.ready().await?;
            let rsp = sender.send_request(req).await?;
            let status = rsp.status().as_u16();
            rsp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        };
        let status = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .ok()?
            .ok()?;
        self.sender = Some(sender);
        Some(status)
    }
}
