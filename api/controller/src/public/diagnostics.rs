//! `ProxyDiagnostics`: what each pod's proxy sees, asked of the proxy
//! itself over its tap port (mTLS, the controller's identity), one pod or
//! every meshed pod of the Deployment. A pod that cannot be read is
//! reported with why, next to the others.

use std::time::Duration;

use conduit_api::proto::diagnostics::v1::proxy_diagnostics_client::ProxyDiagnosticsClient;
use conduit_api::proto::diagnostics::v1::{self as diag, Kind};
use conduit_api::proto::public::v1 as pb;
use tonic::Status;

use super::{PublicApi, deployment_arg, not_found};

/// How long one proxy has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

impl PublicApi {
    pub(super) async fn pod_diagnostics(
        &self,
        req: pb::ProxyDiagnosticsRequest,
    ) -> Result<pb::ProxyDiagnosticsResponse, Status> {
        let deployment = deployment_arg("deployment", req.deployment)?;
        let kind = match Kind::try_from(req.kind) {
            Ok(Kind::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(
                    "say which diagnostics: metrics, endpoints or policy",
                ));
            }
            Ok(k) => k,
        };
        let snapshot = self.snapshot();
        let info = snapshot
            .deployments
            .get(&deployment)
            .ok_or_else(|| not_found(&deployment))?;
        let pods: Vec<_> = info
            .pods
            .iter()
            .filter(|p| p.meshed && (req.pod.is_empty() || p.name == req.pod))
            .collect();
        if pods.is_empty() {
            let which = if req.pod.is_empty() {
                "no meshed pod".to_string()
            } else {
                format!("no meshed pod named {:?}", req.pod)
            };
            return Err(Status::not_found(format!(
                "deployment {deployment} has {which} (conduit stat deploy/{} -n {} lists its pods)",
                deployment.name, deployment.namespace
            )));
        }
        let links = &self.inner.links;
        let identity = links.pod_identity(&info.service_account, &deployment.namespace);
        let asks = pods.into_iter().map(|p| {
            let identity = identity.clone();
            async move {
                let answer = match p.tap {
                    Some(addr) => {
                        ask(links.channel(&addr.to_string(), &identity, TIMEOUT), kind).await
                    }
                    None => Err("its proxy serves no tap port".to_string()),
                };
                let (diagnostics, error) = match answer {
                    Ok(d) => (Some(d), String::new()),
                    Err(e) => (None, e),
                };
                pb::PodDiagnostics {
                    pod: p.name.clone(),
                    diagnostics,
                    error,
                }
            }
        });
        Ok(pb::ProxyDiagnosticsResponse {
            pods: futures_util::future::join_all(asks).await,
        })
    }
}

async fn ask(
    channel: Result<tonic::transport::Channel, String>,
    kind: Kind,
) -> Result<diag::Diagnostics, String> {
    let mut client = ProxyDiagnosticsClient::new(channel?);
    let req = diag::GetRequest { kind: kind.into() };
    match tokio::time::timeout(TIMEOUT, client.get(req)).await {
        Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
        Ok(Err(s)) => Err(s.message().to_string()),
        Ok(Ok(rsp)) => Ok(rsp.into_inner()),
    }
}
