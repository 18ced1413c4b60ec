//! The Conduit sidecar proxy.
