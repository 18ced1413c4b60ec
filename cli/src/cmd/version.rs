//! `conduit version`: the client's version and, when reachable, the
//! control plane's.

use conduit_api::proto::public::v1::VersionRequest;
use serde::Serialize;

use crate::api;
use crate::args::VersionArgs;
use crate::cmd::block_on;
use crate::output::{Format, outln, print_json};

#[derive(Serialize)]
struct Versions {
    client: &'static str,
    /// Absent when the control plane could not be reached.
    server: Option<Server>,
    /// Why the server version is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
}

#[derive(Serialize)]
struct Server {
    version: String,
    mode: String,
    dashboard_url: String,
}

pub(crate) fn run(args: VersionArgs) -> anyhow::Result<()> {
    let mut versions = Versions {
        client: conduit_api::VERSION,
        server: None,
        server_error: None,
    };
    if !args.client {
        match block_on(server_version(&args)) {
            Ok(server) => versions.server = Some(server),
            Err(e) => versions.server_error = Some(format!("{e:#}")),
        }
    }

    if args.output == Format::Json {
        return print_json(&versions);
    }
    outln!("Client version: {}", versions.client)?;
    if args.client {
        return Ok(());
    }
    match (&versions.server, &versions.server_error) {
        (Some(s), _) => outln!("Server version: {} ({} mode)", s.version, s.mode)?,
        (None, Some(e)) => outln!("Server version: unavailable: {e}")?,
        (None, None) => unreachable!("either a version or an error"),
    }
    Ok(())
}

async fn server_version(args: &VersionArgs) -> anyhow::Result<Server> {
    let mut conn = api::connect(&args.api).await?;
    let reply = conn.client.version(VersionRequest {}).await?.into_inner();
    Ok(Server {
        version: reply.version,
        mode: reply.mode,
        dashboard_url: reply.dashboard_url,
    })
}
