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
//!
//! # Layout
//!
//! A module per concept, and the dependencies run one way, from the
//! server down to the encodings, so each layer can be read and tested
//! without the ones above it:
//!
//! - `server/`: the composition root. It opens everything, serves HTTP
//!   (`server/http/`) and gRPC (`server/grpc.rs`), and hands each handler
//!   only the parts it uses (`server/state.rs`). Nothing imports it.
//! - `ingest/`, `tap/`, `forward/`: what comes in (proxy reports,
//!   remote-write), the tap history, and remote write out.
//! - `promql/`, `golden.rs`: the two ways of reading. PromQL is an engine
//!   over a `Select` trait, tested by the `.test` scripts in
//!   `promql/testdata/` over in-memory series; `Golden` is a pure
//!   computation over the database.
//! - `db/`: the database: opening and WAL replay, the one append path,
//!   the one read path (a querier merging head and blocks for either
//!   kind of series), and maintenance (block cuts, compaction,
//!   retention).
//! - `head/`, `wal/`, `block/`, `series/`, `downsample/`: where data lives
//!   (memory, log, files), how series are indexed, how rollups are cut.
//! - `model.rs`: the shared vocabulary (sample, series handle, kind,
//!   histogram window).
//! - `encoding/`: bit streams, Gorilla and varbit codes, varints and the
//!   block columns; it imports nothing of the store.
//!
//! Beside them: `config`, `time` and `query_text` (flags, durations and
//! query text limits), `memory` and `prefetch` (allocator and CPU hints).

mod block;
pub mod config;
mod db;
mod downsample;
mod encoding;
mod exemplars;
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
