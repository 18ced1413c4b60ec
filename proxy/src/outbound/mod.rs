//! Outbound: connections from the local application to the rest of the
//! mesh.
//!
//! HTTP is routed by its authority: the authority is resolved once into a
//! [`Logical`] destination (endpoints, balancer, profile, retry budget) that
//! is cached until it has been idle for `--destination-idle-timeout`. An
//! authority that no resolver knows falls back to the original destination
//! (transparent mode) or DNS (explicit mode); those fallbacks are looked up
//! again every few seconds, so an authority the control plane learns about
//! later is picked up. Opaque TCP goes to the original destination
//! (transparent) or through an explicit `--outbound-tcp-route`.

mod http;
mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conduit_api::metrics::labels;
use conduit_api::metrics::{NoTlsReason, Tls};
use conduit_api::proto::diagnostics::v1 as pb;
use conduit_api::{DeploymentRef, Direction};
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, watch};
use tokio::time::Instant;

use crate::accept::{self, Limits, Sniffed};
use crate::balance::{Balancer, EndpointFactory};
use crate::config::{Config, Mode};
use crate::errors::ProxyError;
use crate::http::server::Server;
use crate::io::{MeteredIo, PrefixedIo};
use crate::learned_routes::{LearnedRoutes, Lookup};
use crate::metrics::{HttpStats, Registry, TcpStats, lock};
use crate::profile::{self, Profile, Route};
use crate::resolve::{Resolution, Resolve, Resolved, Target};
use crate::retry::Budget;
use crate::tap::Tap;

pub(crate) use self::tcp::serve_route as serve_tcp_route;

/// How long a DNS or original-destination answer is used before the
/// resolvers are asked again.
const FALLBACK_TTL: Duration = Duration::from_secs(5);
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Outbound {
    config: Arc<Config>,
    registry: Arc<Registry>,
    tap: Arc<Tap>,
    server: Server,
    limits: Limits,
    own: Option<DeploymentRef>,
    resolver: Arc<dyn Resolve>,
    factory: Arc<EndpointFactory>,
    src_tcp: Arc<TcpStats>,
    logicals: Mutex<HashMap<String, Arc<Slot>>>,
    epoch: Instant,
    /// The proxy's own listeners: a fallback to one of them would loop.
    listeners: Vec<SocketAddr>,
}

/// How outbound destinations are found and reached.
pub(crate) struct Routing {
    pub(crate) resolver: Arc<dyn Resolve>,
    pub(crate) factory: Arc<EndpointFactory>,
    /// The proxy's own listeners, never a valid fallback destination.
    pub(crate) listeners: Vec<SocketAddr>,
}

/// A cache entry: the destination once resolved, and when it was last used.
#[derive(Default)]
pub(crate) struct Slot {
    logical: OnceCell<Arc<Logical>>,
    last_used_ms: AtomicU64,
}

impl Outbound {
    pub(crate) fn new(
        config: Arc<Config>,
        registry: Arc<Registry>,
        tap: Arc<Tap>,
        server: Server,
        limits: Limits,
        routing: Routing,
    ) -> Self {
        let Routing {
            resolver,
            factory,
            listeners,
        } = routing;
        let src_tcp = registry.tcp(
            Direction::Outbound,
            labels::Peer::Src,
            &labels::Endpoint {
                tls: Some(Tls::NoIdentity(NoTlsReason::Loopback)),
                ..labels::Endpoint::default()
            },
        );
        Self {
            own: config.deployment_ref(),
            config,
            registry,
            tap,
            server,
            limits,
            resolver,
            factory,
            src_tcp,
            logicals: Mutex::default(),
            epoch: Instant::now(),
            listeners,
        }
    }

    /// The main outbound listener's connections.
    pub(crate) async fn handle(self: Arc<Self>, stream: TcpStream, client: SocketAddr) {
        let orig_dst = match self.config.mode {
            Mode::Explicit => None,
            Mode::Transparent => match accept::original_dst(&stream) {
                Ok(dst) => Some(dst),
                Err(e) => {
                    tracing::warn!(%client, error = %e, "no original destination on a transparent outbound connection; closing it");
                    return;
                }
            },
        };
        let io = MeteredIo::new(stream, self.src_tcp.clone());
        if let Some(dst) = orig_dst
            && self.skips_detection(dst).await
        {
            return self
                .forward_tcp(PrefixedIo::new(Bytes::new(), io), dst)
                .await;
        }
        match accept::sniff(io, self.limits).await {
            Sniffed::Http(version, io) => {
                let conn = Arc::new(http::OutboundConn::new(self.clone(), client, orig_dst));
                self.server.serve(io, version, conn).await;
            }
            Sniffed::Opaque(io) => match orig_dst {
                Some(dst) => self.forward_tcp(io, dst).await,
                None => tracing::info!(
                    %client,
                    "opaque connection on the explicit outbound listener has no destination; \
                     use --outbound-tcp-route for TCP; closing it"
                ),
            },
            Sniffed::Rejected { error, start } => {
                let nowhere = labels::Endpoint::authority("");
                let stats = self.registry.http(Direction::Outbound, &nowhere);
                crate::http::observe::rejected(stats, start, &error);
            }
            Sniffed::Done => {}
        }
    }

    /// An opaque port, or a destination the control plane marked opaque
    /// (server-speaks-first protocols would stall in detection).
    async fn skips_detection(&self, dst: SocketAddr) -> bool {
        if self.config.is_opaque_port(dst.port()) {
            return true;
        }
        self.logical(&dst.to_string(), Some(dst))
            .await
            .is_ok_and(|l| l.is_opaque())
    }

    /// Transparent mode's opaque TCP: to the original destination.
    async fn forward_tcp(&self, mut client: PrefixedIo<MeteredIo<TcpStream>>, dst: SocketAddr) {
        let key = dst.to_string();
        let logical = match self.logical(&key, Some(dst)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(%dst, error = %e, "no route for an outbound TCP connection");
                return;
            }
        };
        tcp::forward_to_logical(&mut client, &logical).await;
    }

    fn is_own(&self, addr: SocketAddr) -> bool {
        self.listeners.iter().any(|l| {
            *l == addr
                || (l.ip().is_unspecified() && l.port() == addr.port() && addr.ip().is_loopback())
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The destination for an authority (`host:port`), resolved on first
    /// use. In transparent mode `orig_dst` is the fallback.
    pub(crate) async fn logical(
        &self,
        key: &str,
        orig_dst: Option<SocketAddr>,
    ) -> Result<Arc<Logical>, ProxyError> {
        self.logical_slot(key, orig_dst).await.map(|(_, l)| l)
    }

    /// Like [`Self::logical`], with the cache entry to [`Self::touch`] when
    /// the caller keeps the destination across requests.
    pub(crate) async fn logical_slot(
        &self,
        key: &str,
        orig_dst: Option<SocketAddr>,
    ) -> Result<(Arc<Slot>, Arc<Logical>), ProxyError> {
        let cache_key = match orig_dst {
            Some(dst) => format!("{key}|{dst}"),
            None => key.to_string(),
        };
        let slot = {
            let mut map = lock(&self.logicals);
            let max = self.config.outbound_max_authorities as usize;
            if map.len() >= max && !map.contains_key(&cache_key) {
                forget_least_recently_used(&mut map)?;
            }
            let slot = map.entry(cache_key.clone()).or_default();
            if slot.logical.get().is_some_and(|l| l.is_expired()) {
                *slot = Arc::default();
            }
            slot.clone()
        };
        self.touch(&slot);
        let resolved = slot
            .logical
            .get_or_try_init(|| self.resolve(key, orig_dst))
            .await;
        match resolved {
            Ok(logical) => Ok((slot.clone(), logical.clone())),
            Err(e) => {
                // Only authorities being resolved stay unresolved in the
                // cache, so a full cache of them is a fair reason to refuse.
                let mut map = lock(&self.logicals);
                if map.get(&cache_key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    map.remove(&cache_key);
                }
                Err(e)
            }
        }
    }

    /// The destination cache as it stands: each resolved authority and
    /// its endpoints, sorted by authority.
    pub(crate) fn destinations(&self) -> Vec<pb::Destination> {
        let logicals: Vec<Arc<Logical>> = lock(&self.logicals)
            .values()
            .filter_map(|slot| slot.logical.get().cloned())
            .collect();
        let mut out: Vec<pb::Destination> = logicals.iter().map(|l| l.diagnostics()).collect();
        out.sort_by(|a, b| a.authority.cmp(&b.authority));
        out
    }

    /// Marks a destination used, which keeps it from idle eviction.
    pub(crate) fn touch(&self, slot: &Slot) {
        slot.last_used_ms.store(self.now_ms(), Relaxed);
    }

    async fn resolve(
        &self,
        key: &str,
        orig_dst: Option<SocketAddr>,
    ) -> Result<Arc<Logical>, ProxyError> {
        if let Resolved::Known(res) = self.resolver.resolve(key).await {
            tracing::debug!(
                authority = key,
                "resolved by the control plane or static endpoints"
            );
            return Ok(self.new_logical(key, res, None));
        }
        let addrs = match orig_dst {
            Some(dst) => vec![dst],
            None => dns(key).await?,
        };
        if addrs.iter().any(|a| self.is_own(*a)) {
            return Err(ProxyError::NoRoute(format!(
                "{key} (this proxy's own listener: the request would loop)"
            )));
        }
        tracing::debug!(authority = key, ?addrs, "resolved by fallback");
        let targets = addrs
            .into_iter()
            .map(|addr| Target {
                addr,
                meta: Default::default(),
            })
            .collect();
        let expires = Instant::now() + FALLBACK_TTL;
        Ok(self.new_logical(key, Resolution::fixed(targets), Some(expires)))
    }

    fn new_logical(&self, key: &str, res: Resolution, expires: Option<Instant>) -> Arc<Logical> {
        // No connection, so no `tls` label: these requests reached no one.
        let unbalanced = self
            .registry
            .http(Direction::Outbound, &labels::Endpoint::authority(key));
        Arc::new(Logical {
            authority: key.to_string(),
            balancer: Balancer::new(key.to_string(), res.targets, self.factory.clone()),
            profile: res.profile,
            budget: Mutex::new(Arc::new(Budget::new(profile::DEFAULT_BUDGET))),
            routes: Mutex::default(),
            learned: LearnedRoutes::new(self.config.learned_routes_max),
            unbalanced,
            expires,
        })
    }

    /// Forgets destinations idle for longer than the idle timeout, which
    /// closes their destination subscriptions.
    pub(crate) async fn evict_idle(self: Arc<Self>) {
        let idle = self.config.destination_idle_timeout;
        let period = (idle / 4).max(Duration::from_secs(1));
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(period).await;
            let now = self.now_ms();
            let mut map = lock(&self.logicals);
            let before = map.len();
            map.retain(|_, s| now.saturating_sub(s.last_used_ms.load(Relaxed)) < idle_ms);
            if map.len() < before {
                tracing::debug!(
                    evicted = before - map.len(),
                    "forgot idle outbound destinations"
                );
            }
        }
    }
}

/// Makes room in a full destination cache by forgetting its least recently
/// used resolved destination (connections using it keep it); authorities
/// still being resolved stay, so when all are, there is no room.
fn forget_least_recently_used(map: &mut HashMap<String, Arc<Slot>>) -> Result<(), ProxyError> {
    let oldest = map
        .iter()
        .filter(|(_, s)| s.logical.initialized())
        .min_by_key(|(_, s)| s.last_used_ms.load(Relaxed))
        .map(|(k, _)| k.clone());
    let Some(oldest) = oldest else {
        return Err(ProxyError::TooManyAuthorities);
    };
    tracing::debug!(authority = %oldest, "destination cache full; forgetting its least recently used");
    map.remove(&oldest);
    Ok(())
}

async fn dns(key: &str) -> Result<Vec<SocketAddr>, ProxyError> {
    let no_route = |why: String| ProxyError::NoRoute(format!("{key} ({why})"));
    let addrs = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host(key))
        .await
        .map_err(|_| no_route("DNS timeout".into()))?
        .map_err(|e| no_route(format!("DNS: {e}")))?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    if addrs.is_empty() {
        return Err(no_route("DNS: no addresses".into()));
    }
    Ok(addrs)
}

/// One outbound authority: where its endpoints are, how its requests are
/// routed, and the state that spans requests.
pub(crate) struct Logical {
    pub(crate) authority: String,
    pub(crate) balancer: Balancer,
    profile: watch::Receiver<Arc<Profile>>,
    budget: Mutex<Arc<Budget>>,
    routes: Mutex<HashMap<String, Arc<HttpStats>>>,
    /// Templates of the requests no profile route matches.
    learned: LearnedRoutes<HttpStats>,
    /// Requests that never reached an endpoint (none, or all unavailable).
    pub(crate) unbalanced: Arc<HttpStats>,
    expires: Option<Instant>,
}

impl Logical {
    pub(crate) fn is_expired(&self) -> bool {
        self.expires.is_some_and(|e| Instant::now() >= e)
    }

    fn diagnostics(&self) -> pb::Destination {
        let now = Instant::now();
        let endpoints = self.balancer.endpoints();
        pb::Destination {
            authority: self.authority.clone(),
            endpoints: endpoints.iter().map(|e| e.diagnostics(now)).collect(),
            fallback: self.expires.is_some(),
        }
    }

    pub(crate) fn is_opaque(&self) -> bool {
        self.profile.borrow().opaque
            || self
                .balancer
                .endpoints()
                .iter()
                .any(|e| e.target.meta.opaque)
    }

    pub(crate) fn profile(&self) -> Arc<Profile> {
        self.profile.borrow().clone()
    }

    /// The retry budget in force, replaced when the profile changes it.
    pub(crate) fn budget(&self, profile: &Profile) -> Arc<Budget> {
        let spec = profile.budget.unwrap_or(profile::DEFAULT_BUDGET);
        let mut budget = lock(&self.budget);
        if budget.spec() != spec {
            *budget = Arc::new(Budget::new(spec));
        }
        budget.clone()
    }

    pub(crate) fn route_stats(&self, registry: &Registry, route: &Route) -> Arc<HttpStats> {
        lock(&self.routes)
            .entry(route.name.clone())
            .or_insert_with(|| registry.route(&self.authority, &route.name))
            .clone()
    }

    /// The series of the template a request no profile route matched
    /// falls under; `None` when learning is off.
    pub(crate) fn learned_stats<B>(
        &self,
        registry: &Registry,
        req: &::http::Request<B>,
    ) -> Option<Arc<HttpStats>> {
        let found = self
            .learned
            .lookup(req.method(), req.uri().path(), |route| {
                registry.learned_route(&self.authority, route)
            })?;
        Some(match found {
            Lookup::Own(stats) => stats,
            Lookup::Overflow(reason, stats) => {
                registry.proxy.learned_folded(reason);
                stats
            }
        })
    }
}
