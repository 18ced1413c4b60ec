//! The policy controller: inbound policy for every workload port, compiled
//! from policy resources (the static discovery file's `policy:` sections
//! in local mode) and streamed to the proxies that enforce it.

mod index;
mod service;

pub use index::PolicyIndex;
pub use service::InboundPolicies;
