//! Whether a request succeeded, decided the same way everywhere: by the
//! proxy when it labels `response_total`, by the store and controller when
//! they compute success rates.
//!
//! The rules are Linkerd's defaults: a gRPC response is judged by its
//! `grpc-status` (trailers or trailers-only headers), anything else by its
//! HTTP status, where only 5xx is a failure; a request that got no response
//! at all (reset, timeout, unreachable upstream) is a failure.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Success,
    Failure,
}

impl Classification {
    /// Classifies a completed response. `grpc_status` is the `grpc-status`
    /// the response ended with, when it was a gRPC response.
    pub fn of_response(http_status: u16, grpc_status: Option<i32>) -> Self {
        match grpc_status {
            Some(code) => Self::of_grpc(code),
            None => Self::of_http(http_status),
        }
    }

    pub fn of_http(status: u16) -> Self {
        if (500..600).contains(&status) {
            Self::Failure
        } else {
            Self::Success
        }
    }

    /// `0` is gRPC's `OK`; every other code is a failure.
    pub fn of_grpc(code: i32) -> Self {
        if code == 0 {
            Self::Success
        } else {
            Self::Failure
        }
    }

    /// The value of the `classification` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Classification::{self, *};

    #[test]
    fn http_only_5xx_fails() {
        for (status, expected) in [
            (200, Success),
            (302, Success),
            (404, Success),
            (499, Success),
            (500, Failure),
            (503, Failure),
            (599, Failure),
        ] {
            assert_eq!(Classification::of_http(status), expected, "{status}");
        }
    }

    #[test]
    fn grpc_status_overrides_http_status() {
        assert_eq!(Classification::of_response(200, Some(0)), Success);
        assert_eq!(Classification::of_response(200, Some(14)), Failure);
        assert_eq!(Classification::of_response(200, None), Success);
        assert_eq!(Classification::of_response(503, None), Failure);
    }
}
