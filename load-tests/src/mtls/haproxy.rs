//! The haproxy pairs of the mTLS benchmark: a client-side haproxy that
//! forwards to a server-side haproxy in front of the application, once in
//! plaintext and once with mutual TLS 1.3 between them, the way two
//! sidecars would sit. The TLS pair's certificate is issued by the same
//! issuer as the proxies' (a leaf made here with rcgen), so both peers
//! verify the same chain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use conduit_testbed::MeshIdentity;
use rcgen::{CertificateParams, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::proxy::peers::{self, Process};

/// The certificate haproxy presents on both sides: a P-256 leaf for
/// `name`, with the issuer in its chain, and its key, in one PEM file as
/// haproxy's `crt` takes it.
pub(crate) fn certificate(
    identity: &MeshIdentity,
    name: &str,
    dir: &Path,
) -> Result<PathBuf, String> {
    let files = &identity.files;
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let issuer_pem = read(files.issuer_certificate())?;
    let issuer_key = KeyPair::from_pem(&read(files.issuer_key())?).map_err(|e| e.to_string())?;
    let issuer = Issuer::from_ca_cert_pem(&issuer_pem, issuer_key).map_err(|e| e.to_string())?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let leaf = CertificateParams::new(vec![name.to_string()])
        .and_then(|p| p.signed_by(&key, &issuer))
        .map_err(|e| e.to_string())?;
    let path = dir.join("haproxy.pem");
    let pem = format!("{}{issuer_pem}{}", leaf.pem(), key.serialize_pem());
    std::fs::write(&path, pem).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Where the client side of a pair listens, and the server side.
pub(crate) struct Pair {
    pub(crate) client: Process,
    pub(crate) server: Process,
    pub(crate) listen: SocketAddr,
    pub(crate) server_listen: SocketAddr,
}

/// TLS settings of a pair: the certificate file, the anchors, and the
/// server's name that the client side verifies.
pub(crate) struct Tls<'a> {
    pub(crate) crt: &'a Path,
    pub(crate) anchors: &'a Path,
    pub(crate) name: &'a str,
}

const GLOBAL: &str = "global\n  nbthread 1\n  maxconn 4096\n\
    defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n";

/// A pair in front of `app`, pinned to `core`; mTLS between the two when
/// `tls` is given.
pub(crate) fn pair(
    core: Option<usize>,
    app: SocketAddr,
    tls: Option<&Tls<'_>>,
    dir: &Path,
    tag: &str,
) -> Result<Pair, String> {
    let listen = peers::free_port()?;
    let server_listen = peers::free_port()?;
    let (bind_tls, server_tls) = match tls {
        Some(t) => (
            format!(
                " ssl crt {} ca-file {} verify required ssl-min-ver TLSv1.3 alpn http/1.1",
                t.crt.display(),
                t.anchors.display()
            ),
            format!(
                " ssl crt {} ca-file {} verify required verifyhost {name} sni str({name}) ssl-min-ver TLSv1.3 alpn http/1.1",
                t.crt.display(),
                t.anchors.display(),
                name = t.name
            ),
        ),
        None => (String::new(), String::new()),
    };
    let server = peers::haproxy_with(
        core,
        dir,
        &format!("{tag}-server"),
        &format!(
            "{GLOBAL}frontend fe\n  bind {server_listen}{bind_tls}\n  default_backend be\n\
             backend be\n  server app {app}\n"
        ),
    )?;
    let client = peers::haproxy_with(
        core,
        dir,
        &format!("{tag}-client"),
        &format!(
            "{GLOBAL}frontend fe\n  bind {listen}\n  default_backend be\n\
             backend be\n  server peer {server_listen}{server_tls}\n"
        ),
    )?;
    Ok(Pair {
        client,
        server,
        listen,
        server_listen,
    })
}
