//! Outbound opaque TCP: explicit routes (`--outbound-tcp-route`) and
//! transparent mode's non-HTTP connections, balanced over the
//! destination's endpoints like HTTP (P2C, breakers), one endpoint per
//! connection, mTLS to meshed endpoints like HTTP.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use conduit_identity::tls::Alpn;

use super::{Logical, Outbound};
use crate::http::client::connect_secured;
use crate::io::{MeteredIo, PrefixedIo};

/// Serves one explicit TCP route: every connection goes to `authority`.
pub(crate) async fn serve_route(outbound: Arc<Outbound>, listener: TcpListener, authority: String) {
    let authority = authority.to_ascii_lowercase();
    crate::accept::serve(listener, "outbound-tcp-route", move |stream, client| {
        let outbound = outbound.clone();
        let authority = authority.clone();
        async move {
            let mut io = PrefixedIo::new(Bytes::new(), MeteredIo::new(stream, outbound.src_tcp.clone()));
            match outbound.logical(&authority, None).await {
                Ok(logical) => forward_to_logical(&mut io, &logical).await,
                Err(e) => tracing::info!(%client, %authority, error = %e, "no route for a TCP connection; closing it"),
            }
        }
    })
    .await;
}

/// Connects to an endpoint of `logical` and copies bytes until both sides
/// are done.
pub(super) async fn forward_to_logical<C>(client: &mut C, logical: &Logical)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let ep = match logical.balancer.pick() {
        Ok(ep) => ep,
        Err(e) => {
            tracing::info!(authority = %logical.authority, error = ?e, "no available endpoint for a TCP connection; closing it");
            return;
        }
    };
    let in_flight = ep.start();
    let connect_timeout = ep.client_connect_timeout();
    let server = match connect_secured(ep.addr(), connect_timeout, ep.mtls.as_ref(), Alpn::Opaque)
        .await
    {
        Ok(s) => {
            in_flight.complete(false);
            s
        }
        Err(e) => {
            in_flight.complete(true);
            tracing::info!(endpoint = %ep.addr(), error = %e, "cannot reach a TCP endpoint; closing the connection");
            return;
        }
    };
    let mut server = MeteredIo::new(server, ep.tcp.clone());
    if let Err(e) = crate::tcp::forward(client, &mut server).await {
        tracing::debug!(endpoint = %ep.addr(), error = %e, "outbound TCP connection failed");
    }
}
