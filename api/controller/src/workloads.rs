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

/// Every Deployment discovery knows, with its ServiceAccount.
pub fn workload_set(snapshot: &Snapshot) -> pb::WorkloadSet {
    pb::WorkloadSet {
        workloads: snapshot
            .deployments
            .iter()
            .map(|(d, info)| pb::Workload {
                deployment: Some(d.clone().into()),
                service_account: info.service_account.clone(),
            })
            .collect(),
    }
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
            |s| Some(workload_set(s)),
        )))
    }
}
