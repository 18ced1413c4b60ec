//! The contracts of the Conduit mesh and the domain types its components
//! share.
//!
//! Data flows one way, proxy → telemetry store → controller → CLI and
//! dashboard; every hop speaks the gRPC contracts in [`proto`] and names
//! things with the types defined here, once:
//!
//! - [`DeploymentRef`]: the unit metrics are about.
//! - [`IdentityName`]: who a proxy is under mTLS.
//! - [`Labels`]: a metric series' label set.
//! - [`Direction`] and [`Classification`]: how a request is counted.
//! - [`metrics`]: the metric and label names proxies emit and the store and
//!   controller query.
//! - [`histogram`]: the wire form of latency distributions.
//! - [`sidecar`]: the proxy's ports and user id, as pods and iptables see them.
//! - [`json`]: the public API as JSON (controller HTTP API, `-o json`, dashboard).
//! - [`discovery_file`]: the static service registry `conduit demo` writes.
//! - [`duration`]: durations as people type them (`30s`, `1m`).
//! - [`time_range`]: windows as people type them (`--since 2h --until 1h`).
//! - [`policy`]: default inbound policies, networks and identity patterns.
//! - [`tap_filter`]: which requests a tap wants, live and in the history.

pub mod classify;
pub mod deployment;
pub mod direction;
pub mod discovery_file;
pub mod duration;
pub mod error_reason;
#[cfg(feature = "proto")]
pub mod histogram;
pub mod identity;
pub mod json;
pub mod labels;
pub mod metrics;
pub mod metrics_backend;
pub mod policy;
#[cfg(feature = "proto")]
pub mod proto;
pub mod rate_limit;
pub mod sidecar;
#[cfg(feature = "proto")]
pub mod tap_filter;
pub mod tap_rbac;
pub mod time_range;

pub use classify::Classification;
pub use deployment::{DeploymentRef, ResourceTarget};
pub use direction::Direction;
pub use error_reason::ErrorReason;
pub use identity::IdentityName;
pub use labels::{Label, Labels};

/// The version every Conduit binary reports (`conduit version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
