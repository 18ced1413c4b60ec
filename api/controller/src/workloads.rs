//! `conduit.destination.v1.Workloads`: which Deployments run under which
//! ServiceAccount, streamed to the telemetry store.
//!
//! A proxy's certificate proves a ServiceAccount, not a Deployment, and
//! several Deployments may share one ServiceAccount. The store needs this
//! table to refuse a report that names a Deployment its sender does not
//! run as; discovery is the only part of the mesh that knows it.

use std::sync::Arc;

use conduit_api::proto::destination::v1::{self as pb, workloads_server};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::discovery::Snapshot;

pub struct Workloads {
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl Workloads {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self { snapshots }
    }
}

/// Every Deployment discovery knows, with its ServiceAccount; nothing
/// until it knows them all: a partial table would make the store refuse
/// the reports of Deployments not read yet.
pub fn workload_set(snapshot: &Snapshot) -> Option<pb::WorkloadSet> {
    if !snapshot.deployments_listed {
        return None;
    }
    Some(pb::WorkloadSet {
        workloads: snapshot
            .deployments
            .iter()
            .map(|(d, info)| pb::Workload {
                deployment: Some(d.clone().into()),
                service_account: info.service_account.clone(),
            })
            .collect(),
    })
}

#[tonic::async_trait]
impl workloads_server::Workloads for Workloads {
    type WatchStream = ReceiverStream<Result<pb::WorkloadSet, Status>>;

    async fn watch(
        &self,
        _: Request<pb::WatchWorkloads>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(crate::discovery::follow(
            self.snapshots.clone(),
            workload_set,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::DeploymentInfo;

    #[test]
    fn nothing_is_said_until_every_deployment_is_known() {
        let mut snapshot = Snapshot::default();
        snapshot.deployments.insert(
            conduit_api::DeploymentRef::new("demo", "web"),
            DeploymentInfo {
                service_account: "web".into(),
                ..Default::default()
            },
        );
        assert_eq!(workload_set(&snapshot), None);
        snapshot.deployments_listed = true;
        let set = workload_set(&snapshot).unwrap();
        assert_eq!(set.workloads.len(), 1);
        assert_eq!(set.workloads[0].service_account, "web");
    }
}
