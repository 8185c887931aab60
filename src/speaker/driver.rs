//! The speaker's I/O: gathers what happens (the cluster or the manifests, membership, timers,
//! frr-agent, the interfaces, signals) into [`Input`]s for [`Speaker::steps`], and carries out
//! the [`Effect`]s it answers with.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use super::bgp_backend::{BackendReport, BgpBackend, fingerprint};
use super::effect::{Effect, Metric, Told};
use super::input::{Cluster, Input, Now, Observed, Settings};
use super::report::NodeReport;
use super::state::Speaker;
use super::{SpeakerArgs, events, peers, say, setup};
use crate::k8s::cache::ClusterCache;
use crate::l2::membership::{Membership, View};
use crate::l2::reach::Interfaces;
use crate::l2::responder::Responder;
use crate::plan::{self, incremental::Dirty};
use crate::service::ServiceKey;

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
    let backend = setup::backend(&args);
    let responder = setup::responder(&args)?;
    let listed = crate::health::Flag::new("listed", "objects not read yet");
    let has_config = setup::frr_health(backend.as_ref());
    let (report, report_rx) = watch::channel(None);
    let (cluster, events) = match &client {
        Some(client) => {
            let (cache, events) = setup::cluster(&args, client, report_rx, backend.as_ref(), &listed).await;
            (Some(Arc::new(cache)), Some(events))
        }
        None => (None, None),
    };
    let mut peers = setup::peers(&args, client.as_ref()).await?;
    let (membership, keys, joined) = match &mut peers {
        Some(peers) => {
            let (m, keys, joined) = setup::membership(&args, peers).await?;
            (Some(m), Some(keys), Some(joined))
        }
        None => (None, None, None),
    };
    let mut watching = Watching {
        cluster: cluster.clone(),
        manifests: client.is_none().then(|| Rescan { args: args.clone(), seen: None, listed }),
        watches: Watches {
            view: membership.as_ref().map(Membership::view),
            peers,
            frr: backend.as_ref().map(BgpBackend::report),
            interfaces: responder.as_ref().map(Responder::interfaces),
        },
        terminate: signal(SignalKind::terminate())
            .map_err(|e| format!("installing the SIGTERM handler: {e}"))?,
        owner: client.clone().zip(std::env::var("POD_NAME").ok()).map(|(client, pod)| Owner {
            client,
            namespace: args.namespace.clone(),
            pod,
        }),
    };
    let settings = settings(&args, backend.is_some(), responder.is_some(), keys);
    let cluster = cluster.map(|c| Box::new(c) as Box<dyn Cluster>);
    let mut speaker = Speaker::new(settings, cluster, watching.watches.observed(), now());
    let mut hands = Hands { backend, responder, membership, report, events, has_config };
    let mut inputs: Vec<Input> = watching.watches.since_joining(joined).into_iter().collect();
    inputs.push(watching.first());
    loop {
        let stop = inputs.iter().any(|i| matches!(i, Input::Terminate { .. }));
        if stop {
            crate::health::terminating();
        }
        for effect in speaker.steps(inputs, now()) {
            hands.carry_out(effect).await;
        }
        if stop {
            return Ok(());
        }
        inputs = watching.next(speaker.deadline()).await?;
    }
}

fn now() -> Now {
    Now { at: Instant::now(), wall: SystemTime::now() }
}

fn settings(args: &SpeakerArgs, bgp: bool, layer2: bool, membership_keys: Option<usize>) -> Settings {
    Settings {
        node: args.node.clone(),
        lb_class: args.lb_class.clone(),
        live_nodes: args.live_nodes.as_ref().map(|l| l.iter().cloned().collect()),
        fence: args.fence,
        ready_settle: Duration::from_secs(args.layer2_ready_settle_seconds),
        ignore_exclude_lb: args.ignore_exclude_lb,
        frr_log_level: args.frr_log_level.clone(),
        bgp,
        layer2,
        membership_keys,
        started: Some(SystemTime::now()),
        restart_hold: Duration::from_secs(args.layer2_restart_hold_seconds),
    }
}

impl Cluster for Arc<ClusterCache> {
    fn take_dirty(&self) -> Dirty {
        ClusterCache::take_dirty(self)
    }

    fn inputs(&self) -> plan::Inputs {
        ClusterCache::inputs(self)
    }

    fn inputs_for(&self, services: &BTreeSet<ServiceKey>) -> plan::Inputs {
        ClusterCache::inputs_for(self, services)
    }
}

/// The manifests, read again when a file changes.
struct Rescan {
    args: SpeakerArgs,
    seen: Option<Vec<(std::path::PathBuf, Option<SystemTime>, u64)>>,
    listed: crate::health::Flag,
}

impl Rescan {
    /// The objects, or why they could not be read, when a file changed since the last look.
    fn read(&mut self) -> Option<Result<plan::Inputs, String>> {
        let now = crate::manifests::stamp(&self.args.manifests);
        if self.seen.as_ref() == Some(&now) {
            return None;
        }
        self.seen = Some(now);
        let a = &self.args;
        let read = crate::manifests::read(&a.manifests, a.recursive, &a.namespace);
        if read.is_ok() {
            self.listed.set(Ok(()));
        }
        Some(read)
    }
}

/// Everything the speaker follows.
struct Watching {
    cluster: Option<Arc<ClusterCache>>,
    manifests: Option<Rescan>,
    watches: Watches,
    terminate: Signal,
    /// None offline.
    owner: Option<Owner>,
}

/// The watches whose values the decisions read: what membership sees, the speakers that
/// should exist, frr-agent's report, the interfaces.
struct Watches {
    view: Option<watch::Receiver<View>>,
    peers: Option<watch::Receiver<peers::Peers>>,
    frr: Option<watch::Receiver<BackendReport>>,
    interfaces: Option<watch::Receiver<Option<Interfaces>>>,
}

impl Watches {
    /// What each watch holds now, marked seen.
    fn observed(&mut self) -> Observed {
        let peers = self.peers.as_mut().map(|p| p.borrow_and_update().clone());
        Observed {
            view: self.view.as_mut().map(|v| v.borrow_and_update().clone()),
            expected: peers.as_ref().map(|p| p.expected.clone()),
            other_format: peers.as_ref().map(|p| p.other_format.clone()).unwrap_or_default(),
            replacing: peers.map(|p| p.replacing).unwrap_or_default(),
            interfaces: self.interfaces.as_mut().and_then(|i| i.borrow_and_update().clone()),
            frr: self.frr.as_mut().map(|r| r.borrow_and_update().clone()),
        }
    }

    /// The speaker list, when it is not the one membership was started with (`joined`): a
    /// speaker came or went while membership started, which is news like any later change (the
    /// seeds to set, the change to say).
    fn since_joining(&self, joined: Option<peers::Peers>) -> Option<Input> {
        let now = self.peers.as_ref()?.borrow().clone();
        (joined? != now).then_some(Input::Peers(now))
    }

    /// The changes not taken yet, each marked seen: a decision made without them would read
    /// values already replaced. A closed watch is left to [`changed`] to report.
    fn pending(&mut self) -> Vec<Input> {
        let mut inputs = Vec::new();
        if unseen(&self.view) {
            inputs.push(Input::View(latest(&mut self.view)));
        }
        if unseen(&self.peers) {
            inputs.push(Input::Peers(latest(&mut self.peers)));
        }
        if unseen(&self.frr) {
            inputs.push(Input::Frr(latest(&mut self.frr)));
        }
        if unseen(&self.interfaces) {
            inputs.push(Input::Interfaces(latest(&mut self.interfaces)));
        }
        inputs
    }
}

/// How long a speaker leaving for good waits for FRR to report every route withdrawn.
const WITHDRAW_LIMIT: Duration = Duration::from_secs(3);

/// The speaker's pod, to ask on SIGTERM whether its DaemonSet is going.
struct Owner {
    client: kube::Client,
    namespace: String,
    pod: String,
}

impl Owner {
    /// Whether this speaker leaves for good. When the API cannot say within a second, no: the
    /// routes then stay for graceful restart to keep, as in a rollout.
    async fn leaving(&self) -> bool {
        let asked = crate::k8s::owner::daemonset_leaving(&self.client, &self.namespace, &self.pod);
        match tokio::time::timeout(Duration::from_secs(1), asked).await {
            Ok(Ok(leaving)) => leaving,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot tell whether the speakers' DaemonSet is going; keeping the routes");
                false
            }
            Err(_) => {
                tracing::warn!(
                    "the API did not say within 1 s whether the speakers' DaemonSet is going; keeping the routes"
                );
                false
            }
        }
    }
}

impl Watching {
    /// The first input: the whole cluster, or the manifests as they are.
    fn first(&mut self) -> Input {
        match self.manifests.as_mut().and_then(Rescan::read) {
            Some(read) => Input::Manifests(read),
            None => Input::ClusterChanged,
        }
    }

    /// The next thing that happened, with whatever else changed meanwhile in the watches, so
    /// that the step decides once from the latest of everything. A terminate comes alone.
    async fn next(&mut self, deadline: Option<SystemTime>) -> Result<Vec<Input>, String> {
        let input = self.wait(deadline).await?;
        if matches!(input, Input::Terminate { .. }) {
            return Ok(vec![input]);
        }
        let mut inputs = vec![input];
        inputs.extend(self.watches.pending());
        Ok(inputs)
    }

    async fn wait(&mut self, deadline: Option<SystemTime>) -> Result<Input, String> {
        let Watching { cluster, manifests, watches, terminate, owner } = self;
        let Watches { view, peers, frr, interfaces } = watches;
        let rescan = Duration::from_millis(manifests.as_ref().map_or(0, |m| m.args.rescan_ms));
        // Looked at after every event too, as often as anything else happens.
        if let Some(read) = manifests.as_mut().and_then(Rescan::read) {
            return Ok(Input::Manifests(read));
        }
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(Input::Terminate { sigterm: false, leaving: false }),
                _ = terminate.recv() => {
                    let leaving = match owner { Some(o) => o.leaving().await, None => false };
                    return Ok(Input::Terminate { sigterm: true, leaving });
                }
                _ = tokio::time::sleep(rescan), if manifests.is_some() => {
                    if let Some(read) = manifests.as_mut().and_then(Rescan::read) {
                        return Ok(Input::Manifests(read));
                    }
                }
                _ = async { match cluster { Some(c) => c.changed().await, None => std::future::pending().await } } => {
                    return Ok(Input::ClusterChanged);
                }
                v = changed(view) => {
                    v.map_err(|_| "membership stopped")?;
                    return Ok(Input::View(latest(view)));
                }
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await,
                        None => std::future::pending().await,
                    }
                } => return Ok(Input::Timer),
                p = changed(peers) => {
                    p.map_err(|_| "the speaker list stopped")?;
                    return Ok(Input::Peers(latest(peers)));
                }
                r = changed(frr) => {
                    r.map_err(|_| "BGP backend stopped")?;
                    return Ok(Input::Frr(latest(frr)));
                }
                i = changed(interfaces) => {
                    i.map_err(|_| "the layer 2 responder stopped")?;
                    return Ok(Input::Interfaces(latest(interfaces)));
                }
            }
        }
    }
}

/// Waits for a change, forever when there is nothing to watch.
async fn changed<T>(watch: &mut Option<watch::Receiver<T>>) -> Result<(), watch::error::RecvError> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// A watch holds a value not marked seen yet.
fn unseen<T>(watch: &Option<watch::Receiver<T>>) -> bool {
    watch.as_ref().is_some_and(|w| w.has_changed().unwrap_or(false))
}

/// The value a watch that just changed holds, marked seen.
fn latest<T: Clone + Default>(watch: &mut Option<watch::Receiver<T>>) -> T {
    watch.as_mut().map(|w| w.borrow_and_update().clone()).unwrap_or_default()
}

/// What carries out the speaker's effects.
struct Hands {
    backend: Option<BgpBackend>,
    responder: Option<Responder>,
    membership: Option<Membership>,
    report: watch::Sender<Option<NodeReport>>,
    events: Option<events::SpeakerEvents>,
    has_config: Arc<AtomicBool>,
}

impl Hands {
    async fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Layer2(l2) => {
                if let Some(r) = &self.responder {
                    r.set(l2);
                }
            }
            Effect::Frr { config, extras, announcements } => {
                if let Some(b) = &self.backend {
                    // Said whether or not the backend already has it: a configuration that
                    // left here and never reached FRR is the backend's or frr-agent's doing.
                    let fingerprint = fingerprint(&config);
                    tracing::debug!(fingerprint, announcements, "FRR configuration handed to the backend");
                    b.set(config, extras);
                    self.has_config.store(true, Ordering::Relaxed);
                }
            }
            Effect::Report(r) => {
                self.report.send_replace(Some(r));
            }
            Effect::Failures { failures, unanswered } => {
                self.report.send_if_modified(|r| match r {
                    Some(r) => {
                        (r.failures, r.unanswered) = (failures, unanswered);
                        true
                    }
                    None => false,
                });
            }
            Effect::Event { service, told } => self.tell(service, told),
            Effect::Seeds(seeds) => {
                if let Some(m) = &self.membership {
                    m.set_seeds(seeds);
                }
            }
            Effect::Metric(m) => record(m),
            Effect::Log(l) => say::say(l),
            Effect::GiveBackMemory => crate::memory::give_back(),
            Effect::Withdraw => {
                if let Some(b) = &self.backend {
                    let done = b.withdraw(WITHDRAW_LIMIT).await;
                    tracing::info!(
                        done,
                        "routes withdrawn before stopping (FRR's containers wait for this speaker to exit)"
                    );
                }
            }
            Effect::Leave => {
                if let Some(m) = self.membership.take() {
                    m.leave().await;
                }
            }
        }
    }

    /// Queues an Event; one the queue has no room for is dropped, as the rate limit drops.
    fn tell(&self, service: k8s_openapi::api::core::v1::ObjectReference, told: Told) {
        let Some(events) = &self.events else { return };
        let key = format!(
            "{}/{}",
            service.namespace.as_deref().unwrap_or_default(),
            service.name.as_deref().unwrap_or_default()
        );
        match told {
            Told::Assigned(protocol) => {
                if !events.assigned(service, protocol) {
                    tracing::debug!(service = %key, protocol, "nodeAssigned event not sent (rate limit)");
                }
            }
            Told::Failed(f) => {
                if !events.announce_failed(service, &f) {
                    tracing::debug!(service = %key, "announceFailed event not sent (rate limit)");
                }
            }
        }
    }
}

fn record(metric: Metric) {
    let m = &crate::metrics::METRICS;
    match metric {
        Metric::Takeover { since } => m.layer2_takeover_seconds.observe(since.elapsed().as_secs_f64()),
        Metric::Planning(took) => m.plan_seconds.observe(took.as_secs_f64()),
        Metric::FullPass => {
            m.full_passes.inc();
        }
        Metric::Config { loaded, stale } => {
            m.config_loaded.set(i64::from(loaded));
            m.config_stale.set(i64::from(stale));
        }
        Metric::Fencing { fenced, expected, live } => {
            m.layer2_fenced.set(i64::from(fenced));
            m.layer2_expected_speakers.set(expected as i64);
            m.layer2_live_speakers.set(live as i64);
        }
        Metric::Announced(series) => {
            m.announced.clear();
            for labels in &series {
                m.announced.get_or_create(labels).set(1);
            }
        }
    }
}

#[cfg(test)]
mod tests;
