//! The public API that `conduit` and the dashboard read.

use conduit_api::proto::public::v1::{self as pb, api_server::Api};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

type ServerStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(crate) struct PublicApi {
    mode: &'static str,
}

impl PublicApi {
    pub(crate) fn local() -> Self {
        Self { mode: "local" }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is not implemented by this controller version yet"
    ))
}

#[tonic::async_trait]
impl Api for PublicApi {
    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: conduit_api::VERSION.to_string(),
            mode: self.mode.to_string(),
        }))
    }

    async fn list_deployments(
        &self,
        _: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        Err(not_yet("ListDeployments"))
    }

    async fn stat(
        &self,
        _: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        Err(not_yet("Stat"))
    }

    type TopStream = ServerStream<pb::TopUpdate>;

    async fn top(&self, _: Request<pb::TopRequest>) -> Result<Response<Self::TopStream>, Status> {
        Err(not_yet("Top"))
    }

    type TapStream = ServerStream<conduit_api::proto::tap::v1::TapEvent>;

    async fn tap(&self, _: Request<pb::TapRequest>) -> Result<Response<Self::TapStream>, Status> {
        Err(not_yet("Tap"))
    }

    async fn search_tap(
        &self,
        _: Request<pb::SearchTapRequest>,
    ) -> Result<Response<pb::SearchTapResponse>, Status> {
        Err(not_yet("SearchTap"))
    }

    async fn edges(
        &self,
        _: Request<pb::EdgesRequest>,
    ) -> Result<Response<pb::EdgesResponse>, Status> {
        Err(not_yet("Edges"))
    }

    async fn routes(
        &self,
        _: Request<pb::RoutesRequest>,
    ) -> Result<Response<pb::RoutesResponse>, Status> {
        Err(not_yet("Routes"))
    }

    async fn check(
        &self,
        _: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        Err(not_yet("Check"))
    }
}
