//! What this proxy sees, for `conduit diagnostics`: its metrics text, its
//! outbound destination cache and the inbound policy it enforces. Served
//! next to tap, on the tap port, to the controller's identity only: the
//! destination cache and policy describe the mesh as much as tap does.

use std::sync::Arc;

use conduit_api::proto::diagnostics::v1::{self as pb, Kind};
use tonic::{Request, Response, Status};

use crate::metrics::Registry;
use crate::outbound::Outbound;
use crate::policy::Policies;

pub(crate) struct DiagnosticsService {
    pub(crate) registry: Arc<Registry>,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) policies: Arc<Policies>,
}

#[tonic::async_trait]
impl pb::proxy_diagnostics_server::ProxyDiagnostics for DiagnosticsService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Diagnostics>, Status> {
        let kind = Kind::try_from(req.get_ref().kind)
            .map_err(|_| Status::invalid_argument("unknown diagnostics kind"))?;
        let out = match kind {
            Kind::Unspecified => {
                return Err(Status::invalid_argument(
                    "say which diagnostics: metrics, endpoints or policy",
                ));
            }
            Kind::Metrics => pb::Diagnostics {
                metrics: self.registry.render_prometheus(),
                ..Default::default()
            },
            Kind::Endpoints => pb::Diagnostics {
                destinations: self.outbound.destinations(),
                ..Default::default()
            },
            Kind::Policy => pb::Diagnostics {
                policies: self.policies.enforced(),
                ..Default::default()
            },
        };
        Ok(Response::new(out))
    }
}
