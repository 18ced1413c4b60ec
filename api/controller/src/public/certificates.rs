//! `Certificates`: what each pod's proxy proves, read the way a peer reads
//! it, from an mTLS handshake with the controller's own certificate (so it
//! also shows whether the proxy accepts the controller).

use conduit_api::proto::public::v1 as pb;
use tonic::Status;

use super::{PublicApi, deployment_arg, not_found};

impl PublicApi {
    pub(super) async fn pod_certificates(
        &self,
        req: pb::CertificatesRequest,
    ) -> Result<pb::CertificatesResponse, Status> {
        let deployment = deployment_arg("deployment", req.deployment)?;
        let links = &self.inner.links;
        if !links.is_tls() {
            return Err(Status::failed_precondition(
                "identity is off: the controller runs without --identity-trust-anchors, so no proxy has a certificate",
            ));
        }
        let snapshot = self.snapshot();
        let info = snapshot
            .deployments
            .get(&deployment)
            .ok_or_else(|| not_found(&deployment))?;
        let identity = links.pod_identity(&info.service_account, &deployment.namespace);
        let pods = info.pods.iter().filter(|p| p.meshed).map(|p| {
            let identity = identity.clone();
            async move {
                let (chain, error) = match links.peer_certificates(p.addr, &identity).await {
                    Ok(chain) => (chain, String::new()),
                    Err(e) => (Vec::new(), e),
                };
                pb::PodCertificate {
                    pod: p.name.clone(),
                    identity: identity.to_string(),
                    chain,
                    error,
                }
            }
        });
        Ok(pb::CertificatesResponse {
            pods: futures_util::future::join_all(pods).await,
        })
    }
}
