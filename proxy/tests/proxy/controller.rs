//! A real `conduit.destination.v1.Destination` server for the proxy to
//! subscribe to, driven by the test: endpoint sets and profiles per
//! authority change while streams are open, and the whole server can be
//! stopped (every connection dropped, like a crashed controller) and
//! started again on the same address.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use conduit_api::proto::destination::v1::destination_server::{Destination, DestinationServer};
use conduit_api::proto::destination::v1::{
    AddrSet, DestinationProfile, GetDestination, NoEndpoints, Update, WeightedAddr,
    WeightedAddrSet, update,
};
use conduit_api::proto::mesh::v1::TcpAddress;
use futures_util::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// What the controller knows of one authority.
#[derive(Clone, Default)]
struct Known {
    /// `None`: the authority does not exist.
    endpoints: Option<Vec<SocketAddr>>,
    profile: Option<DestinationProfile>,
}

#[derive(Default)]
struct State {
    authorities: Mutex<HashMap<String, watch::Sender<Known>>>,
    /// `Get` streams being served right now.
    open_streams: AtomicUsize,
}

impl State {
    fn watch(&self, authority: &str) -> watch::Receiver<Known> {
        let mut map = self.authorities.lock().unwrap();
        map.entry(authority.to_string())
            .or_insert_with(|| watch::channel(Known::default()).0)
            .subscribe()
    }

    fn update(&self, authority: &str, f: impl FnOnce(&mut Known)) {
        let mut map = self.authorities.lock().unwrap();
        let tx = map
            .entry(authority.to_string())
            .or_insert_with(|| watch::channel(Known::default()).0);
        tx.send_modify(f);
    }
}

pub(crate) struct Controller {
    pub(crate) addr: SocketAddr,
    state: Arc<State>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Controller {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            tasks: Arc::default(),
        };
        c.serve(listener);
        c
    }

    /// Endpoints are plain applications (no protocol hint), in Deployment
    /// `test/backend`.
    pub(crate) fn set_endpoints(&self, authority: &str, endpoints: &[SocketAddr]) {
        let endpoints = endpoints.to_vec();
        self.state
            .update(authority, |k| k.endpoints = Some(endpoints));
    }

    pub(crate) fn set_profile(&self, authority: &str, profile: DestinationProfile) {
        self.state.update(authority, |k| k.profile = Some(profile));
    }

    /// How many `Get` streams (endpoint subscriptions) are open.
    pub(crate) fn open_streams(&self) -> usize {
        self.state.open_streams.load(SeqCst)
    }

    /// Like a crash: every connection and stream is dropped at once.
    pub(crate) fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Serves again on the same address, with what it knew before.
    pub(crate) async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let svc = DestinationServer::new(Service {
            state: self.state.clone(),
        });
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let svc = TowerToHyperService::new(tonic::service::Routes::new(svc.clone()));
                let conn = tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http2_only()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Service {
    state: Arc<State>,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn tcp(addr: SocketAddr) -> TcpAddress {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    TcpAddress {
        ip,
        port: u32::from(addr.port()),
    }
}

fn add(addrs: &[SocketAddr]) -> Update {
    Update {
        update: Some(update::Update::Add(WeightedAddrSet {
            addrs: addrs
                .iter()
                .map(|a| WeightedAddr {
                    addr: Some(tcp(*a)),
                    weight: 1,
                    metric_labels: [("deployment".to_string(), "backend".to_string())].into(),
                    ..Default::default()
                })
                .collect(),
            metric_labels: [("namespace".to_string(), "test".to_string())].into(),
        })),
    }
}

fn none(exists: bool) -> Update {
    Update {
        update: Some(update::Update::NoEndpoints(NoEndpoints { exists })),
    }
}

/// Streams a watched value's changes into a gRPC response stream, counted
/// in `open` while it runs.
fn stream_of<T: Send + 'static>(
    mut known: watch::Receiver<Known>,
    open: Option<Arc<State>>,
    mut next: impl FnMut(&Known) -> Vec<T> + Send + 'static,
) -> Stream_<T> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let _open = open.map(OpenStream::new);
        loop {
            let snapshot = known.borrow_and_update().clone();
            for msg in next(&snapshot) {
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = known.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Counts a stream as open until dropped.
struct OpenStream(Arc<State>);

impl OpenStream {
    fn new(state: Arc<State>) -> Self {
        state.open_streams.fetch_add(1, SeqCst);
        Self(state)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, SeqCst);
    }
}

#[tonic::async_trait]
impl Destination for Service {
    type GetStream = Stream_<Update>;
    type GetProfileStream = Stream_<DestinationProfile>;

    /// A full snapshot first, then additions and removals.
    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        let known = self.state.watch(&req.into_inner().path);
        let mut sent: Option<BTreeMap<SocketAddr, ()>> = None;
        Ok(Response::new(stream_of(
            known,
            Some(self.state.clone()),
            move |k| {
                let Some(eps) = &k.endpoints else {
                    let first = sent.is_none();
                    sent = Some(BTreeMap::new());
                    return if first { vec![none(false)] } else { Vec::new() };
                };
                let now: BTreeMap<SocketAddr, ()> = eps.iter().map(|a| (*a, ())).collect();
                let updates = match &sent {
                    None if now.is_empty() => vec![none(true)],
                    None => vec![add(eps)],
                    Some(before) => {
                        let added: Vec<SocketAddr> = now
                            .keys()
                            .filter(|a| !before.contains_key(a))
                            .copied()
                            .collect();
                        let removed: Vec<TcpAddress> = before
                            .keys()
                            .filter(|a| !now.contains_key(a))
                            .map(|a| tcp(*a))
                            .collect();
                        // Removals first: once an addition is visible, so is
                        // every removal of the same change.
                        let mut u = Vec::new();
                        if !removed.is_empty() {
                            u.push(Update {
                                update: Some(update::Update::Remove(AddrSet { addrs: removed })),
                            });
                        }
                        if !added.is_empty() {
                            u.push(add(&added));
                        }
                        if now.is_empty() && !before.is_empty() {
                            u.push(none(true));
                        }
                        u
                    }
                };
                sent = Some(now);
                updates
            },
        )))
    }

    /// The current profile (empty when none was set), then each new one.
    async fn get_profile(
        &self,
        req: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let known = self.state.watch(&req.into_inner().path);
        let mut last: Option<DestinationProfile> = None;
        Ok(Response::new(stream_of(known, None, move |k| {
            let p = k.profile.clone().unwrap_or_default();
            if last.as_ref() == Some(&p) {
                return Vec::new();
            }
            last = Some(p.clone());
            vec![p]
        })))
    }
}

/// Profile building blocks.
pub(crate) mod profile {
    use std::time::Duration;

    use conduit_api::proto::destination::v1::{
        DestinationProfile, HttpStatusRange, PathMatch, RequestMatch, RetryBudget, RetryPolicy,
        Route, request_match,
    };

    pub(crate) fn duration(d: Duration) -> prost_types::Duration {
        prost_types::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }

    pub(crate) fn route(name: &str, path_regex: &str) -> Route {
        Route {
            name: name.into(),
            condition: Some(RequestMatch {
                r#match: Some(request_match::Match::Path(PathMatch {
                    regex: path_regex.into(),
                })),
            }),
            ..Default::default()
        }
    }

    /// Retries 5xx responses of the route's methods (idempotent ones when
    /// `methods` is empty).
    pub(crate) fn retrying(mut r: Route, max_attempts: u32, methods: &[&str]) -> Route {
        r.retry = Some(RetryPolicy {
            retryable_statuses: vec![HttpStatusRange { min: 500, max: 599 }],
            max_attempts,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        });
        r
    }

    pub(crate) fn with_timeout(mut r: Route, t: Duration) -> Route {
        r.timeout = Some(duration(t));
        r
    }

    pub(crate) fn budget(ratio: f32, min_per_second: u32) -> RetryBudget {
        RetryBudget {
            retry_ratio: ratio,
            min_retries_per_second: min_per_second,
            ttl: Some(duration(Duration::from_secs(10))),
        }
    }

    pub(crate) fn of(routes: Vec<Route>, budget: Option<RetryBudget>) -> DestinationProfile {
        DestinationProfile {
            routes,
            retry_budget: budget,
            ..Default::default()
        }
    }
}
