//! Starting what the speaker works with: the BGP backend, the layer 2 responder, the cluster's
//! cache, the list of speakers that should exist and the membership among them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::bgp_backend::{self, BackendSettings, BgpBackend};
use super::report::{self, NodeReport};
use super::{SpeakerArgs, events, frr_metrics, peers};
use crate::k8s::cache::ClusterCache;
use crate::l2::interfaces;
use crate::l2::membership::{Membership, MembershipSettings};
use crate::l2::responder::{Responder, ResponderSettings};

pub fn backend(args: &SpeakerArgs) -> Option<BgpBackend> {
    args.frr_agent_socket.as_ref().map(|socket| {
        frr_metrics::start(socket.clone(), frr_metrics::EVERY);
        let mut settings = BackendSettings::new(socket);
        settings.window = Duration::from_millis(args.coalesce_ms);
        BgpBackend::start(settings)
    })
}

pub fn responder(args: &SpeakerArgs) -> Result<Option<Responder>, String> {
    if !args.layer2 {
        return Ok(None);
    }
    let mut settings = ResponderSettings {
        gratuitous_after: args.gratuitous_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
        refresh: Some(Duration::from_secs(args.layer2_refresh_seconds)),
        ..Default::default()
    };
    if let Some(patterns) = &args.exclude_interfaces {
        settings.excluded = interfaces::exclusions(patterns)?;
    }
    Responder::start(settings).map(Some).map_err(|e| format!("starting the layer 2 responder: {e}"))
}

/// The `frr` readiness check; the flag it returns is to be set once the first configuration
/// goes to FRR: before that there is nothing to apply.
pub fn frr_health(backend: Option<&BgpBackend>) -> Arc<AtomicBool> {
    let has_config = Arc::new(AtomicBool::new(false));
    if let Some(report) = backend.map(BgpBackend::report) {
        let has = has_config.clone();
        crate::health::register("frr", move || {
            bgp_backend::readiness(&report.borrow(), has.load(Ordering::Relaxed))
        });
    }
    has_config
}

/// Watches the cluster and starts telling it (the node's report, Events); returns once every
/// object was listed.
pub async fn cluster(
    args: &SpeakerArgs,
    client: &kube::Client,
    report: watch::Receiver<Option<NodeReport>>,
    backend: Option<&BgpBackend>,
    listed: &crate::health::Flag,
) -> (ClusterCache, events::SpeakerEvents) {
    let cache = ClusterCache::start(client, &args.namespace, crate::k8s::cache::Role::Speaker);
    let pod = std::env::var("POD_NAME").ok().zip(std::env::var("POD_UID").ok());
    let reporter =
        crate::k8s::node_status::NodeReporter::new(client.clone(), &args.namespace, &args.node, pod);
    report::start(reporter, report, backend.map(BgpBackend::report));
    let events = events::SpeakerEvents::start(client.clone(), &args.node);
    tracing::info!("waiting for the first full listing of the cluster");
    cache.ready().await;
    // The listing's pages are parsed and gone; what the caches keep is a fraction of them.
    crate::memory::give_back();
    listed.set(Ok(()));
    tracing::info!("cluster listed; announcing");
    (cache, events)
}

/// Follows the speakers that should exist, where there is a list of them.
pub async fn peers(
    args: &SpeakerArgs,
    client: Option<&kube::Client>,
) -> Result<Option<watch::Receiver<peers::Peers>>, String> {
    let source = match (&args.members, &args.members_file, client) {
        (Some(members), _, _) => peers::Source::Listed(members.clone()),
        (None, Some(file), _) => peers::Source::File(file.clone()),
        // In a cluster the other speakers are the pods of the DaemonSet: found, not listed.
        (None, None, Some(client)) if args.layer2 && !args.speaker_selector.is_empty() => {
            peers::Source::Pods {
                client: client.clone(),
                namespace: args.namespace.clone(),
                selector: args.speaker_selector.clone(),
            }
        }
        _ => return Ok(None),
    };
    peers::start(source, &args.node, args.membership_bind.port()).await.map(Some)
}

/// Joins the layer 2 membership seeded with `peers`; also says how many keys open its
/// traffic, and the speaker list it was started with (the list can change while it starts).
pub async fn membership(
    args: &SpeakerArgs,
    peers: &mut watch::Receiver<peers::Peers>,
) -> Result<(Membership, usize, peers::Peers), String> {
    let mut settings = MembershipSettings::new(&args.node, args.membership_bind);
    let joined = peers.borrow_and_update().clone();
    settings.seeds = joined.seeds.clone();
    if let Some(file) = &args.membership_secret_file {
        settings.keys = membership_keys(file)?;
    }
    if let Some(ms) = args.membership_probe_ms {
        settings.probe_period = Duration::from_millis(ms);
        settings.probe_rtt = Duration::from_millis(ms * 2 / 5);
        // The defaults' proportions (150 ms: 160 and 70).
        settings.suspect_to_down = Duration::from_millis(ms * 16 / 15);
        settings.ring_period = Duration::from_millis(ms * 7 / 15);
    }
    tracing::info!(seeds = ?settings.seeds, fence = args.fence, keys = settings.keys.len(), "joining the speakers' membership");
    let keys = settings.keys.len();
    let membership = Membership::start(settings).await.map_err(|e| e.to_string())?;
    Ok((membership, keys, joined))
}

/// The membership keys: `file` seals (and opens); files beside it named after it with a
/// suffix (`secretkey.next`, `secretkey.previous`: other keys of the same Secret) only open, so
/// speakers that already have a new key still hear those that do not.
pub fn membership_keys(file: &Path) -> Result<Vec<Vec<u8>>, String> {
    let read = |f: &Path| std::fs::read(f).map_err(|e| format!("membership key {}: {e}", f.display()));
    let key = read(file)?;
    if key.is_empty() {
        return Err(format!("membership key {} is empty", file.display()));
    }
    let mut keys = vec![key];
    let prefix = format!("{}.", file.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut others: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("membership keys in {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
        .collect();
    others.sort();
    for other in others {
        let key = read(&other)?;
        if !key.is_empty() {
            keys.push(key);
        }
    }
    Ok(keys)
}
