//! The controller's client of the telemetry store (`conduit.store.v1.Query`).
//!
//! The channel is lazy: the controller starts, and answers what does not
//! need the store, while the store is still starting or down. Every call
//! has a deadline, and a store that cannot be reached becomes one
//! `UNAVAILABLE` status naming the address and what to do, which the CLI
//! prints as is.
//!
//! With a pair of stores (`--store-addr A,B`, both fed by every proxy),
//! a call that cannot reach one is asked of the other, which then answers
//! until it fails in turn: losing a store costs no answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conduit_api::IdentityName;
use conduit_api::proto::store::v1::{self as pb, query_client::QueryClient};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::links::Links;
use tonic::{Code, Status};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Every call has a deadline, whatever the transport.
type Deadline = fn(tonic::Request<()>) -> Result<tonic::Request<()>, Status>;

fn deadline(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    req.set_timeout(CALL_TIMEOUT);
    Ok(req)
}

type Client = QueryClient<InterceptedService<Channel, Deadline>>;

#[derive(Clone)]
pub struct Store {
    replicas: Arc<[Replica]>,
    /// The replica asked first: the last one that answered.
    preferred: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Replica {
    client: Client,
    addr: String,
}

impl Store {
    /// Each of `addrs` is `https://host:port` (mTLS: the store must prove
    /// `store`, with identity on) or `http://host:port` (plaintext).
    pub fn connect_lazy(
        addrs: &[String],
        links: &Links,
        store: &IdentityName,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!addrs.is_empty(), "--store-addr names no store");
        let replicas = addrs
            .iter()
            .map(|addr| Replica::connect_lazy(addr, links, store))
            .collect::<anyhow::Result<Arc<[Replica]>>>()?;
        Ok(Self {
            replicas,
            preferred: Arc::default(),
        })
    }

    /// The stores' addresses, as given.
    pub fn addrs(&self) -> impl Iterator<Item = &str> {
        self.replicas.iter().map(|r| r.addr.as_str())
    }

    /// `call` of the preferred store; of the next one while a store is
    /// unreachable. All unreachable: one error naming each.
    async fn ask<T, F, Fut>(&self, call: F) -> Result<T, Status>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut unreachable = Vec::new();
        for k in (0..self.replicas.len()).map(|i| (first + i) % self.replicas.len()) {
            let replica = &self.replicas[k];
            match replica.check(call(replica.client.clone()).await) {
                Ok(reply) => {
                    if k != first {
                        self.preferred.store(k, Ordering::Relaxed);
                        tracing::warn!(
                            store = replica.addr,
                            "answering from this telemetry store: the one before is unreachable"
                        );
                    }
                    return Ok(reply.into_inner());
                }
                Err(e) if e.code() == Code::Unavailable => unreachable.push(e),
                Err(e) => return Err(e),
            }
        }
        let messages: Vec<&str> = unreachable.iter().map(Status::message).collect();
        Err(Status::unavailable(messages.join("; ")))
    }

    /// `Golden` with the window it answered and its latency resolution.
    pub async fn golden_answer(
        &self,
        req: pb::GoldenRequest,
    ) -> Result<pb::GoldenResponse, Status> {
        self.ask(|mut c| {
            let req = req.clone();
            async move { c.golden(req).await }
        })
        .await
    }

    pub async fn series(&self, req: pb::SeriesRequest) -> Result<Vec<pb::LabelSet>, Status> {
        let reply = self
            .ask(|mut c| {
                let req = req.clone();
                async move { c.series(req).await }
            })
            .await?;
        Ok(reply.series)
    }

    /// A PromQL instant query, evaluated at `time_unix_ms` (0: now).
    pub async fn instant_at(
        &self,
        query: String,
        time_unix_ms: i64,
    ) -> Result<Vec<pb::Series>, Status> {
        let req = pb::InstantQuery {
            query,
            time_unix_ms,
        };
        let reply = self
            .ask(|mut c| {
                let req = req.clone();
                async move { c.instant(req).await }
            })
            .await?;
        Ok(reply.series)
    }

    pub async fn status(&self) -> Result<pb::StatusResponse, Status> {
        self.ask(|mut c| async move { c.status(pb::StatusRequest {}).await })
            .await
    }

    /// Each store's own status, asked of each, in `--store-addr` order.
    pub async fn each_status(&self) -> Vec<(&str, Result<pb::StatusResponse, Status>)> {
        let mut out = Vec::new();
        for r in self.replicas.iter() {
            let reply = r.client.clone().status(pb::StatusRequest {}).await;
            out.push((r.addr.as_str(), r.check(reply).map(|s| s.into_inner())));
        }
        out
    }

    pub async fn search_tap(
        &self,
        req: pb::SearchTapRequest,
    ) -> Result<pb::SearchTapResponse, Status> {
        self.ask(|mut c| {
            let req = req.clone();
            async move { c.search_tap(req).await }
        })
        .await
    }
}

impl Replica {
    fn connect_lazy(addr: &str, links: &Links, store: &IdentityName) -> anyhow::Result<Self> {
        let channel = match addr.strip_prefix("https://") {
            Some(authority) => {
                anyhow::ensure!(
                    links.is_tls(),
                    "--store-addr {addr} is mTLS: the controller needs its identity (--identity-trust-anchors)"
                );
                links
                    .channel(authority.trim_end_matches('/'), store, CONNECT_TIMEOUT)
                    .map_err(|e| anyhow::anyhow!("invalid --store-addr {addr:?}: {e}"))?
            }
            None => Endpoint::from_shared(addr.to_string())
                .map_err(|e| anyhow::anyhow!("invalid --store-addr {addr:?}: {e}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_lazy(),
        };
        let client = QueryClient::new(InterceptedService::new(channel, deadline as Deadline));
        Ok(Self {
            client,
            addr: addr.to_string(),
        })
    }

    /// Turns transport failures into one actionable message; the store's
    /// own answers (a bad query, say) pass through with their code.
    fn check<T>(&self, reply: Result<T, Status>) -> Result<T, Status> {
        reply.map_err(|s| {
            let unreachable = matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ) || (s.code() == Code::Unknown && is_transport(&s));
            if unreachable {
                return Status::unavailable(format!(
                    "the telemetry store at {} is unreachable ({}); is conduit-telemetry-store \
                     running? `conduit check` tells more",
                    self.addr,
                    s.message()
                ));
            }
            if s.code() == Code::Unimplemented {
                return Status::unimplemented(format!(
                    "the telemetry store at {} cannot answer this ({}); is it an older \
                     version, or another service than conduit-telemetry-store?",
                    self.addr,
                    s.message()
                ));
            }
            Status::new(s.code(), format!("telemetry store: {}", s.message()))
        })
    }
}

/// A store address's `ip:port`, when it names one (not a DNS name).
pub fn socket_addr(addr: &str) -> Option<std::net::SocketAddr> {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    rest.trim_end_matches('/').parse().ok()
}

fn is_transport(s: &Status) -> bool {
    let m = s.message();
    m.contains("transport") || m.contains("connect") || m.contains("h2 protocol")
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
