//! frr-agent: owns one FRR instance beside the ferrolb speaker.
//!
//! [`tree`] reads FRR configuration into contexts, [`diff`] turns one configuration into another
//! with a single vtysh script that leaves untouched sessions alone, [`apply`] drives vtysh with
//! it, [`status`] reads FRR's session state, [`service`] ties them into the agent and [`server`]
//! serves it over gRPC on a unix socket.
#![forbid(unsafe_code)]

pub mod apply;
pub mod diff;
pub mod server;
pub mod service;
pub mod status;
pub mod tree;

/// Messages and stubs generated from `proto/frragent/v1/agent.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("frragent.v1");
}
