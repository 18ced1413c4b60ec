//! Load balancing: power of two choices over peak-EWMA latency.
//!
//! Each pick samples two endpoints at random and takes the one with the
//! lower cost, where cost is the endpoint's latency estimate times its
//! requests in flight plus one. The estimate jumps up to any slower
//! response at once (peak) and decays towards faster ones over ten
//! seconds, so a slow endpoint is avoided immediately and tried again only
//! once it has had time to recover. Sampling two instead of scanning all
//! keeps the pick O(1) and avoids herding onto one "best" endpoint.
//!
//! The endpoint set follows the resolver live: every pick first applies
//! any update that arrived, so after an update no request goes to a
//! removed endpoint. Endpoints that stay keep their connections, estimate
//! and breaker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conduit_api::Direction;
use conduit_api::metrics::labels;
use conduit_api::proto::diagnostics::v1 as diagnostics;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerConfig};
use crate::http::client::EndpointClient;
use crate::identity::{Identity, outbound_tls};
use crate::metrics::{HttpStats, Registry, TcpStats, lock};
use crate::resolve::{Target, Targets};

/// How fast the estimate forgets a slow response.
const DECAY: Duration = Duration::from_secs(10);
/// The estimate of an endpoint that has not answered yet.
const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// Latency estimate and requests in flight of one endpoint.
struct PeakEwma {
    estimate: Mutex<(f64, Instant)>,
    pending: AtomicU32,
}

impl PeakEwma {
    fn new() -> Self {
        Self {
            estimate: Mutex::new((DEFAULT_RTT.as_nanos() as f64, Instant::now())),
            pending: AtomicU32::new(0),
        }
    }

    fn decay(elapsed: Duration) -> f64 {
        (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp()
    }

    /// The estimate decays towards zero while nothing is observed, so an
    /// idle endpoint is eventually tried again.
    fn cost(&self, now: Instant) -> f64 {
        let (estimate, at) = *lock(&self.estimate);
        let decayed = estimate * Self::decay(now.saturating_duration_since(at));
        let pending = f64::from(self.pending.load(Relaxed));
        decayed * (pending + 1.0)
    }

    fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let mut e = lock(&self.estimate);
        let (estimate, at) = *e;
        let next = if rtt > estimate {
            rtt
        } else {
            let decay = Self::decay(now.saturating_duration_since(at));
            estimate * decay + rtt * (1.0 - decay)
        };
        *e = (next, now);
    }
}

/// One endpoint of an authority, with everything that must outlive a
/// single request: its connections, its series, its load and its breaker.
pub(crate) struct Endpoint {
    pub(crate) target: Target,
    pub(crate) client: EndpointClient,
    pub(crate) stats: Arc<HttpStats>,
    pub(crate) tcp: Arc<TcpStats>,
    pub(crate) breaker: Breaker,
    load: PeakEwma,
    connect_timeout: Duration,
    /// The proxy's identity and the one the endpoint must prove, when the
    /// connection is mTLS.
    pub(crate) mtls: Option<(Arc<Identity>, String)>,
}

impl Endpoint {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    /// The endpoint as `conduit diagnostics endpoints` shows it.
    pub(crate) fn diagnostics(&self, now: Instant) -> diagnostics::Endpoint {
        let meta = &self.target.meta;
        let hint = match (meta.opaque, meta.h2) {
            (true, _) => "opaque",
            (false, true) => "h2",
            (false, false) => "http",
        };
        let addr = self.addr();
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        diagnostics::Endpoint {
            address: Some(conduit_api::proto::mesh::v1::TcpAddress {
                ip,
                port: u32::from(addr.port()),
            }),
            deployment: meta.deployment.clone().map(Into::into),
            identity: meta.identity.clone().unwrap_or_default(),
            protocol_hint: hint.to_string(),
            available: self.breaker.is_available(now),
        }
    }

    pub(crate) fn client_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Marks a request in flight until the guard is completed or dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.load.pending.fetch_add(1, Relaxed);
        InFlight {
            endpoint: self.clone(),
            start: Instant::now(),
            done: false,
        }
    }
}

/// A request in flight on an endpoint.
pub(crate) struct InFlight {
    endpoint: Arc<Endpoint>,
    start: Instant,
    done: bool,
}

impl InFlight {
    /// The endpoint answered; `failed` feeds the breaker.
    pub(crate) fn complete(mut self, failed: bool) {
        let now = Instant::now();
        let ep = &self.endpoint;
        ep.load
            .observe(now.saturating_duration_since(self.start), now);
        if failed {
            ep.breaker.failure(now);
        } else {
            ep.breaker.success();
        }
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.load.pending.fetch_sub(1, Relaxed);
        if !self.done {
            self.endpoint.breaker.release();
        }
    }
}

/// Builds endpoints with the proxy's settings.
pub(crate) struct EndpointFactory {
    /// The proxy's identity; endpoints with an identity get mTLS.
    pub(crate) identity: Option<Arc<Identity>>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) connect_timeout: Duration,
    pub(crate) breaker: BreakerConfig,
}

impl EndpointFactory {
    fn build(&self, authority: &str, target: &Target) -> Arc<Endpoint> {
        let meta = &target.meta;
        let (ns, name) = meta
            .deployment
            .as_ref()
            .map_or(("", ""), |d| (d.namespace.as_str(), d.name.as_str()));
        let tls = outbound_tls(self.identity.as_deref(), meta.identity.as_deref());
        // Identities only where mTLS proves them.
        let (server_id, client_id) = match (tls.is_secured(), &self.identity) {
            (true, Some(own)) => (meta.identity.as_deref().unwrap_or(""), own.name()),
            _ => ("", ""),
        };
        let peer = labels::Endpoint {
            authority,
            dst_namespace: ns,
            dst_deployment: name,
            tls: Some(tls),
            server_id,
            client_id,
        };
        let stats = self.registry.http(Direction::Outbound, &peer);
        let tcp = self
            .registry
            .tcp(Direction::Outbound, labels::Peer::Dst, &peer);
        let mtls = self
            .identity
            .clone()
            .filter(|_| tls.is_secured())
            .zip(meta.identity.clone());
        Arc::new(Endpoint {
            target: target.clone(),
            client: EndpointClient::new(
                target.addr,
                self.connect_timeout,
                tcp.clone(),
                mtls.clone(),
            ),
            mtls,
            stats,
            tcp,
            breaker: Breaker::new(self.breaker),
            load: PeakEwma::new(),
            connect_timeout: self.connect_timeout,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PickError {
    NoEndpoints,
    /// Every endpoint's breaker is open.
    Unavailable,
}

type Endpoints = Arc<Vec<Arc<Endpoint>>>;

pub(crate) struct Balancer {
    authority: String,
    factory: Arc<EndpointFactory>,
    state: Mutex<(watch::Receiver<Targets>, Endpoints)>,
}

impl Balancer {
    pub(crate) fn new(
        authority: String,
        mut targets: watch::Receiver<Targets>,
        factory: Arc<EndpointFactory>,
    ) -> Self {
        let initial = targets.borrow_and_update().clone();
        let endpoints = Arc::new(
            initial
                .iter()
                .map(|t| factory.build(&authority, t))
                .collect(),
        );
        Self {
            authority,
            factory,
            state: Mutex::new((targets, endpoints)),
        }
    }

    /// The current endpoints, after applying any update that arrived.
    pub(crate) fn endpoints(&self) -> Endpoints {
        let mut state = lock(&self.state);
        let (rx, endpoints) = &mut *state;
        if rx.has_changed().unwrap_or(false) {
            let targets = rx.borrow_and_update().clone();
            let next: Vec<Arc<Endpoint>> = targets
                .iter()
                .map(|t| {
                    endpoints
                        .iter()
                        .find(|e| e.target == *t)
                        .cloned()
                        .unwrap_or_else(|| self.factory.build(&self.authority, t))
                })
                .collect();
            tracing::debug!(authority = %self.authority, endpoints = next.len(), "endpoint set updated");
            *endpoints = Arc::new(next);
        }
        endpoints.clone()
    }

    pub(crate) fn pick(&self) -> Result<Arc<Endpoint>, PickError> {
        let endpoints = self.endpoints();
        let now = Instant::now();
        match endpoints.len() {
            0 => return Err(PickError::NoEndpoints),
            1 => {
                let only = &endpoints[0];
                return if only.breaker.try_acquire(now) {
                    Ok(only.clone())
                } else {
                    Err(PickError::Unavailable)
                };
            }
            _ => {}
        }
        let (a, b) = two_of(endpoints.len());
        let (a, b) = (&endpoints[a], &endpoints[b]);
        let candidates = match (a.breaker.is_available(now), b.breaker.is_available(now)) {
            (true, true) => order(a, b, now),
            (true, false) => [Some(a), None],
            (false, true) => [Some(b), None],
            (false, false) => return pick_available(&endpoints, now),
        };
        candidates
            .into_iter()
            .flatten()
            .find(|e| e.breaker.try_acquire(now))
            .cloned()
            .map_or_else(|| pick_available(&endpoints, now), Ok)
    }
}

/// Both sampled endpoints were out: choose among those that are not.
fn pick_available(endpoints: &[Arc<Endpoint>], now: Instant) -> Result<Arc<Endpoint>, PickError> {
    let available: Vec<&Arc<Endpoint>> = endpoints
        .iter()
        .filter(|e| e.breaker.is_available(now))
        .collect();
    let candidates = match available.len() {
        0 => return Err(PickError::Unavailable),
        1 => [Some(available[0]), None],
        n => {
            let (a, b) = two_of(n);
            order(available[a], available[b], now)
        }
    };
    candidates
        .into_iter()
        .flatten()
        .find(|e| e.breaker.try_acquire(now))
        .cloned()
        .ok_or(PickError::Unavailable)
}

fn order<'a>(
    a: &'a Arc<Endpoint>,
    b: &'a Arc<Endpoint>,
    now: Instant,
) -> [Option<&'a Arc<Endpoint>>; 2] {
    if a.load.cost(now) <= b.load.cost(now) {
        [Some(a), Some(b)]
    } else {
        [Some(b), Some(a)]
    }
}

/// Two distinct indexes below `n` (n >= 2).
fn two_of(n: usize) -> (usize, usize) {
    let a = fastrand::usize(..n);
    let mut b = fastrand::usize(..n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::EndpointMeta;

    fn factory() -> Arc<EndpointFactory> {
        Arc::new(EndpointFactory {
            identity: None,
            registry: Arc::new(Registry::new("ns", "d", "p", "")),
            connect_timeout: Duration::from_secs(1),
            breaker: BreakerConfig {
                threshold: 2,
                backoff: Duration::from_secs(60),
            },
        })
    }

    fn target(port: u16) -> Target {
        Target {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            meta: EndpointMeta::default(),
        }
    }

    #[tokio::test]
    async fn prefers_the_faster_endpoint_and_follows_updates() {
        let (tx, rx) = watch::channel(Arc::new(vec![target(1), target(2)]));
        let b = Balancer::new("a:80".into(), rx, factory());
        let eps = b.endpoints();
        let now = Instant::now();
        eps[0].load.observe(Duration::from_millis(50), now);
        eps[1].load.observe(Duration::from_micros(100), now);
        for _ in 0..50 {
            assert_eq!(b.pick().unwrap().addr().port(), 2);
        }

        let kept = eps[1].clone();
        tx.send(Arc::new(vec![target(2), target(3)])).unwrap();
        let eps = b.endpoints();
        assert!(
            Arc::ptr_eq(&eps[0], &kept),
            "a surviving endpoint keeps its state"
        );
        for _ in 0..50 {
            assert_ne!(
                b.pick().unwrap().addr().port(),
                1,
                "removed endpoint picked"
            );
        }
    }

    #[tokio::test]
    async fn open_breakers_are_skipped() {
        let (_tx, rx) = watch::channel(Arc::new(vec![target(1), target(2)]));
        let b = Balancer::new("a:80".into(), rx, factory());
        let eps = b.endpoints();
        let now = Instant::now();
        eps[0].breaker.failure(now);
        eps[0].breaker.failure(now);
        for _ in 0..50 {
            assert_eq!(b.pick().unwrap().addr().port(), 2);
        }
        eps[1].breaker.failure(now);
        eps[1].breaker.failure(now);
        assert_eq!(b.pick().err(), Some(PickError::Unavailable));
    }
}
