//! Protocol upgrades (`Upgrade: websocket`, `CONNECT`): once the upstream
//! agrees (101, or 2xx to CONNECT), the HTTP connection on each side
//! becomes a byte stream and the proxy splices the two.

use http::{Method, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Whether the upstream accepted the switch the request asked for.
pub(crate) fn accepted<B>(method: &Method, rsp: &Response<B>) -> bool {
    if method == Method::CONNECT {
        rsp.status().is_success()
    } else {
        rsp.status() == StatusCode::SWITCHING_PROTOCOLS
    }
}

/// Copies between the client's and the upstream's upgraded connections
/// until both directions end.
pub(crate) fn splice(downstream: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (down, up) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
        match crate::tcp::forward(&mut down, &mut up).await {
            Ok((sent, received)) => tracing::debug!(sent, received, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
        }
    });
}
