//! The identity service (`conduit.identity.v1.Identity/Certify`): the
//! mesh's certificate authority.
//!
//! It holds the trust anchors and the issuer (from the Secrets `conduit
//! install` emits, or the files `conduit demo` generates), checks each
//! caller's token, and signs the caller's CSR into a leaf for exactly the
//! identity the token proves. The controller certifies itself with the same
//! issuer, so proxies can verify it before they have certificates of their
//! own. Issued certificates and refusals are counted for `/metrics`.

pub mod issuer;
pub mod tokens;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use conduit_api::IdentityName;
use conduit_api::metrics::family;
use conduit_api::metrics::labels::{self, Label};
use conduit_api::proto::identity::v1::identity_server::Identity;
use conduit_api::proto::identity::v1::{CertifyRequest, CertifyResponse};
use conduit_identity::Credentials;
use conduit_identity::certify::renewal_delay;
use conduit_identity::credentials::unix_now;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tonic::{Request, Response, Status};

use self::issuer::Issuer;
use self::tokens::Tokens;

/// CSRs remembered to refuse a replayed request; each proxy sends a new
/// key's CSR every round, so a CSR seen twice was captured and replayed.
const REMEMBERED_CSRS: usize = 100_000;

/// What the identity service did, for `/metrics`.
#[derive(Default)]
pub struct IdentityStats {
    issued: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl IdentityStats {
    fn refuse(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn issued(&self) -> u64 {
        self.issued.load(Relaxed)
    }

    pub fn refused(&self, reason: &str) -> u64 {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.get(reason).copied().unwrap_or(0)
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        let issued = family::IDENTITY_CERTS_ISSUED_TOTAL.meta;
        let _ = writeln!(out, "{issued}\n{} {}", issued.name, self.issued());
        let refused_family = family::IDENTITY_CERTIFY_REFUSED_TOTAL;
        let _ = writeln!(out, "{}", refused_family.meta);
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        for (reason, n) in refused.iter() {
            let _ = writeln!(
                out,
                "{}{{{}=\"{reason}\"}} {n}",
                refused_family.name(),
                labels::Reason::Reason.name()
            );
        }
    }
}

#[derive(Default)]
struct SeenCsrs {
    order: VecDeque<[u8; 32]>,
    set: HashSet<[u8; 32]>,
}

impl SeenCsrs {
    /// Remembers `csr`; false if it was already seen.
    fn first_time(&mut self, csr: &[u8]) -> bool {
        let digest = ring::digest::digest(&ring::digest::SHA256, csr);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED_CSRS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

pub struct IdentityService {
    issuer: Arc<Issuer>,
    tokens: Tokens,
    trust_domain: String,
    stats: Arc<IdentityStats>,
    seen: Mutex<SeenCsrs>,
    /// Requests worked on at once: each may cost a TokenReview, and anyone
    /// may call Certify.
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
}

impl IdentityService {
    /// `max_in_flight`: requests worked on at once (`--max-concurrent-certify`).
    pub fn new(
        issuer: Arc<Issuer>,
        tokens: Tokens,
        trust_domain: String,
        stats: Arc<IdentityStats>,
        max_in_flight: usize,
    ) -> Self {
        Self {
            issuer,
            tokens,
            trust_domain,
            stats,
            seen: Mutex::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
            max_in_flight,
        }
    }

    async fn certify_checked(&self, req: CertifyRequest) -> Result<CertifyResponse, Refusal> {
        let claimed: IdentityName = req
            .identity
            .parse()
            .map_err(|e| Refusal::invalid("bad_identity", format!("{e}")))?;
        if claimed.trust_domain != self.trust_domain {
            return Err(Refusal::denied(
                "foreign_trust_domain",
                format!(
                    "{claimed} is outside this mesh's trust domain {}",
                    self.trust_domain
                ),
            ));
        }
        let token = std::str::from_utf8(&req.token)
            .map_err(|_| Refusal::unauthenticated("bad_token", "the token is not text".into()))?;
        let proven = self
            .tokens
            .review(token)
            .await
            .map_err(|e| Refusal::unauthenticated("bad_token", e))?;
        if (proven.namespace.as_str(), proven.service_account.as_str())
            != (claimed.namespace.as_str(), claimed.service_account.as_str())
        {
            return Err(Refusal::denied(
                "token_for_another_identity",
                format!(
                    "the token is for ServiceAccount {}/{}, not for {claimed}",
                    proven.namespace, proven.service_account
                ),
            ));
        }
        let first_time = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_time(&req.certificate_signing_request);
        if !first_time {
            return Err(Refusal::denied(
                "replayed",
                "this CSR was already certified: a replayed request (send a new key's CSR)".into(),
            ));
        }
        let leaf = self
            .issuer
            .issue(&req.certificate_signing_request, &claimed)
            .map_err(|e| Refusal::invalid("bad_csr", e.to_string()))?;
        tracing::info!(identity = %claimed, expires_in_s = leaf.not_after_unix - unix_now(), "issued a certificate");
        Ok(CertifyResponse {
            leaf_certificate: leaf.certificate.to_vec(),
            intermediate_certificates: leaf.intermediates.iter().map(|c| c.to_vec()).collect(),
            valid_until: Some(prost_types::Timestamp {
                seconds: leaf.not_after_unix,
                nanos: 0,
            }),
        })
    }
}

struct Refusal {
    reason: &'static str,
    status: Status,
}

impl Refusal {
    fn invalid(reason: &'static str, msg: String) -> Self {
        Self {
            reason,
            status: Status::invalid_argument(msg),
        }
    }

    fn denied(reason: &'static str, msg: String) -> Self {
        Self {
            reason,
            status: Status::permission_denied(msg),
        }
    }

    fn unauthenticated(reason: &'static str, msg: String) -> Self {
        Self {
            reason,
            status: Status::unauthenticated(msg),
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let remote = request.remote_addr();
        let Ok(_slot) = self.in_flight.clone().try_acquire_owned() else {
            self.stats.refuse("busy");
            return Err(Status::resource_exhausted(format!(
                "the identity service is working on {} requests (--max-concurrent-certify); retry with backoff",
                self.max_in_flight
            )));
        };
        match self.certify_checked(request.into_inner()).await {
            Ok(rsp) => {
                self.stats.issued.fetch_add(1, Relaxed);
                Ok(Response::new(rsp))
            }
            Err(refusal) => {
                self.stats.refuse(refusal.reason);
                tracing::warn!(?remote, reason = refusal.reason, error = %refusal.status.message(), "refused a Certify request");
                Err(refusal.status)
            }
        }
    }
}

/// Keeps the controller's own certificate fresh, signed by its issuer.
pub async fn keep_certified(issuer: Arc<Issuer>, creds: Arc<Credentials>) {
    loop {
        let delay = match certify_self(&issuer, &creds) {
            Ok(not_after) => renewal_delay(unix_now(), not_after),
            Err(e) => {
                tracing::error!(error = %e, "cannot certify the controller itself; retrying");
                std::time::Duration::from_secs(5)
            }
        };
        tokio::time::sleep(delay).await;
    }
}

pub fn certify_self(issuer: &Issuer, creds: &Credentials) -> anyhow::Result<i64> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let leaf = issuer.issue_for_key(&key, creds.name())?;
    let chain = std::iter::once(leaf.certificate)
        .chain(leaf.intermediates)
        .collect();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    creds.install(chain, der, &key.subject_public_key_info())?;
    Ok(leaf.not_after_unix)
}
