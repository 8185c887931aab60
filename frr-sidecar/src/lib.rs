//! frr-agent: owns one FRR instance beside the ferrolb speaker.
//!
//! [`tree`] reads FRR configuration into contexts, [`dialect`] says how each FRR version prints
//! it back, [`diff`] turns one configuration into another
//! with a single vtysh script that leaves untouched sessions alone, [`apply`] drives vtysh with
//! it, [`status`] reads FRR's session state, [`daemons`] says which daemons are down, [`service`] ties them into the agent and [`server`]
//! serves it over gRPC on a unix socket.
#![forbid(unsafe_code)]

pub mod apply;
pub mod bfd_hold;
pub mod daemons;
pub mod dialect;
pub mod diff;
pub mod server;
pub mod service;
pub mod status;
pub mod tree;
pub mod vty;
#[cfg(test)]
mod wire_captures;

/// What every binary says it is: in `--version`, `ferrolb version`, its first log line and
/// (the roles) `ferrolb_build_info`.
pub mod build {
    /// The workspace's version, which the chart's `version` and `appVersion` follow.
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    /// The commit built from (see build.rs).
    pub const COMMIT: &str = env!("FERROLB_COMMIT");
    /// `0.1.0 (commit 0123456789ab)`, for `--version`.
    pub const LONG: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("FERROLB_COMMIT"), ")");

    /// Says what is starting, as the first line of its log.
    pub fn log_start(binary: &str) {
        tracing::info!(version = VERSION, commit = COMMIT, "{binary} starting");
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): frr-agent and the ferrolb roles
/// log the same way, so one set of instructions reads both.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for people: logs written to files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Messages and stubs generated from `proto/frragent/v1/agent.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("frragent.v1");
}
