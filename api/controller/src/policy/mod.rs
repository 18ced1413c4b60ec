//! The policy controller: inbound policy for every workload port, compiled
//! from policy resources (the static discovery file's `policy:` sections
//! in local mode, `policy.conduit.io/v1` objects on Kubernetes) and
//! streamed to the proxies that enforce it.

mod index;
pub mod kubernetes;
pub mod resources;
mod service;

pub use index::PolicyIndex;
pub use service::InboundPolicies;
