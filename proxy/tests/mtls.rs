//! mTLS between real proxies, with certificates from a real controller's
//! identity service, on loopback: what crosses the wire, who each side
//! learns the other is, and what is refused.
//!
//! Every process is the real binary (testbed); the capture is Debian's
//! `tcpdump` on `lo`; refused handshakes come from a real rustls client
//! presenting bad certificates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conduit_api::IdentityName;
use conduit_testbed::{
    Controller, MeshIdentity, Proxy, ProxySpec, TempDir, Upstream, free_addr, http_get, metric_sum,
    raw_request,
};

fn id(sa: &str) -> IdentityName {
    IdentityName::new(sa, "test")
}

/// A controller issuing certificates, a server proxy `web` in front of an
/// HTTP upstream, and a client proxy `client` that reaches it at
/// `web.test:8080` (HTTP) and, through `tcp_route`, `web.test:9000`
/// (opaque TCP).
struct Mesh {
    identity: MeshIdentity,
    controller: Controller,
    _discovery: TempDir,
    _app: Upstream,
    server: Proxy,
    client: Proxy,
    tcp_route: SocketAddr,
}

fn controller(identity: &MeshIdentity, lifetime: &str) -> (Controller, TempDir) {
    let discovery = TempDir::new("discovery");
    let path = discovery.path().join("discovery.yaml");
    std::fs::write(&path, "version: 1\n").unwrap();
    let args = identity.controller_args(lifetime);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // No store: nothing here reads metrics through the controller.
    let c = Controller::start_with_args("http://127.0.0.1:9", &path, &args);
    (c, discovery)
}

fn proxy(
    identity: &MeshIdentity,
    controller: &Controller,
    sa: &'static str,
    app: SocketAddr,
    extra: Vec<String>,
) -> Proxy {
    let mut args = identity.workload_args(controller, &id(sa));
    args.extend(["--service-account".into(), sa.into()]);
    args.extend(extra);
    Proxy::start(ProxySpec {
        namespace: "test",
        deployment: sa,
        pod: sa,
        app,
        telemetry: None,
        destination: None,
        extra: args,
    })
}

impl Mesh {
    fn start(lifetime: &str) -> Self {
        let identity = MeshIdentity::new(&[id("web"), id("client"), id("other")]);
        let (controller, discovery) = controller(&identity, lifetime);
        let app = Upstream::start(Default::default());
        let server = proxy(&identity, &controller, "web", app.addr, vec![]);
        let tcp_route = free_addr();
        let web = id("web");
        let client = proxy(
            &identity,
            &controller,
            "client",
            app.addr,
            vec![
                "--outbound-endpoint".into(),
                format!("web.test:8080={};h2;identity={web}", server.inbound),
                "--outbound-endpoint".into(),
                format!("web.test:9000={};opaque;identity={web}", server.inbound),
                "--outbound-endpoint".into(),
                format!(
                    "impostor.test:8080={};h2;identity={}",
                    server.inbound,
                    id("other")
                ),
                "--outbound-tcp-route".into(),
                format!("{tcp_route}=web.test:9000"),
            ],
        );
        Self {
            identity,
            controller,
            _discovery: discovery,
            _app: app,
            server,
            client,
            tcp_route,
        }
    }
}

/// One HTTP/1.1 request over a new connection; the status and whole answer.
fn request(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    raw_request(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nx-secret: very-secret-header\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn metrics(admin: SocketAddr) -> String {
    http_get(admin, "/metrics").unwrap().2
}

/// HTTP/2 with prior knowledge through the client proxy, as a gRPC client
/// would send it.
fn h2_post(addr: SocketAddr) -> u16 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post("http://web.test:8080/conduit.test.v1.Echo/Say")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"\0\0\0\0\x05hello",
            )))
            .unwrap();
        send.send_request(req).await.unwrap().status().as_u16()
    })
}

/// tcpdump on loopback, for one port, until stopped.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
    _dir: TempDir,
    /// Kept open: tcpdump reports on it when it stops.
    _stderr: std::process::ChildStderr,
}

impl Capture {
    fn start(port: u16) -> Self {
        let dir = TempDir::new("capture");
        let file = dir.path().join("lo.pcap");
        let mut child = Command::new("tcpdump")
            // Immediate mode: packets are written as they come, not when
            // the kernel hands over a full block (which a stop would lose).
            .args(["-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0", "-w"])
            .arg(&file)
            .args(["tcp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "tcpdump (Debian package tcpdump) must be installed: cargo xtask test installs it",
            );
        // tcpdump says when it listens.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            assert!(Instant::now() < deadline, "tcpdump did not start: {seen:?}");
            if err.read(&mut byte).unwrap_or(0) == 0 {
                panic!("tcpdump exited: {}", String::from_utf8_lossy(&seen));
            }
            seen.push(byte[0]);
        }
        Self {
            child,
            file,
            _dir: dir,
            _stderr: err,
        }
    }

    /// Stops the capture; the TCP payloads of each connection to `port`
    /// (by client port), sent to it and sent back, in order.
    fn stop(mut self, port: u16) -> Vec<Connection> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        payloads(&std::fs::read(&self.file).unwrap(), port)
    }
}

/// What a captured connection carried, each direction concatenated.
#[derive(Debug, Default)]
struct Connection {
    client_port: u16,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

/// The TCP payloads of a pcap file's connections to `port`.
fn payloads(pcap: &[u8], port: u16) -> Vec<Connection> {
    assert!(pcap.len() >= 24, "empty capture ({} bytes)", pcap.len());
    let le = pcap[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8], i: usize| {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let link_header = match u32_at(pcap, 20) {
        1 => 14,
        113 => 16,
        276 => 20,
        other => panic!("unexpected link type {other}"),
    };
    let mut out: Vec<Connection> = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32_at(pcap, at + 8) as usize;
        let packet = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        let Some(ip) = packet.get(link_header..) else {
            continue;
        };
        if ip.first().map(|b| b >> 4) != Some(4) {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let Some(tcp) = ip.get(ihl..total.min(ip.len())) else {
            continue;
        };
        if tcp.len() < 20 {
            continue;
        }
        let src = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dst = u16::from_be_bytes([tcp[2], tcp[3]]);
        let data = &tcp[usize::from(tcp[12] >> 4) * 4..];
        let client_port = match (src == port, dst == port) {
            (false, true) => src,
            (true, false) => dst,
            _ => continue,
        };
        if data.is_empty() {
            continue;
        }
        let i = match out.iter().position(|c| c.client_port == client_port) {
            Some(i) => i,
            None => {
                out.push(Connection {
                    client_port,
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let bytes = if dst == port {
            &mut out[i].to_server
        } else {
            &mut out[i].to_client
        };
        bytes.extend_from_slice(data);
    }
    out
}

/// The key exchange group a TLS 1.3 ServerHello selected (its key_share
/// extension), read from the first record the server sent.
fn server_hello_group(bytes: &[u8]) -> Option<u16> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
    // Record header (5), handshake header (4, type 2), version (2), random (32).
    if bytes.first() != Some(&0x16) || bytes.get(5) != Some(&0x02) {
        return None;
    }
    let session_id = usize::from(*bytes.get(5 + 4 + 2 + 32)?);
    // Past the session id: cipher suite (2) and compression (1).
    let mut at = 5 + 4 + 2 + 32 + 1 + session_id + 3;
    let end = at + 2 + usize::from(u16_at(at)?);
    at += 2;
    while at + 4 <= end {
        let (kind, len) = (u16_at(at)?, usize::from(u16_at(at + 2)?));
        if kind == 0x0033 {
            return u16_at(at + 4);
        }
        at += 4 + len;
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn http_h2_and_tcp_cross_between_proxies_encrypted_with_both_identities() {
    let mesh = Mesh::start("24h");
    let capture = Capture::start(mesh.server.inbound.port());

    for i in 0..5 {
        let (status, text) = request(
            mesh.client.outbound,
            "web.test:8080",
            &format!("/secret-path-{i}"),
        );
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(h2_post(mesh.client.outbound), 200);
    let (status, text) = request(mesh.tcp_route, "web.test:9000", "/secret-path-tcp");
    assert_eq!(status, 200, "opaque TCP over mTLS: {text}");

    let connections = capture.stop(mesh.server.inbound.port());
    // HTTP/1 and HTTP/2 share the multiplexed connection; TCP has its own.
    assert!(connections.len() >= 2, "{connections:?}");
    for c in &connections {
        let (port, bytes) = (c.client_port, &c.to_server);
        assert_eq!(
            bytes.get(..2),
            Some(&[0x16, 0x03][..]),
            "connection from port {port} does not begin with a TLS handshake"
        );
        // The hybrid post-quantum key exchange was chosen (group 0x11EC).
        assert_eq!(
            server_hello_group(&c.to_client),
            Some(0x11ec),
            "connection from port {port}: the ServerHello's key exchange"
        );
        for plaintext in [
            &b"secret-path"[..],
            b"very-secret-header",
            b"HTTP/1.1",
            // (The SNI, an identity name, is public: the authority is not.)
            b"web.test:80",
            b"conduit-orig-proto",
        ] {
            assert!(
                !contains(bytes, plaintext),
                "{:?} crossed in plaintext from port {port}",
                String::from_utf8_lossy(plaintext)
            );
        }
    }

    let client_id = id("client").to_string();
    let server_id = id("web").to_string();
    let m = metrics(mesh.server.admin);
    let inbound = [
        ("direction", "inbound"),
        ("tls", "true"),
        ("client_id", client_id.as_str()),
    ];
    assert_eq!(metric_sum(&m, "request_total", &inbound), 6.0, "{m}");
    assert!(
        metric_sum(
            &m,
            "tcp_open_total",
            &[("peer", "src"), ("tls", "true"), ("client_id", &client_id)]
        ) >= 2.0,
        "{m}"
    );
    let m = metrics(mesh.client.admin);
    let outbound = [
        ("direction", "outbound"),
        ("tls", "true"),
        ("server_id", server_id.as_str()),
        ("client_id", client_id.as_str()),
    ];
    assert_eq!(metric_sum(&m, "request_total", &outbound), 6.0, "{m}");
    assert!(
        metric_sum(&m, "identity_cert_expiration_timestamp_seconds", &[]) > 0.0,
        "{m}"
    );
}

/// A TLS server that presents `other`'s valid mesh certificate whatever
/// the client asks for: a workload posing as another.
fn impostor(identity: &MeshIdentity) -> SocketAddr {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![id("other").to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let (issuer, issuer_der) = mesh_issuer(identity);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(conduit_identity::tls::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), issuer_der],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
    });
    addr
}

/// The test mesh's issuer, to sign certificates as the controller would.
fn mesh_issuer(
    identity: &MeshIdentity,
) -> (
    rcgen::Issuer<'static, rcgen::KeyPair>,
    rustls_pki_types::CertificateDer<'static>,
) {
    let files = &identity.files;
    let issuer_pem = std::fs::read_to_string(files.issuer_certificate()).unwrap();
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(files.issuer_key()).unwrap()).unwrap();
    let der = rustls_pki_types::CertificateDer::from(pem_der(&issuer_pem));
    (rcgen::Issuer::from_ca_cert_der(&der, key).unwrap(), der)
}

#[test]
fn a_peer_that_proves_another_identity_is_refused() {
    let identity = MeshIdentity::new(&[id("web"), id("client"), id("other")]);
    let (controller, _d) = controller(&identity, "24h");
    let app = Upstream::start(Default::default());
    let fake = impostor(&identity);
    let client = proxy(
        &identity,
        &controller,
        "client",
        app.addr,
        vec![
            "--outbound-endpoint".into(),
            format!("web.test:8080={fake};h2;identity={}", id("web")),
        ],
    );
    // Discovery says the endpoint is `web`; it proves `other`.
    let (status, text) = request(client.outbound, "web.test:8080", "/");
    assert_eq!(status, 502, "{text}");
    let m = metrics(client.admin);
    let refused = [("direction", "outbound"), ("reason", "wrong_identity")];
    assert!(
        metric_sum(&m, "tls_handshake_failures_total", &refused) >= 1.0,
        "{m}"
    );
}

#[test]
fn a_proxy_of_another_trust_anchor_is_refused() {
    let mesh = Mesh::start("24h");
    // A second mesh: its own roots and controller.
    let foreign = MeshIdentity::new(&[id("client")]);
    let (foreign_controller, _d) = controller(&foreign, "24h");
    let stranger = proxy(
        &foreign,
        &foreign_controller,
        "client",
        mesh.server.inbound,
        vec![
            "--outbound-endpoint".into(),
            format!(
                "web.test:8080={};h2;identity={}",
                mesh.server.inbound,
                id("web")
            ),
        ],
    );
    let (status, text) = request(stranger.outbound, "web.test:8080", "/");
    assert_eq!(status, 502, "{text}");
    let m = metrics(stranger.admin);
    // Both roots have the same names, so the chain is built and its
    // signature fails; anchors of other names are an unknown issuer.
    let refused: f64 = ["unknown_issuer", "bad_signature"]
        .iter()
        .map(|r| {
            metric_sum(
                &m,
                "tls_handshake_failures_total",
                &[("direction", "outbound"), ("reason", r)],
            )
        })
        .sum();
    assert!(refused >= 1.0, "{m}");
    assert!(
        stranger
            .process
            .log()
            .contains("mTLS handshake with a peer proxy failed")
    );
}

/// A rustls client presenting `chain`/`key` to the server proxy, naming its
/// identity; returns once the server has answered (or refused).
fn present(
    mesh: &Mesh,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rcgen::KeyPair,
) {
    let anchors =
        conduit_identity::TrustAnchors::read(&mesh.identity.files.trust_anchors()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(conduit_identity::tls::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(anchors.roots())
            .with_client_auth_cert(
                chain,
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
    let addr = mesh.server.inbound;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(id("web").to_string()).unwrap();
        // TLS 1.3: the server refuses the client's certificate after the
        // client thinks the handshake is done.
        let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        else {
            return;
        };
        let _ = tls
            .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
        assert!(
            !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            "the server served a client it should have refused: {read:?}"
        );
    });
}

fn client_params(not_after: time::OffsetDateTime) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(vec![id("client").to_string()]).unwrap();
    p.not_before = not_after - time::Duration::days(2);
    p.not_after = not_after;
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p
}

#[test]
fn self_signed_and_expired_client_certificates_are_refused() {
    let mesh = Mesh::start("24h");
    let now = time::OffsetDateTime::now_utc();

    let key = rcgen::KeyPair::generate().unwrap();
    let selfsigned = client_params(now + time::Duration::days(1))
        .self_signed(&key)
        .unwrap();
    present(&mesh, vec![selfsigned.der().clone()], key);

    let (issuer, issuer_der) = mesh_issuer(&mesh.identity);
    let key = rcgen::KeyPair::generate().unwrap();
    let expired = client_params(now - time::Duration::hours(1))
        .signed_by(&key, &issuer)
        .unwrap();
    present(&mesh, vec![expired.der().clone(), issuer_der.clone()], key);

    let m = metrics(mesh.server.admin);
    for reason in ["unknown_issuer", "expired"] {
        let refused = [("direction", "inbound"), ("reason", reason)];
        assert!(
            metric_sum(&m, "tls_handshake_failures_total", &refused) >= 1.0,
            "{reason}: {m}"
        );
    }
    assert_eq!(
        metric_sum(&m, "request_total", &[("tls", "true")]),
        0.0,
        "{m}"
    );
    assert!(
        mesh.server
            .process
            .log()
            .contains("mTLS handshake with a client failed")
    );
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[test]
fn an_unmeshed_client_still_reaches_a_meshed_server_and_is_labelled_plaintext() {
    let mesh = Mesh::start("24h");
    let (status, text) = request(mesh.server.inbound, "web.test:8080", "/");
    assert_eq!(status, 200, "{text}");
    let m = metrics(mesh.server.admin);
    let plaintext = [
        ("direction", "inbound"),
        ("tls", "no_identity"),
        ("no_tls_reason", "no_tls_from_remote"),
    ];
    assert_eq!(metric_sum(&m, "request_total", &plaintext), 1.0, "{m}");
    assert!(
        !m.contains("client_id=\""),
        "no client identity without mTLS: {m}"
    );
}

/// Requests through the client proxy for `duration`, one every 50 ms;
/// the statuses that were not 200.
fn steady_load(mesh: &Mesh, duration: Duration) -> (u64, Vec<(u16, String)>) {
    let deadline = Instant::now() + duration;
    let (mut sent, mut failed) = (0, Vec::new());
    while Instant::now() < deadline {
        let (status, text) = request(mesh.client.outbound, "web.test:8080", "/");
        sent += 1;
        if status != 200 {
            failed.push((status, text));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (sent, failed)
}

#[test]
fn ten_second_certificates_renew_under_load_without_a_failed_request() {
    let mesh = Mesh::start("10s");
    let (sent, failed) = steady_load(&mesh, Duration::from_secs(60));
    assert!(sent > 300, "{sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        failed.first()
    );
    for proxy in [&mesh.client, &mesh.server] {
        let m = metrics(proxy.admin);
        // Renewal at 70 % of 10 s: about every 7 s.
        assert!(
            metric_sum(&m, "identity_cert_refresh_total", &[]) >= 6.0,
            "{m}"
        );
    }
}

#[test]
fn with_the_identity_service_down_proxies_serve_until_expiry_then_fail_closed() {
    let mut mesh = Mesh::start("10s");
    mesh.controller.process.kill();
    // Still within the certificates' lifetime: traffic goes on.
    let (sent, failed) = steady_load(&mesh, Duration::from_secs(2));
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        failed.first()
    );

    // Past expiry (10 s certificates): meshed traffic fails closed, and
    // the proxies are no longer ready.
    std::thread::sleep(Duration::from_secs(11));
    let (status, text) = request(mesh.client.outbound, "web.test:8080", "/");
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("no valid certificate"), "{text}");
    let ready = http_get(mesh.client.admin, "/ready").unwrap();
    assert_eq!(ready.0, 503, "{ready:?}");
    let m = metrics(mesh.client.admin);
    assert!(
        metric_sum(&m, "identity_cert_refresh_failures_total", &[]) >= 1.0,
        "{m}"
    );
    assert!(
        mesh.client
            .process
            .log()
            .contains("keeping the current one and retrying")
    );
}

/// A CA certificate and its key, as PEM.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn ca(name: &str, parent: Option<&Ca>) -> Ca {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = match parent {
        Some(p) => params
            .signed_by(&key, &rcgen::Issuer::from_params(&p.params, &p.key))
            .unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Ca {
        pem: cert.pem(),
        params,
        key,
    }
}

/// Roots whose issuer is `issuer`, trusting `anchors`.
fn roots(anchors: &[&Ca], issuer: &Ca) -> conduit_deploy::IdentityRoots {
    conduit_deploy::IdentityRoots {
        trust_anchors_pem: anchors.iter().map(|a| a.pem.as_str()).collect(),
        issuer_certificate_pem: issuer.pem.clone(),
        issuer_key_pem: issuer.key.serialize_pem(),
    }
}

/// `client` (certified by one controller) calls `web` (certified by
/// another) through mTLS, a hundred times.
fn call_across(server_side: &MeshIdentity, client_side: &MeshIdentity) {
    let (c1, _d1) = controller(server_side, "24h");
    let (c2, _d2) = controller(client_side, "24h");
    let app = Upstream::start(Default::default());
    let server = proxy(server_side, &c1, "web", app.addr, vec![]);
    let client = proxy(
        client_side,
        &c2,
        "client",
        app.addr,
        vec![
            "--outbound-endpoint".into(),
            format!("web.test:8080={};h2;identity={}", server.inbound, id("web")),
        ],
    );
    for _ in 0..100 {
        let (status, text) = request(client.outbound, "web.test:8080", "/");
        assert_eq!(status, 200, "{text}");
    }
    let m = metrics(server.admin);
    let secured = [("tls", "true"), ("client_id", &id("client").to_string())];
    assert_eq!(metric_sum(&m, "request_total", &secured), 100.0, "{m}");
}

#[test]
fn an_old_and_a_new_issuer_under_one_anchor_serve_each_other() {
    let anchor = ca("root.identity.conduit.cluster.local", None);
    let old = ca("identity.conduit.cluster.local", Some(&anchor));
    let new = ca("identity-2.conduit.cluster.local", Some(&anchor));
    let ids = [id("web"), id("client")];
    call_across(
        &MeshIdentity::with_roots(&roots(&[&anchor], &old), &ids),
        &MeshIdentity::with_roots(&roots(&[&anchor], &new), &ids),
    );
}

#[test]
fn during_an_anchor_rotation_the_bundle_trusts_old_and_new() {
    let old_anchor = ca("root.identity.conduit.cluster.local", None);
    let new_anchor = ca("root-2.identity.conduit.cluster.local", None);
    let old = ca("identity.conduit.cluster.local", Some(&old_anchor));
    let new = ca("identity-2.conduit.cluster.local", Some(&new_anchor));
    let ids = [id("web"), id("client")];
    let bundle = [&old_anchor, &new_anchor];
    call_across(
        &MeshIdentity::with_roots(&roots(&bundle, &old), &ids),
        &MeshIdentity::with_roots(&roots(&bundle, &new), &ids),
    );
}

/// A TCP server that echoes what it reads, once per connection.
fn echo_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn the_applications_own_tls_passes_through_untouched() {
    let identity = MeshIdentity::new(&[id("web")]);
    let (controller, _d) = controller(&identity, "24h");
    let app = echo_server();
    let server = proxy(&identity, &controller, "web", app, vec![]);

    // A real ClientHello for another name: the application's own TLS.
    let anchors = conduit_identity::TrustAnchors::read(&identity.files.trust_anchors()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(conduit_identity::tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(anchors.roots())
            .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("app.example.org").unwrap();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();

    let mut s = TcpStream::connect(server.inbound).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&hello).unwrap();
    let mut echoed = vec![0u8; hello.len()];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(
        echoed, hello,
        "the ClientHello reached the application unchanged"
    );

    let m = metrics(server.admin);
    let passthrough = [("peer", "src"), ("no_tls_reason", "passthrough")];
    assert_eq!(metric_sum(&m, "tcp_open_total", &passthrough), 1.0, "{m}");
}

#[test]
fn a_stalled_tls_handshake_is_cut_off() {
    let identity = MeshIdentity::new(&[id("web")]);
    let (controller, _discovery) = controller(&identity, "24h");
    let app = Upstream::start(Default::default());
    let timeout = ["--tls-handshake-timeout".into(), "500ms".into()];
    let server = proxy(&identity, &controller, "web", app.addr, timeout.into());

    // A ClientHello for the server's identity, then silence: the server
    // answers and waits for the client's certificate, which never comes.
    let anchors = conduit_identity::TrustAnchors::read(&identity.files.trust_anchors()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(conduit_identity::tls::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(anchors.roots())
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(id("web").to_string()).unwrap();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    let mut tcp = TcpStream::connect(server.inbound).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&hello).unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let read = tcp.read_to_end(&mut answer);
    let elapsed = start.elapsed();
    assert!(read.is_ok(), "the server never closed: {read:?}");
    assert!(!answer.is_empty(), "the server answered the ClientHello");
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");

    let m = metrics(server.admin);
    let timed_out = [("direction", "inbound"), ("reason", "timeout")];
    assert_eq!(
        metric_sum(&m, "tls_handshake_failures_total", &timed_out),
        1.0,
        "{m}"
    );
}
