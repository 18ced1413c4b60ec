//! Fan-in: the controller subscribes to the tap server of every meshed
//! pod of the Deployment (`conduit.tap.v1.Tap/Observe`), merges their
//! streams, re-applies the filter and limits the rate per client.
//!
//! Pods that appear later are subscribed to as discovery reports them;
//! a proxy whose stream breaks is re-dialled with backoff for as long as
//! the client listens. The first round of dials must reach at least one
//! proxy, so a client learns at once that nothing can be tapped instead of
//! waiting on a silent stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::tap::v1::{self as tap, tap_client::TapClient};
use conduit_api::rate_limit::RateLimit;
use conduit_api::tap_filter::Request;
use conduit_api::{DeploymentRef, IdentityName};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::Status;
use tracing::debug;

use super::filter;
use super::limits::max_rps;
use crate::discovery::Snapshot;
use crate::links::Links;
use crate::public::{PublicApi, ServerStream, async_stream, deployment_arg, not_found};

const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Opens a merged stream of the Deployment's proxies' events. Events are
/// those the proxies sent for `filter`; callers re-check them.
pub async fn open(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    links: &Links,
    deployment: &DeploymentRef,
    filter: tap::Filter,
    proxy_max_rps: u32,
) -> Result<mpsc::Receiver<tap::TapEvent>, Status> {
    let taps = tap_addrs(&snapshots.borrow(), links, deployment)?;
    let request = tap::ObserveRequest {
        filter: Some(filter),
        max_rps: proxy_max_rps,
        limit: 0,
    };
    let dials =
        futures_util::future::join_all(taps.iter().map(|t| observe(links, t, request.clone())));
    let (tx, rx) = mpsc::channel(1024);
    let mut tasks = BTreeMap::new();
    let mut errors = Vec::new();
    for (target, dialed) in taps.iter().zip(dials.await) {
        let first = match dialed {
            Ok(stream) => Some(stream),
            Err(e) => {
                errors.push(format!("{}: {e}", target.addr));
                None
            }
        };
        let task = spawn_pod(
            links.clone(),
            target.clone(),
            request.clone(),
            first,
            tx.clone(),
        );
        tasks.insert(target.addr, task);
    }
    if errors.len() == taps.len() {
        for t in tasks.values() {
            t.abort();
        }
        return Err(Status::unavailable(format!(
            "cannot reach the tap server of any pod of {deployment}: {}",
            errors.join("; ")
        )));
    }
    tokio::spawn(follow_pods(
        snapshots,
        links.clone(),
        deployment.clone(),
        request,
        tasks,
        tx,
    ));
    Ok(rx)
}

/// A pod's tap server and the identity its proxy proves.
#[derive(Clone, Debug, PartialEq)]
struct TapTarget {
    addr: SocketAddr,
    identity: IdentityName,
}

fn tap_addrs(snap: &Snapshot, links: &Links, d: &DeploymentRef) -> Result<Vec<TapTarget>, Status> {
    let info = snap.deployments.get(d).ok_or_else(|| not_found(d))?;
    let identity = links.pod_identity(&info.service_account, &d.namespace);
    let taps: Vec<_> = info
        .pods
        .iter()
        .filter_map(|p| p.tap)
        .map(|addr| TapTarget {
            addr,
            identity: identity.clone(),
        })
        .collect();
    if taps.is_empty() {
        return Err(Status::failed_precondition(format!(
            "deployment {d} has no meshed pod with a tap server to tap"
        )));
    }
    Ok(taps)
}

type EventStream = tonic::Streaming<tap::TapEvent>;

async fn observe(
    links: &Links,
    target: &TapTarget,
    req: tap::ObserveRequest,
) -> Result<EventStream, String> {
    let channel = links.channel(&target.addr.to_string(), &target.identity, DIAL_TIMEOUT)?;
    let reply = tokio::time::timeout(DIAL_TIMEOUT, TapClient::new(channel).observe(req))
        .await
        .map_err(|_| "no answer to Observe".to_string())?
        .map_err(|s| {
            let source = std::error::Error::source(&s)
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            format!("{}{source}", s.message())
        })?;
    Ok(reply.into_inner())
}

/// Forwards one pod's events, re-dialling when its stream ends.
fn spawn_pod(
    links: Links,
    target: TapTarget,
    req: tap::ObserveRequest,
    mut first: Option<EventStream>,
    tx: mpsc::Sender<tap::TapEvent>,
) -> JoinHandle<()> {
    let addr = target.addr;
    tokio::spawn(async move {
        let mut backoff = RETRY_MIN;
        loop {
            let stream = match first.take() {
                Some(s) => Ok(s),
                None => tokio::select! {
                    s = observe(&links, &target, req.clone()) => s,
                    () = tx.closed() => return,
                },
            };
            match stream {
                Ok(mut stream) => {
                    backoff = RETRY_MIN;
                    loop {
                        let next = tokio::select! {
                            next = stream.next() => next,
                            () = tx.closed() => return,
                        };
                        match next {
                            Some(Ok(event)) => {
                                if tx.send(event).await.is_err() {
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                debug!(%addr, error = %e, "tap stream failed");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(e) => debug!(%addr, error = %e, "cannot tap proxy"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    })
}

/// Starts and stops pod subscriptions as discovery changes.
async fn follow_pods(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    links: Links,
    deployment: DeploymentRef,
    req: tap::ObserveRequest,
    mut tasks: BTreeMap<SocketAddr, JoinHandle<()>>,
    tx: mpsc::Sender<tap::TapEvent>,
) {
    loop {
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            () = tx.closed() => break,
        }
        let taps =
            tap_addrs(&snapshots.borrow_and_update(), &links, &deployment).unwrap_or_default();
        tasks.retain(|addr, task| {
            let keep = taps.iter().any(|t| t.addr == *addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for target in taps {
            tasks
                .entry(target.addr)
                .or_insert_with(|| spawn_pod(links.clone(), target, req.clone(), None, tx.clone()));
        }
    }
    for t in tasks.values() {
        t.abort();
    }
}

impl PublicApi {
    pub(in crate::public) async fn tap_stream(
        &self,
        req: pb::TapRequest,
    ) -> Result<ServerStream<tap::TapEvent>, Status> {
        let deployment = deployment_arg("deployment", req.deployment)?;
        let wire = req.filter.unwrap_or_default();
        let filter = filter(wire.clone())?;
        let rate = max_rps(req.max_rps)?;
        let mut events = open(self.snapshots(), &self.inner.links, &deployment, wire, rate).await?;
        let mut limit = RateLimit::new(rate);
        let stream = async_stream(
            move |tx: mpsc::Sender<Result<tap::TapEvent, Status>>| async move {
                while let Some(event) = events.recv().await {
                    if filter.matches(&Request::of_event(&event))
                        && limit.allow()
                        && tx.send(Ok(event)).await.is_err()
                    {
                        return;
                    }
                }
            },
        );
        Ok(stream)
    }
}
