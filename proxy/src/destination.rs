//! The destination client: endpoints and profiles from the controller.
//!
//! Each outbound authority gets two subscriptions, `Get` (endpoint set) and
//! `GetProfile` (routes), kept while the outbound side uses the authority
//! and closed when it forgets it. The controller being down must never fail
//! traffic: a subscription that breaks keeps its last endpoint set and
//! profile and reconnects with backoff; the first message of the new stream
//! replaces the set (it is a full snapshot). Only an authority the
//! controller never answered for falls back to DNS or the original
//! destination.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use conduit_api::proto::destination::v1::destination_client::DestinationClient;
use conduit_api::proto::destination::v1::{
    self as pb, GetDestination, WeightedAddr, protocol_hint, update,
};
use tokio::sync::{oneshot, watch};
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::config::{Config, GrpcAddr};
use crate::identity::Identity;
use crate::metrics::Registry;
use crate::profile::Profile;
use crate::resolve::{EndpointMeta, Resolution, Resolve, ResolveFuture, Resolved, Target, Targets};

pub(crate) struct DestinationResolver {
    client: DestinationClient<Channel>,
    registry: Arc<Registry>,
    context: Option<conduit_api::proto::mesh::v1::DeploymentRef>,
    resolve_timeout: Duration,
}

impl DestinationResolver {
    /// The destination service must prove the controller's identity when
    /// `addr` is mTLS.
    pub(crate) fn new(
        addr: &GrpcAddr,
        config: &Config,
        registry: Arc<Registry>,
        identity: Option<&Identity>,
    ) -> anyhow::Result<Self> {
        let channel = crate::identity::channel(addr, |i| &i.controller, identity)?;
        Ok(Self {
            client: DestinationClient::new(channel),
            registry,
            context: config.deployment_ref().map(Into::into),
            resolve_timeout: config.destination_resolve_timeout,
        })
    }
}

impl Resolve for DestinationResolver {
    fn resolve(&self, authority: &str) -> ResolveFuture {
        let req = GetDestination {
            scheme: "http".into(),
            path: authority.to_string(),
            context: self.context.clone(),
        };
        let (targets_tx, targets) = watch::channel(Targets::default());
        let (profile_tx, profile) = watch::channel(Arc::new(Profile::default()));
        let (known_tx, known_rx) = oneshot::channel();
        let (profiled_tx, profiled_rx) = oneshot::channel();
        tokio::spawn(watch_endpoints(
            self.client.clone(),
            req.clone(),
            targets_tx,
            known_tx,
        ));
        tokio::spawn(watch_profile(
            self.client.clone(),
            req,
            profile_tx,
            profiled_tx,
            self.registry.clone(),
        ));
        let deadline = tokio::time::Instant::now() + self.resolve_timeout;
        let authority = authority.to_string();
        Box::pin(async move {
            let known = matches!(
                tokio::time::timeout_at(deadline, known_rx).await,
                Ok(Ok(true))
            );
            if !known {
                tracing::debug!(%authority, "the destination service does not know this authority (or is unreachable)");
                return Resolved::Unknown;
            }
            // Give the profile the same chance, so the first requests already
            // get their routes' timeouts and retries.
            let _ = tokio::time::timeout_at(deadline, profiled_rx).await;
            Resolved::Known(Resolution { targets, profile })
        })
    }
}

/// Keeps `tx` up to date with the authority's endpoints until nobody
/// listens. `known` gets the first answer: whether the authority exists.
async fn watch_endpoints(
    mut client: DestinationClient<Channel>,
    req: GetDestination,
    tx: watch::Sender<Targets>,
    known: oneshot::Sender<bool>,
) {
    let authority = req.path.clone();
    let mut known = Some(known);
    let mut set = BTreeMap::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let call = tokio::select! {
            _ = tx.closed() => return,
            call = client.get(req.clone()) => call,
        };
        match call {
            Err(status) => {
                if let Some(k) = known.take() {
                    let _ = k.send(false);
                    return;
                }
                tracing::info!(%authority, error = %status, "destination stream unavailable; keeping the last endpoints");
            }
            Ok(rsp) => {
                let mut stream = rsp.into_inner();
                let mut fresh = true;
                loop {
                    let msg = tokio::select! {
                        _ = tx.closed() => return,
                        msg = stream.message() => msg,
                    };
                    let update = match msg {
                        Ok(Some(pb::Update { update: Some(u) })) => u,
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(status) => {
                            tracing::info!(%authority, error = %status, "destination stream broke; keeping the last endpoints");
                            break;
                        }
                    };
                    let exists = apply(&authority, &mut set, update, fresh);
                    fresh = false;
                    backoff.reset();
                    tx.send_replace(Arc::new(set.values().cloned().collect()));
                    if let Some(k) = known.take() {
                        let _ = k.send(exists);
                        if !exists {
                            return;
                        }
                    }
                }
                if let Some(k) = known.take() {
                    let _ = k.send(false);
                    return;
                }
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Applies one update; returns whether the authority exists. The first
/// update of a stream is a full snapshot and replaces the set.
fn apply(
    authority: &str,
    set: &mut BTreeMap<SocketAddr, Target>,
    update: update::Update,
    fresh: bool,
) -> bool {
    if fresh {
        set.clear();
    }
    match update {
        update::Update::Add(add) => {
            for a in &add.addrs {
                match target(a, &add.metric_labels) {
                    Some(t) => {
                        set.insert(t.addr, t);
                    }
                    None => {
                        tracing::warn!(authority, addr = ?a.addr, "ignoring an invalid endpoint address")
                    }
                }
            }
            true
        }
        update::Update::Remove(remove) => {
            for a in &remove.addrs {
                if let Some(addr) = socket_addr(a) {
                    set.remove(&addr);
                }
            }
            true
        }
        update::Update::NoEndpoints(none) => {
            set.clear();
            none.exists
        }
    }
}

fn socket_addr(a: &conduit_api::proto::mesh::v1::TcpAddress) -> Option<SocketAddr> {
    let ip = match a.ip.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(a.ip.as_slice()).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a.ip.as_slice()).ok()?)),
        _ => return None,
    };
    let port = u16::try_from(a.port).ok().filter(|p| *p != 0)?;
    Some(SocketAddr::new(ip, port))
}

fn target(
    a: &WeightedAddr,
    set_labels: &std::collections::HashMap<String, String>,
) -> Option<Target> {
    let addr = socket_addr(a.addr.as_ref()?)?;
    let deployment = a.deployment.clone().map(Into::into).or_else(|| {
        let name = a.metric_labels.get("deployment")?;
        let ns = a
            .metric_labels
            .get("namespace")
            .or_else(|| set_labels.get("namespace"))?;
        Some(conduit_api::DeploymentRef::new(ns.clone(), name.clone()))
    });
    let hint = a.protocol_hint.as_ref().and_then(|h| h.protocol.as_ref());
    Some(Target {
        addr,
        meta: EndpointMeta {
            deployment,
            identity: a
                .tls_identity
                .as_ref()
                .map(|t| t.name.clone())
                .filter(|n| !n.is_empty()),
            h2: matches!(hint, Some(protocol_hint::Protocol::H2(_))),
            opaque: matches!(hint, Some(protocol_hint::Protocol::Opaque(_))),
        },
    })
}

/// Keeps `tx` up to date with the authority's profile until nobody
/// listens; an invalid profile is logged and the previous one stays.
async fn watch_profile(
    mut client: DestinationClient<Channel>,
    req: GetDestination,
    tx: watch::Sender<Arc<Profile>>,
    first: oneshot::Sender<()>,
    registry: Arc<Registry>,
) {
    let authority = req.path.clone();
    let mut first = Some(first);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let call = tokio::select! {
            _ = tx.closed() => return,
            call = client.get_profile(req.clone()) => call,
        };
        match call {
            Err(status) => {
                tracing::debug!(%authority, error = %status, "no profile stream; keeping the current profile");
            }
            Ok(rsp) => {
                let mut stream = rsp.into_inner();
                loop {
                    let msg = tokio::select! {
                        _ = tx.closed() => return,
                        msg = stream.message() => msg,
                    };
                    let p = match msg {
                        Ok(Some(p)) => p,
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%authority, error = %status, "profile stream broke; keeping the current profile");
                            break;
                        }
                    };
                    backoff.reset();
                    match Profile::from_proto(p) {
                        Ok(p) => {
                            tracing::debug!(%authority, routes = p.routes.len(), "profile updated");
                            tx.send_replace(Arc::new(p));
                        }
                        Err(e) => {
                            registry.proxy.profiles_rejected.fetch_add(1, Relaxed);
                            tracing::error!(
                                %authority,
                                error = %e,
                                "rejected an invalid destination profile; the previous profile stays in force"
                            );
                        }
                    }
                    if let Some(f) = first.take() {
                        let _ = f.send(());
                    }
                }
            }
        }
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::proto::mesh::v1::TcpAddress;

    fn addr(port: u32) -> WeightedAddr {
        WeightedAddr {
            addr: Some(TcpAddress {
                ip: vec![127, 0, 0, 1],
                port,
            }),
            protocol_hint: Some(pb::ProtocolHint {
                protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
            }),
            metric_labels: [("deployment".to_string(), "web".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn snapshots_replace_and_changes_apply() {
        let mut set = BTreeMap::new();
        let add = |ports: &[u32]| {
            update::Update::Add(pb::WeightedAddrSet {
                addrs: ports.iter().map(|p| addr(*p)).collect(),
                metric_labels: [("namespace".to_string(), "demo".to_string())].into(),
            })
        };
        assert!(apply("a", &mut set, add(&[1, 2]), true));
        assert!(apply("a", &mut set, add(&[3]), false));
        assert_eq!(set.len(), 3);
        let t = &set[&"127.0.0.1:3".parse().unwrap()];
        assert!(t.meta.h2);
        assert_eq!(
            t.meta.deployment,
            Some(conduit_api::DeploymentRef::new("demo", "web"))
        );
        apply(
            "a",
            &mut set,
            update::Update::Remove(pb::AddrSet {
                addrs: vec![TcpAddress {
                    ip: vec![127, 0, 0, 1],
                    port: 1,
                }],
            }),
            false,
        );
        assert_eq!(set.len(), 2);
        assert!(
            apply("a", &mut set, add(&[4]), true),
            "a new stream's first add"
        );
        assert_eq!(set.keys().map(|a| a.port()).collect::<Vec<_>>(), [4]);
        assert!(!apply(
            "a",
            &mut set,
            update::Update::NoEndpoints(pb::NoEndpoints { exists: false }),
            false
        ));
        assert!(set.is_empty());
    }

    #[test]
    fn invalid_addresses_are_skipped() {
        let mut bad = addr(0);
        bad.addr.as_mut().unwrap().ip = vec![1, 2, 3];
        assert!(target(&bad, &Default::default()).is_none());
        assert!(target(&addr(0), &Default::default()).is_none(), "port 0");
    }
}
