//! Wires discovery, the store client and the APIs to their listeners.

use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use conduit_api::proto::destination::v1::destination_server::DestinationServer;
use conduit_api::proto::public::v1::api_server::ApiServer;
use tokio::net::TcpListener;
use tracing::info;

use crate::args::{Args, DiscoverySource};
use crate::destination::Destination;
use crate::discovery::{Discovery, kubernetes::Kubernetes, static_file::StaticFile};
use crate::public::PublicApi;
use crate::store::Store;
use crate::ui::Ui;

pub async fn discovery(args: &Args) -> anyhow::Result<Arc<dyn Discovery>> {
    Ok(match &args.discovery {
        DiscoverySource::Static(path) => Arc::new(StaticFile::start(path)?),
        DiscoverySource::Kubernetes => Arc::new(Kubernetes::connect(&args.cluster_domain).await?),
    })
}

/// Runs until `shutdown` completes.
pub async fn run(
    args: Args,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let discovery = discovery(&args).await?;
    let store = Store::connect_lazy(&args.store_addr)?;
    let grpc = TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on --grpc-listen {}", args.grpc_listen))?;
    let http = TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on --http-listen {}", args.http_listen))?;
    let http_addr = http.local_addr()?;
    let api = PublicApi::new(
        store,
        discovery.clone(),
        args.mode().as_str(),
        format!("http://{http_addr}"),
    );
    let ui = Ui::new(args.ui_dir.clone().unwrap_or_else(Ui::default_dir));
    info!(
        grpc = %grpc.local_addr()?,
        http = %http_addr,
        store = %args.store_addr,
        ui = %ui.dir().display(),
        mode = args.mode().as_str(),
        "controller listening"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let grpc_server = tonic::transport::Server::builder()
        .add_service(ApiServer::new(api.clone()))
        .add_service(DestinationServer::new(Destination::new(
            discovery.snapshots(),
        )))
        .serve_with_incoming_shutdown(
            // Without it a reply of more than one segment waits out the
            // peer's delayed ACK (40 ms) behind Nagle's algorithm.
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            stopped(stop_rx.clone()),
        );
    let app = crate::rest::router(api).fallback(move |uri, headers: axum::http::HeaderMap| {
        let ui = ui.clone();
        async move { ui.serve(uri, &headers).await }
    });
    let http = http.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    let http_server = axum::serve(http, app).with_graceful_shutdown(stopped(stop_rx));
    tokio::try_join!(
        async { grpc_server.await.context("gRPC server failed") },
        async { http_server.await.context("HTTP server failed") },
    )?;
    Ok(())
}
