//! Why the mesh itself failed a request: a closed set of causes, the same
//! value in the `error_reason` label of `response_total` and
//! `route_response_total`, in a tap event's `error_reason` field and in the
//! tap history's `error_reason:` term.
//!
//! The set is closed so the label stays bounded (a handful of values per
//! series whatever peers do), and each value names a cause an operator can
//! act on. A response the application wrote has no reason; the
//! `conduit-proxy-error` header keeps the human text with its details.

use std::fmt;
use std::str::FromStr;

/// A cause of a response the proxy wrote itself, or of a request it failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorReason {
    /// The destination has no endpoints (Linkerd's "service in fail-fast").
    FailFast,
    /// Every endpoint of the destination is out of balancing behind its
    /// circuit breaker.
    BreakerOpen,
    /// No connection to the endpoint within the connect timeout.
    ConnectTimeout,
    /// The endpoint refused the connection, or its mTLS handshake failed.
    Unreachable,
    /// The upstream connection broke before or during the response.
    UpstreamReset,
    /// No response headers within the route's (or the proxy's) timeout.
    ResponseTimeout,
    /// The request failed in a retryable way, and the route's retry budget
    /// allowed no retry.
    RetryBudgetExhausted,
    /// Inbound policy denied the request.
    Unauthorized,
    /// The authority names nothing the proxy can resolve.
    NoRoute,
    /// Too many authorities being resolved at once in the destination cache.
    DestinationCacheFull,
    /// The request head (or target) is not valid HTTP, or has no authority.
    MalformedRequest,
    /// The request head is larger than the proxy's limit.
    HeadersTooLarge,
    /// The client did not finish sending the request head (what protocol
    /// detection reads) within the header read timeout.
    DetectTimeout,
}

impl ErrorReason {
    /// Every reason, in the order of the docs.
    pub const ALL: &'static [ErrorReason] = &[
        Self::FailFast,
        Self::BreakerOpen,
        Self::ConnectTimeout,
        Self::Unreachable,
        Self::UpstreamReset,
        Self::ResponseTimeout,
        Self::RetryBudgetExhausted,
        Self::Unauthorized,
        Self::NoRoute,
        Self::DestinationCacheFull,
        Self::MalformedRequest,
        Self::HeadersTooLarge,
        Self::DetectTimeout,
    ];

    /// The label value (and tap field value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailFast => "fail_fast",
            Self::BreakerOpen => "breaker_open",
            Self::ConnectTimeout => "connect_timeout",
            Self::Unreachable => "unreachable",
            Self::UpstreamReset => "upstream_reset",
            Self::ResponseTimeout => "response_timeout",
            Self::RetryBudgetExhausted => "retry_budget_exhausted",
            Self::Unauthorized => "unauthorized",
            Self::NoRoute => "no_route",
            Self::DestinationCacheFull => "destination_cache_full",
            Self::MalformedRequest => "malformed_request",
            Self::HeadersTooLarge => "headers_too_large",
            Self::DetectTimeout => "detect_timeout",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown error reason {0:?} (one of: {list})", list = names())]
pub struct UnknownReason(pub String);

fn names() -> String {
    let all: Vec<&str> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
    all.join(", ")
}

impl FromStr for ErrorReason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Self, UnknownReason> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_from_its_label_value() {
        for r in ErrorReason::ALL {
            assert_eq!(r.as_str().parse::<ErrorReason>(), Ok(*r));
            assert!(
                r.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r} is not snake_case"
            );
        }
        let err = "timeout".parse::<ErrorReason>().unwrap_err();
        assert!(err.to_string().contains("fail_fast, breaker_open"), "{err}");
    }
}
