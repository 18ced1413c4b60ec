//! Inbound: connections from peers, forwarded to the local application.
//!
//! The target is the application: `--inbound-app-addr` in explicit mode,
//! `127.0.0.1:<original port>` in transparent mode. HTTP is served and
//! measured per request (HTTP/1 requests a peer proxy upgraded to HTTP/2
//! are restored to HTTP/1 here); everything else is forwarded as bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use conduit_api::metrics::label;
use conduit_api::{DeploymentRef, Direction};
use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::accept::{self, Limits, Sniffed};
use crate::config::{Config, Mode};
use crate::errors::ProxyError;
use crate::http::body::{RequestBody, ResponseBody};
use crate::http::client::EndpointClient;
use crate::http::observe::{Observation, ObservedBody};
use crate::http::server::{Handler, Server};
use crate::http::{authority, head, headers, orig_proto, upgrade};
use crate::io::{MeteredIo, PrefixedIo};
use crate::metrics::{HttpStats, Registry, TLS_NO_IDENTITY, TcpStats, lock};
use crate::tap::{PeerMeta, RequestMeta, Tap};

pub(crate) struct Inbound {
    config: Arc<Config>,
    registry: Arc<Registry>,
    tap: Arc<Tap>,
    server: Server,
    limits: Limits,
    own: Option<DeploymentRef>,
    src_tcp: Arc<TcpStats>,
    dst_tcp: Arc<TcpStats>,
    /// One client per application port, shared by all connections.
    clients: Mutex<HashMap<SocketAddr, Arc<EndpointClient>>>,
}

impl Inbound {
    pub(crate) fn new(
        config: Arc<Config>,
        registry: Arc<Registry>,
        tap: Arc<Tap>,
        server: Server,
        limits: Limits,
    ) -> Self {
        let src_tcp = registry.tcp(&[
            (label::DIRECTION, "inbound"),
            (label::PEER, "src"),
            (label::TLS, TLS_NO_IDENTITY),
        ]);
        let dst_tcp = registry.tcp(&[(label::DIRECTION, "inbound"), (label::PEER, "dst")]);
        Self {
            own: config.deployment_ref(),
            config,
            registry,
            tap,
            server,
            limits,
            src_tcp,
            dst_tcp,
            clients: Mutex::default(),
        }
    }

    pub(crate) async fn handle(self: Arc<Self>, stream: TcpStream, client: SocketAddr) {
        let target = match self.config.mode {
            Mode::Explicit => self.config.inbound_app_addr,
            Mode::Transparent => match accept::original_dst(&stream) {
                Ok(dst) => SocketAddr::from(([127, 0, 0, 1], dst.port())),
                Err(e) => {
                    tracing::warn!(%client, error = %e, "no original destination on a transparent inbound connection; closing it");
                    return;
                }
            },
        };
        let io = MeteredIo::new(stream, self.src_tcp.clone());
        if self.config.is_opaque_port(target.port()) {
            return self
                .forward_tcp(PrefixedIo::new(Bytes::new(), io), target)
                .await;
        }
        match accept::sniff(io, self.limits).await {
            Sniffed::Http(version, io) => {
                let conn = Arc::new(InboundConn {
                    client,
                    target,
                    upstream: self.client_for(target),
                    stats: Mutex::new(None),
                    inbound: self.clone(),
                });
                self.server.serve(io, version, conn).await;
            }
            Sniffed::Opaque(io) => self.forward_tcp(io, target).await,
            Sniffed::Done => {}
        }
    }

    fn client_for(&self, target: SocketAddr) -> Arc<EndpointClient> {
        lock(&self.clients)
            .entry(target)
            .or_insert_with(|| {
                Arc::new(EndpointClient::new(
                    target,
                    self.config.connect_timeout,
                    self.dst_tcp.clone(),
                ))
            })
            .clone()
    }

    async fn forward_tcp(&self, mut client: PrefixedIo<MeteredIo<TcpStream>>, target: SocketAddr) {
        let server = match crate::tcp::connect(target, self.config.connect_timeout).await {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(%target, error = %e, "cannot reach the application; closing the connection");
                return;
            }
        };
        let mut server = MeteredIo::new(server, self.dst_tcp.clone());
        if let Err(e) = crate::tcp::forward(&mut client, &mut server).await {
            tracing::debug!(%target, error = %e, "inbound TCP connection failed");
        }
    }
}

struct Cached {
    raw: String,
    label: Arc<str>,
    stats: Arc<HttpStats>,
}

/// One accepted HTTP connection.
struct InboundConn {
    inbound: Arc<Inbound>,
    client: SocketAddr,
    target: SocketAddr,
    upstream: Arc<EndpointClient>,
    /// The last authority seen (as sent, then normalized) and its series:
    /// connections rarely change authority, so most requests skip the
    /// registry.
    stats: Mutex<Option<Cached>>,
}

impl InboundConn {
    /// The normalized authority label and series of a request's authority.
    fn stats_for(&self, raw: Option<&Authority>) -> (Arc<str>, Arc<HttpStats>) {
        let raw_str = raw.map_or("", |a| a.as_str());
        let mut cached = lock(&self.stats);
        if let Some(c) = &*cached
            && c.raw == raw_str
        {
            return (c.label.clone(), c.stats.clone());
        }
        let label: Arc<str> = raw.map(authority::with_port).unwrap_or_default().into();
        let stats = self.inbound.registry.http(&[
            (label::DIRECTION, "inbound"),
            (label::AUTHORITY, &label),
            (label::TLS, TLS_NO_IDENTITY),
            (label::CLIENT_ID, ""),
        ]);
        *cached = Some(Cached {
            raw: raw_str.to_string(),
            label: label.clone(),
            stats: stats.clone(),
        });
        (label, stats)
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        obs: &Observation,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        if head::len_of(&req) > self.inbound.limits.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge);
        }
        orig_proto::downgrade(&mut req);
        let upgrading = headers::is_upgrade(&req) || headers::is_connect(&req);
        headers::strip_hop_by_hop(req.headers_mut(), upgrading);
        if self.inbound.config.inbound_add_forwarded {
            add_forwarded(&mut req, self.client);
        }
        let authority = authority::of(&req).unwrap_or_else(|| {
            self.target
                .to_string()
                .parse()
                .expect("a socket address is an authority")
        });
        authority::absolutize(&mut req, &authority)?;
        let downstream_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
        let method = req.method().clone();
        let mut req = req.map(RequestBody::incoming);
        if let Some(tap) = obs.tap() {
            req.body_mut().count_into(tap.request_bytes());
        }
        let mut rsp = self.upstream.send(req).await?;
        let switching = downstream_upgrade.is_some() && upgrade::accepted(&method, &rsp);
        headers::strip_hop_by_hop(rsp.headers_mut(), switching);
        if let (true, Some(down)) = (switching, downstream_upgrade) {
            upgrade::splice(down, hyper::upgrade::on(&mut rsp));
        }
        Ok(rsp.map(ResponseBody::Incoming))
    }
}

impl Handler for InboundConn {
    type Body = ObservedBody<ResponseBody>;

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Self::Body> {
        let start = Instant::now();
        let (authority_label, stats) = self.stats_for(authority::of(&req).as_ref());
        let inbound = &self.inbound;
        let tap = inbound.tap.capture(&RequestMeta {
            direction: Direction::Inbound,
            method: req.method(),
            uri: req.uri(),
            authority: &authority_label,
            headers: req.headers(),
            source: PeerMeta {
                addr: self.client,
                deployment: None,
                identity: "",
            },
            destination: PeerMeta {
                addr: self.target,
                deployment: inbound.own.as_ref(),
                identity: "",
            },
        });
        let obs = Observation::begin(stats, start, tap);
        match self.forward(req, &obs).await {
            Ok(rsp) => obs.respond(rsp, None),
            Err(e) => {
                tracing::debug!(error = %e, target = %self.target, "inbound request failed");
                let rsp = e.response();
                obs.respond(rsp, Some(e.to_string()))
            }
        }
    }
}

/// RFC 7239: `for` names the client; an address with a port is quoted, and
/// IPv6 is bracketed.
fn add_forwarded<B>(req: &mut Request<B>, client: SocketAddr) {
    // `SocketAddr` prints IPv6 bracketed: `[::1]:80`.
    if let Ok(v) = HeaderValue::try_from(format!("for=\"{client}\";proto=http")) {
        req.headers_mut().append(http::header::FORWARDED, v);
    }
}
