use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ferrolb::cli;

#[derive(Parser)]
#[command(
    name = "ferrolb",
    version = frr_sidecar::build::LONG,
    about = "LoadBalancer Services for bare-metal Kubernetes, speaking MetalLB's API"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, without a cluster, what ferrolb would allocate for a set of manifests.
    Plan(cli::PlanArgs),
    /// Print the CustomResourceDefinitions ferrolb installs.
    Crds,
    /// Print this build's version and the commit it was built from.
    Version,
    /// Allocate IPs to LoadBalancer Services in a cluster and write them back.
    Controller(Box<ferrolb::controller::ControllerArgs>),
    /// Announce this node's Services (objects from manifests; see `ferrolb speaker --help`).
    Speaker(Box<ferrolb::speaker::SpeakerArgs>),
}

fn main() -> ExitCode {
    // One TLS provider for the whole process (kube and, later, the webhook): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    match args.command {
        Command::Plan(a) => cli::plan(&a),
        Command::Crds => cli::crds(),
        Command::Version => cli::version(),
        Command::Speaker(a) => cli::speaker(*a),
        Command::Controller(a) => cli::controller(*a),
    }
}
