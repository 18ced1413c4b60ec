//! Live tap: the controller subscribes to the tap server of every meshed
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

use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::tap::v1::{self as tap, tap_client::TapClient};
use conduit_api::rate_limit::RateLimit;
use conduit_api::{DeploymentRef, IdentityName};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::Status;
use tracing::debug;

use super::{PublicApi, ServerStream, deployment_arg, not_found, validate_filter};
use crate::discovery::Snapshot;
use crate::links::Links;
use crate::store::now_unix_ms;

pub const DEFAULT_MAX_RPS: u32 = 100;
pub const MAX_MAX_RPS: u32 = 10_000;
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
const DEFAULT_SEARCH_LIMIT: u32 = 100;
const MAX_SEARCH_LIMIT: u32 = 10_000;
const DEFAULT_SEARCH_SPAN_MS: i64 = 3_600_000;

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

/// Whether an event satisfies every set field of the filter.
pub fn matches(f: &tap::Filter, e: &tap::TapEvent) -> bool {
    let deployment_is = |peer: &Option<tap::Peer>, want: &Option<mesh::DeploymentRef>| {
        let Some(want) = want.as_ref().filter(|w| !w.name.is_empty()) else {
            return true;
        };
        peer.as_ref()
            .and_then(|p| p.deployment.as_ref())
            .is_some_and(|d| {
                d.name == want.name && (want.namespace.is_empty() || d.namespace == want.namespace)
            })
    };
    let authority_is = |a: &str| {
        a.is_empty()
            || e.authority.eq_ignore_ascii_case(a)
            || e.authority
                .rsplit_once(':')
                .is_some_and(|(host, _)| host.eq_ignore_ascii_case(a))
    };
    e.path.starts_with(&f.path_prefix)
        && (f.method.is_empty() || e.method.eq_ignore_ascii_case(&f.method))
        && authority_is(&f.authority)
        && deployment_is(&e.destination, &f.destination)
        && deployment_is(&e.source, &f.source)
        && (f.direction == 0 || f.direction == e.direction)
}

pub fn max_rps(requested: u32) -> Result<u32, Status> {
    match requested {
        0 => Ok(DEFAULT_MAX_RPS),
        n if n > MAX_MAX_RPS => Err(Status::invalid_argument(format!(
            "max_rps {n} is above the limit of {MAX_MAX_RPS}"
        ))),
        n => Ok(n),
    }
}

impl PublicApi {
    pub(super) async fn tap_stream(
        &self,
        req: pb::TapRequest,
    ) -> Result<ServerStream<tap::TapEvent>, Status> {
        let deployment = deployment_arg("deployment", req.deployment)?;
        let filter = req.filter.unwrap_or_default();
        validate_filter(&filter)?;
        let rate = max_rps(req.max_rps)?;
        let mut events = open(
            self.snapshots(),
            &self.inner.links,
            &deployment,
            filter.clone(),
            rate,
        )
        .await?;
        let mut limit = RateLimit::new(rate);
        let stream = async_stream(
            move |tx: mpsc::Sender<Result<tap::TapEvent, Status>>| async move {
                while let Some(event) = events.recv().await {
                    if matches(&filter, &event)
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

    pub(super) async fn search(
        &self,
        req: pb::SearchTapRequest,
    ) -> Result<pb::SearchTapResponse, Status> {
        let filter = req.filter.unwrap_or_default();
        validate_filter(&filter)?;
        let deployment = super::optional_deployment("deployment", req.deployment)?;
        let limit = match req.limit {
            0 => DEFAULT_SEARCH_LIMIT,
            n if n > MAX_SEARCH_LIMIT => {
                return Err(Status::invalid_argument(format!(
                    "limit {n} is above the maximum of {MAX_SEARCH_LIMIT}"
                )));
            }
            n => n,
        };
        let end = if req.end_unix_ms == 0 {
            now_unix_ms()
        } else {
            req.end_unix_ms
        };
        let start = if req.start_unix_ms == 0 {
            end - DEFAULT_SEARCH_SPAN_MS
        } else {
            req.start_unix_ms
        };
        if start > end {
            return Err(Status::invalid_argument("the search starts after it ends"));
        }
        // The store matches the query; the Deployment and the structured
        // filter are applied here, over a larger page so that they still
        // fill `limit` when they discard events.
        let narrowed = deployment.is_some() || filter != tap::Filter::default();
        let page = if narrowed {
            (limit * 10).min(MAX_SEARCH_LIMIT)
        } else {
            limit
        };
        let found = self
            .store()
            .search_tap(conduit_api::proto::store::v1::SearchTapRequest {
                query: req.query,
                start_unix_ms: start,
                end_unix_ms: end,
                limit: page,
            })
            .await?;
        let involves = |e: &tap::TapEvent, d: &DeploymentRef| {
            [&e.source, &e.destination].into_iter().any(|p| {
                p.as_ref()
                    .and_then(|p| p.deployment.as_ref())
                    .is_some_and(|pd| pd.name == d.name && pd.namespace == d.namespace)
            })
        };
        let events = found
            .events
            .into_iter()
            .filter(|e| deployment.as_ref().is_none_or(|d| involves(e, d)) && matches(&filter, e))
            .take(limit as usize)
            .collect();
        Ok(pb::SearchTapResponse { events })
    }
}

/// A server stream fed by a task; the task ends when the client leaves.
pub fn async_stream<T, F, Fut>(body: F) -> ServerStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str, method: &str, dst: &str) -> tap::TapEvent {
        tap::TapEvent {
            path: path.into(),
            method: method.into(),
            authority: "voting.demo.svc.cluster.local:8080".into(),
            destination: Some(tap::Peer {
                deployment: Some(mesh::DeploymentRef {
                    namespace: "demo".into(),
                    name: dst.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn filters_match_every_set_field() {
        let e = event("/api/vote", "POST", "voting");
        assert!(matches(&tap::Filter::default(), &e));
        let f = |path: &str, method: &str, authority: &str, dst: &str| tap::Filter {
            path_prefix: path.into(),
            method: method.into(),
            authority: authority.into(),
            destination: (!dst.is_empty()).then(|| mesh::DeploymentRef {
                namespace: "demo".into(),
                name: dst.into(),
            }),
            ..Default::default()
        };
        assert!(matches(&f("/api", "POST", "", "voting"), &e));
        assert!(matches(&f("", "", "voting.demo.svc.cluster.local", ""), &e));
        assert!(!matches(&f("/other", "", "", ""), &e));
        assert!(!matches(&f("", "GET", "", ""), &e));
        assert!(!matches(&f("", "", "", "emoji"), &e));
        assert!(!matches(&f("", "", "web.demo:8080", ""), &e));
    }

    #[test]
    fn max_rps_is_bounded() {
        assert_eq!(max_rps(0).unwrap(), DEFAULT_MAX_RPS);
        assert!(max_rps(MAX_MAX_RPS + 1).is_err());
    }
}
