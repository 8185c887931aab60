//! frr-agent: will run beside FRR, apply the speaker's config as one vtysh transaction and
//! report session state over gRPC on a unix socket. Until that lands it says so and fails,
//! rather than pretending to work.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "frr-agent {}: not implemented yet; ferrolb's BGP support is still being built",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
