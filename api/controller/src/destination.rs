//! `conduit.destination.v1.Destination`: endpoint sets and profiles for
//! the proxies, streamed from discovery snapshots.
//!
//! Each subscription resolves its authority against every new snapshot and
//! sends only the difference from what it sent before: a first full `add`,
//! then `remove`s and `add`s (an `add` of a known address replaces it), or
//! `no_endpoints` when the set becomes empty. A subscription ends when the
//! client goes away.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use conduit_api::metrics::label;
use conduit_api::proto::destination::v1::{self as pb, destination_server};
use conduit_api::proto::mesh::v1 as mesh;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::discovery::{Authority, Endpoint, ProtocolHint, Resolution, Snapshot};
use crate::profile;

pub struct Destination {
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl Destination {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self { snapshots }
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

fn parse_target(req: &pb::GetDestination) -> Result<(Authority, String), Status> {
    let authority: Authority = req
        .path
        .parse()
        .map_err(|e: crate::discovery::AuthorityError| Status::invalid_argument(e.to_string()))?;
    let namespace = req
        .context
        .as_ref()
        .map(|c| c.namespace.clone())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Ok((authority, namespace))
}

#[tonic::async_trait]
impl destination_server::Destination for Destination {
    type GetStream = Stream<pb::Update>;

    async fn get(
        &self,
        req: Request<pb::GetDestination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let (authority, namespace) = parse_target(req.get_ref())?;
        debug!(authority = %req.get_ref().path, "destination subscription");
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(stream_endpoints(
            self.snapshots.clone(),
            authority,
            namespace,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type GetProfileStream = Stream<pb::DestinationProfile>;

    async fn get_profile(
        &self,
        req: Request<pb::GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let (authority, namespace) = parse_target(req.get_ref())?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(stream_profiles(
            self.snapshots.clone(),
            authority,
            namespace,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Waits for the next snapshot; `false` when the client left or discovery
/// stopped.
async fn next_snapshot<T>(
    snapshots: &mut watch::Receiver<Arc<Snapshot>>,
    tx: &mpsc::Sender<Result<T, Status>>,
) -> bool {
    tokio::select! {
        changed = snapshots.changed() => changed.is_ok(),
        () = tx.closed() => false,
    }
}

async fn stream_endpoints(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    authority: Authority,
    namespace: String,
    tx: mpsc::Sender<Result<pb::Update, Status>>,
) {
    let mut sent = EndpointState::default();
    loop {
        let resolution = {
            let snap = snapshots.borrow_and_update().clone();
            snap.resolve(&authority, &namespace)
        };
        for update in sent.apply(resolution) {
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
        }
        if !next_snapshot(&mut snapshots, &tx).await {
            return;
        }
    }
}

/// What a subscriber has been told so far.
#[derive(Default)]
pub struct EndpointState {
    started: bool,
    /// `Some(exists)` after a `no_endpoints`.
    empty: Option<bool>,
    endpoints: BTreeMap<SocketAddr, Endpoint>,
    shared_labels: BTreeMap<String, String>,
}

impl EndpointState {
    /// The updates that bring the subscriber from what it knows to
    /// `resolution`.
    pub fn apply(&mut self, resolution: Resolution) -> Vec<pb::Update> {
        let shared = shared_labels(&resolution);
        let next: BTreeMap<_, _> = resolution
            .endpoints
            .into_iter()
            .map(|e| (e.addr, e))
            .collect();
        let first = !self.started;
        self.started = true;
        if next.is_empty() {
            let changed = first || self.empty != Some(resolution.exists);
            self.endpoints.clear();
            self.empty = Some(resolution.exists);
            return if changed {
                vec![update(pb::update::Update::NoEndpoints(pb::NoEndpoints {
                    exists: resolution.exists,
                }))]
            } else {
                vec![]
            };
        }
        let full = first || self.empty.is_some() || shared != self.shared_labels;
        let removed: Vec<_> = if full {
            vec![]
        } else {
            self.endpoints
                .keys()
                .filter(|a| !next.contains_key(a))
                .map(|a| tcp_address(*a))
                .collect()
        };
        let added: Vec<_> = next
            .iter()
            .filter(|(a, e)| full || self.endpoints.get(a) != Some(e))
            .map(|(_, e)| weighted(e))
            .collect();
        self.endpoints = next;
        self.empty = None;
        self.shared_labels = shared.clone();
        let mut out = Vec::new();
        if !removed.is_empty() {
            out.push(update(pb::update::Update::Remove(pb::AddrSet {
                addrs: removed,
            })));
        }
        if !added.is_empty() {
            out.push(update(pb::update::Update::Add(pb::WeightedAddrSet {
                addrs: added,
                metric_labels: shared.into_iter().collect(),
            })));
        }
        out
    }
}

fn update(u: pb::update::Update) -> pb::Update {
    pb::Update { update: Some(u) }
}

fn shared_labels(r: &Resolution) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(s) = &r.service {
        labels.insert(label::NAMESPACE.to_string(), s.namespace.clone());
        labels.insert("service".to_string(), s.name.clone());
    }
    labels
}

pub fn tcp_address(addr: SocketAddr) -> mesh::TcpAddress {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    mesh::TcpAddress {
        ip,
        port: addr.port().into(),
    }
}

fn weighted(e: &Endpoint) -> pb::WeightedAddr {
    let mut labels = BTreeMap::new();
    if let Some(d) = &e.deployment {
        labels.insert(label::DEPLOYMENT.to_string(), d.name.clone());
        labels.insert(label::NAMESPACE.to_string(), d.namespace.clone());
    }
    if let Some(pod) = &e.pod {
        labels.insert(label::POD.to_string(), pod.clone());
    }
    let protocol = match e.hint {
        ProtocolHint::H2 => Some(pb::protocol_hint::Protocol::H2(pb::protocol_hint::H2 {})),
        ProtocolHint::Opaque => Some(pb::protocol_hint::Protocol::Opaque(
            pb::protocol_hint::Opaque {},
        )),
        ProtocolHint::Unknown => None,
    };
    pb::WeightedAddr {
        addr: Some(tcp_address(e.addr)),
        weight: 10_000,
        metric_labels: labels.into_iter().collect(),
        tls_identity: e.identity.as_ref().map(|id| pb::TlsIdentity {
            name: id.to_string(),
        }),
        protocol_hint: protocol.map(|p| pb::ProtocolHint { protocol: Some(p) }),
        deployment: e.deployment.clone().map(Into::into),
    }
}

async fn stream_profiles(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    authority: Authority,
    namespace: String,
    tx: mpsc::Sender<Result<pb::DestinationProfile, Status>>,
) {
    let mut last = None;
    loop {
        let profile = {
            let snap = snapshots.borrow_and_update().clone();
            let r = snap.resolve(&authority, &namespace);
            r.service
                .as_ref()
                .and_then(|s| snap.profiles.get(s))
                .cloned()
                .unwrap_or_else(|| profile::default_profile(&r.fully_qualified_name, r.opaque))
        };
        if last.as_ref() != Some(&profile) {
            if tx.send(Ok(profile.clone())).await.is_err() {
                return;
            }
            last = Some(profile);
        }
        if !next_snapshot(&mut snapshots, &tx).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::DeploymentRef;

    fn endpoint(port: u16, pod: &str) -> Endpoint {
        Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pod: Some(pod.into()),
            deployment: Some(DeploymentRef::new("demo", "web")),
            identity: None,
            hint: ProtocolHint::H2,
        }
    }

    fn resolution(endpoints: Vec<Endpoint>) -> Resolution {
        Resolution {
            exists: true,
            service: Some(crate::discovery::ServiceRef::new("demo", "web")),
            fully_qualified_name: "web.demo.svc.cluster.local".into(),
            opaque: false,
            endpoints,
        }
    }

    fn kinds(updates: &[pb::Update]) -> Vec<String> {
        updates
            .iter()
            .map(|u| match u.update.as_ref().unwrap() {
                pb::update::Update::Add(a) => format!("add{}", a.addrs.len()),
                pb::update::Update::Remove(r) => format!("remove{}", r.addrs.len()),
                pb::update::Update::NoEndpoints(n) => format!("none:{}", n.exists),
            })
            .collect()
    }

    #[test]
    fn sends_a_full_set_then_differences() {
        let mut state = EndpointState::default();
        let a = endpoint(1, "a");
        let b = endpoint(2, "b");
        assert_eq!(kinds(&state.apply(resolution(vec![a.clone()]))), ["add1"]);
        assert!(state.apply(resolution(vec![a.clone()])).is_empty());
        assert_eq!(
            kinds(&state.apply(resolution(vec![a.clone(), b.clone()]))),
            ["add1"]
        );
        assert_eq!(
            kinds(&state.apply(resolution(vec![b.clone()]))),
            ["remove1"]
        );
        assert_eq!(kinds(&state.apply(resolution(vec![]))), ["none:true"]);
        assert!(state.apply(resolution(vec![])).is_empty());
        assert_eq!(kinds(&state.apply(resolution(vec![a]))), ["add1"]);
    }

    #[test]
    fn unknown_authorities_say_they_do_not_exist() {
        let mut state = EndpointState::default();
        let mut r = resolution(vec![]);
        r.exists = false;
        assert_eq!(kinds(&state.apply(r)), ["none:false"]);
    }

    #[test]
    fn endpoints_carry_identity_hint_and_labels() {
        let mut e = endpoint(1, "web-0");
        e.identity = Some(conduit_api::IdentityName::new("web", "demo"));
        let w = weighted(&e);
        assert_eq!(w.metric_labels["deployment"], "web");
        assert_eq!(w.metric_labels["pod"], "web-0");
        assert_eq!(
            w.tls_identity.unwrap().name,
            "web.demo.serviceaccount.identity.conduit.cluster.local"
        );
        assert!(matches!(
            w.protocol_hint.unwrap().protocol,
            Some(pb::protocol_hint::Protocol::H2(_))
        ));
    }
}
