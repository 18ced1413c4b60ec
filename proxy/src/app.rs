//! Assembling a running proxy from its configuration: every listener is
//! bound first (so a bad address fails before anything runs), then the
//! servers, the telemetry push and the housekeeping tasks are started on
//! the current Tokio runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use conduit_api::proto::diagnostics::v1::proxy_diagnostics_server::ProxyDiagnosticsServer;
use conduit_api::proto::tap::v1::tap_server::TapServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::accept::Limits;
use crate::admin::AdminLimits;
use crate::balance::EndpointFactory;
use crate::breaker::BreakerConfig;
use crate::config::Config;
use crate::destination::DestinationResolver;
use crate::diagnostics::DiagnosticsService;
use crate::http::server::Server;
use crate::identity::Identity;
use crate::inbound::Inbound;
use crate::metrics::Registry;
use crate::outbound::{Outbound, Routing};
use crate::policy::Policies;
use crate::recorder::Recorder;
use crate::resolve::{Chain, Resolve, StaticResolver};
use crate::tap::{Tap, TapService};
use crate::telemetry::{Stores, Telemetry};
use conduit_identity::grpc::Allow;
use conduit_identity::tls::{Alpn, ClientAuth, server_config};

/// A running proxy. Dropping it stops its listeners and background tasks.
pub struct Proxy {
    /// The addresses actually bound (useful with port 0).
    pub inbound_addr: SocketAddr,
    pub outbound_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tap_addr: SocketAddr,
    /// One per `--outbound-tcp-route`, in order.
    pub tcp_route_addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {flag} {addr}; choose a free address with {flag}")
    })
}

impl Proxy {
    /// Binds every listener and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let inbound_listener = bind(config.inbound_listen, "--inbound-listen").await?;
        let outbound_listener = bind(config.outbound_listen, "--outbound-listen").await?;
        let admin_listener = bind(config.admin_listen, "--admin-listen").await?;
        let tap_listener = bind(config.tap_listen, "--tap-listen").await?;
        let mut route_listeners = Vec::new();
        for route in &config.outbound_tcp_routes {
            let l = bind(route.listen, "--outbound-tcp-route").await?;
            route_listeners.push((l, route.authority.clone()));
        }

        let config = Arc::new(config);
        let registry = Arc::new(
            Registry::new(
                &config.namespace,
                &config.deployment,
                &config.pod,
                &config.workload_version,
            )
            .with_limits(config.series_limits()),
        );
        let identity = Identity::start(&config, &registry)?;
        let tap = Arc::new(Tap::new(
            config.tap_max_subscribers as usize,
            config.tap_max_rps,
            config.tap_sample_rate,
            config.tap_sample_max_rps,
            Recorder::new(
                config.recorder_max_rps,
                config.recorder_slow_threshold,
                registry.clone(),
            ),
            registry.clone(),
        ));
        let limits = Limits {
            detect_timeout: config.detect_timeout,
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes as usize,
        };
        let server = Server::new(
            limits.max_header_bytes,
            config.header_read_timeout,
            config.h2_limits(),
        );
        let policies = Arc::new(Policies::new(&config, identity.as_deref())?);
        let inbound = Inbound::new(
            config.clone(),
            registry.clone(),
            tap.clone(),
            server.clone(),
            limits,
            identity.clone(),
            policies.clone(),
        );
        let mut proxy_ports = vec![
            inbound_listener.local_addr()?.port(),
            outbound_listener.local_addr()?.port(),
            admin_listener.local_addr()?.port(),
            tap_listener.local_addr()?.port(),
        ];
        for (l, _) in &route_listeners {
            proxy_ports.push(l.local_addr()?.port());
        }
        let inbound = Arc::new(inbound.with_proxy_ports(proxy_ports));
        let factory = Arc::new(EndpointFactory {
            identity: identity.clone(),
            registry: registry.clone(),
            connect_timeout: config.connect_timeout,
            breaker: BreakerConfig {
                threshold: config.failure_accrual_consecutive,
                backoff: config.failure_accrual_backoff,
            },
        });
        let outbound = Arc::new(Outbound::new(
            config.clone(),
            registry.clone(),
            tap.clone(),
            server,
            limits,
            Routing {
                resolver: resolver(&config, &registry, identity.as_deref())?,
                factory,
                listeners: vec![
                    outbound_listener.local_addr()?,
                    inbound_listener.local_addr()?,
                    admin_listener.local_addr()?,
                    tap_listener.local_addr()?,
                ],
            },
        ));

        let mut proxy = Self {
            inbound_addr: inbound_listener.local_addr()?,
            outbound_addr: outbound_listener.local_addr()?,
            admin_addr: admin_listener.local_addr()?,
            tap_addr: tap_listener.local_addr()?,
            tcp_route_addrs: Vec::new(),
            tasks: Vec::new(),
        };

        proxy.tasks.push(tokio::spawn(crate::accept::serve(
            inbound_listener,
            "inbound",
            move |s, a| inbound.clone().handle(s, a),
        )));
        let o = outbound.clone();
        proxy.tasks.push(tokio::spawn(crate::accept::serve(
            outbound_listener,
            "outbound",
            move |s, a| o.clone().handle(s, a),
        )));
        for (listener, authority) in route_listeners {
            proxy.tcp_route_addrs.push(listener.local_addr()?);
            proxy
                .tasks
                .push(tokio::spawn(crate::outbound::serve_tcp_route(
                    outbound.clone(),
                    listener,
                    authority,
                )));
        }
        proxy
            .tasks
            .push(tokio::spawn(outbound.clone().evict_idle()));
        proxy
            .tasks
            .push(tokio::spawn(registry.clone().evict_idle()));
        proxy.tasks.push(tokio::spawn(crate::admin::serve(
            admin_listener,
            registry.clone(),
            AdminLimits {
                header_read_timeout: config.admin_header_read_timeout,
                idle_timeout: config.admin_idle_timeout,
                max_connections: config.admin_max_connections as usize,
            },
        )));
        let diagnostics = DiagnosticsService {
            registry: registry.clone(),
            outbound: outbound.clone(),
            policies,
        };
        proxy.tasks.push(tokio::spawn(serve_tap(
            tap_listener,
            (TapService { tap: tap.clone() }, diagnostics),
            &config,
            identity.clone(),
        )?));

        let telemetry = Arc::new(Telemetry::new(
            registry,
            tap,
            config.telemetry_interval,
            Stores {
                addrs: config.telemetry_addr.clone(),
                buffer: config.telemetry_buffer as usize,
            },
            config.deployment_ref(),
            config.pod.clone(),
            identity.clone(),
        ));
        proxy.tasks.push(tokio::spawn(telemetry.run()));
        tracing::info!(
            mode = ?config.mode,
            inbound = %proxy.inbound_addr,
            outbound = %proxy.outbound_addr,
            admin = %proxy.admin_addr,
            tap = %proxy.tap_addr,
            identity = identity.as_ref().map(|i| i.name()),
            "proxy started"
        );
        Ok(proxy)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Static endpoints first (an operator's explicit word), then the
/// destination service.
fn resolver(
    config: &Config,
    registry: &Arc<Registry>,
    identity: Option<&Identity>,
) -> anyhow::Result<Arc<dyn Resolve>> {
    let mut chain: Vec<Arc<dyn Resolve>> = Vec::new();
    let statics = StaticResolver::new(&config.outbound_endpoints);
    if !statics.is_empty() {
        chain.push(Arc::new(statics));
    }
    if let Some(addr) = &config.destination_addr {
        chain.push(Arc::new(DestinationResolver::new(
            addr,
            config,
            registry.clone(),
            identity,
        )?));
    }
    Ok(Arc::new(Chain(chain)))
}

/// Tap reveals request data, diagnostics the proxy's view of the mesh:
/// with identity on, both are served over mTLS to the controller's
/// identity only. tonic's defaults leave HTTP/2 streams,
/// keep-alive and h2's cap on locally reset streams unbounded, so the
/// proxy's HTTP/2 limits are set explicitly.
fn serve_tap(
    listener: TcpListener,
    (service, diagnostics): (TapService, DiagnosticsService),
    config: &Config,
    identity: Option<Arc<Identity>>,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let h2 = config.h2_limits();
    let service =
        TapServer::new(service).max_decoding_message_size(config.tap_max_request_bytes as usize);
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(config.tap_max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(h2.max_pending_accept_reset_streams))
        .http2_max_local_error_reset_streams(Some(h2.max_local_error_reset_streams))
        .http2_keepalive_interval(h2.keepalive_interval)
        .http2_keepalive_timeout(Some(h2.keepalive_timeout))
        .add_service(service)
        .add_service(ProxyDiagnosticsServer::new(diagnostics));
    let tls = match &identity {
        Some(id) => Some((
            server_config(
                &id.tls.anchors,
                id.creds().clone(),
                ClientAuth::Required,
                &[Alpn::H2],
            )?,
            id.controller.clone(),
        )),
        None => None,
    };
    Ok(async move {
        let res = match tls {
            Some((config, controller)) => {
                let incoming = conduit_identity::grpc::incoming(
                    listener,
                    config,
                    Allow::Only(vec![controller]),
                    "tap",
                );
                server.serve_with_incoming(incoming).await
            }
            None => {
                server
                    .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                    .await
            }
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "tap server failed");
        }
    })
}
