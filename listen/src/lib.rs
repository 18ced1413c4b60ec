//! The listeners of Conduit's servers (the telemetry store's, the
//! controller's), with the timeouts and caps every port reachable from the
//! cluster needs, so a peer that connects and stalls, opens streams
//! without end or resets them cannot hold a server's tasks or memory.
//!
//! - [`http`]: an axum router served by hyper with a timer (header and
//!   idle timeouts that hyper otherwise skips), a watchdog per
//!   connection and a connection cap.
//! - [`grpc`]: a tonic server with stream, reset, header and keepalive
//!   limits, and incoming connections capped.

pub mod grpc;
pub mod http;
