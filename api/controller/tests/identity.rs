//! The identity service of a real controller, called as a proxy would
//! (TLS, verifying the controller's identity against the trust anchors,
//! no client certificate yet): what it issues, and every way it refuses.

use conduit_api::IdentityName;
use conduit_api::identity::TOKEN_AUDIENCE;
use conduit_api::proto::identity::v1::identity_client::IdentityClient;
use conduit_api::proto::identity::v1::{CertifyRequest, CertifyResponse};
use conduit_identity::cert;
use conduit_identity::credentials::unix_now;
use conduit_identity::tls::{Alpn, client_config};
use conduit_identity::token::{TokenKey, unhex};
use conduit_testbed::{Controller, MeshIdentity, TempDir, http_get};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use tonic::Code;

struct Service {
    identity: MeshIdentity,
    controller: Controller,
    _discovery: TempDir,
    client: IdentityClient<tonic::transport::Channel>,
}

fn web() -> IdentityName {
    IdentityName::new("web", "demo")
}

impl Service {
    fn start() -> Self {
        let identity = MeshIdentity::new(&[web(), IdentityName::new("voting", "demo")]);
        let discovery = TempDir::new("discovery");
        let path = discovery.path().join("discovery.yaml");
        std::fs::write(&path, "version: 1\n").unwrap();
        let args = identity.controller_args("1h");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let controller = Controller::start_with_args("http://127.0.0.1:9", &path, &args);
        let anchors =
            conduit_identity::TrustAnchors::read(&identity.files.trust_anchors()).unwrap();
        let config = client_config(&anchors, None, Alpn::H2).unwrap();
        let channel = conduit_identity::grpc::channel(
            &controller.mesh.to_string(),
            &IdentityName::controller("conduit", "cluster.local"),
            config,
            None,
        )
        .unwrap();
        Self {
            identity,
            controller,
            _discovery: discovery,
            client: IdentityClient::new(channel),
        }
    }

    fn token(&self, who: &IdentityName) -> Vec<u8> {
        std::fs::read(self.identity.files.token(who)).unwrap()
    }

    fn token_key(&self) -> TokenKey {
        let hex = std::fs::read_to_string(self.identity.files.token_key()).unwrap();
        TokenKey::from_bytes(&unhex(&hex).unwrap())
    }

    async fn certify(
        &self,
        identity: &IdentityName,
        token: Vec<u8>,
        csr: Vec<u8>,
    ) -> Result<CertifyResponse, tonic::Status> {
        self.client
            .clone()
            .certify(CertifyRequest {
                identity: identity.to_string(),
                token,
                certificate_signing_request: csr,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    fn metrics(&self) -> String {
        http_get(self.controller.http, "/metrics").unwrap().2
    }
}

fn csr(name: &IdentityName) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    (conduit_identity::certify::csr(name, &key).unwrap(), key)
}

#[tokio::test]
async fn a_valid_request_gets_a_short_lived_leaf_for_exactly_its_identity() {
    let s = Service::start();
    let (csr, key) = csr(&web());
    let rsp = s.certify(&web(), s.token(&web()), csr).await.unwrap();
    let leaf = cert::info(&rsp.leaf_certificate).unwrap();
    assert_eq!(leaf.dns_names, [web().to_string()]);
    assert_eq!(leaf.uris, ["spiffe://cluster.local/ns/demo/sa/web"]);
    assert!(!leaf.is_ca);
    use rcgen::PublicKeyData;
    assert_eq!(leaf.public_key, key.subject_public_key_info());
    let lifetime = leaf.not_after_unix - unix_now();
    assert!((3_500..=3_600).contains(&lifetime), "{lifetime}");
    assert_eq!(rsp.valid_until.unwrap().seconds, leaf.not_after_unix);
    let issuer = cert::info(&rsp.intermediate_certificates[0]).unwrap();
    assert_eq!(leaf.issuer, issuer.subject);
    assert!(
        s.metrics().contains("identity_certs_issued_total 1"),
        "{}",
        s.metrics()
    );
}

/// What is wrong, who asks, token, CSR, and the code and message expected.
type Case = (
    &'static str,
    IdentityName,
    Vec<u8>,
    Vec<u8>,
    Code,
    &'static str,
);

#[tokio::test]
async fn bad_requests_get_clear_errors_and_no_certificate() {
    let s = Service::start();
    let voting = IdentityName::new("voting", "demo");
    let key = s.token_key();
    let expired = key
        .sign(&web(), TOKEN_AUDIENCE, unix_now() - 10)
        .into_bytes();
    let elsewhere = key
        .sign(&web(), "api.example.org", unix_now() + 600)
        .into_bytes();
    let forged = TokenKey::generate()
        .0
        .sign(&web(), TOKEN_AUDIENCE, unix_now() + 600)
        .into_bytes();
    let ed25519 = {
        let k = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        conduit_identity::certify::csr(&web(), &k).unwrap()
    };
    let cases: Vec<Case> = vec![
        (
            "malformed CSR",
            web(),
            s.token(&web()),
            b"not a CSR".to_vec(),
            Code::InvalidArgument,
            "CSR is malformed",
        ),
        (
            "garbage token",
            web(),
            b"hello".to_vec(),
            csr(&web()).0,
            Code::Unauthenticated,
            "malformed",
        ),
        (
            "expired token",
            web(),
            expired,
            csr(&web()).0,
            Code::Unauthenticated,
            "expired",
        ),
        (
            "token for another audience",
            web(),
            elsewhere,
            csr(&web()).0,
            Code::Unauthenticated,
            "audience",
        ),
        (
            "token of another key",
            web(),
            forged,
            csr(&web()).0,
            Code::Unauthenticated,
            "signature",
        ),
        (
            "token for another ServiceAccount",
            web(),
            s.token(&voting),
            csr(&web()).0,
            Code::PermissionDenied,
            "demo/voting",
        ),
        (
            "CSR naming another identity",
            web(),
            s.token(&web()),
            csr(&voting).0,
            Code::InvalidArgument,
            "does not prove",
        ),
        (
            "CSR with a non-P-256 key",
            web(),
            s.token(&web()),
            ed25519,
            Code::InvalidArgument,
            "P-256",
        ),
    ];
    for (what, who, token, csr, code, message) in cases {
        let got = s.certify(&who, token, csr).await;
        let status = got.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(message),
            "{what}: {}",
            status.message()
        );
    }
    let m = s.metrics();
    assert!(m.contains("identity_certs_issued_total 0"), "{m}");
    for (reason, n) in [
        ("bad_csr", 3),
        ("bad_token", 4),
        ("token_for_another_identity", 1),
    ] {
        assert!(
            m.contains(&format!(
                "identity_certify_refused_total{{reason=\"{reason}\"}} {n}"
            )),
            "{reason}: {m}"
        );
    }
}

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let s = Service::start();
    let (csr, _) = csr(&web());
    s.certify(&web(), s.token(&web()), csr.clone())
        .await
        .unwrap();
    let replay = s.certify(&web(), s.token(&web()), csr).await.unwrap_err();
    assert_eq!(replay.code(), Code::PermissionDenied);
    assert!(replay.message().contains("replayed"), "{replay:?}");
}

#[tokio::test]
async fn an_identity_outside_the_trust_domain_is_refused() {
    let s = Service::start();
    let foreign = IdentityName::in_domain("web", "demo", "example.org");
    let (csr, _) = csr(&foreign);
    let err = s.certify(&foreign, s.token(&web()), csr).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("trust domain"), "{err:?}");
}
