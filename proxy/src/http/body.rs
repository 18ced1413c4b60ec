//! The bodies the proxy moves: what it forwards upstream and what it sends
//! back downstream.
//!
//! Plain enums rather than boxed trait objects: the hot path forwards
//! hyper's `Incoming` untouched, and the other cases (a body buffered for
//! retries, an error page the proxy writes itself) are known in advance.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way upstream.
pub(crate) struct RequestBody {
    kind: RequestKind,
    /// Bytes forwarded so far, when a tap event wants them.
    counter: Option<Arc<AtomicU64>>,
}

enum RequestKind {
    Incoming(Incoming),
    /// Buffered so the request can be sent again: each attempt replays a
    /// clone.
    Replay {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
}

impl RequestBody {
    pub(crate) fn incoming(body: Incoming) -> Self {
        Self {
            kind: RequestKind::Incoming(body),
            counter: None,
        }
    }

    pub(crate) fn replay(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: RequestKind::Replay {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
            counter: None,
        }
    }

    pub(crate) fn count_into(&mut self, counter: Arc<AtomicU64>) {
        self.counter = Some(counter);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match &mut this.kind {
            RequestKind::Incoming(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(f) => f.map(|f| f.map_err(BoxError::from)),
                Poll::Pending => return Poll::Pending,
            },
            RequestKind::Replay { data, trailers } => match data.take() {
                Some(d) => Some(Ok(Frame::data(d))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            },
        };
        if let (Some(counter), Some(Ok(f))) = (&this.counter, &frame)
            && let Some(d) = f.data_ref()
        {
            counter.fetch_add(d.len() as u64, Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Incoming(b) => b.is_end_stream(),
            RequestKind::Replay { data, trailers } => data.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Incoming(b) => b.size_hint(),
            RequestKind::Replay { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// A response body on its way downstream: the upstream's, or one the proxy
/// wrote itself.
pub(crate) enum ResponseBody {
    Incoming(Incoming),
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub(crate) fn text(s: String) -> Self {
        Self::Full(Some(Bytes::from(s)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Incoming(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BoxError::from))),
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Incoming(b) => b.is_end_stream(),
            Self::Full(d) => d.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Incoming(b) => b.size_hint(),
            Self::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
