//! An outbound HTTP request's way through the proxy: its authority names a
//! logical destination; the destination's profile picks a route (timeout,
//! retry policy, response classes); each attempt goes to the endpoint the
//! balancer picks, over HTTP/2 when that endpoint is a meshed proxy.
//!
//! Two levels are measured: every attempt on its endpoint's series
//! (`request_total`...), and the logical request on its route's series
//! (`route_request_total`...), so retries are visible as the difference.
//! A request no profile route matches is counted on its learned path
//! template's route series ([`crate::learned_routes`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use conduit_api::metrics as names;
use conduit_api::metrics::labels;
use conduit_api::{Direction, ErrorReason};
use http::uri::Authority;
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::time::Instant;

use super::{Logical, Outbound, Slot};
use crate::balance::{Endpoint, PickError};
use crate::errors::ProxyError;
use crate::http::body::{RequestBody, ResponseBody};
use crate::http::observe::{self, Failure, Observation, ObservedBody};
use crate::http::server::Handler;
use crate::http::{authority, head, headers, orig_proto, upgrade};
use crate::metrics::{HttpStats, lock};
use crate::profile::RetryPolicy;
use crate::retry::{self, Budget, RETRY_ATTEMPT_HEADER};
use crate::tap::{PeerMeta, RequestMeta};

type Body = ObservedBody<ObservedBody<ResponseBody>>;

pub(super) struct OutboundConn {
    outbound: Arc<Outbound>,
    client: SocketAddr,
    orig_dst: Option<SocketAddr>,
    /// The destination of the last authority seen (as sent): most
    /// connections talk to one, so most requests skip the shared cache.
    last: Mutex<Option<LastUsed>>,
}

/// An authority as sent, its cache entry and its destination.
type LastUsed = (String, Arc<Slot>, Arc<Logical>);

/// What the route decided for one request.
struct Plan<'a> {
    logical: &'a Logical,
    policy: Option<&'a RetryPolicy>,
    route_stats: Option<Arc<HttpStats>>,
    budget: Arc<Budget>,
    deadline: Option<Instant>,
}

/// How one attempt ended.
struct Attempt {
    rsp: Response<ObservedBody<ResponseBody>>,
    status: u16,
    grpc_status: Option<i32>,
    /// The request certainly never reached the application.
    unsent: bool,
    /// Set when the proxy answered itself.
    failure: Option<Failure>,
}

/// The response to the logical request, and why the proxy failed it, if
/// it did.
type Dispatched = (Response<ObservedBody<ResponseBody>>, Option<Failure>);

impl OutboundConn {
    pub(super) fn new(
        outbound: Arc<Outbound>,
        client: SocketAddr,
        orig_dst: Option<SocketAddr>,
    ) -> Self {
        Self {
            outbound,
            client,
            orig_dst,
            last: Mutex::new(None),
        }
    }

    async fn logical(&self, authority: &Authority) -> Result<Arc<Logical>, ProxyError> {
        if let Some((raw, slot, logical)) = &*lock(&self.last)
            && raw == authority.as_str()
            && !logical.is_expired()
        {
            self.outbound.touch(slot);
            return Ok(logical.clone());
        }
        let key = authority::with_port(authority);
        let (slot, logical) = self.outbound.logical_slot(&key, self.orig_dst).await?;
        *lock(&self.last) = Some((authority.as_str().to_string(), slot, logical.clone()));
        Ok(logical)
    }

    async fn route(&self, req: Request<Incoming>, start: Instant) -> Response<Body> {
        if head::len_of(&req) > self.outbound.limits.max_header_bytes {
            let key = authority::of(&req)
                .map(|a| authority::with_port(&a))
                .unwrap_or_default();
            return self.unrouted(&key, start, ProxyError::HeadersTooLarge);
        }
        let Some(authority) = authority::of(&req) else {
            return self.unrouted("", start, ProxyError::MissingAuthority);
        };
        let logical = match self.logical(&authority).await {
            Ok(l) => l,
            Err(e) => return self.unrouted(&authority::with_port(&authority), start, e),
        };
        let profile = logical.profile();
        let route = profile.route_for(&req);
        let timeout = route
            .and_then(|r| r.timeout)
            .or(profile.default_timeout)
            .or(Some(self.outbound.config.outbound_request_timeout))
            .filter(|t| !t.is_zero());
        let deadline = timeout.map(|t| start + t);
        let registry = &self.outbound.registry;
        // A profile route wins; a learned template counts the rest.
        let route_stats = match route {
            Some(r) => Some(logical.route_stats(registry, r)),
            None => logical.learned_stats(registry, &req),
        };
        let route_obs = route_stats.clone().map(|stats| {
            let obs = Observation::begin(stats, start, None);
            match route {
                Some(r) => obs.with_classes(r.classes.clone()),
                None => obs,
            }
        });
        let plan = Plan {
            logical: &logical,
            policy: route.and_then(|r| r.retry.as_ref()),
            route_stats,
            budget: logical.budget(&profile),
            deadline,
        };
        let (rsp, failure) = self.dispatch(&plan, req, authority).await;
        match route_obs {
            Some(obs) => obs.respond(rsp, failure),
            None => rsp.map(ObservedBody::unobserved),
        }
    }

    /// A request that could not be tied to a destination at all. Its
    /// authority names nothing the proxy knows, so it gets no series of its
    /// own: the overflow set counts it.
    fn unrouted(&self, key: &str, start: Instant, e: ProxyError) -> Response<Body> {
        tracing::debug!(authority = key, client = %self.client, error = %e, "outbound request not routed");
        let registry = &self.outbound.registry;
        let label = if key.is_empty() {
            key
        } else {
            registry.folded(
                names::REQUEST_TOTAL,
                names::OVERFLOW_REASON_UNKNOWN_AUTHORITY,
            );
            names::OVERFLOW_LABEL_VALUE
        };
        let stats = registry.http(Direction::Outbound, &labels::Endpoint::authority(label));
        Observation::begin(stats, start, None)
            .respond(e.response(), Some(e.failure()))
            .map(ObservedBody::unobserved)
    }

    async fn dispatch(
        &self,
        plan: &Plan<'_>,
        mut req: Request<Incoming>,
        authority: http::uri::Authority,
    ) -> Dispatched {
        let upgrading = headers::is_upgrade(&req) || headers::is_connect(&req);
        headers::strip_hop_by_hop(req.headers_mut(), upgrading);
        if let Err(e) = authority::absolutize(&mut req, &authority) {
            let failure = e.failure();
            return (self.fail(plan.logical, e), Some(failure));
        }
        let limit = u64::from(self.outbound.config.retry_max_body_bytes);
        let policy = plan
            .policy
            .filter(|p| !upgrading && p.allows_method(req.method()));
        if let Some(policy) = policy {
            plan.budget.deposit();
            if retry::is_replayable(req.body(), limit) {
                return self.with_retries(plan, policy, req).await;
            }
        }
        let downstream_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
        let req = req.map(RequestBody::incoming);
        let done = self
            .attempt(plan.logical, req, plan.deadline, downstream_upgrade)
            .await;
        (done.rsp, done.failure)
    }

    async fn with_retries(
        &self,
        plan: &Plan<'_>,
        policy: &RetryPolicy,
        req: Request<Incoming>,
    ) -> Dispatched {
        let Plan {
            logical,
            route_stats,
            budget,
            deadline,
            ..
        } = plan;
        let (logical, deadline) = (*logical, *deadline);
        let (parts, body) = req.into_parts();
        let limit = self.outbound.config.retry_max_body_bytes as usize;
        let (data, trailers) = match retry::buffer(body, limit).await {
            Ok(b) => b,
            Err(e) => {
                let e = ProxyError::Malformed(e);
                let failure = e.failure();
                return (self.fail(logical, e), Some(failure));
            }
        };
        let mut attempt = 1;
        loop {
            let mut req = Request::new(RequestBody::replay(data.clone(), trailers.clone()));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = parts.uri.clone();
            *req.version_mut() = parts.version;
            *req.headers_mut() = parts.headers.clone();
            if attempt > 1 {
                req.headers_mut()
                    .insert(RETRY_ATTEMPT_HEADER, HeaderValue::from(attempt));
            }
            let done = self.attempt(logical, req, deadline, None).await;
            let retryable = done.unsent || policy.is_retryable(done.status, done.grpc_status);
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if !retryable || attempt >= policy.max_attempts || expired {
                return (done.rsp, done.failure);
            }
            if !budget.withdraw() {
                if let Some(s) = &route_stats {
                    s.retry_skipped();
                }
                tracing::debug!(authority = %logical.authority, "retry budget exhausted");
                return budget_exhausted(done);
            }
            if let Some(s) = &route_stats {
                s.retry();
            }
            drop(done);
            attempt += 1;
        }
    }

    /// The proxy's own answer for a request no endpoint saw.
    fn fail(&self, logical: &Logical, e: ProxyError) -> Response<ObservedBody<ResponseBody>> {
        Observation::begin(logical.unbalanced.clone(), Instant::now(), None)
            .respond(e.response(), Some(e.failure()))
    }

    async fn attempt(
        &self,
        logical: &Logical,
        mut req: Request<RequestBody>,
        deadline: Option<Instant>,
        downstream_upgrade: Option<OnUpgrade>,
    ) -> Attempt {
        let start = Instant::now();
        let ep = match logical.balancer.pick() {
            Ok(ep) => ep,
            Err(e) => {
                let tap = self.capture(logical, None, &req);
                let (e, unsent) = match e {
                    PickError::NoEndpoints => {
                        (ProxyError::NoEndpoints(logical.authority.clone()), false)
                    }
                    PickError::Unavailable => {
                        (ProxyError::Unavailable(logical.authority.clone()), true)
                    }
                };
                let status = e.status().as_u16();
                let failure = e.failure();
                let rsp = Observation::begin(logical.unbalanced.clone(), start, tap)
                    .respond(e.response(), Some(e.failure()));
                return Attempt {
                    rsp,
                    status,
                    grpc_status: None,
                    unsent,
                    failure: Some(failure),
                };
            }
        };
        let tap = self.capture(logical, Some(&ep), &req);
        if let Some(t) = &tap {
            req.body_mut().count_into(t.request_bytes());
        }
        let obs = Observation::begin(ep.stats.clone(), start, tap);
        let upgraded = ep.target.meta.h2
            && downstream_upgrade.is_none()
            && !headers::is_connect(&req)
            && orig_proto::upgrade(&mut req);
        let method = req.method().clone();
        let in_flight = ep.start();
        let sent = match deadline {
            Some(d) => tokio::time::timeout_at(d, ep.client.send(req))
                .await
                .unwrap_or(Err(ProxyError::RequestTimeout)),
            None => ep.client.send(req).await,
        };
        let mut rsp = match sent {
            Ok(rsp) => rsp,
            Err(e) => {
                in_flight.complete(true);
                tracing::debug!(authority = %logical.authority, endpoint = %ep.addr(), error = %e, "outbound request failed");
                return Attempt {
                    status: e.status().as_u16(),
                    grpc_status: None,
                    unsent: e.is_unsent(),
                    rsp: obs.respond(e.response(), Some(e.failure())),
                    failure: Some(e.failure()),
                };
            }
        };
        let status = rsp.status().as_u16();
        in_flight.complete(status >= 500);
        if upgraded {
            *rsp.version_mut() = Version::HTTP_11;
        }
        let switching = downstream_upgrade.is_some() && upgrade::accepted(&method, &rsp);
        headers::strip_hop_by_hop(rsp.headers_mut(), switching);
        if let (true, Some(down)) = (switching, downstream_upgrade) {
            upgrade::splice(down, hyper::upgrade::on(&mut rsp));
        }
        let grpc_status = observe::is_grpc(rsp.headers())
            .then(|| observe::grpc_status(rsp.headers()))
            .flatten();
        Attempt {
            rsp: obs.respond(rsp.map(ResponseBody::Incoming), None),
            status,
            grpc_status,
            unsent: false,
            failure: None,
        }
    }

    /// The request's tap event, if one is wanted; `ep` is None when the
    /// proxy failed the request before picking an endpoint.
    fn capture(
        &self,
        logical: &Logical,
        ep: Option<&Endpoint>,
        req: &Request<RequestBody>,
    ) -> Option<crate::tap::TapCapture> {
        let mtls = ep.and_then(|ep| ep.mtls.as_ref());
        let outbound = &self.outbound;
        outbound.tap.capture(&RequestMeta {
            direction: Direction::Outbound,
            method: req.method(),
            uri: req.uri(),
            authority: &logical.authority,
            headers: req.headers(),
            // Identities as the mTLS connection proves them.
            source: PeerMeta {
                addr: Some(self.client),
                deployment: outbound.own.as_ref(),
                identity: mtls.map_or("", |(own, _)| own.name()),
            },
            destination: PeerMeta {
                addr: ep.map(|ep| ep.addr()),
                deployment: ep.and_then(|ep| ep.target.meta.deployment.as_ref()),
                identity: mtls.map_or("", |(_, server)| server.as_str()),
            },
        })
    }
}

/// The last attempt's response, as the request's: the retry it called for
/// was not allowed. The attempt's own tap event and the route's counters
/// say so; the endpoint's counters keep the response's own outcome.
fn budget_exhausted(done: Attempt) -> Dispatched {
    let mut rsp = done.rsp;
    let reason = ErrorReason::RetryBudgetExhausted;
    rsp.body_mut().gave_up(reason);
    let text = match done.failure {
        Some(f) => format!("retry budget exhausted after: {}", f.text),
        None => format!("retry budget exhausted after status {}", done.status),
    };
    (rsp, Some(Failure { reason, text }))
}

impl Handler for OutboundConn {
    type Body = Body;

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        self.route(req, start).await
    }
}
