//! What the proxy answers when it cannot forward a request.
//!
//! Every such response carries a `conduit-proxy-error` header naming the
//! cause, so an operator can tell an answer the proxy wrote from one the
//! application wrote (a 502 from nginx behind the proxy looks the same
//! otherwise). The status follows what the cause means for the client:
//! its own fault (400, 408, 431), nothing there (404, 503), the upstream's
//! fault (502, 504).

use conduit_api::ErrorReason;
use http::{HeaderValue, Response, StatusCode, header};

use crate::http::body::ResponseBody;
use crate::http::observe::Failure;

/// Names the cause of a response the proxy wrote itself.
pub const PROXY_ERROR_HEADER: &str = "conduit-proxy-error";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("request header read timeout")]
    HeaderTimeout,
    #[error("request has no authority (Host header) to route by")]
    MissingAuthority,
    #[error("no route to {0}")]
    NoRoute(String),
    #[error("no endpoints for {0}")]
    NoEndpoints(String),
    #[error("all endpoints of {0} are unavailable")]
    Unavailable(String),
    /// The outbound destination cache is full of authorities still being
    /// resolved.
    #[error("too many outbound authorities being resolved at once")]
    TooManyAuthorities,
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("connect timeout")]
    ConnectTimeout,
    #[error("upstream connection failed: {0}")]
    Upstream(String),
    #[error("request timeout")]
    RequestTimeout,
    /// Inbound policy denied the request.
    #[error("unauthorized")]
    Unauthorized,
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            Malformed(_) | MissingAuthority => StatusCode::BAD_REQUEST,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            NoRoute(_) => StatusCode::NOT_FOUND,
            NoEndpoints(_) | Unavailable(_) | TooManyAuthorities => StatusCode::SERVICE_UNAVAILABLE,
            Unreachable(_) | Upstream(_) => StatusCode::BAD_GATEWAY,
            ConnectTimeout | RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            Unauthorized => StatusCode::FORBIDDEN,
        }
    }

    /// The cause from the closed set the metrics and tap events carry.
    pub(crate) fn reason(&self) -> ErrorReason {
        use ProxyError::*;
        match self {
            Malformed(_) | MissingAuthority => ErrorReason::MalformedRequest,
            HeadersTooLarge => ErrorReason::HeadersTooLarge,
            HeaderTimeout => ErrorReason::DetectTimeout,
            NoRoute(_) => ErrorReason::NoRoute,
            NoEndpoints(_) => ErrorReason::FailFast,
            Unavailable(_) => ErrorReason::BreakerOpen,
            TooManyAuthorities => ErrorReason::DestinationCacheFull,
            Unreachable(_) => ErrorReason::Unreachable,
            ConnectTimeout => ErrorReason::ConnectTimeout,
            Upstream(_) => ErrorReason::UpstreamReset,
            RequestTimeout => ErrorReason::ResponseTimeout,
            Unauthorized => ErrorReason::Unauthorized,
        }
    }

    /// What the observation of the request records about this error.
    pub(crate) fn failure(&self) -> Failure {
        Failure {
            reason: self.reason(),
            text: self.to_string(),
        }
    }

    /// Whether the request certainly never reached the upstream application,
    /// so sending it again cannot do anything twice.
    pub(crate) fn is_unsent(&self) -> bool {
        matches!(
            self,
            ProxyError::Unreachable(_) | ProxyError::ConnectTimeout | ProxyError::Unavailable(_)
        )
    }

    pub(crate) fn header_value(&self) -> HeaderValue {
        let text: String = self
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("proxy error"))
    }

    pub(crate) fn response(&self) -> Response<ResponseBody> {
        let mut rsp = Response::new(ResponseBody::text(format!("{self}\n")));
        *rsp.status_mut() = self.status();
        let h = rsp.headers_mut();
        h.insert(PROXY_ERROR_HEADER, self.header_value());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.closes_connection() {
            // The rest of the connection cannot be trusted to be framed
            // right (an unread body, a client beyond the limits).
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        rsp
    }

    /// A denial as a gRPC client expects it: HTTP 200 with the status
    /// `PERMISSION_DENIED` (7) in trailers-only form.
    pub(crate) fn grpc_denied() -> Response<ResponseBody> {
        let mut rsp = Response::new(ResponseBody::text(String::new()));
        let h = rsp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from_static("7"));
        h.insert("grpc-message", HeaderValue::from_static("unauthorized"));
        h.insert(PROXY_ERROR_HEADER, ProxyError::Unauthorized.header_value());
        rsp
    }

    fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::Malformed(_) | ProxyError::HeadersTooLarge | ProxyError::HeaderTimeout
        )
    }

    /// The head of the same response, for connections the HTTP server never
    /// saw (the proxy rejected the first request head itself).
    pub(crate) fn raw_http1_response(&self) -> Vec<u8> {
        let status = self.status();
        let body = format!("{self}\n");
        format!(
            "HTTP/1.1 {} {}\r\n{PROXY_ERROR_HEADER}: {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.header_value().to_str().unwrap_or("proxy error"),
            body.len(),
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_cause() {
        assert_eq!(ProxyError::HeadersTooLarge.status(), 431);
        assert_eq!(ProxyError::Malformed("x".into()).status(), 400);
        assert_eq!(ProxyError::Unreachable("refused".into()).status(), 502);
        assert_eq!(ProxyError::NoRoute("a:80".into()).status(), 404);
        assert_eq!(ProxyError::NoEndpoints("a:80".into()).status(), 503);
        assert_eq!(ProxyError::RequestTimeout.status(), 504);
        let raw = String::from_utf8(ProxyError::HeadersTooLarge.raw_http1_response()).unwrap();
        assert!(raw.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(raw.contains("\r\nconduit-proxy-error: request headers too large\r\n"));
    }

    #[test]
    fn header_value_survives_any_text() {
        let e = ProxyError::Malformed("bad \u{7f}\n byte é".into());
        assert_eq!(e.header_value(), "malformed request: bad ?? byte ?");
    }
}
