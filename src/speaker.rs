//! The speaker role: announces this node's share of the Services.
//!
//! Its objects come from the cluster (watched; only Services the controller gave IPs are
//! announced) or, with `-f`, from a manifest directory re-read when a file changes (the lab
//! demos run it this way). Either way it plans this node's announcements with the pure BGP and
//! layer 2 plans and drives frr-agent and the ARP/NDP responder.

mod assigned;
pub mod bgp_backend;
mod events;
mod extras_guard;
mod failures;
mod frr_metrics;
mod peers;
mod report;
mod telling;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::k8s::cache::ClusterCache;
use crate::l2::interfaces;
use crate::l2::membership::{Membership, MembershipSettings};
use crate::l2::quorum;
use crate::l2::responder::{Announced, Responder, ResponderSettings};
use crate::plan::{self, Options};
use bgp_backend::{BackendSettings, BgpBackend};

#[derive(Debug, Clone, clap::Args)]
pub struct SpeakerArgs {
    /// The node this speaker runs on.
    #[arg(long, env = "FERROLB_NODE")]
    pub node: String,
    /// Manifest files or directories to take the objects from instead of a cluster.
    #[arg(long = "manifests", short = 'f')]
    pub manifests: Vec<PathBuf>,
    /// kubeconfig to use when no manifests are given (default: in-cluster, then KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
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
    /// The speakers, `NODE=IP:PORT`, to form the layer 2 membership with; they are also the
    /// quorum base (the speakers that should exist). Without it every Node in the manifests (or
    /// --live-nodes) counts as alive.
    #[arg(long, value_delimiter = ',')]
    pub members: Option<Vec<String>>,
    /// Like --members, from a file (`NODE=IP:PORT` separated by commas, spaces or newlines)
    /// re-read when it changes, so the quorum base follows nodes added and removed.
    #[arg(long, conflicts_with = "members")]
    pub members_file: Option<PathBuf>,
    /// In a cluster without --members: the label selector of the speaker pods (in the
    /// namespace), watched: their nodes are the speakers that should exist (the quorum base) and
    /// their addresses seed the membership; empty turns membership off.
    #[arg(long, default_value = "app.kubernetes.io/name=ferrolb,app.kubernetes.io/component=speaker")]
    pub speaker_selector: String,
    /// Where this speaker's membership listens (`[IP]:PORT` for either family).
    #[arg(long, default_value = "0.0.0.0:7946", value_parser = crate::bind::parse_socket_addr)]
    pub membership_bind: std::net::SocketAddr,
    /// A file holding the key all speakers share; membership traffic is then encrypted,
    /// authenticated and protected from replays. Files beside it named after it with a suffix
    /// (`secretkey.next`: other keys of the mounted Secret) open datagrams too, so a key is
    /// rotated without a gap: add the new key as such a file everywhere, then make it this one.
    #[arg(long)]
    pub membership_secret_file: Option<PathBuf>,
    /// Stop answering ARP/NDP while this speaker sees no strict majority of the speakers that
    /// should exist (with three or more). `--fence=false` keeps answering, so a cut-off node
    /// may answer beside its successor.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fence: bool,
    /// Membership probe period in milliseconds (failure detection takes about three).
    #[arg(long)]
    pub membership_probe_ms: Option<u64>,
    /// When gratuitous ARP/NA repeat after the first (sent at once), in milliseconds after
    /// gaining an IP.
    #[arg(long, value_delimiter = ',', default_values_t = [1100u64, 2200, 3300, 4400])]
    pub gratuitous_ms: Vec<u64>,
    /// Send gratuitous ARP/unsolicited NA for every IP this node announces again every this
    /// many seconds, for switches that age a MAC out of their tables before routers and hosts
    /// stop using it; 0 sends them only on taking an IP over.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub layer2_refresh_seconds: u64,
    /// A node that was NotReady is a full layer 2 candidate again once Ready this many
    /// seconds (counted from its Ready condition's last transition), so a flapping node moves
    /// an IP back at most once per this period. NotReady or out-of-service nodes are demoted
    /// at once. The default outlasts Kubernetes' default node-monitor grace period (50 s) and
    /// period (5 s): a kubelet that dies right after coming back still looks Ready for that
    /// long, and must not win its IPs back meanwhile.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub layer2_ready_settle_seconds: u64,
    /// Interface name patterns (regexes) never answered on; replaces the default list.
    #[arg(long, value_delimiter = ',')]
    pub exclude_interfaces: Option<Vec<String>>,
    /// Changes arriving within this many milliseconds go to FRR as one Apply.
    #[arg(long, default_value_t = 50)]
    pub coalesce_ms: u64,
    /// Where Prometheus scrapes `/metrics` (plain HTTP unless --metrics-secure, on the host
    /// network); port 0 turns it off. `[::]` listens on both families; brackets work around IPv4 addresses too.
    #[arg(long, default_value = "[::]:7472", value_parser = crate::bind::parse_socket_addr)]
    pub metrics_bind: std::net::SocketAddr,
    #[command(flatten)]
    pub metrics_security: crate::metrics_server::MetricsSecurityArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// Announce from this node even when it carries the label
    /// node.kubernetes.io/exclude-from-external-load-balancers (MetalLB's flag). Give every
    /// speaker the same: layer 2 elections must see the same candidates everywhere.
    #[arg(long)]
    pub ignore_exclude_lb: bool,
    /// FRR's `log` level: all, debug, info, warn, error, none (mapped as MetalLB maps them) or
    /// one of FRR's own (emergencies … debugging).
    #[arg(long, default_value = "info", value_parser = crate::bgp::frr::parse_log_level)]
    pub frr_log_level: String,
    /// How often the manifests are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rescan_ms: u64,
}

/// Runs until interrupted.
pub async fn run(args: SpeakerArgs) -> Result<(), String> {
    let tls = args.tls.policy()?;
    let client = match args.manifests.is_empty() {
        true => Some(crate::k8s::client(args.kubeconfig.as_deref()).await.map_err(|e| e.to_string())?),
        false => None,
    };
    let names = crate::metrics_server::names_for(args.metrics_bind);
    let mode = crate::metrics_server::mode(&args.metrics_security, &tls, client.as_ref(), names).await?;
    crate::metrics_server::start(Some(args.metrics_bind).filter(|b| b.port() != 0), mode);
    let backend = args.frr_agent_socket.as_ref().map(|socket| {
        frr_metrics::start(socket.clone(), frr_metrics::EVERY);
        let mut settings = BackendSettings::new(socket);
        settings.window = Duration::from_millis(args.coalesce_ms);
        BgpBackend::start(settings)
    });
    let responder = if args.layer2 {
        let mut settings = ResponderSettings {
            gratuitous_after: args.gratuitous_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
            refresh: Some(Duration::from_secs(args.layer2_refresh_seconds)),
            ..Default::default()
        };
        if let Some(patterns) = &args.exclude_interfaces {
            settings.excluded = interfaces::exclusions(patterns)?;
        }
        Some(Responder::start(settings).map_err(|e| format!("starting the layer 2 responder: {e}"))?)
    } else {
        None
    };
    let mut reports = backend.as_ref().map(BgpBackend::report);
    let listed = crate::health::Flag::new("listed", "objects not read yet");
    // Set once the first configuration goes to FRR: before that there is nothing to apply.
    let has_config = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(report) = backend.as_ref().map(BgpBackend::report) {
        let has = has_config.clone();
        crate::health::register("frr", move || {
            bgp_backend::readiness(&report.borrow(), has.load(std::sync::atomic::Ordering::Relaxed))
        });
    }
    let mut seen = None;
    let mut inputs = None;
    let mut replan = true;
    let mut view_changed: Option<std::time::Instant> = None;
    let mut answering = Announced::new();
    // What the last pass said it planned: said again at info only when it changes (a pass runs
    // on every watch event, so repeating it filled speaker logs with the same two lines).
    let mut said_l2 = None;
    let mut said_frr = None;
    // What the last valid configuration was: a bad object never takes announcements away.
    let mut last_good = None;
    // The bgpextras warnings last logged: said once, not on every pass.
    let mut said_about_extras = Vec::new();
    // The node's announcements per Service, and what changed since they were decided.
    let mut node_state = plan::incremental::NodeAnnouncements::default();
    let mut pending_dirty = plan::incremental::Dirty::everything();
    let (report_tx, report_rx) = tokio::sync::watch::channel(None);
    let mut speaker_events = None;
    // The announcements this node cannot make, judged against its interfaces and FRR.
    let mut failures = failures::Failures::default();
    let mut interfaces = responder.as_ref().map(Responder::interfaces);
    let cluster = if let Some(client) = client {
        let cache = ClusterCache::start(&client, &args.namespace, crate::k8s::cache::Role::Speaker);
        let pod = std::env::var("POD_NAME").ok().zip(std::env::var("POD_UID").ok());
        let reporter =
            crate::k8s::node_status::NodeReporter::new(client.clone(), &args.namespace, &args.node, pod);
        report::start(reporter, report_rx, backend.as_ref().map(BgpBackend::report));
        speaker_events = Some(events::SpeakerEvents::start(client.clone(), &args.node));
        tracing::info!("waiting for the first full listing of the cluster");
        cache.ready().await;
        // The listing's pages are parsed and gone; what the caches keep is a fraction of them.
        crate::memory::give_back();
        listed.set(Ok(()));
        tracing::info!("cluster listed; announcing");
        Some((client, cache))
    } else {
        None
    };
    let mut telling = telling::Telling::new(speaker_events);
    let source = match (&args.members, &args.members_file, &cluster) {
        (Some(members), _, _) => Some(peers::Source::Listed(members.clone())),
        (None, Some(file), _) => Some(peers::Source::File(file.clone())),
        // In a cluster the other speakers are the pods of the DaemonSet: found, not listed.
        (None, None, Some((client, _))) if args.layer2 && !args.speaker_selector.is_empty() => {
            Some(peers::Source::Pods {
                client: client.clone(),
                namespace: args.namespace.clone(),
                selector: args.speaker_selector.clone(),
            })
        }
        _ => None,
    };
    let mut peers = match source {
        Some(source) => Some(peers::start(source, &args.node, args.membership_bind.port()).await?),
        None => None,
    };
    // How many keys open membership traffic (None: no membership), for the ConfigurationState.
    let mut membership_keys_held = None;
    let membership = match &mut peers {
        Some(peers) => {
            let mut settings = MembershipSettings::new(&args.node, args.membership_bind);
            settings.seeds = peers.borrow_and_update().seeds.clone();
            if let Some(file) = &args.membership_secret_file {
                settings.keys = membership_keys(file)?;
            }
            if let Some(ms) = args.membership_probe_ms {
                settings.probe_period = Duration::from_millis(ms);
                settings.probe_rtt = Duration::from_millis(ms * 2 / 5);
                settings.suspect_to_down = Duration::from_millis(ms * 4 / 3);
                settings.ring_period = Duration::from_millis(ms * 2 / 3);
            }
            tracing::info!(seeds = ?settings.seeds, fence = args.fence, keys = settings.keys.len(), "joining the speakers' membership");
            membership_keys_held = Some(settings.keys.len());
            Some(Membership::start(settings).await.map_err(|e| e.to_string())?)
        }
        None => None,
    };
    // The last fencing decision, logged and exported when it changes; the speakers membership
    // ever saw alive; when a starting speaker will count without having joined.
    let mut fencing = None;
    let mut seen_alive = std::collections::BTreeSet::new();
    // This process's start, for the membership's join window (its pod's start may be older).
    let speaker_started = SystemTime::now();
    let mut recount_at: Option<SystemTime> = None;
    // When a node's Ready settle time ends (topology::readiness): decide again then.
    let mut ready_recheck_at: Option<k8s_openapi::jiff::Timestamp> = None;
    let mut said_unfit = std::collections::BTreeMap::new();
    let mut view = membership.as_ref().map(Membership::view);
    let cluster = cluster.map(|(_, cache)| cache);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    loop {
        match &cluster {
            Some(cache) if replan => {
                // Only the Services that changed, when nothing else did (plan::incremental).
                let dirty = cache.take_dirty();
                pending_dirty.merge(dirty);
                inputs = Some(if pending_dirty.everything {
                    announced_by_controller(cache.inputs())
                } else {
                    announced_by_controller(cache.inputs_for(&pending_dirty.services))
                });
            }
            Some(_) => {}
            None => {
                let now = crate::manifests::stamp(&args.manifests);
                if seen.as_ref() != Some(&now) {
                    seen = Some(now);
                    match crate::manifests::read(&args.manifests, args.recursive, &args.namespace) {
                        Err(e) => {
                            tracing::error!(error = %e, "reading manifests; keeping the last configuration")
                        }
                        Ok(i) => {
                            inputs = Some(i);
                            listed.set(Ok(()));
                            replan = true;
                        }
                    }
                }
            }
        }
        if replan && let Some(inputs) = &inputs {
            replan = false;
            let current = view.as_ref().map(|v| v.borrow().clone());
            let live = match &current {
                Some(v) => Some(v.live.clone()),
                None => args.live_nodes.as_ref().map(|l| l.iter().cloned().collect()),
            };
            let settle = Duration::from_secs(args.layer2_ready_settle_seconds);
            let unfit = crate::topology::readiness::unfit(
                &inputs.objects.nodes,
                k8s_openapi::jiff::Timestamp::now(),
                settle,
            );
            ready_recheck_at = unfit.recheck_at;
            if unfit.nodes != said_unfit {
                tracing::info!(unfit = ?unfit.nodes, "layer 2: nodes that win an IP only where no other can");
                said_unfit = unfit.nodes.clone();
            }
            let options = Options {
                lb_class: args.lb_class.clone(),
                node: Some(args.node.clone()),
                show_secrets: true,
                live_nodes: live,
                layer2_unfit: unfit.nodes,
                ips_from_status: cluster.is_some(),
                ignore_exclude_lb: args.ignore_exclude_lb,
                frr_log_level: Some(args.frr_log_level.clone()),
            };
            let planning = std::time::Instant::now();
            // Decided in full after a partial snapshot: what it decided from, for the Events.
            let mut all = None;
            let partial = match &cluster {
                Some(_) if !pending_dirty.everything => {
                    node_state.decide_changed(inputs, &options, &pending_dirty.services)
                }
                _ => None,
            };
            // A pass over every Service leaves its working set freed, not returned.
            let whole = partial.is_none();
            let p = match partial {
                Some(p) => p,
                None if cluster.is_some() && !pending_dirty.everything => {
                    crate::metrics::METRICS.full_passes.inc();
                    // Something besides the Services changed: decide them all.
                    let every = all.insert(announced_by_controller(
                        cluster.as_ref().map(ClusterCache::inputs).unwrap_or_default(),
                    ));
                    node_state.decide_all(every, &options, last_good.as_ref())
                }
                None => {
                    crate::metrics::METRICS.full_passes.inc();
                    node_state.decide_all(inputs, &options, last_good.as_ref())
                }
            };
            let inputs = all.as_ref().unwrap_or(inputs);
            pending_dirty = plan::incremental::Dirty::default();
            crate::metrics::METRICS.plan_seconds.observe(planning.elapsed().as_secs_f64());
            let extras_warnings: Vec<String> = p
                .warnings
                .iter()
                .filter(|w| w.name == crate::bgp::extras::CONFIG_MAP && w.kind == "ConfigMap")
                .map(ToString::to_string)
                .collect();
            if extras_warnings != said_about_extras {
                for w in &extras_warnings {
                    tracing::warn!(warning = %w, "bgpextras");
                }
                said_about_extras = extras_warnings;
            }
            // MetalLB's speaker reports these too; its alert rules read them from every pod.
            crate::metrics::METRICS.config_loaded.set(i64::from(p.config.is_some()));
            crate::metrics::METRICS.config_stale.set(i64::from(!p.is_valid()));
            if p.is_valid() {
                last_good = p.config.clone();
            } else {
                tracing::error!(
                    errors = ?p.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    stale = p.stale,
                    "configuration invalid; announcing what the last valid one decided"
                );
            }
            // Decided: with the objects' configuration or the last good one.
            let decided = p.config.is_some();
            // Fenced: a speaker that cannot see a majority of the speakers that should exist
            // may be the one cut off, so it stops answering rather than risk answering beside
            // the new owner.
            let q = current.as_ref().zip(peers.as_ref()).map(|(v, peers)| {
                let peers = peers.borrow();
                // Speakers seen alive once count from then on; forgotten when no longer expected.
                seen_alive.extend(v.live.iter().cloned());
                seen_alive.retain(|n| peers.expected.contains_key(n));
                let known = quorum::Sightings {
                    expected: &peers.expected,
                    seen: &seen_alive,
                    live: &v.live,
                    other_format: &peers.other_format,
                    started: speaker_started,
                };
                let (q, next) = quorum::decide(&args.node, known, SystemTime::now(), args.fence);
                recount_at = next;
                q
            });
            if q != fencing {
                if let Some(q) = &q {
                    fencing_changed(q, fencing.as_ref());
                }
                fencing = q.clone();
            }
            let fenced = q.as_ref().is_some_and(quorum::Quorum::fenced);
            // Only what this speaker really does: BGP with an agent, layer 2 with a responder
            // that is not fenced.
            let (bgp_here, l2_here) = (backend.is_some(), responder.is_some() && !fenced);
            let done_here: Vec<&plan::PlannedAnnouncement> = p
                .announcements
                .iter()
                .flatten()
                .filter(|a| match a.protocol {
                    "bgp" => bgp_here,
                    "layer2" => l2_here,
                    _ => false,
                })
                .collect();
            if decided {
                let l2_mine = p.layer2.as_deref().filter(|_| l2_here).unwrap_or_default();
                let bgp_mine =
                    plan::node_status::desired_bgp(done_here.iter().copied()).into_keys().collect();
                let desired = p.frr_config.as_deref().map(bgp_backend::fingerprint);
                failures.planned(l2_mine, bgp_mine, desired);
                if let Some(found) = judge(&mut failures, interfaces.as_mut(), reports.as_mut()) {
                    telling.failures(&found, cluster.as_ref());
                }
                record_announced(&done_here, &args.node);
                // Only what really goes out is news: not a layer 2 Service no interface answers.
                let now: assigned::Announcing = done_here
                    .iter()
                    .map(|a| (a.service.clone(), a.protocol))
                    .filter(|(s, protocol)| *protocol != "layer2" || !failures.unanswered_service(s))
                    .collect();
                // A partial pass holds only the Services that changed; one can start being
                // announced for another reason (a takeover, fencing lifted).
                telling.decided(now, inputs, cluster.as_ref());
            }
            if cluster.is_some() {
                let bgp = plan::node_status::desired_bgp(done_here.iter().copied());
                let l2 = plan::node_status::desired_l2(done_here.iter().copied());
                let sessions = backend.as_ref().and(p.sessions.clone());
                report_tx.send_replace(Some(report::NodeReport {
                    bgp,
                    l2,
                    errors: p.error_summary(),
                    sessions,
                    fencing: q.as_ref().filter(|_| responder.is_some()).map(report::Fencing::from),
                    sealed: membership_keys_held.filter(|_| responder.is_some()).map(report::sealed),
                    failures: failures.current().to_vec(),
                    unanswered: failures.unanswered(),
                }));
            }
            if let (Some(r), true) = (&responder, decided) {
                let l2 = if fenced { Announced::new() } else { layer2_announcements(&p) };
                // A takeover: the membership changed and this node gained IPs because of it.
                if let Some(at) = view_changed.take()
                    && l2.keys().any(|ip| !answering.contains_key(ip))
                {
                    crate::metrics::METRICS.layer2_takeover_seconds.observe(at.elapsed().as_secs_f64());
                }
                let live = current.map(|v| v.live);
                let summary = Some((l2.len(), fenced, live.clone()));
                if summary != said_l2 {
                    tracing::info!(ips = l2.len(), fenced, ?live, "layer 2 announcements planned");
                    said_l2 = summary;
                } else {
                    tracing::debug!(ips = l2.len(), fenced, "layer 2 announcements planned, unchanged");
                }
                answering = l2.clone();
                r.set(l2);
            }
            match p.frr_config {
                Some(conf) => {
                    let n = p.announcements.as_ref().map_or(0, Vec::len);
                    // A fingerprint, not a copy: the configuration is ~30 bytes a Service.
                    let print = bgp_backend::fingerprint(&conf);
                    if said_frr != Some(print) {
                        tracing::info!(announcements = n, "desired FRR configuration planned");
                        said_frr = Some(print);
                    } else {
                        tracing::debug!(announcements = n, "desired FRR configuration planned, unchanged");
                    }
                    if let Some(b) = &backend {
                        b.set(conf, p.frr_extras.clone());
                        has_config.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                None => tracing::error!("no valid configuration yet; FRR keeps what it runs"),
            }
            if whole {
                crate::memory::give_back();
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => {
                // FRR's configuration is left alone: a speaker being replaced (a rollout) must
                // not withdraw what its successor announces, and with graceful restart the
                // peers keep the routes until the successor's FRR is back.
                tracing::info!("SIGTERM: leaving the layer 2 membership; FRR keeps its configuration");
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(args.rescan_ms)), if cluster.is_none() => {}
            _ = async { match &cluster { Some(c) => c.changed().await, None => std::future::pending().await } } => {
                replan = true;
            }
            v = async { match view.as_mut() { Some(v) => v.changed().await, None => std::future::pending().await } } => {
                if v.is_err() { return Err("membership stopped".into()); }
                if let Some(v) = view.as_mut() { v.borrow_and_update(); }
                view_changed = Some(std::time::Instant::now());
                replan = true;
            }
                        _ = async {
                match recount_at {
                    Some(at) => tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await,
                    None => std::future::pending().await,
                }
            } => {
                recount_at = None;
                replan = true;
            }
            _ = async {
                match ready_recheck_at {
                    Some(at) => tokio::time::sleep(at.duration_since(k8s_openapi::jiff::Timestamp::now()).try_into().unwrap_or_default()).await,
                    None => std::future::pending().await,
                }
            } => {
                ready_recheck_at = None;
                replan = true;
            }
            p = async { match peers.as_mut() { Some(p) => p.changed().await, None => std::future::pending().await } } => {
                if p.is_err() { return Err("the speaker list stopped".into()); }
                if let (Some(p), Some(m)) = (peers.as_mut(), &membership) {
                    let now = p.borrow_and_update().clone();
                    tracing::info!(expected = ?now.expected.keys().collect::<Vec<_>>(), "speakers that should exist changed");
                    m.set_seeds(now.seeds);
                }
                replan = true;
            }
            r = async { match reports.as_mut() { Some(r) => r.changed().await, None => std::future::pending().await } } => {
                if r.is_err() { return Err("BGP backend stopped".into()); }
                if let Some(reports) = reports.as_ref() {
                    let r = reports.borrow();
                    if !r.last_error.is_empty() {
                        tracing::warn!(error = %r.last_error, reachable = r.agent_reachable, "FRR not up to date");
                    }
                }
                rejudge(&mut failures, interfaces.as_mut(), reports.as_mut(), &mut telling, cluster.as_ref(), &report_tx);
            }
            i = async { match interfaces.as_mut() { Some(i) => i.changed().await, None => std::future::pending().await } } => {
                if i.is_err() { return Err("the layer 2 responder stopped".into()); }
                rejudge(&mut failures, interfaces.as_mut(), reports.as_mut(), &mut telling, cluster.as_ref(), &report_tx);
            }
        }
    }
    crate::health::terminating();
    // Stop answering first, then tell the others, so the next owner never overlaps with us.
    if let Some(r) = &responder {
        r.set(Announced::new());
    }
    if let Some(m) = membership {
        m.leave().await;
    }
    Ok(())
}

/// In a cluster the controller decides the IPs: only Services whose status carries them are
/// announced (with `ips_from_status`, exactly those IPs); the rest need not be planned.
/// The membership keys: `file` seals (and opens); files beside it named after it with a
/// suffix (`secretkey.next`, `secretkey.previous`: other keys of the same Secret) only open, so
/// speakers that already have a new key still hear those that do not.
fn membership_keys(file: &Path) -> Result<Vec<Vec<u8>>, String> {
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

fn announced_by_controller(mut inputs: crate::plan::Inputs) -> crate::plan::Inputs {
    inputs.services.retain(|s| !crate::plan::writeback::current_ips(s).is_empty());
    inputs
}

/// Says when the fencing decision changes: a log line, and the gauges.
fn fencing_changed(q: &quorum::Quorum, before: Option<&quorum::Quorum>) {
    let m = &crate::metrics::METRICS;
    // Joining is every start's first moment, not a fence worth a warning or the gauge.
    let fence = |q: &quorum::Quorum| q.fenced() && q.joining.is_empty();
    m.layer2_fenced.set(i64::from(fence(q)));
    m.layer2_expected_speakers.set(q.expected.len() as i64);
    m.layer2_live_speakers.set(q.live_expected.len() as i64);
    let (was, is) = (before.map(fence), fence(q));
    let text = q.describe();
    if is && was != Some(true) {
        tracing::warn!(fenced = true, expected = ?q.expected, live = ?q.live_expected, "layer 2 fencing: {text}");
    } else if !is && was == Some(true) {
        tracing::warn!(fenced = false, expected = ?q.expected, live = ?q.live_expected, "layer 2 fencing lifted: {text}");
    } else {
        tracing::info!(fenced = q.fenced(), expected = ?q.expected, live = ?q.live_expected, "layer 2 quorum: {text}");
    }
}

/// Judges the announcements against what the node's interfaces and FRR now do (marking both
/// seen); `Some` when the failures changed.
fn judge(
    failures: &mut failures::Failures,
    interfaces: Option<&mut tokio::sync::watch::Receiver<Option<crate::l2::reach::Interfaces>>>,
    frr: Option<&mut tokio::sync::watch::Receiver<bgp_backend::BackendReport>>,
) -> Option<failures::Found> {
    let interfaces = interfaces.and_then(|i| i.borrow_and_update().clone());
    let frr = frr.map(|r| r.borrow_and_update().clone());
    failures.judge(interfaces.as_ref(), frr.as_ref())
}

/// [`judge`] between decisions (an interface came or went, FRR took or refused a
/// configuration): what changed goes into the node's report and is told.
fn rejudge(
    failures: &mut failures::Failures,
    interfaces: Option<&mut tokio::sync::watch::Receiver<Option<crate::l2::reach::Interfaces>>>,
    frr: Option<&mut tokio::sync::watch::Receiver<bgp_backend::BackendReport>>,
    telling: &mut telling::Telling,
    cluster: Option<&ClusterCache>,
    report: &tokio::sync::watch::Sender<Option<report::NodeReport>>,
) {
    let Some(found) = judge(failures, interfaces, frr) else { return };
    report.send_if_modified(|r| match r {
        Some(r) => {
            r.failures = found.all.clone();
            r.unanswered = failures.unanswered();
            true
        }
        None => false,
    });
    telling.failures(&found, cluster);
}

/// `metallb_speaker_announced`: one series per IP this node really announces.
fn record_announced(done_here: &[&plan::PlannedAnnouncement], node: &str) {
    let m = &crate::metrics::METRICS.announced;
    m.clear();
    for a in done_here {
        let labels = crate::metrics::AnnouncedLabels {
            ip: a.ip.clone(),
            node: node.to_string(),
            protocol: a.protocol.to_string(),
            service: a.service.clone(),
        };
        m.get_or_create(&labels).set(1);
    }
}

/// The layer 2 part of a node's plan, as the responder wants it.
fn layer2_announcements(p: &plan::Plan) -> Announced {
    p.layer2.iter().flatten().map(|a| (a.ip, a.interfaces.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::SpeakerArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        speaker: SpeakerArgs,
    }

    fn parse(args: &[&str]) -> Result<SpeakerArgs, clap::Error> {
        Command::try_parse_from(["speaker", "--node", "node1"].iter().chain(args)).map(|c| c.speaker)
    }

    #[test]
    fn the_key_file_seals_and_its_suffixed_siblings_only_open() {
        let dir = std::env::temp_dir().join(format!("ferrolb-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, key) in
            [("secretkey", "now"), ("secretkey.next", "next"), ("other", "x"), ("secretkey.empty", "")]
        {
            std::fs::write(dir.join(name), key).unwrap();
        }
        let keys = super::membership_keys(&dir.join("secretkey"));
        std::fs::write(dir.join("secretkey"), "").unwrap();
        let empty = super::membership_keys(&dir.join("secretkey"));
        let missing = super::membership_keys(&dir.join("nothing"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(keys.unwrap(), [b"now".to_vec(), b"next".to_vec()]);
        assert!(empty.unwrap_err().contains("is empty"));
        assert!(missing.unwrap_err().contains("nothing"));
    }

    #[test]
    fn fencing_is_on_unless_turned_off_as_the_chart_spells_it() {
        assert!(parse(&[]).unwrap().fence);
        assert!(parse(&["--fence=true"]).unwrap().fence);
        assert!(!parse(&["--fence=false"]).unwrap().fence);
        assert!(parse(&["--fence=maybe"]).is_err());
    }

    #[test]
    fn frr_log_levels_are_checked_before_they_reach_frr() {
        assert_eq!(parse(&[]).unwrap().frr_log_level, "info");
        assert_eq!(parse(&["--frr-log-level", "warnings"]).unwrap().frr_log_level, "warnings");
        let e = parse(&["--frr-log-level", "loud"]).err().unwrap().to_string();
        assert!(e.contains("\"loud\" is not a log level") && e.contains("debugging"), "{e}");
    }

    #[test]
    fn a_members_list_and_a_members_file_exclude_each_other() {
        let both = parse(&["--members", "node1=192.0.2.11:7946", "--members-file", "/m"]);
        assert!(both.is_err());
        assert!(parse(&["--members-file", "/m"]).unwrap().members_file.is_some());
    }
}
