//! The speaker role: announces this node's share of the Services.
//!
//! Until the Kubernetes wiring lands, the speaker runs from a manifest directory: it plans this
//! node's announcements from the objects there, re-reads the directory when a file in it
//! changes, and drives frr-agent through the BGP backend. The lab demo runs it this way.

pub mod bgp_backend;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cli::read_manifests;
use crate::plan::{self, Options};
use bgp_backend::{BackendSettings, BgpBackend};

#[derive(Debug, Clone, clap::Args)]
pub struct SpeakerArgs {
    /// The node this speaker runs on.
    #[arg(long, env = "FERROLB_NODE")]
    pub node: String,
    /// Manifest files or directories to take the cluster's objects from.
    #[arg(long = "manifests", short = 'f', required = true)]
    pub manifests: Vec<PathBuf>,
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// Namespace of objects without one.
    #[arg(long, default_value = "metallb-system")]
    pub namespace: String,
    #[arg(long)]
    pub lb_class: Option<String>,
    /// frr-agent's unix socket.
    #[arg(long, env = "FRR_AGENT_SOCKET", default_value = "/var/run/frr-agent/agent.sock")]
    pub frr_agent_socket: PathBuf,
    /// Changes arriving within this many milliseconds go to FRR as one Apply.
    #[arg(long, default_value_t = 50)]
    pub coalesce_ms: u64,
    /// How often the manifests are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rescan_ms: u64,
}

/// Runs until interrupted.
pub async fn run(args: SpeakerArgs) -> Result<(), String> {
    let mut settings = BackendSettings::new(&args.frr_agent_socket);
    settings.window = Duration::from_millis(args.coalesce_ms);
    let backend = BgpBackend::start(settings);
    let mut reports = backend.report();
    let mut seen = None;
    let options =
        Options { lb_class: args.lb_class.clone(), node: Some(args.node.clone()), show_secrets: true };
    loop {
        let stamp = stamp(&args.manifests);
        if seen.as_ref() != Some(&stamp) {
            seen = Some(stamp);
            match read_manifests(&args.manifests, args.recursive, &args.namespace) {
                Err(e) => tracing::error!(error = %e, "reading manifests; keeping the last configuration"),
                Ok(inputs) => {
                    let p = plan::plan(&inputs, &options);
                    match p.frr_config {
                        Some(conf) => {
                            let n = p.announcements.as_ref().map_or(0, Vec::len);
                            tracing::info!(announcements = n, "desired FRR configuration planned");
                            backend.set(conf);
                        }
                        None => tracing::error!(
                            errors = ?p.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "configuration invalid; keeping the last one"
                        ),
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(args.rescan_ms)) => {}
            r = reports.changed() => {
                if r.is_err() { return Err("BGP backend stopped".into()); }
                let r = reports.borrow_and_update().clone();
                if !r.last_error.is_empty() {
                    tracing::warn!(error = %r.last_error, reachable = r.agent_reachable, "FRR not up to date");
                }
            }
        }
    }
}

/// Names and modification times of every file under the manifest paths: cheap to compare.
fn stamp(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        match std::fs::read_dir(&p) {
            Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
            Err(_) => {
                let meta = std::fs::metadata(&p).ok();
                out.push((p, meta.as_ref().and_then(|m| m.modified().ok()), meta.map_or(0, |m| m.len())));
            }
        }
    }
    out.sort();
    out
}
