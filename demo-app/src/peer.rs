//! Reaching another service of the demo.
//!
//! With `--outbound-proxy`, every connection goes to the local proxy and the
//! peer is named only by its authority (`:authority` / `Host`), which the
//! proxy resolves through the mesh's destination service. Without it, the
//! authority is dialed directly.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

/// A lazily connected gRPC channel to `authority`.
pub(crate) fn grpc_channel(authority: &str, proxy: Option<&str>) -> anyhow::Result<Channel> {
    let origin = format!("http://{authority}");
    let endpoint = match proxy {
        Some(proxy) => Endpoint::from_shared(format!("http://{proxy}"))?
            .origin(origin.parse().context("invalid peer authority")?),
        None => Endpoint::from_shared(origin)?,
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy())
}

/// The address to dial for `authority`.
pub(crate) fn dial_addr<'a>(authority: &'a str, proxy: Option<&'a str>) -> &'a str {
    proxy.unwrap_or(authority)
}
