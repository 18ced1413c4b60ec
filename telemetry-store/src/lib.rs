//! The Conduit telemetry store: a rolling, per-Deployment time-series
//! database with a Prometheus-compatible PromQL API.
//!
//! Data flows in from the proxies' gRPC report streams and from
//! Prometheus remote-write, lands in the write-ahead log and the in-memory
//! head, and ages into columnar (Arrow IPC) blocks on disk that are
//! compacted and deleted by retention. Grafana and curl query it with
//! PromQL over HTTP; the controller asks the gRPC `Query` service for
//! golden metrics computed from merged HdrHistograms.
//!
//! Run it with the `conduit-telemetry-store` binary, or embed it:
//! [`Store::open`] then [`Store::start`] (or [`Store::serve`]).

mod block;
pub mod config;
mod db;
mod downsample;
mod encoding;
mod forward;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod golden;
mod head;
mod ingest;
pub mod memory;
mod model;
mod prefetch;
mod promql;
mod query_text;
mod series;
mod server;
mod tap;
mod time;
mod wal;

pub use config::{Config, FsyncPolicy};
pub use server::{Running, Store};
