//! ferrolb: LoadBalancer Services for bare-metal Kubernetes, speaking MetalLB's API.
//!
//! Pure rooms (`config`, `allocator`, `service`, `plan`) never touch kube clients, sockets or
//! the clock; `tests/integration/purity.rs` enforces it. Roles wire them to the world.

pub mod allocator;
pub mod api;
pub mod bgp;
pub mod bind;
pub mod cli;
pub mod config;
pub mod controller;
pub mod health;
pub mod k8s;
pub mod l2;
pub mod manifests;
pub mod memory;
pub mod metrics;
pub mod metrics_auth;
pub mod metrics_server;
pub mod plan;
pub mod service;
pub mod speaker;
pub mod tls;
pub mod topology;
pub mod webhook;
