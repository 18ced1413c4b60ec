//! The controller's client of the telemetry store (`conduit.store.v1.Query`).
//!
//! The channel is lazy: the controller starts, and answers what does not
//! need the store, while the store is still starting or down. Every call
//! has a deadline, and a store that cannot be reached becomes one
//! `UNAVAILABLE` status naming the address and what to do, which the CLI
//! prints as is.

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

#[derive(Clone)]
pub struct Store {
    client: QueryClient<InterceptedService<Channel, Deadline>>,
    addr: String,
}

impl Store {
    /// `addr` is `https://host:port` (mTLS: the store must prove `store`,
    /// with identity on) or `http://host:port` (plaintext).
    pub fn connect_lazy(addr: &str, links: &Links, store: &IdentityName) -> anyhow::Result<Self> {
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

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The store's `ip:port`, when its address names one (not a DNS name).
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        let rest = self
            .addr
            .split_once("://")
            .map_or(self.addr.as_str(), |(_, r)| r);
        rest.trim_end_matches('/').parse().ok()
    }

    /// `Golden` with the window it answered and its latency resolution.
    pub async fn golden_answer(
        &self,
        req: pb::GoldenRequest,
    ) -> Result<pb::GoldenResponse, Status> {
        let reply = self.client.clone().golden(req).await;
        Ok(self.check(reply)?.into_inner())
    }

    pub async fn series(&self, req: pb::SeriesRequest) -> Result<Vec<pb::LabelSet>, Status> {
        let reply = self.client.clone().series(req).await;
        Ok(self.check(reply)?.into_inner().series)
    }

    /// A PromQL instant query, evaluated at `time_unix_ms` (0: now).
    pub async fn instant_at(
        &self,
        query: String,
        time_unix_ms: i64,
    ) -> Result<Vec<pb::Series>, Status> {
        let reply = self
            .client
            .clone()
            .instant(pb::InstantQuery {
                query,
                time_unix_ms,
            })
            .await;
        Ok(self.check(reply)?.into_inner().series)
    }

    pub async fn status(&self) -> Result<pb::StatusResponse, Status> {
        let reply = self.client.clone().status(pb::StatusRequest {}).await;
        Ok(self.check(reply)?.into_inner())
    }

    pub async fn search_tap(
        &self,
        req: pb::SearchTapRequest,
    ) -> Result<pb::SearchTapResponse, Status> {
        let reply = self.client.clone().search_tap(req).await;
        Ok(self.check(reply)?.into_inner())
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
