//! Search of the tap history. The store matches the whole request: the
//! client's query, its filter and its Deployment are one query in the
//! store's language, so the store's page is the answer, `limit` events
//! whenever that many exist.

use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use tonic::Status;

use super::filter;
use super::limits::{DEFAULT_SEARCH_SPAN_MS, search_limit};
use crate::public::{PublicApi, optional_deployment};
use crate::store::now_unix_ms;

impl PublicApi {
    pub(in crate::public) async fn search(
        &self,
        req: pb::SearchTapRequest,
    ) -> Result<pb::SearchTapResponse, Status> {
        let filter = filter(req.filter.unwrap_or_default())?;
        let deployment = optional_deployment("deployment", req.deployment)?;
        let limit = search_limit(req.limit)?;
        let (start, end) = span(req.start_unix_ms, req.end_unix_ms)?;
        let query = filter.search_query(&req.query, deployment.as_ref());
        let found = self
            .store()
            .search_tap(store::SearchTapRequest {
                query,
                start_unix_ms: start,
                end_unix_ms: end,
                limit,
            })
            .await?;
        Ok(pb::SearchTapResponse {
            events: found.events,
        })
    }
}

/// The searched span in Unix ms: by default the last hour.
fn span(start: i64, end: i64) -> Result<(i64, i64), Status> {
    let end = if end == 0 { now_unix_ms() } else { end };
    let start = if start == 0 {
        end - DEFAULT_SEARCH_SPAN_MS
    } else {
        start
    };
    if start > end {
        return Err(Status::invalid_argument("the search starts after it ends"));
    }
    Ok((start, end))
}
