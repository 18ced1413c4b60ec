//! The Conduit telemetry store.
