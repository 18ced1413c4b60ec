//! Conduit's control plane: the public API that `conduit` and the
//! dashboard read (gRPC, and JSON/SSE over HTTP), the destination service
//! the proxies resolve authorities with, and the dashboard's web server.
//!
//! - [`discovery`]: one trait, two backends (static file, Kubernetes).
//! - [`destination`]: `Destination.Get`/`GetProfile` streams.
//! - [`identity`]: the certificate authority behind `Identity.Certify`.
//! - [`public`]: `public.v1.Api`, reading the store and discovery.
//! - [`metrics_backend`]: where its metrics come from (the store, or a
//!   Prometheus-compatible query API).
//! - [`rest`]: the same as JSON and Server-Sent Events.
//! - [`ui`]: the dashboard bundle.
//! - [`server`]: wiring them to listeners.

pub mod access;
pub mod args;
pub mod destination;
pub mod discovery;
pub mod identity;
pub mod links;
pub mod metrics_backend;
pub mod policy;
pub mod profile;
pub mod public;
pub mod rest;
pub mod server;
pub mod store;
pub mod ui;
pub mod workloads;
