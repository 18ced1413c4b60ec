//! Wires discovery, the store client and the APIs to their listeners.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use conduit_api::IdentityName;
use conduit_api::proto::destination::v1::destination_server::DestinationServer;
use conduit_api::proto::destination::v1::workloads_server::WorkloadsServer;
use conduit_api::proto::identity::v1::identity_server::IdentityServer;
use conduit_api::proto::policy::v1::inbound_server_policies_server::InboundServerPoliciesServer;
use conduit_api::proto::public::v1::api_server::ApiServer;
use conduit_identity::bearer::BearerToken;
use conduit_identity::grpc::{Allow, PeerInfo, answer_only};
use conduit_identity::tls::{Alpn, ClientAuth, server_config};
use conduit_identity::token::{TokenKey, unhex};
use conduit_identity::{Credentials, TrustAnchors};
use tokio::net::TcpListener;
use tracing::info;

use crate::access::Access;
use crate::args::{Args, DiscoverySource};
use crate::destination::Destination;
use crate::discovery::{Discovery, kubernetes::Kubernetes, static_file::StaticFile};
use crate::identity::issuer::Issuer;
use crate::identity::tokens::Tokens;
use crate::identity::{IdentityService, IdentityStats, certify_self, keep_certified};
use crate::links::Links;
use crate::metrics_backend::MetricsBackend;
use crate::policy::InboundPolicies;
use crate::public::{PublicApi, Settings};
use crate::store::Store;
use crate::ui::Ui;
use crate::workloads::Workloads;

/// The mesh's certificate authority and the controller's own identity.
pub struct MeshIdentity {
    pub issuer: Arc<Issuer>,
    pub creds: Arc<Credentials>,
    pub stats: Arc<IdentityStats>,
    tokens: Option<Tokens>,
}

/// Loads the identity roots given on the command line and certifies the
/// controller; `None` when identity is off (no trust anchors given).
pub async fn identity(args: &Args) -> anyhow::Result<Option<MeshIdentity>> {
    let ia = &args.identity;
    let Some(anchors) = &ia.identity_trust_anchors else {
        tracing::warn!(
            "no --identity-trust-anchors: identity is off and the mesh runs in plaintext"
        );
        return Ok(None);
    };
    let (Some(certificate), Some(key)) = (&ia.identity_issuer_certificate, &ia.identity_issuer_key)
    else {
        anyhow::bail!(
            "--identity-trust-anchors needs --identity-issuer-certificate and --identity-issuer-key"
        );
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let anchors = TrustAnchors::read(anchors)?;
    let issuer = Issuer::from_pem(
        &read(certificate)?,
        &read(key)?,
        anchors,
        ia.identity_cert_lifetime,
    )
    .context("the identity issuer")?;
    let tokens = match (&ia.identity_token_key, &args.discovery) {
        (Some(path), _) => {
            let key = unhex(&read(path)?)
                .with_context(|| format!("{} does not hold a hex token key", path.display()))?;
            Tokens::Local(TokenKey::from_bytes(&key))
        }
        (None, DiscoverySource::Kubernetes) => Tokens::Kubernetes(
            kube::Client::try_default()
                .await
                .context("cannot reach the Kubernetes API to review tokens")?,
        ),
        (None, DiscoverySource::Static(_)) => anyhow::bail!(
            "local mode checks workload tokens with --identity-token-key; give the key file"
        ),
    };
    let creds = Credentials::new(IdentityName::controller(&args.namespace, &ia.trust_domain));
    let issuer = Arc::new(issuer);
    certify_self(&issuer, &creds).context("cannot certify the controller itself")?;
    tokio::spawn(keep_certified(issuer.clone(), creds.clone()));
    Ok(Some(MeshIdentity {
        issuer,
        creds,
        stats: Arc::default(),
        tokens: Some(tokens),
    }))
}

type ServeFuture = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// The proxies' listener: Identity and Destination, over TLS when identity
/// is on. Destination answers only callers that proved a mesh identity;
/// Identity answers anyone (that is how proxies get one).
/// With TLS on, a service of the mesh port answers callers that proved a
/// mesh identity only.
fn meshed_only(
    tls: bool,
    service: &'static str,
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req| {
        let proven = PeerInfo::of(&req).is_some_and(|p| p.identity.is_some());
        if tls && !proven {
            return Err(tonic::Status::permission_denied(format!(
                "the {service} service answers meshed proxies only (mTLS with a mesh identity)"
            )));
        }
        Ok(req)
    }
}

fn mesh_server(
    listener: TcpListener,
    discovery: &Arc<dyn Discovery>,
    identity: Option<&mut MeshIdentity>,
    args: &Args,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ServeFuture> {
    let tls = identity.is_some();
    let destination = DestinationServer::with_interceptor(
        Destination::new(discovery.snapshots()),
        meshed_only(tls, "destination"),
    );
    let policy = InboundServerPoliciesServer::with_interceptor(
        InboundPolicies::new(discovery.snapshots()),
        meshed_only(tls, "policy"),
    );
    let limits = args.limits.grpc();
    let Some(id) = identity else {
        let incoming = conduit_listen::grpc::capped(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            limits.max_connections,
        );
        return Ok(Box::pin(
            conduit_listen::grpc::server(&limits)
                .add_service(destination)
                .add_service(policy)
                .serve_with_incoming_shutdown(incoming, stopped),
        ));
    };
    let config = server_config(
        id.issuer.anchors(),
        id.creds.clone(),
        ClientAuth::Optional,
        &[Alpn::H2],
    )?;
    let trust_domain = &args.identity.trust_domain;
    let service = IdentityService::new(
        id.issuer.clone(),
        id.tokens
            .take()
            .context("the identity service is already serving")?,
        trust_domain.to_string(),
        id.stats.clone(),
        args.limits.max_concurrent_certify,
    );
    // The table the store checks reports against; no one else needs it.
    let workloads = WorkloadsServer::with_interceptor(
        Workloads::new(discovery.snapshots()),
        answer_only(
            IdentityName::store(&args.namespace, trust_domain),
            "workloads",
        ),
    );
    let incoming = conduit_listen::grpc::capped(
        conduit_identity::grpc::incoming(listener, config, Allow::AnyClient, "mesh"),
        limits.max_connections,
    );
    Ok(Box::pin(
        conduit_listen::grpc::server(&limits)
            .add_service(IdentityServer::new(service))
            .add_service(destination)
            .add_service(policy)
            .add_service(workloads)
            .serve_with_incoming_shutdown(incoming, stopped),
    ))
}

/// Who may see requests through the public API.
async fn access(args: &Args) -> anyhow::Result<Access> {
    if let Some(path) = &args.api_token_file {
        let token = BearerToken::read(path)
            .with_context(|| format!("cannot read --api-token-file {}", path.display()))?;
        return Ok(Access::Local(token));
    }
    match args.discovery {
        DiscoverySource::Kubernetes => Ok(Access::kubernetes(
            kube::Client::try_default()
                .await
                .context("cannot reach the Kubernetes API to authorize tap")?,
            &args.namespace,
        )),
        DiscoverySource::Static(_) => {
            tracing::warn!("no --api-token-file: live tap, tap search and top are closed");
            Ok(Access::Closed)
        }
    }
}

pub async fn discovery(args: &Args) -> anyhow::Result<Arc<dyn Discovery>> {
    Ok(match &args.discovery {
        DiscoverySource::Static(path) => Arc::new(StaticFile::start(path)?),
        DiscoverySource::Kubernetes => {
            Arc::new(Kubernetes::connect(&args.cluster_domain, args.policy.defaults()).await?)
        }
    })
}

/// Runs until `shutdown` completes.
pub async fn run(
    args: Args,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let discovery = discovery(&args).await?;
    let mut identity = identity(&args).await?;
    let links = Links::new(identity.as_ref(), &args.identity.trust_domain)?;
    let store = Store::connect_lazy(
        &args.store_addr,
        &links,
        &IdentityName::store(&args.namespace, &args.identity.trust_domain),
    )?;
    let metrics =
        MetricsBackend::new(&args.metrics.metrics_backend, &store, args.metrics.limits())?;
    let mesh = TcpListener::bind(args.mesh_listen)
        .await
        .with_context(|| format!("cannot listen on --mesh-listen {}", args.mesh_listen))?;
    let grpc = TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on --grpc-listen {}", args.grpc_listen))?;
    let http = TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on --http-listen {}", args.http_listen))?;
    let http_addr = http.local_addr()?;
    let access = access(&args).await?;
    let metrics_backend = metrics.describe();
    let api = PublicApi::new(
        (store, metrics),
        links,
        identity.as_ref().map(|i| i.issuer.clone()),
        discovery.clone(),
        Settings {
            mode: args.mode().as_str().to_string(),
            dashboard_url: format!("http://{http_addr}"),
            access,
            max_live_taps: args.limits.max_live_taps,
        },
    );
    let ui = Ui::new(args.ui_dir.clone().unwrap_or_else(Ui::default_dir));
    info!(
        grpc = %grpc.local_addr()?,
        http = %http_addr,
        store = %args.store_addr.join(","),
        metrics = %metrics_backend,
        mesh = %mesh.local_addr()?,
        identity = identity.as_ref().map(|i| i.creds.dns_name().to_string()),
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

    let mesh_server = mesh_server(
        mesh,
        &discovery,
        identity.as_mut(),
        &args,
        stopped(stop_rx.clone()),
    )?;
    let grpc_limits = args.limits.grpc();
    let grpc_server = conduit_listen::grpc::server(&grpc_limits)
        .add_service(ApiServer::new(api.clone()))
        .serve_with_incoming_shutdown(
            conduit_listen::grpc::capped(
                // Without it a reply of more than one segment waits out the
                // peer's delayed ACK (40 ms) behind Nagle's algorithm.
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
                grpc_limits.max_connections,
            ),
            stopped(stop_rx.clone()),
        );
    let stats = identity.as_ref().map(|i| i.stats.clone());
    let app = crate::rest::router(api)
        .route(
            "/metrics",
            axum::routing::get(move || {
                let stats = stats.clone();
                async move {
                    let mut out = String::new();
                    if let Some(s) = stats {
                        s.render(&mut out);
                    }
                    out
                }
            }),
        )
        .fallback(move |uri, headers: axum::http::HeaderMap| {
            let ui = ui.clone();
            async move { ui.serve(uri, &headers).await }
        });
    let http_server = conduit_listen::http::serve(http, app, args.limits.http(), stop_rx);
    tokio::try_join!(
        async { grpc_server.await.context("gRPC server failed") },
        async { http_server.await.context("HTTP server failed") },
        async { mesh_server.await.context("mesh gRPC server failed") },
    )?;
    Ok(())
}
