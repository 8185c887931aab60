//! The controller role: gives LoadBalancer Services their IPs and writes the result back.
//!
//! observe (a cache of the cluster, complete before the first decision, so a restart never
//! moves an IP) -> decide (`plan`, the same pure function `ferrolb plan` runs, then
//! `writeback::changes`) -> act (status, annotation, Events).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{EventType, Reporter};
use kube::{Api, Client};
use serde_json::json;

mod background;
mod status;

use background::{About, Events, Waiting};

use crate::allocator::EventType as PlanEventType;
use crate::k8s::lease::LeaseLock;
use crate::k8s::{self, K8sError, cache::ClusterCache};
use crate::metrics::METRICS;
use crate::plan::writeback::{self, Change, POOL_ANNOTATION, key};
use crate::plan::{self, Options};

#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// kubeconfig to use (default: in-cluster, then KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace holding the configuration kinds.
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = "metallb-system")]
    pub namespace: String,
    /// The loadBalancerClass to serve; without it, Services without a class. Two installs of
    /// different classes must not share a pool that both assign from: each counts only its own
    /// Services, so both would hand out the same address (as with MetalLB).
    #[arg(long)]
    pub lb_class: Option<String>,
    /// Wait this many milliseconds after a change before deciding, to decide a burst together.
    /// 0 (the default): at once. Bursts batch anyway, as what arrives while a pass writes is
    /// decided by the next, and a pass costs what changed; a wait only delays a new Service
    /// (20 ms added 12-13 ms to churn p50 beside a bare client's, at 1,000 and 10,000 Services).
    #[arg(long, default_value_t = 0)]
    pub settle_ms: u64,
    /// Take part in leader election (a Lease named ferrolb-controller), so replicas are safe.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a leader's lease lasts without renewal, in seconds.
    #[arg(long, default_value_t = 6)]
    pub lease_seconds: u64,
    /// This replica's name in the lease (default: POD_NAME, then HOSTNAME). A restarted
    /// container keeps its pod's name and so takes its own lease back at once.
    #[arg(long)]
    pub identity: Option<String>,
    #[command(flatten)]
    pub webhook: crate::webhook::WebhookArgs,
    /// Where Prometheus scrapes `/metrics` (plain HTTP unless --metrics-secure); port 0 turns it off. `[::]` listens
    /// on both families; brackets work around IPv4 addresses too.
    #[arg(long, default_value = "[::]:7472", value_parser = crate::bind::parse_socket_addr)]
    pub metrics_bind: std::net::SocketAddr,
    #[command(flatten)]
    pub metrics_security: crate::metrics_server::MetricsSecurityArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// The Secret (in the namespace) holding the speakers' membership key: made with a fresh
    /// key whenever it is missing (at start and every minute, so deleting it rotates the key).
    /// Empty: none is made.
    #[arg(long, default_value = "")]
    pub memberlist_secret: String,
}

/// Makes the membership key's Secret whenever it is missing, while this replica runs.
fn keep_memberlist_key(client: &Client, ns: &str, name: &str) {
    if name.is_empty() {
        return;
    }
    let (client, ns, name) = (client.clone(), ns.to_string(), name.to_string());
    tokio::spawn(async move {
        loop {
            let again = match k8s::memberlist_key::ensure(&client, &ns, &name).await {
                Ok(made) => {
                    if made {
                        tracing::info!(secret = %name, "made the speakers' membership key");
                    }
                    Duration::from_secs(60)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "making the speakers' membership key; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::time::sleep(again).await;
        }
    });
}

/// How often pool counts are written at most.
const POOL_COUNTS_EVERY: Duration = Duration::from_secs(1);

/// API writes in flight at once.
pub(crate) const WRITERS: usize = 16;

pub async fn run(args: ControllerArgs) -> Result<(), String> {
    let tls = args.tls.policy()?;
    let client = k8s::client(args.kubeconfig.as_deref()).await.map_err(|e| e.to_string())?;
    let names = crate::metrics_server::names_for(args.metrics_bind);
    let mode = crate::metrics_server::mode(&args.metrics_security, &tls, Some(&client), names).await?;
    crate::metrics_server::start(Some(args.metrics_bind).filter(|b| b.port() != 0), mode);
    // A standby keeps its cache warm, so taking over costs only the lease.
    let cache = Arc::new(ClusterCache::start(&client, &args.namespace, crate::k8s::cache::Role::Controller));
    // Ready (leader or standby alike: both serve the webhook) once the cluster is listed and
    // the webhook answers.
    let listed = cache.clone();
    crate::health::register("listed", move || {
        if listed.is_ready() { Ok(()) } else { Err("still listing the cluster".into()) }
    });
    let mut webhook = (args.webhook.webhook_port != 0).then(|| start_webhook(&client, &args, tls, &cache));
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "ferrolb".into())
    });
    let lock = args.leader_elect.then(|| {
        LeaseLock::new(
            client.clone(),
            &args.namespace,
            "ferrolb-controller",
            &identity,
            Duration::from_secs(args.lease_seconds),
        )
    });
    let mut lost = match &lock {
        Some(lock) => {
            tracing::info!(%identity, "waiting to become the leader");
            loop {
                match lock.try_hold().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "leader election"),
                }
                tokio::time::sleep(lock.duration / 6).await;
            }
            tracing::info!(%identity, "leading");
            Some(keep_leading(lock.clone()))
        }
        None => None,
    };
    keep_memberlist_key(&client, &args.namespace, &args.memberlist_secret);
    tracing::info!("waiting for the first full listing of the cluster");
    cache.ready().await;
    // The listing's pages are parsed and gone; what the cache keeps is a fraction of them.
    crate::memory::give_back();
    tracing::info!("cluster listed; allocating");
    let reporter = Reporter { controller: "ferrolb-controller".into(), instance: Some(identity.clone()) };
    // Held while IPs are written: Events and conditions wait for them (see background).
    let gate = background::Gate::new();
    let recorder = Events::start(k8s::events::EventWriter::new(client.clone(), reporter), gate.clone());
    let conditions = background::Conditions::start(client.clone(), gate.clone());
    let mut warned: HashMap<String, String> = HashMap::new();
    let mut kube_proxy = k8s::kube_proxy::watch(client.clone());
    // The unsafe finding last warned about: warned again when it changes or comes back.
    let mut kube_proxy_said = plan::invalid_objects::Said::<()>::default();
    let mut config_state = crate::k8s::config_state::ConfigStateReport::new(
        client.clone(),
        &args.namespace,
        "controller",
        &[("metallb.io/component-type", "controller")],
        None,
        "poolReconcilerValid",
    );
    let options = Options { lb_class: args.lb_class.clone(), ..Default::default() };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    let mut woke = tokio::time::Instant::now();
    // The last configuration that was valid: while objects make it invalid, new Services are
    // still served from it and nothing held changes (see writeback::changes).
    let mut last_good = None;
    let mut config_warnings = plan::invalid_objects::Warned::default();
    let mut outside_warned = plan::invalid_objects::Said::<String>::default();
    // The allocator of the last decision: a pass after a few Services changed decides those
    // alone (plan::incremental); anything else changing decides everything again.
    let mut allocations = plan::incremental::Allocations::default();
    let mut pools_written: Option<tokio::time::Instant> = None;
    loop {
        let dirty = cache.take_dirty();
        let deciding = std::time::Instant::now();
        let partial = (!dirty.everything)
            .then(|| {
                let changed = cache.inputs_for(&dirty.services);
                let decided = allocations.decide_changed(&changed, &options, &dirty.services)?;
                // Services that waited for an address may have been decided too: the
                // write-back needs their objects, fetched only when there are such.
                let waited: std::collections::BTreeSet<String> =
                    decided.decided_services().into_iter().filter(|k| !dirty.services.contains(k)).collect();
                let inputs = if waited.is_empty() {
                    changed
                } else {
                    cache.inputs_for(&waited.into_iter().chain(dirty.services.iter().cloned()).collect())
                };
                Some((inputs, decided))
            })
            .flatten();
        let whole = partial.is_none();
        let (inputs, decided) = match partial {
            Some(p) => p,
            None => {
                METRICS.full_passes.inc();
                let inputs = cache.inputs();
                let decided = allocations.decide_all(&inputs, &options, last_good.as_ref());
                (inputs, decided)
            }
        };
        if decided.is_valid() {
            last_good = decided.config.clone();
        }
        record_plan(&decided);
        let by_key: HashMap<String, &Arc<Service>> = inputs.services.iter().map(|s| (key(s), s)).collect();
        for e in &decided.errors {
            if decided.stale {
                tracing::error!(error = %e, "configuration invalid; deciding with the last valid one, no IP held changes");
            } else {
                tracing::error!(error = %e, "configuration invalid and none was valid before; nothing changes until it is fixed");
            }
        }
        for w in config_warnings.update(&inputs.objects, &decided.errors) {
            publish_to(
                &recorder,
                About::Object(w.object),
                PlanEventType::Warning,
                "InvalidConfiguration",
                w.message,
            );
        }
        let changes = writeback::changes(&inputs.services, &decided);
        METRICS.plan_seconds.observe(deciding.elapsed().as_secs_f64());
        // Writes go out concurrently: a thousand new Services are a thousand API calls.
        let held = gate.hold();
        let written: Vec<(String, bool)> = futures::stream::iter(changes)
            .map(|change| {
                let (client, recorder, by_key, decided) = (&client, &recorder, &by_key, &decided);
                async move {
                    let service = match &change {
                        Change::Assign { service, .. } | Change::Clear { service, .. } => service.clone(),
                    };
                    let svc = *by_key.get(&service)?;
                    match write(client, svc, &change).await {
                        Ok(()) => {
                            METRICS.k8s_updates.inc();
                            if matches!(change, Change::Assign { .. }) {
                                METRICS.allocation_seconds.observe(woke.elapsed().as_secs_f64());
                            }
                            tracing::info!(?change, "written");
                            for ev in decided.events.get(&service).into_iter().flatten() {
                                publish(recorder, svc, ev);
                            }
                            Some((service, true))
                        }
                        Err(e) => {
                            METRICS.k8s_update_errors.inc();
                            tracing::warn!(error = %e, "write failed; retried in a second");
                            Some((service, false))
                        }
                    }
                }
            })
            .buffer_unordered(WRITERS)
            .filter_map(|done| async move { done })
            .collect()
            .await;
        drop(held);
        let mut failed = std::collections::BTreeSet::new();
        for (service, ok) in written {
            if ok {
                warned.remove(&service);
            } else {
                failed.insert(service);
            }
        }
        // Decided again on the retry: a partial pass would otherwise wait for their next change.
        let mut retry = (!failed.is_empty()).then(|| tokio::time::Instant::now() + Duration::from_secs(1));
        cache.mark_dirty(failed);
        let decided_keys: std::collections::BTreeSet<String> =
            inputs.services.iter().map(|s| key(s)).collect();
        let (l2, bgp) = if whole { cache.reports() } else { cache.reports_for(&decided_keys) };
        let wanted = plan::condition::conditions(&decided, &inputs, &l2, &bgp, &cache.speaker_states());
        // Said once per Service and message: the condition carries it from then on.
        let outside = wanted.iter().filter(|(_, c)| c.reason == plan::condition::OUTSIDE_POOLS);
        let outside = outside.map(|(s, c)| (s.clone(), c.message.clone()));
        let said = if whole {
            outside_warned.update(outside)
        } else {
            outside_warned.update_within(&decided_keys, outside)
        };
        for (service, message) in said {
            if let Some(svc) = by_key.get(&service) {
                publish_to(
                    &recorder,
                    About::Service(Arc::clone(svc)),
                    PlanEventType::Warning,
                    plan::condition::OUTSIDE_POOLS,
                    message,
                );
            }
        }
        status::queue_conditions(&conditions, &by_key, &wanted);
        // Pool counts move with every allocation: written at most once a second, so churn does
        // not queue a pool write behind every Service (they are for people and dashboards).
        let now = tokio::time::Instant::now();
        match pools_written {
            Some(at) if now < at + POOL_COUNTS_EVERY => {
                let next = at + POOL_COUNTS_EVERY;
                retry = Some(retry.map_or(next, |r| r.min(next)));
            }
            _ => {
                status::write_pool_counts(&client, &args.namespace, &inputs, &decided).await;
                pools_written = Some(now);
            }
        }
        let kube_proxy_condition = kube_proxy_check(&kube_proxy, &mut kube_proxy_said, &inputs, &recorder);
        if let Err(e) =
            config_state.sync(decided.error_summary(), kube_proxy_condition.into_iter().collect()).await
        {
            tracing::warn!(error = %e, "writing the ConfigurationState");
        }
        // Pending Services with nothing to clear get their warning once per reason.
        for p in &decided.pending {
            if warned.get(&p.service) == Some(&p.reason) {
                continue;
            }
            if let Some(svc) = by_key.get(&p.service) {
                for ev in decided.events.get(&p.service).into_iter().flatten() {
                    publish(&recorder, svc, ev);
                }
                warned.insert(p.service.clone(), p.reason.clone());
            }
        }
        // A pass over every Service leaves its working set freed, not returned.
        if whole {
            crate::memory::give_back();
        }
        tokio::select! {
            _ = cache.changed() => {}
            // kube-proxy's configuration changed: its condition is written on this pass.
            Ok(()) = kube_proxy.changed() => {}
            _ = async { match retry { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: releasing the lease so a standby takes over at once");
                break;
            }
            served = async { match webhook.as_mut() { Some(w) => w.await, None => std::future::pending().await } } => {
                return Err(match served {
                    Ok(Err(e)) => e,
                    _ => "the webhook stopped".into(),
                });
            }
            _ = async { match lost.as_mut() { Some(l) => { let _ = l.await; } None => std::future::pending().await } } => {
                // Someone else may be allocating already: stop at once; the Deployment restarts us.
                return Err("lost the leader lease".into());
            }
        }
        woke = tokio::time::Instant::now();
        if args.settle_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
        }
    }
    crate::health::terminating();
    if let Some(lock) = &lock {
        lock.release().await;
    }
    Ok(())
}

/// Whether kube-proxy leaves ARP to ferrolb, once layer 2 is in use: the ConfigurationState's
/// `kubeProxyStrictARP` condition, and a Warning on each L2Advertisement when it does not.
fn kube_proxy_check(
    kube_proxy: &tokio::sync::watch::Receiver<Option<plan::kube_proxy::Finding>>,
    said: &mut plan::invalid_objects::Said<()>,
    inputs: &plan::Inputs,
    recorder: &Events,
) -> Option<k8s::config_state::ExtraCondition> {
    let layer2 = &inputs.objects.l2_advertisements;
    let finding = kube_proxy.borrow().clone().filter(|_| !layer2.is_empty());
    let unsafe_now = finding.as_ref().filter(|f| !f.safe);
    for ((), message) in said.update(unsafe_now.map(|f| ((), f.message.clone()))) {
        for ad in layer2 {
            let about = About::Object(kube::Resource::object_ref(ad, &()));
            let reason = plan::kube_proxy::IPVS_WITHOUT_STRICT_ARP;
            publish_to(recorder, about, PlanEventType::Warning, reason, message.clone());
        }
    }
    finding.map(|f| k8s::config_state::ExtraCondition {
        type_: "kubeProxyStrictARP",
        status: f.safe,
        reason: f.reason,
        message: f.message,
    })
}

/// Pool usage and configuration health, as MetalLB's gauges report them.
fn record_plan(decided: &plan::Plan) {
    use crate::metrics::PoolLabels;
    // Loaded: some configuration decides (maybe the last good one); stale: it is not the
    // objects' own, or there is none.
    METRICS.config_loaded.set(i64::from(decided.config.is_some()));
    METRICS.config_stale.set(i64::from(!decided.is_valid()));
    for u in &decided.pools {
        let l = PoolLabels { pool: u.pool.clone() };
        let s = status::pool_status(&u.stats);
        let v4 = s.assigned_ipv4.saturating_add(s.available_ipv4);
        let v6 = s.assigned_ipv6.saturating_add(s.available_ipv6);
        METRICS.ipv4_addresses_total.get_or_create(&l).set(v4);
        METRICS.ipv6_addresses_total.get_or_create(&l).set(v6);
        METRICS.addresses_total.get_or_create(&l).set(v4.saturating_add(v6));
        METRICS.ipv4_addresses_in_use_total.get_or_create(&l).set(s.assigned_ipv4);
        METRICS.ipv6_addresses_in_use_total.get_or_create(&l).set(s.assigned_ipv6);
        METRICS.addresses_in_use_total.get_or_create(&l).set(s.assigned_ipv4.saturating_add(s.assigned_ipv6));
    }
}

/// Serves admission and conversion from this replica's cache (standbys too: it only reads).
fn start_webhook(
    client: &Client,
    args: &ControllerArgs,
    tls: crate::tls::TlsPolicy,
    cache: &Arc<ClusterCache>,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let (reader, lister) = (cache.clone(), client.clone());
    let current: crate::webhook::Current = Arc::new(move || {
        let (cache, client) = (reader.clone(), lister.clone());
        Box::pin(async move {
            if !cache.is_ready() {
                return Err("still listing Nodes and Namespaces; retry in a moment".into());
            }
            crate::k8s::cache::live_objects(&client, &cache).await.map_err(|e| e.to_string())
        })
    });
    let (namespace, webhook) = (args.namespace.clone(), args.webhook.clone());
    tokio::spawn(crate::webhook::run(client.clone(), namespace, webhook, tls, current))
}

/// Renews the lease a few times per lease duration; resolves when it could not be renewed in
/// time (so another replica may hold it now).
fn keep_leading(lock: LeaseLock) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(lock.duration / 3).await;
            match lock.try_hold().await {
                Ok(true) => last = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("the leader lease was taken over");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the leader lease"),
            }
            // Stop before the lease can have run out on the server.
            if last.elapsed() > lock.duration * 2 / 3 {
                tracing::error!("could not renew the leader lease in time");
                return;
            }
        }
    })
}

async fn write(client: &Client, svc: &Service, change: &Change) -> Result<(), K8sError> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let (ingress, pool) = match change {
        Change::Assign { ips, pool, .. } => {
            (json!(ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()), json!(pool))
        }
        Change::Clear { .. } => (serde_json::Value::Null, serde_json::Value::Null),
    };
    let fail = |action: &'static str| k8s::api_error(action, format!("Service {ns}/{name}"));
    // One call for both: a Service's status update keeps everything but its spec (the API
    // server's Service status strategy), so the pool annotation rides along and a cold start
    // makes one write per Service, as a bare client would. Should an API server drop it, the
    // annotation is written on its own.
    let written = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {POOL_ANNOTATION: pool}},
                "status": {"loadBalancer": {"ingress": ingress}},
            })),
        )
        .await
        .map_err(fail("writing the status of"))?;
    let landed = written.metadata.annotations.as_ref().and_then(|a| a.get(POOL_ANNOTATION)).map(|p| json!(p));
    if landed.unwrap_or(serde_json::Value::Null) != pool {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {POOL_ANNOTATION: pool}}})),
        )
        .await
        .map_err(fail("annotating"))?;
    }
    Ok(())
}

fn publish(events: &Events, svc: &Arc<Service>, ev: &crate::allocator::Event) {
    publish_to(events, About::Service(Arc::clone(svc)), ev.type_, ev.reason, ev.message.clone());
}

fn publish_to(events: &Events, about: About, type_: PlanEventType, reason: &'static str, note: String) {
    let type_ = match type_ {
        PlanEventType::Normal => EventType::Normal,
        PlanEventType::Warning => EventType::Warning,
    };
    events.send(Waiting { about, type_, reason, note });
}
