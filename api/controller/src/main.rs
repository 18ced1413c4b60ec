//! `conduit-controller`: the control plane process.

use std::net::SocketAddr;

use clap::Parser;
use conduit_api::proto::public::v1::api_server::ApiServer;
use tracing::info;

mod public;

#[derive(Parser, Debug)]
#[command(version = conduit_api::VERSION, about = "Conduit control plane")]
struct Args {
    /// Address of the public gRPC API (CLI, dashboard backend).
    #[arg(long, env = "CONDUIT_GRPC_LISTEN", default_value = "127.0.0.1:50751")]
    grpc_listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    info!(addr = %args.grpc_listen, "public API listening");
    tonic::transport::Server::builder()
        .add_service(ApiServer::new(public::PublicApi::local()))
        .serve_with_shutdown(args.grpc_listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
