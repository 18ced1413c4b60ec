//! Finding and dialing the controller's public API.
//!
//! Where to look, in order: `--api-addr`, `CONDUIT_API_ADDR` (both through
//! clap), then the local demo's default address.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use conduit_api::proto::public::v1::api_client::ApiClient;
use tonic::transport::{Channel, Endpoint};

use crate::args::ApiArgs;

/// Where `conduit demo` serves the public gRPC API.
pub(crate) const LOCAL_API_ADDR: &str = "127.0.0.1:50751";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn address(args: &ApiArgs) -> SocketAddr {
    args.api_addr
        .unwrap_or_else(|| LOCAL_API_ADDR.parse().expect("static address"))
}

/// Connects to the controller, or explains where it looked and what to do.
pub(crate) async fn connect(args: &ApiArgs) -> anyhow::Result<ApiClient<Channel>> {
    let addr = address(args);
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .context("invalid API address")?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.with_context(|| {
        format!(
            "no Conduit control plane at {addr} (looked at --api-addr, CONDUIT_API_ADDR, \
             then the local default); start one with `conduit demo`, or run `conduit check`"
        )
    })?;
    Ok(ApiClient::new(channel))
}
