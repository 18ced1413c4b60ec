//! Inbound: connections from peers, forwarded to the local application.
//!
//! The target is the application: `--inbound-app-addr` in explicit mode,
//! the original destination (the pod's address and the port the client
//! dialed) in transparent mode. Not loopback: what the application binds to
//! loopback only stays private to the pod, as without a proxy. A
//! connection whose original destination is one of the proxy's own ports
//! is refused: forwarding it would loop, or hand the pod's outbound
//! listener (and identity) to a peer. HTTP is served and
//! measured per request (HTTP/1 requests a peer proxy upgraded to HTTP/2
//! are restored to HTTP/1 here); everything else is forwarded as bytes.
//!
//! First, a connection's opening bytes are checked for a TLS ClientHello:
//! one that names this proxy's identity is mTLS from a meshed peer, which
//! is terminated here (its ALPN says whether it carries HTTP/2, HTTP/1 or
//! opaque bytes); any other TLS is the application's own and passes
//! through untouched; plaintext is an unmeshed client. Even opaque ports
//! are checked, since a meshed client always speaks first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use conduit_api::metrics::labels;
use conduit_api::metrics::{self as names, NoTlsReason, Tls};
use conduit_api::proto::policy::v1::ProxyProtocol;
use conduit_api::{DeploymentRef, Direction, ErrorReason};
use conduit_identity::tls::Alpn;
use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::accept::{self, Limits, Sniffed};
use crate::config::{Config, Mode};
use crate::detect::{self, ClientHello};
use crate::errors::ProxyError;
use crate::http::body::{RequestBody, ResponseBody};
use crate::http::client::EndpointClient;
use crate::http::observe::{self, Failure, Observation, ObservedBody};
use crate::http::server::Version;
use crate::http::server::{Handler, Server};
use crate::http::{authority, head, headers, orig_proto, upgrade};
use crate::identity::Identity;
use crate::io::{MeteredIo, PrefixedIo};
use crate::metrics::{HttpStats, Registry, TcpStats, lock};
use crate::policy::{self, Policies};
use crate::served::ServedNames;
use crate::tap::{PeerMeta, RequestMeta, Tap};

pub(crate) struct Inbound {
    config: Arc<Config>,
    registry: Arc<Registry>,
    tap: Arc<Tap>,
    server: Server,
    limits: Limits,
    own: Option<DeploymentRef>,
    identity: Option<Arc<Identity>>,
    policies: Arc<Policies>,
    /// The authorities that keep their own `authority` label.
    served: ServedNames,
    dst_tcp: Arc<TcpStats>,
    /// The clients' transport series of unmeshed and passed-through
    /// connections, looked up once (per-client mTLS series are looked up
    /// per connection: they carry the client's identity).
    plaintext_tcp: Arc<TcpStats>,
    passthrough_tcp: Arc<TcpStats>,
    /// One client per application port, shared by all connections.
    clients: Mutex<HashMap<SocketAddr, Arc<EndpointClient>>>,
    /// The proxy's listening ports: no transparent connection goes there.
    proxy_ports: Vec<u16>,
}

/// Application clients kept past this are only those connections use: in
/// transparent mode a peer picks the port, so the map must not grow with
/// every port it tries.
const MAX_IDLE_APP_CLIENTS: usize = 64;

/// How an accepted connection is secured, once its first bytes are seen.
struct Peer {
    addr: SocketAddr,
    /// The address the client dialed (the pod's, in transparent mode).
    dialed: IpAddr,
    tls: Tls,
    /// The client's identity, from the certificate it proved.
    client_id: Option<Arc<str>>,
}

impl Peer {
    fn unmeshed(addr: SocketAddr, dialed: IpAddr, reason: NoTlsReason) -> Self {
        Self {
            addr,
            dialed,
            tls: Tls::NoIdentity(reason),
            client_id: None,
        }
    }

    fn policy_client(&self) -> policy::Client<'_> {
        policy::Client {
            ip: self.addr.ip(),
            identity: self.client_id.as_deref(),
        }
    }
}

impl Inbound {
    pub(crate) fn new(
        config: Arc<Config>,
        registry: Arc<Registry>,
        tap: Arc<Tap>,
        server: Server,
        limits: Limits,
        identity: Option<Arc<Identity>>,
        policies: Arc<Policies>,
    ) -> Self {
        let dst_tcp = registry.tcp(
            Direction::Inbound,
            labels::Peer::Dst,
            &labels::Endpoint::default(),
        );
        Self {
            own: config.deployment_ref(),
            served: ServedNames::new(&config),
            config,
            tap,
            server,
            limits,
            identity,
            policies,
            dst_tcp,
            plaintext_tcp: src_tcp(&registry, Tls::NoIdentity(NoTlsReason::NoTlsFromRemote), ""),
            passthrough_tcp: src_tcp(&registry, Tls::NoIdentity(NoTlsReason::Passthrough), ""),
            clients: Mutex::default(),
            proxy_ports: Vec::new(),
            registry,
        }
    }

    /// The ports of the proxy's own listeners.
    pub(crate) fn with_proxy_ports(self, proxy_ports: Vec<u16>) -> Self {
        Self {
            proxy_ports,
            ..self
        }
    }

    pub(crate) async fn handle(self: Arc<Self>, mut stream: TcpStream, client: SocketAddr) {
        let target = match self.config.mode {
            Mode::Explicit => self.config.inbound_app_addr,
            Mode::Transparent => match accept::original_dst(&stream) {
                Ok(dst) if self.proxy_ports.contains(&dst.port()) => {
                    return self.refuse_proxy_port(client, dst);
                }
                Ok(dst) => dst,
                Err(e) => {
                    tracing::warn!(%client, error = %e, "no original destination on a transparent inbound connection; closing it");
                    return;
                }
            },
        };
        let dialed = match stream.local_addr() {
            Ok(a) => a.ip(),
            Err(e) => {
                tracing::debug!(%client, error = %e, "inbound connection gone before it was handled");
                return;
            }
        };
        let mut first = BytesMut::with_capacity(1024);
        // Without an identity there is no TLS of ours to look for.
        let hello = match &self.identity {
            None => Hello::Plaintext { silent: false },
            Some(_) => match self.read_hello(&mut stream, &mut first).await {
                Some(h) => h,
                None => return,
            },
        };
        match hello {
            Hello::ForMe => {
                let io = PrefixedIo::new(first.freeze(), stream);
                self.terminate(io, client, dialed, target).await
            }
            Hello::Passthrough => {
                let io = metered(stream, first, self.passthrough_tcp.clone());
                let peer = Peer::unmeshed(client, dialed, NoTlsReason::Passthrough);
                self.forward_tcp(io, target, &peer).await
            }
            Hello::Plaintext { silent } => {
                let io = metered(stream, first, self.plaintext_tcp.clone());
                let peer = Peer::unmeshed(client, dialed, NoTlsReason::NoTlsFromRemote);
                // A silent client speaks when spoken to: nothing to detect.
                // (With identity on, an unmeshed client of a
                // server-speaks-first port waits out the detection timeout
                // first, as every meshed client speaks first.)
                if silent || self.is_opaque(target.port()).await {
                    return self.forward_tcp(io, target, &peer).await;
                }
                self.serve_detected(io, client, target, peer).await
            }
        }
    }

    fn refuse_proxy_port(&self, client: SocketAddr, dst: SocketAddr) {
        let refused = &self.registry.proxy.inbound_proxy_port_refused;
        refused.fetch_add(1, Relaxed);
        tracing::info!(%client, %dst, "refused an inbound connection to one of the proxy's own ports");
    }

    /// Reads until the first bytes show whether the client starts a TLS
    /// handshake for this proxy's identity; `None` when it left.
    async fn read_hello(&self, stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Hello> {
        let read = async {
            loop {
                match detect::client_hello(buf) {
                    ClientHello::NeedMore if buf.len() < detect::MAX_CLIENT_HELLO_RECORD => {}
                    ClientHello::Hello { server_name } => {
                        let mine = self
                            .identity
                            .as_ref()
                            .is_some_and(|i| server_name == Some(i.name()));
                        return Some(if mine {
                            Hello::ForMe
                        } else {
                            Hello::Passthrough
                        });
                    }
                    ClientHello::NeedMore | ClientHello::Other => {
                        return Some(Hello::Plaintext { silent: false });
                    }
                }
                buf.reserve(1024);
                match stream.read_buf(buf).await {
                    Ok(0) if buf.is_empty() => return None,
                    Ok(0) => return Some(Hello::Plaintext { silent: false }),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "connection failed before its first bytes");
                        return None;
                    }
                }
            }
        };
        match tokio::time::timeout(self.limits.detect_timeout, read).await {
            Ok(hello) => hello,
            Err(_) => Some(Hello::Plaintext {
                silent: buf.is_empty(),
            }),
        }
    }

    /// mTLS from a meshed client: the handshake, then what its ALPN says
    /// the connection carries.
    async fn terminate(
        self: Arc<Self>,
        io: PrefixedIo<TcpStream>,
        client: SocketAddr,
        dialed: IpAddr,
        target: SocketAddr,
    ) {
        let Some(identity) = self.identity.clone() else {
            return;
        };
        let Ok(tls) = identity.accept(io, self.config.tls_handshake_timeout).await else {
            return;
        };
        let client_id = conduit_identity::grpc::client_identity(&tls).map(|i| i.to_string());
        let alpn = Alpn::of(tls.get_ref().1.alpn_protocol());
        let stats = src_tcp(
            &self.registry,
            Tls::Secured,
            client_id.as_deref().unwrap_or(""),
        );
        let io = MeteredIo::new(tls, stats);
        let peer = Peer {
            addr: client,
            dialed,
            tls: Tls::Secured,
            client_id: client_id.map(Into::into),
        };
        match alpn {
            Some(Alpn::Opaque) => self.forward_tcp(io, target, &peer).await,
            Some(Alpn::H2) => {
                let conn = self.conn(client, target, peer);
                self.server.serve(io, Version::H2, conn).await;
            }
            Some(Alpn::Http1) | None => {
                let io = PrefixedIo::new(Bytes::new(), io);
                self.serve_detected(io, client, target, peer).await
            }
        }
    }

    async fn serve_detected<I>(
        self: Arc<Self>,
        io: I,
        client: SocketAddr,
        target: SocketAddr,
        peer: Peer,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match accept::sniff(io, self.limits).await {
            Sniffed::Http(version, io) => {
                let conn = self.conn(client, target, peer);
                self.server.serve(io, version, conn).await;
            }
            Sniffed::Opaque(io) => self.forward_tcp(io, target, &peer).await,
            Sniffed::Rejected { error, start } => {
                let (_, stats) = self.conn(client, target, peer).stats_for(None);
                observe::rejected(stats, start, &error);
            }
            Sniffed::Done => {}
        }
    }

    fn conn(
        self: &Arc<Self>,
        client: SocketAddr,
        target: SocketAddr,
        peer: Peer,
    ) -> Arc<InboundConn> {
        Arc::new(InboundConn {
            client,
            target,
            upstream: self.client_for(target),
            stats: Mutex::new(None),
            inbound: self.clone(),
            peer,
        })
    }

    fn client_for(&self, target: SocketAddr) -> Arc<EndpointClient> {
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_IDLE_APP_CLIENTS && !clients.contains_key(&target) {
            clients.retain(|_, c| Arc::strong_count(c) > 1);
        }
        clients
            .entry(target)
            .or_insert_with(|| {
                Arc::new(EndpointClient::new(
                    target,
                    self.config.connect_timeout,
                    self.dst_tcp.clone(),
                    None,
                ))
            })
            .clone()
    }

    /// Opaque ports: the configured ones, and those whose policy says so.
    async fn is_opaque(&self, port: u16) -> bool {
        self.config.is_opaque_port(port)
            || self.policies.port(port).await.protocol == ProxyProtocol::Opaque
    }

    /// Forwards an opaque connection its port's policy admits; closes it
    /// otherwise.
    async fn forward_tcp<C>(&self, mut client: C, target: SocketAddr, peer: &Peer)
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let decision = self
            .policies
            .port(target.port())
            .await
            .connection(peer.policy_client());
        self.registry.authorized(false, &decision);
        if !allowed(&decision, peer) {
            return;
        }
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

/// Whether to let a decision's connection or request through; denials
/// and audited would-be denials are logged (audit is about seeing them).
fn allowed(d: &policy::Decision, peer: &Peer) -> bool {
    if !d.allowed || d.audited {
        tracing::info!(
            client = %peer.addr,
            client_id = peer.client_id.as_deref().unwrap_or(""),
            server = %d.server,
            route = %d.route,
            audit = d.audited,
            "inbound policy denied",
        );
    }
    d.allowed
}

/// The clients' transport series of a security and client identity.
fn src_tcp(registry: &Registry, tls: Tls, client_id: &str) -> Arc<TcpStats> {
    let client = labels::Endpoint {
        tls: Some(tls),
        client_id,
        ..labels::Endpoint::default()
    };
    registry.tcp(Direction::Inbound, labels::Peer::Src, &client)
}

/// A client connection on its series, counting what was read to detect it.
fn metered(
    stream: TcpStream,
    first: BytesMut,
    stats: Arc<TcpStats>,
) -> PrefixedIo<MeteredIo<TcpStream>> {
    stats.read_bytes.fetch_add(first.len() as u64, Relaxed);
    PrefixedIo::new(first.freeze(), MeteredIo::new(stream, stats))
}

/// What a connection's first bytes say about its security.
enum Hello {
    /// A ClientHello for this proxy's identity: mTLS from a meshed peer.
    ForMe,
    /// TLS for someone else (the application's own): forwarded untouched.
    Passthrough,
    /// Plaintext; `silent` if the client sent nothing yet.
    Plaintext { silent: bool },
}

struct Cached {
    raw: String,
    authority: Arc<str>,
    stats: Arc<HttpStats>,
}

/// One accepted HTTP connection.
struct InboundConn {
    inbound: Arc<Inbound>,
    client: SocketAddr,
    target: SocketAddr,
    upstream: Arc<EndpointClient>,
    peer: Peer,
    /// The last authority seen (as sent, then normalized) and its series:
    /// connections rarely change authority, so most requests skip the
    /// registry.
    stats: Mutex<Option<Cached>>,
}

impl InboundConn {
    /// The normalized authority and the series of a request's authority.
    fn stats_for(&self, raw: Option<&Authority>) -> (Arc<str>, Arc<HttpStats>) {
        let raw_str = raw.map_or("", |a| a.as_str());
        let mut cached = lock(&self.stats);
        if let Some(c) = &*cached
            && c.raw == raw_str
        {
            return (c.authority.clone(), c.stats.clone());
        }
        let authority: Arc<str> = raw.map(authority::with_port).unwrap_or_default().into();
        let label = self.authority_label(&authority);
        let client = labels::Endpoint {
            authority: label,
            tls: Some(self.peer.tls),
            client_id: self.peer.client_id.as_deref().unwrap_or(""),
            ..labels::Endpoint::default()
        };
        let stats = self.inbound.registry.http(Direction::Inbound, &client);
        *cached = Some(Cached {
            raw: raw_str.to_string(),
            authority: authority.clone(),
            stats: stats.clone(),
        });
        (authority, stats)
    }

    /// The authority itself when it names this Deployment; otherwise the
    /// overflow value, counted (the client chose it, and could choose
    /// without end).
    fn authority_label<'a>(&self, authority: &'a str) -> &'a str {
        let served = &self.inbound.served;
        if authority.is_empty() || served.serves(authority, self.peer.dialed) {
            return authority;
        }
        self.inbound.registry.folded(
            names::REQUEST_TOTAL,
            names::OVERFLOW_REASON_UNKNOWN_AUTHORITY,
        );
        names::OVERFLOW_LABEL_VALUE
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
        let (authority, stats) = self.stats_for(authority::of(&req).as_ref());
        let inbound = &self.inbound;
        let tap = inbound.tap.capture(&RequestMeta {
            direction: Direction::Inbound,
            method: req.method(),
            uri: req.uri(),
            authority: &authority,
            headers: req.headers(),
            source: PeerMeta {
                addr: Some(self.client),
                deployment: None,
                identity: self.peer.client_id.as_deref().unwrap_or(""),
            },
            destination: PeerMeta {
                addr: Some(self.target),
                deployment: inbound.own.as_ref(),
                identity: match (&inbound.identity, self.peer.tls) {
                    (Some(own), Tls::Secured) => own.name(),
                    _ => "",
                },
            },
        });
        let obs = Observation::begin(stats, start, tap);
        let decision = inbound
            .policies
            .port(self.target.port())
            .await
            .request(self.peer.policy_client(), &req);
        inbound.registry.authorized(true, &decision);
        if !allowed(&decision, &self.peer) {
            let rsp = if observe::is_grpc(req.headers()) {
                ProxyError::grpc_denied()
            } else {
                ProxyError::Unauthorized.response()
            };
            let failure = Failure {
                reason: ErrorReason::Unauthorized,
                text: denial(&decision),
            };
            return obs.respond(rsp, Some(failure));
        }
        match self.forward(req, &obs).await {
            Ok(rsp) => obs.respond(rsp, None),
            Err(e) => {
                tracing::debug!(error = %e, target = %self.target, "inbound request failed");
                obs.respond(e.response(), Some(e.failure()))
            }
        }
    }
}

/// Why a request was denied, for tap.
fn denial(d: &policy::Decision) -> String {
    if d.route.is_empty() {
        format!("unauthorized: no route of server {} matches", d.server)
    } else {
        format!(
            "unauthorized: no authorization of server {} route {} admits the client",
            d.server, d.route
        )
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
