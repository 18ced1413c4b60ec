//! Tap: requests as they happen (live tap, fanned in from the
//! Deployment's proxies) and as they happened (a search of the telemetry
//! store's tap history).
//!
//! Both take the same filter, [`conduit_api::tap_filter::Filter`]: the
//! proxies apply it to live requests, the fan-in re-checks what they send,
//! and a search hands it to the store as part of the query, so a filter
//! selects the same requests live and in the history.

mod fanin;
pub mod limits;
mod search;

pub use fanin::open;

use conduit_api::proto::tap::v1 as tap;
use conduit_api::tap_filter::Filter;
use tonic::Status;

/// A client's filter, validated.
pub fn filter(f: tap::Filter) -> Result<Filter, Status> {
    Filter::try_from(f).map_err(|e| Status::invalid_argument(e.to_string()))
}
