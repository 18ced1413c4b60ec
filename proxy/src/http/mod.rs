//! HTTP handling shared by the inbound and outbound sides: serving
//! connections, reaching endpoints, and what happens to a request in
//! between (hop-by-hop headers, version changes between proxies, upgrades,
//! measurement).

pub(crate) mod authority;
pub(crate) mod body;
pub(crate) mod client;
pub mod head;
pub mod headers;
pub(crate) mod observe;
pub mod orig_proto;
pub(crate) mod server;
pub(crate) mod upgrade;
