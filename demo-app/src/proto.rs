//! Generated from `proto/demo.proto`.

#![allow(unreachable_pub, clippy::all)]

tonic::include_proto!("conduit.demo.v1");
