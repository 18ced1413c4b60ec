//! Tap: per-request events, live to subscribers, and into telemetry when
//! sampled or kept by the flight recorder ([`crate::recorder`]).
//!
//! Live subscribers and sampling are decided once, when a request starts:
//! against each live subscriber's filter and rate limit, and against the
//! sampling rate and its own rate limit. The recorder decides at the end,
//! so with it on every request carries a [`TapCapture`]: a [`Seed`] of its
//! event (one allocation) that becomes a `TapEvent` only when someone
//! wants it. Delivery never waits: a subscriber whose stream is full loses
//! the event, and the loss is counted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::tap::v1::{self as pb, Kept, ObserveRequest, TapEvent};
use conduit_api::rate_limit::RateLimit;
use conduit_api::tap_filter::{self, Filter, Workload};
use conduit_api::{DeploymentRef, Direction};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::metrics::{Registry, lock};
use crate::recorder::{Recorder, micros};

/// Events buffered per live subscriber before new ones are dropped.
const SUBSCRIBER_BUFFER: usize = 1024;

pub(crate) struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<TapEvent>,
    limit: Mutex<RateLimit>,
}

/// One side of a request, as the filter and the event see it.
#[derive(Clone, Copy)]
pub(crate) struct PeerMeta<'a> {
    /// None for a request the proxy failed before it picked an endpoint.
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) deployment: Option<&'a DeploymentRef>,
    pub(crate) identity: &'a str,
}

/// What is known of a request when it starts.
pub(crate) struct RequestMeta<'a> {
    pub(crate) direction: Direction,
    pub(crate) method: &'a http::Method,
    pub(crate) uri: &'a http::Uri,
    pub(crate) authority: &'a str,
    pub(crate) headers: &'a http::HeaderMap,
    pub(crate) source: PeerMeta<'a>,
    pub(crate) destination: PeerMeta<'a>,
}

pub(crate) struct Tap {
    subscribers: RwLock<Vec<Arc<Subscriber>>>,
    active: AtomicUsize,
    max_subscribers: usize,
    max_rps: u32,
    sample_rate: f64,
    sample_limit: Mutex<RateLimit>,
    sampled: Mutex<VecDeque<TapEvent>>,
    sampled_capacity: usize,
    registry: Arc<Registry>,
    recorder: Recorder,
    next_id: AtomicU64,
}

impl Tap {
    /// `max_rps`: a subscriber's default and ceiling. Sampled events: a
    /// `sample_rate` fraction of requests, at most `sample_max_rps`; the
    /// recorder's come on top, within its own budget.
    pub(crate) fn new(
        max_subscribers: usize,
        max_rps: u32,
        sample_rate: f64,
        sample_max_rps: u32,
        recorder: Recorder,
        registry: Arc<Registry>,
    ) -> Self {
        let reported_rps = sample_max_rps.saturating_add(recorder.max_rps());
        Self {
            subscribers: RwLock::default(),
            active: AtomicUsize::new(0),
            max_subscribers,
            max_rps,
            sample_rate,
            sample_limit: Mutex::new(RateLimit::new(sample_max_rps)),
            sampled: Mutex::default(),
            // Ten seconds' worth: several missed telemetry intervals.
            sampled_capacity: (reported_rps as usize).saturating_mul(10).max(10),
            registry,
            recorder,
            next_id: AtomicU64::new(fastrand::u64(..) & 0xffff_ffff_0000_0000),
        }
    }

    /// Starts a live subscription; events stop when the receiver is dropped.
    /// Each subscriber costs a buffer of events and a filter check per
    /// request, so there is a cap: `None` past it.
    pub(crate) fn subscribe(
        &self,
        filter: Filter,
        max_rps: u32,
    ) -> Option<mpsc::Receiver<TapEvent>> {
        let rps = match max_rps {
            0 => self.max_rps,
            n => n.min(self.max_rps),
        };
        let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        // Subscribers that left are otherwise only noticed by traffic.
        subs.retain(|s| !s.tx.is_closed());
        self.active.store(subs.len(), Relaxed);
        if subs.len() >= self.max_subscribers {
            return None;
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        subs.push(Arc::new(Subscriber {
            filter,
            tx,
            limit: Mutex::new(RateLimit::new(rps)),
        }));
        self.active.store(subs.len(), Relaxed);
        Some(rx)
    }

    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Decides whether the request may produce an event: always while the
    /// recorder is on, as only its end tells.
    pub(crate) fn capture(self: &Arc<Self>, req: &RequestMeta<'_>) -> Option<TapCapture> {
        let active = self.active.load(Relaxed) > 0;
        let sampled = self.sample_rate > 0.0
            && fastrand::f64() < self.sample_rate
            && lock(&self.sample_limit).allow();
        let recording = self.recorder.enabled();
        if !active && !sampled && !recording {
            return None;
        }
        let subscribers = if active {
            self.matching_subscribers(req)
        } else {
            Vec::new()
        };
        if subscribers.is_empty() && !sampled && !recording {
            return None;
        }
        Some(TapCapture {
            seed: Seed::of(req),
            subscribers,
            sampled,
            tap: self.clone(),
            request_bytes: Arc::new(AtomicU64::new(0)),
        })
    }

    fn matching_subscribers(&self, req: &RequestMeta<'_>) -> Vec<Arc<Subscriber>> {
        let seen = req.seen();
        let mut closed = false;
        let mut out = Vec::new();
        {
            let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
            for s in subs.iter() {
                if s.tx.is_closed() {
                    closed = true;
                } else if s.filter.matches(&seen) {
                    if lock(&s.limit).allow() {
                        out.push(s.clone());
                    } else {
                        self.dropped(1);
                    }
                }
            }
        }
        if closed {
            let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
            subs.retain(|s| !s.tx.is_closed());
            self.active.store(subs.len(), Relaxed);
        }
        out
    }

    fn new_request_id(&self) -> String {
        format!("{:016x}", self.next_id.fetch_add(1, Relaxed))
    }

    fn dropped(&self, n: u64) {
        self.registry.proxy.tap_events_dropped.fetch_add(n, Relaxed);
    }

    fn publish(&self, event: TapEvent, subscribers: &[Arc<Subscriber>], reported: bool) {
        for s in subscribers {
            if s.tx.try_send(event.clone()).is_err() {
                self.dropped(1);
            }
        }
        if reported {
            let mut q = lock(&self.sampled);
            if q.len() >= self.sampled_capacity {
                q.pop_front();
                self.dropped(1);
            }
            q.push_back(event);
        }
    }

    /// The sampled and recorded events since the last call, for the
    /// telemetry report.
    pub(crate) fn drain_sampled(&self) -> Vec<TapEvent> {
        lock(&self.sampled).drain(..).collect()
    }
}

fn address(addr: SocketAddr) -> mesh::TcpAddress {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    mesh::TcpAddress {
        ip,
        port: u32::from(addr.port()),
    }
}

/// What an event needs of a request, taken when it starts: the strings
/// in one buffer, the rest cheap clones (`Uri` and header values share
/// the request's bytes), so a request nobody keeps costs one allocation.
struct Seed {
    direction: Direction,
    method: http::Method,
    uri: http::Uri,
    request_id: Option<http::HeaderValue>,
    addrs: [Option<SocketAddr>; 2],
    has_deployment: [bool; 2],
    /// The authority, then per peer (source, destination) its namespace,
    /// name and identity.
    text: String,
    ends: [usize; 7],
}

impl Seed {
    fn of(req: &RequestMeta<'_>) -> Self {
        let peers = [req.source, req.destination];
        let mut parts: [&str; 7] = [req.authority, "", "", "", "", "", ""];
        for (i, p) in peers.iter().enumerate() {
            if let Some(d) = p.deployment {
                parts[1 + 3 * i] = &d.namespace;
                parts[2 + 3 * i] = &d.name;
            }
            parts[3 + 3 * i] = p.identity;
        }
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0; 7];
        for (end, part) in ends.iter_mut().zip(parts) {
            text.push_str(part);
            *end = text.len();
        }
        Self {
            direction: req.direction,
            method: req.method.clone(),
            uri: req.uri.clone(),
            request_id: req.headers.get("x-request-id").cloned(),
            addrs: peers.map(|p| p.addr),
            has_deployment: peers.map(|p| p.deployment.is_some()),
            text,
            ends,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    fn peer(&self, side: usize) -> pb::Peer {
        let deployment = self.has_deployment[side].then(|| mesh::DeploymentRef {
            namespace: self.part(1 + 3 * side).to_string(),
            name: self.part(2 + 3 * side).to_string(),
        });
        pb::Peer {
            address: self.addrs[side].map(address),
            deployment,
            identity: self.part(3 + 3 * side).to_string(),
        }
    }

    /// The event, dated from `started_us`.
    fn event(&self, request_id: String, started_us: i64) -> TapEvent {
        TapEvent {
            request_id,
            direction: mesh::Direction::from(self.direction).into(),
            source: Some(self.peer(0)),
            destination: Some(self.peer(1)),
            // Callers name the server's identity only when mTLS proved it.
            tls: !self.part(6).is_empty(),
            method: self.method.as_str().to_string(),
            scheme: self.uri.scheme_str().unwrap_or("http").to_string(),
            authority: self.part(0).to_string(),
            path: self.uri.path().to_string(),
            request_start_unix_us: started_us,
            ..TapEvent::default()
        }
    }
}

impl<'a> RequestMeta<'a> {
    /// What a tap filter looks at.
    fn seen(&self) -> tap_filter::Request<'a> {
        let workload = |p: &PeerMeta<'a>| {
            p.deployment.map(|d| Workload {
                namespace: &d.namespace,
                name: &d.name,
            })
        };
        tap_filter::Request {
            direction: Some(self.direction),
            method: self.method.as_str(),
            authority: self.authority,
            path: self.uri.path(),
            source: workload(&self.source),
            destination: workload(&self.destination),
        }
    }
}

/// A request that may be tapped, until its response ends.
pub(crate) struct TapCapture {
    seed: Seed,
    subscribers: Vec<Arc<Subscriber>>,
    sampled: bool,
    tap: Arc<Tap>,
    request_bytes: Arc<AtomicU64>,
}

/// How the response went.
pub(crate) struct TapResponse<'a> {
    pub(crate) status: u16,
    pub(crate) grpc_status: Option<i32>,
    pub(crate) latency: Duration,
    pub(crate) duration: Duration,
    pub(crate) response_bytes: u64,
    pub(crate) error: Option<&'a str>,
    /// Classified as a failure, or answered by the proxy itself.
    pub(crate) failed: bool,
    pub(crate) error_reason: Option<conduit_api::ErrorReason>,
}

/// An event that went to the tap history: the request behind an exemplar.
pub(crate) struct Recorded {
    pub(crate) request_id: String,
    pub(crate) unix_ms: i64,
}

impl TapCapture {
    /// Counts the forwarded request body's bytes into the event.
    pub(crate) fn request_bytes(&self) -> Arc<AtomicU64> {
        self.request_bytes.clone()
    }

    /// Builds the event if a subscriber, sampling or the recorder wants
    /// it; says so when it goes to the tap history.
    pub(crate) fn finish(self, rsp: TapResponse<'_>) -> Option<Recorded> {
        let kept = self.kept(&rsp);
        if kept.is_none() && self.subscribers.is_empty() {
            return None;
        }
        let now_us = crate::clock::unix_us();
        let started_us = now_us.saturating_sub(i64::try_from(micros(rsp.duration)).unwrap_or(0));
        let request_id = match self.seed.request_id.as_ref().map(|v| v.to_str()) {
            Some(Ok(id)) => id.to_string(),
            _ => self.tap.new_request_id(),
        };
        let mut e = self.seed.event(request_id, started_us);
        e.http_status = u32::from(rsp.status);
        e.grpc_status = rsp.grpc_status;
        e.response_latency_us = micros(rsp.latency);
        e.response_duration_us = micros(rsp.duration);
        e.response_bytes = rsp.response_bytes;
        e.request_bytes = self.request_bytes.load(Relaxed);
        e.error = rsp.error.unwrap_or_default().to_string();
        e.error_reason = rsp.error_reason.map_or("", |r| r.as_str()).to_string();
        e.kept = kept.unwrap_or(Kept::Unspecified).into();
        let recorded = kept.map(|_| Recorded {
            request_id: e.request_id.clone(),
            unix_ms: now_us.div_euclid(1000),
        });
        self.tap.publish(e, &self.subscribers, kept.is_some());
        recorded
    }

    /// Why the event goes to the tap history: a sampled request says how
    /// it went when that is worth more than "sampled"; any other needs
    /// the recorder's verdict and a place in its budget.
    fn kept(&self, rsp: &TapResponse<'_>) -> Option<Kept> {
        let recorder = self.tap.recorder();
        if !self.sampled && !recorder.enabled() {
            return None;
        }
        let verdict = recorder.judge(self.seed.direction, rsp.failed, rsp.latency);
        if self.sampled {
            self.tap
                .registry
                .proxy
                .tap_events_sampled
                .fetch_add(1, Relaxed);
            return Some(verdict.unwrap_or(Kept::Sampled));
        }
        verdict.filter(|_| recorder.admit())
    }
}

/// `conduit.tap.v1.Tap`, served on the tap port.
pub(crate) struct TapService {
    pub(crate) tap: Arc<Tap>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<TapEvent, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::tap_server::Tap for TapService {
    type ObserveStream = EventStream;

    async fn observe(
        &self,
        request: tonic::Request<ObserveRequest>,
    ) -> Result<tonic::Response<EventStream>, tonic::Status> {
        let req = request.into_inner();
        let filter = Filter::try_from(req.filter.unwrap_or_default())
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let rx = self.tap.subscribe(filter, req.max_rps).ok_or_else(|| {
            tonic::Status::resource_exhausted(format!(
                "this proxy already serves {} live tap subscriptions (--tap-max-subscribers); try again later",
                self.tap.max_subscribers
            ))
        })?;
        let events = ReceiverStream::new(rx).map(Ok);
        let stream: EventStream = match usize::try_from(req.limit) {
            Ok(0) | Err(_) => Box::pin(events),
            Ok(limit) => Box::pin(events.take(limit)),
        };
        Ok(tonic::Response::new(stream))
    }
}

/// The flight recorder's per-request work as the proxy does it, for the
/// benchmark in `load-tests/` (`conduit-load-tests recorder`): the seed of
/// an outbound `GET /api/vote/123` between two Deployments taken when it
/// starts ([`BenchTap::start`]), and the recorder's decision when its
/// response ends ([`BenchRequest::end`]). Sampling and live subscribers
/// are off, so what is timed is the recorder's work alone.
#[doc(hidden)]
pub struct BenchTap {
    tap: Arc<Tap>,
    uri: http::Uri,
    headers: http::HeaderMap,
    own: DeploymentRef,
    peer: DeploymentRef,
}

impl BenchTap {
    /// A tap whose recorder keeps at most `max_rps` events a second (0
    /// turns it off) and judges "slow" by its measured p99, as by default.
    pub fn new(max_rps: u32) -> Self {
        let registry = Arc::new(Registry::new("bench", "web", "web-0", ""));
        let recorder = Recorder::new(max_rps, None, registry.clone());
        Self {
            tap: Arc::new(Tap::new(1, 100, 0.0, 0, recorder, registry)),
            uri: http::Uri::from_static("/api/vote/123"),
            headers: http::HeaderMap::new(),
            own: DeploymentRef::new("bench", "web"),
            peer: DeploymentRef::new("bench", "voting"),
        }
    }

    /// What the proxy does when a request starts: `None` when nobody may
    /// want its event (the recorder off, nothing sampled or subscribed).
    pub fn start(&self) -> Option<BenchRequest> {
        let addr = Some(SocketAddr::from(([10, 1, 2, 3], 8080)));
        let identity = "web.bench.serviceaccount.identity.conduit.cluster.local";
        self.tap
            .capture(&RequestMeta {
                direction: Direction::Outbound,
                method: &http::Method::GET,
                uri: &self.uri,
                authority: "voting.bench.svc.cluster.local:8080",
                headers: &self.headers,
                source: PeerMeta {
                    addr,
                    deployment: Some(&self.own),
                    identity,
                },
                destination: PeerMeta {
                    addr,
                    deployment: Some(&self.peer),
                    identity: "voting.bench.serviceaccount.identity.conduit.cluster.local",
                },
            })
            .map(BenchRequest)
    }

    /// Takes the events that went to the tap history, as a telemetry
    /// report does; returns how many there were.
    pub fn drain(&self) -> usize {
        self.tap.drain_sampled().len()
    }
}

/// A request of [`BenchTap`], until its response ends.
#[doc(hidden)]
pub struct BenchRequest(TapCapture);

impl BenchRequest {
    /// What the proxy does when the response ends (1 KiB, `status`, after
    /// `latency`; 5xx is a failure): whether its event went to the tap
    /// history.
    pub fn end(self, status: u16, latency: Duration) -> bool {
        self.0
            .finish(TapResponse {
                status,
                grpc_status: None,
                latency,
                duration: latency,
                response_bytes: 1024,
                error: None,
                failed: status >= 500,
                error_reason: None,
            })
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let uri: http::Uri = "/books/1".parse().unwrap();
        let headers = http::HeaderMap::new();
        let web = DeploymentRef::new("demo", "web");
        let addr = Some("127.0.0.1:1".parse().unwrap());
        let req = RequestMeta {
            direction: Direction::Outbound,
            method: &http::Method::GET,
            uri: &uri,
            authority: "books.demo:80",
            headers: &headers,
            source: PeerMeta {
                addr,
                deployment: None,
                identity: "",
            },
            destination: PeerMeta {
                addr,
                deployment: Some(&web),
                identity: "",
            },
        };
        let f = |f: pb::Filter| Filter::try_from(f).unwrap().matches(&req.seen());
        assert!(f(pb::Filter::default()));
        assert!(f(pb::Filter {
            path_prefix: "/books".into(),
            method: "GET".into(),
            ..pb::Filter::default()
        }));
        assert!(!f(pb::Filter {
            path_prefix: "/authors".into(),
            ..pb::Filter::default()
        }));
        assert!(f(pb::Filter {
            destination: Some(web.clone().into()),
            direction: mesh::Direction::Outbound.into(),
            ..pb::Filter::default()
        }));
        assert!(!f(pb::Filter {
            source: Some(web.clone().into()),
            ..pb::Filter::default()
        }));
        assert!(!f(pb::Filter {
            direction: mesh::Direction::Inbound.into(),
            ..pb::Filter::default()
        }));
    }
}
