//! The identity client: gets this workload a certificate and keeps it
//! fresh.
//!
//! Each round generates a new ECDSA P-256 key in memory (it is never
//! written anywhere or sent: only its CSR is), reads the token file afresh
//! (the kubelet rotates projected tokens), and calls `Certify` over TLS,
//! verifying that the server is the controller's identity. The new
//! certificate replaces the old one at once; until then the old one keeps
//! serving. Renewal is due at 70 % of the lifetime, so there is time for
//! retries (with jittered backoff) before the certificate expires; if the
//! identity service stays away past expiry, meshed traffic fails closed
//! (see [`Credentials`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use conduit_api::IdentityName;
use conduit_api::proto::identity::v1::CertifyRequest;
use conduit_api::proto::identity::v1::identity_client::IdentityClient;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData,
    SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::credentials::unix_now;
use crate::tls::{Alpn, client_config};
use crate::{Credentials, TrustAnchors};

/// Share of the lifetime after which the certificate is renewed.
const RENEW_AT: f64 = 0.7;
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the identity service is and how to prove the workload's name.
#[derive(Clone, Debug)]
pub struct CertifyOptions {
    /// `host:port` of the identity service.
    pub addr: String,
    /// The identity the service must prove: the controller's.
    pub controller: IdentityName,
    pub token_file: PathBuf,
    pub anchors: TrustAnchors,
}

/// Starts certifying the workload `name` (its token from `token_file`)
/// with the identity service at `url` (`https://host:port`), which must
/// prove `controller` under `anchors`.
pub fn start(
    name: IdentityName,
    url: &str,
    anchors: &TrustAnchors,
    token_file: PathBuf,
    controller: IdentityName,
) -> Result<Arc<Credentials>, String> {
    let options = CertifyOptions {
        addr: crate::grpc::authority(url)?,
        controller,
        token_file,
        anchors: anchors.clone(),
    };
    let creds = Credentials::new(name);
    tokio::spawn(run(creds.clone(), options));
    Ok(creds)
}

/// Keeps `creds` certified for as long as the workload runs.
pub async fn run(creds: Arc<Credentials>, options: CertifyOptions) {
    let client = match connect(&options) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the identity service; this workload will have no certificate");
            return;
        }
    };
    let mut retry = RETRY_MIN;
    loop {
        match certify_once(&creds, client.clone(), &options).await {
            Ok(not_after) => {
                retry = RETRY_MIN;
                let wait = renewal_delay(unix_now(), not_after);
                tracing::info!(
                    identity = %creds.dns_name(),
                    expires_in_s = not_after - unix_now(),
                    renew_in_s = wait.as_secs(),
                    "certified"
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                creds.refresh_failures.fetch_add(1, Relaxed);
                let delay = jittered(retry);
                tracing::warn!(
                    identity = %creds.dns_name(),
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    still_valid = creds.is_ready(),
                    "could not get a certificate; keeping the current one and retrying"
                );
                tokio::time::sleep(delay).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

fn connect(options: &CertifyOptions) -> Result<IdentityClient<tonic::transport::Channel>, String> {
    // No client certificate: this call is how the workload gets one.
    let config = client_config(&options.anchors, None, Alpn::H2).map_err(|e| e.to_string())?;
    let channel = crate::grpc::channel(&options.addr, &options.controller, config, None)?;
    Ok(IdentityClient::new(channel))
}

/// One round: a new key, a CSR, a certificate. Returns when it expires.
async fn certify_once(
    creds: &Credentials,
    mut client: IdentityClient<tonic::transport::Channel>,
    options: &CertifyOptions,
) -> Result<i64, String> {
    let token = std::fs::read(&options.token_file).map_err(|e| {
        format!(
            "cannot read the identity token {}: {e}",
            options.token_file.display()
        )
    })?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let csr = csr(creds.name(), &key)?;
    let mut req = tonic::Request::new(CertifyRequest {
        identity: creds.dns_name().to_string(),
        token,
        certificate_signing_request: csr,
    });
    req.set_timeout(CALL_TIMEOUT);
    let rsp = client
        .certify(req)
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let chain: Vec<CertificateDer<'static>> = std::iter::once(rsp.leaf_certificate)
        .chain(rsp.intermediate_certificates)
        .map(CertificateDer::from)
        .collect();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    creds
        .install(chain, der, &key.subject_public_key_info())
        .map_err(|e| format!("the identity service returned an unusable certificate: {e}"))?;
    creds.expiry_unix().ok_or_else(|| "no certificate".into())
}

/// A PKCS#10 request naming `name` as DNS and SPIFFE URI names.
pub fn csr(name: &IdentityName, key: &KeyPair) -> Result<Vec<u8>, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let dns = name.to_string();
    params.subject_alt_names = vec![
        SanType::DnsName(dns.clone().try_into().map_err(|e| format!("{e}"))?),
        SanType::URI(name.spiffe_id().try_into().map_err(|e| format!("{e}"))?),
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, dns);
    params.distinguished_name = dn;
    let request = params.serialize_request(key).map_err(|e| e.to_string())?;
    Ok(request.der().to_vec())
}

/// When to renew a certificate valid until `not_after`: at 70 % of what is
/// left, with a little jitter so proxies started together spread out.
pub fn renewal_delay(now: i64, not_after: i64) -> Duration {
    let left = (not_after - now).max(1) as f64;
    let jitter = 1.0 + (fastrand::f64() - 0.5) * 0.1;
    Duration::from_secs_f64((left * RENEW_AT * jitter).max(0.5))
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_seventy_percent() {
        for _ in 0..100 {
            let d = renewal_delay(1_000, 1_000 + 86_400).as_secs_f64();
            assert!((0.665 * 86_400.0..=0.735 * 86_400.0).contains(&d), "{d}");
        }
        assert!(renewal_delay(10, 5) >= Duration::from_millis(500));
    }
}
