//! The proxy against real peers on loopback: hyper and tonic clients and
//! servers, raw sockets where the protocol is the point, and the proxy's
//! own `/metrics`, tap and telemetry stream read back.

mod bad_input;
mod balance;
mod cardinality;
mod cli;
mod controller;
mod discovery;
mod error_reasons;
mod grpc;
mod http;
mod learned_routes;
mod limits;
mod reliability;
mod support;
mod tap;
mod tcp;
mod telemetry;
mod upgrade;
