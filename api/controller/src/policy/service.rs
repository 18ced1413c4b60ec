//! `conduit.policy.v1.InboundServerPolicies`: each proxy watches the
//! policy of its application ports; a new discovery snapshot sends a new
//! `Server` to the watchers whose policy it changed, and to no one else.

use std::sync::Arc;

use conduit_api::DeploymentRef;
use conduit_api::proto::policy::v1::{self as pb, inbound_server_policies_server};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::discovery::Snapshot;

pub struct InboundPolicies {
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl InboundPolicies {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self { snapshots }
    }
}

fn port_of(spec: &pb::PortSpec) -> Result<(DeploymentRef, u16), Status> {
    let w = spec
        .workload
        .as_ref()
        .filter(|w| !w.namespace.is_empty() && !w.name.is_empty())
        .ok_or_else(|| {
            Status::invalid_argument("the workload's namespace and name are required")
        })?;
    let port = u16::try_from(spec.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Status::invalid_argument(format!("port {} is not a TCP port", spec.port)))?;
    Ok((DeploymentRef::new(&w.namespace, &w.name), port))
}

#[tonic::async_trait]
impl inbound_server_policies_server::InboundServerPolicies for InboundPolicies {
    async fn get_port(&self, req: Request<pb::PortSpec>) -> Result<Response<pb::Server>, Status> {
        let (workload, port) = port_of(req.get_ref())?;
        let snapshot = self.snapshots.borrow();
        if snapshot.policy.is_pending() {
            return Err(Status::unavailable(
                "the controller has not read the policy resources yet",
            ));
        }
        Ok(Response::new(snapshot.policy.port(&workload, port)))
    }

    type WatchPortStream = ReceiverStream<Result<pb::Server, Status>>;

    async fn watch_port(
        &self,
        req: Request<pb::PortSpec>,
    ) -> Result<Response<Self::WatchPortStream>, Status> {
        let (workload, port) = port_of(req.get_ref())?;
        tracing::debug!(%workload, port, "policy subscription");
        // While pending, the proxy keeps what it applies already.
        let stream = crate::discovery::follow(self.snapshots.clone(), move |s| {
            (!s.policy.is_pending()).then(|| s.policy.port(&workload, port))
        });
        Ok(Response::new(stream))
    }
}
