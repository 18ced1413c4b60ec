//! The Conduit sidecar proxy: carries every request of a meshed pod and
//! measures it.
//!
//! Connections arrive on the inbound listener (from peers, for the local
//! application) or the outbound listener (from the application, for the
//! mesh), either redirected by iptables (transparent mode) or addressed to
//! the proxy (explicit mode). Each connection's protocol is detected
//! ([`detect`]); HTTP/1, HTTP/2 and gRPC are proxied per request, with
//! Linkerd-compatible metrics, tap events, and on the outbound side
//! control-plane-driven routing: load balancing, circuit breaking, retries
//! and timeouts. Anything else is forwarded as opaque TCP. Between meshed
//! proxies every connection is mTLS with verified workload identities
//! (`identity`).
//!
//! The binary (`conduit-proxy`) is configured only by flags and environment
//! ([`config::Config`]); [`Proxy::start`] runs one inside any Tokio runtime,
//! which is how the tests run real proxies on loopback.

mod accept;
mod admin;
mod app;
mod backoff;
mod balance;
mod breaker;
mod clock;
pub mod config;
mod destination;
pub mod detect;
mod diagnostics;
mod errors;
pub mod http;
mod identity;
mod idle;
mod inbound;
mod io;
pub mod learned_routes;
mod metrics;
mod outbound;
pub mod policy;
pub mod profile;
mod recorder;
mod resolve;
mod retry;
mod served;
mod tap;
mod tcp;
mod telemetry;

pub use app::Proxy;
pub use errors::PROXY_ERROR_HEADER;
/// For the recorder benchmark in `load-tests/` only.
#[doc(hidden)]
pub use http::observe::BenchRouteSeries;
pub use retry::RETRY_ATTEMPT_HEADER;
/// For the recorder benchmark in `load-tests/` only.
#[doc(hidden)]
pub use tap::{BenchRequest, BenchTap};
