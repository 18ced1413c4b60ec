//! Per-request measurement: counts the request when it starts, times the
//! response headers, and classifies the response when its body ends, as
//! gRPC decides success in trailers. The tap event is emitted at the same
//! moment, with the same facts.
//!
//! The response's end is observed by wrapping its body; the count happens
//! at the last frame, or when the body is dropped (a client that went away,
//! a response that has no body at all), so every request is counted once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use conduit_api::{Classification, ErrorReason};
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::errors::ProxyError;
use crate::http::body::BoxError;
use crate::metrics::{HttpStats, ResponseKey};
use crate::profile::ResponseClasses;
use crate::tap::{TapCapture, TapResponse};

/// Why the proxy answered a request itself or failed it: the closed-set
/// reason the counters and tap events carry, and the text with details.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) reason: ErrorReason,
    pub(crate) text: String,
}

/// A request in flight, from its start to its response headers.
pub(crate) struct Observation {
    stats: Arc<HttpStats>,
    start: Instant,
    tap: Option<TapCapture>,
    classes: Option<Arc<ResponseClasses>>,
}

impl Observation {
    /// Counts the request now; latency is measured from `start`.
    pub(crate) fn begin(stats: Arc<HttpStats>, start: Instant, tap: Option<TapCapture>) -> Self {
        stats.request();
        Self {
            stats,
            start,
            tap,
            classes: None,
        }
    }

    /// Classifies responses by a route's response classes instead of the
    /// default rules.
    pub(crate) fn with_classes(mut self, classes: Arc<ResponseClasses>) -> Self {
        self.classes = Some(classes);
        self
    }

    pub(crate) fn tap(&self) -> Option<&TapCapture> {
        self.tap.as_ref()
    }

    /// The response headers arrived (or the proxy answered itself, with
    /// `failure` saying why).
    pub(crate) fn respond<B>(
        self,
        rsp: Response<B>,
        failure: Option<Failure>,
    ) -> Response<ObservedBody<B>>
    where
        B: Body,
    {
        let latency = self.start.elapsed();
        self.stats.latency(latency);
        let is_grpc = is_grpc(rsp.headers());
        let grpc_status = if is_grpc {
            grpc_status(rsp.headers())
        } else {
            None
        };
        let pending = Pending {
            stats: self.stats,
            status: rsp.status().as_u16(),
            is_grpc,
            grpc_status,
            start: self.start,
            latency,
            bytes: 0,
            failure,
            gave_up: None,
            tap: self.tap,
            classes: self.classes,
        };
        rsp.map(|inner| ObservedBody {
            inner,
            pending: Some(pending),
        })
    }
}

/// Counts a request the proxy answered with `error` before any HTTP server
/// saw it (its first head was rejected as it arrived).
pub(crate) fn rejected(stats: Arc<HttpStats>, start: Instant, error: &ProxyError) {
    let rsp =
        Observation::begin(stats, start, None).respond(error.response(), Some(error.failure()));
    // Dropping the body ends the observation: the response was written.
    drop(rsp);
}

/// What is needed to count the response once its body ends.
struct Pending {
    stats: Arc<HttpStats>,
    status: u16,
    is_grpc: bool,
    grpc_status: Option<i32>,
    start: Instant,
    latency: std::time::Duration,
    bytes: u64,
    failure: Option<Failure>,
    /// Why the proxy stopped trying after this response (its tap event
    /// says so; the endpoint's counters keep the response's own outcome).
    gave_up: Option<ErrorReason>,
    tap: Option<TapCapture>,
    classes: Option<Arc<ResponseClasses>>,
}

impl Pending {
    fn finish(self) {
        let grpc_status = self.grpc_status.filter(|_| self.is_grpc);
        let class = match (&self.failure, &self.classes) {
            (Some(_), _) if self.status < 400 => Classification::Failure,
            (_, Some(classes)) => classes.classify(self.status, grpc_status),
            (_, None) => Classification::of_response(self.status, grpc_status),
        };
        self.stats.response(ResponseKey {
            status: self.status,
            grpc_status,
            class,
            error_reason: self.failure.as_ref().map(|f| f.reason),
        });
        let Some(tap) = self.tap else { return };
        let reason = self.failure.as_ref().map(|f| f.reason);
        let recorded = tap.finish(TapResponse {
            status: self.status,
            grpc_status,
            latency: self.latency,
            duration: self.start.elapsed(),
            response_bytes: self.bytes,
            error: self.failure.as_ref().map(|f| f.text.as_str()),
            // Denials are 403s, which count as successes: the proxy's own
            // answers are all worth recording.
            failed: class == Classification::Failure || self.failure.is_some(),
            error_reason: self.gave_up.or(reason),
        });
        if let Some(r) = recorded {
            self.stats.exemplar(r.request_id, self.latency, r.unix_ms);
        }
    }
}

/// A response body whose end is counted.
pub(crate) struct ObservedBody<B> {
    inner: B,
    pending: Option<Pending>,
}

impl<B> ObservedBody<B> {
    /// A body nobody measures at this level (the request never got that
    /// far), so that every response has the same type.
    pub(crate) fn unobserved(inner: B) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    /// Marks the request as given up on by the proxy after this response
    /// (a retry it could not make), for the request's tap event.
    pub(crate) fn gave_up(&mut self, reason: ErrorReason) {
        if let Some(p) = &mut self.pending {
            p.gave_up = Some(reason);
        }
    }

    fn finish(&mut self, failure: Option<Failure>) {
        if let Some(mut p) = self.pending.take() {
            if failure.is_some() {
                p.failure = failure;
            }
            p.finish();
        }
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(p) = &mut this.pending {
                    if let Some(d) = f.data_ref() {
                        p.bytes += d.len() as u64;
                    } else if let Some(t) = f.trailers_ref()
                        && let Some(s) = grpc_status(t)
                    {
                        p.grpc_status = Some(s);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
            }
            Some(Err(e)) => this.finish(Some(Failure {
                reason: ErrorReason::UpstreamReset,
                text: format!("response body: {e}"),
            })),
            None => this.finish(None),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A learned route's own counting of a request, on top of its endpoint's,
/// for the benchmark in `load-tests/` (`conduit-load-tests recorder`): the
/// request counted when it starts, its latency at the response headers and
/// its response when the body ends, on the series of `GET /api/vote/{id}`.
#[doc(hidden)]
pub struct BenchRouteSeries(Arc<HttpStats>);

impl BenchRouteSeries {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let registry = crate::metrics::Registry::new("bench", "web", "web-0", "");
        Self(registry.learned_route("voting.bench.svc.cluster.local:8080", "GET /api/vote/{id}"))
    }

    /// One request whose response (`status`, no body) ends at once.
    pub fn observe(&self, status: u16) {
        let obs = Observation::begin(self.0.clone(), Instant::now(), None);
        let mut rsp = Response::new(http_body_util::Empty::<Bytes>::new());
        *rsp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        drop(obs.respond(rsp, None));
    }

    /// Requests counted so far.
    pub fn requests(&self) -> u64 {
        self.0.requests()
    }
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The `grpc-status` of a response; a code gRPC does not define reads as
/// UNKNOWN (2), as the gRPC spec has clients do, so a peer cannot grow
/// a series' response counters with codes of its choosing.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    const UNKNOWN: i32 = 2;
    const LAST_DEFINED: i32 = 16;
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
        .map(|code| {
            if (0..=LAST_DEFINED).contains(&code) {
                code
            } else {
                UNKNOWN
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_grpc_codes_read_as_unknown() {
        let status = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-status", v.parse().unwrap());
            grpc_status(&h)
        };
        assert_eq!(status("0"), Some(0));
        assert_eq!(status("16"), Some(16));
        assert_eq!(status("17"), Some(2));
        assert_eq!(status("-5"), Some(2));
        assert_eq!(status("2147483647"), Some(2));
        assert_eq!(status("ok"), None);
    }
}
