//! The speaker role: announces this node's share of the Services.
//!
//! Until the Kubernetes wiring lands, the speaker runs from a manifest directory: it plans this
//! node's announcements from the objects there, re-reads the directory when a file in it
//! changes, and drives frr-agent through the BGP backend. The lab demo runs it this way.

pub mod bgp_backend;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cli::read_manifests;
use crate::l2::interfaces;
use crate::l2::responder::{Announced, Responder, ResponderSettings};
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
    /// frr-agent's unix socket; without it the speaker does not announce over BGP.
    #[arg(long, env = "FRR_AGENT_SOCKET")]
    pub frr_agent_socket: Option<PathBuf>,
    /// Answer ARP/NDP for this node's layer 2 announcements (needs CAP_NET_RAW).
    #[arg(long)]
    pub layer2: bool,
    /// Nodes whose speakers count as alive in layer 2 elections (default: every Node in the
    /// manifests).
    #[arg(long, value_delimiter = ',')]
    pub live_nodes: Option<Vec<String>>,
    /// Interface name patterns (regexes) never answered on; replaces the default list.
    #[arg(long, value_delimiter = ',')]
    pub exclude_interfaces: Option<Vec<String>>,
    /// Changes arriving within this many milliseconds go to FRR as one Apply.
    #[arg(long, default_value_t = 50)]
    pub coalesce_ms: u64,
    /// How often the manifests are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rescan_ms: u64,
}

/// Runs until interrupted.
pub async fn run(args: SpeakerArgs) -> Result<(), String> {
    let backend = args.frr_agent_socket.as_ref().map(|socket| {
        let mut settings = BackendSettings::new(socket);
        settings.window = Duration::from_millis(args.coalesce_ms);
        BgpBackend::start(settings)
    });
    let responder = if args.layer2 {
        let mut settings = ResponderSettings::default();
        if let Some(patterns) = &args.exclude_interfaces {
            settings.excluded = interfaces::exclusions(patterns)?;
        }
        Some(Responder::start(settings).map_err(|e| format!("starting the layer 2 responder: {e}"))?)
    } else {
        None
    };
    let mut reports = backend.as_ref().map(BgpBackend::report);
    let mut seen = None;
    let options = Options {
        lb_class: args.lb_class.clone(),
        node: Some(args.node.clone()),
        show_secrets: true,
        live_nodes: args.live_nodes.as_ref().map(|l| l.iter().cloned().collect()),
    };
    loop {
        let stamp = stamp(&args.manifests);
        if seen.as_ref() != Some(&stamp) {
            seen = Some(stamp);
            match read_manifests(&args.manifests, args.recursive, &args.namespace) {
                Err(e) => tracing::error!(error = %e, "reading manifests; keeping the last configuration"),
                Ok(inputs) => {
                    let p = plan::plan(&inputs, &options);
                    if let (Some(r), true) = (&responder, p.is_valid()) {
                        let l2 = layer2_announcements(&p);
                        tracing::info!(ips = l2.len(), "layer 2 announcements planned");
                        r.set(l2);
                    }
                    match p.frr_config {
                        Some(conf) => {
                            let n = p.announcements.as_ref().map_or(0, Vec::len);
                            tracing::info!(announcements = n, "desired FRR configuration planned");
                            if let Some(b) = &backend {
                                b.set(conf);
                            }
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
            r = async { match reports.as_mut() { Some(r) => r.changed().await, None => std::future::pending().await } } => {
                if r.is_err() { return Err("BGP backend stopped".into()); }
                if let Some(reports) = reports.as_mut() {
                    let r = reports.borrow_and_update().clone();
                    if !r.last_error.is_empty() {
                        tracing::warn!(error = %r.last_error, reachable = r.agent_reachable, "FRR not up to date");
                    }
                }
            }
        }
    }
}

/// The layer 2 part of a node's plan, as the responder wants it.
fn layer2_announcements(p: &plan::Plan) -> Announced {
    let mut out = Announced::new();
    for a in p.announcements.iter().flatten().filter(|a| a.protocol == "layer2") {
        let Ok(ip) = a.ip.parse() else { continue };
        let interfaces = a.interfaces.as_ref().filter(|i| !i.is_empty()).map(|i| i.iter().cloned().collect());
        out.insert(ip, interfaces);
    }
    out
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
