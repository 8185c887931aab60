//! The controller's I/O: gathers what happens (the cache, the lease, timers, writes coming
//! back, signals) as [`Input`]s for [`Controller::step`] and performs the [`Effect`]s it
//! returns through the kube glue. It decides nothing itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::runtime::events::EventType;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::background::{self, Conditions, Events, Gate, Waiting};
use super::effect::{ConditionWrite, Effect, Input, Log, Metric, Publish, Report, ServiceWrite, Signal};
use super::state::{Cluster, Controller};
use super::{WRITERS, writes};
use crate::allocator::EventType as PlanEventType;
use crate::k8s::cache::{ClusterCache, Reports};
use crate::k8s::config_state::ConfigStateReport;
use crate::k8s::lease::LeaseLock;
use crate::metrics::{METRICS, PoolLabels};
use crate::plan::Inputs;
use crate::plan::kube_proxy::Finding;
use crate::service::ServiceKey;

impl Cluster for Arc<ClusterCache> {
    fn inputs(&self) -> Inputs {
        ClusterCache::inputs(self)
    }

    fn inputs_for(&self, services: &std::collections::BTreeSet<ServiceKey>) -> Inputs {
        ClusterCache::inputs_for(self, services)
    }

    fn reports(&self, services: Option<&std::collections::BTreeSet<ServiceKey>>) -> Reports {
        match services {
            Some(s) => self.reports_for(s),
            None => ClusterCache::reports(self),
        }
    }

    fn speaker_states(&self) -> Vec<Arc<crate::api::ConfigurationState>> {
        ClusterCache::speaker_states(self)
    }
}

/// What the driver starts with.
pub struct Setup {
    pub client: Client,
    pub namespace: String,
    pub identity: String,
    pub memberlist_secret: String,
    pub cache: Arc<ClusterCache>,
    /// None: no election, this replica leads from the start.
    pub lock: Option<LeaseLock>,
    pub webhook: Option<JoinHandle<Result<(), String>>>,
}

/// Where what the controller observes comes from, and what its effects go through.
struct Driver {
    setup: Setup,
    recorder: Events,
    conditions: Conditions,
    /// Held while IPs are written: Events and conditions wait for them (see background).
    gate: Gate,
    config_state: Arc<tokio::sync::Mutex<ConfigStateReport>>,
    leadership: Option<(mpsc::Receiver<Input>, JoinHandle<()>)>,
    /// Read on standbys too (as the cache is kept warm): a standby that takes over decides its
    /// first pass knowing kube-proxy, rather than dropping the `kubeProxyStrictARP` condition
    /// on it and putting it back a pass later (a flap and a write each failover).
    kube_proxy: watch::Receiver<Option<Finding>>,
    listed: bool,
    /// The writes of the running pass, each answering with an input.
    in_flight: Option<BoxStream<'static, Input>>,
    /// Set once the role ends: a write of the pass that has not begun is not sent (see
    /// [`Driver::release`]).
    stopping: Arc<AtomicBool>,
}

/// How long writes already sent may take to come back once the role ends, before they are
/// dropped and the lease released (see [`Driver::release`]).
const WRITES_GRACE: Duration = Duration::from_secs(1);

pub async fn run(setup: Setup, mut controller: Controller<Arc<ClusterCache>>) -> Result<(), String> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    let mut driver = Driver::new(setup);
    if driver.leadership.is_none() {
        let now = std::time::Instant::now();
        if let Some(done) = driver.perform(controller.step(Input::Elected, now), Duration::ZERO).await {
            return done;
        }
    }
    loop {
        let input = tokio::select! {
            input = driver.observe(controller.deadline()) => input?,
            _ = tokio::signal::ctrl_c() => Input::Signal(Signal::Interrupt),
            _ = terminate.recv() => Input::Signal(Signal::Terminate),
        };
        let now = std::time::Instant::now();
        let effects = controller.step(input, now);
        if let Some(done) = driver.perform(effects, now.elapsed()).await {
            return done;
        }
    }
}

impl Driver {
    fn new(setup: Setup) -> Driver {
        let client = setup.client.clone();
        let reporter = kube::runtime::events::Reporter {
            controller: "ferrolb-controller".into(),
            instance: Some(setup.identity.clone()),
        };
        let gate = Gate::new();
        let recorder =
            Events::start(crate::k8s::events::EventWriter::new(client.clone(), reporter), gate.clone());
        let conditions = Conditions::start(client.clone(), gate.clone());
        let config_state = ConfigStateReport::new(
            client,
            &setup.namespace,
            "controller",
            &[("metallb.io/component-type", "controller")],
            None,
            "poolReconcilerValid",
        );
        let leadership = setup.lock.clone().map(|lock| {
            tracing::info!(identity = %setup.identity, "waiting to become the leader");
            writes::leadership(lock)
        });
        let kube_proxy = crate::k8s::kube_proxy::watch(setup.client.clone());
        Driver {
            setup,
            recorder,
            conditions,
            gate,
            config_state: Arc::new(tokio::sync::Mutex::new(config_state)),
            leadership,
            kube_proxy,
            listed: false,
            in_flight: None,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next thing that happened; an error when the webhook stopped.
    async fn observe(&mut self, deadline: Option<std::time::Instant>) -> Result<Input, String> {
        let Driver { setup, leadership, kube_proxy, listed, in_flight, .. } = self;
        let cache = setup.cache.clone();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cache.changed() => Ok(Input::Changed(cache.take_dirty())),
            _ = cache.ready(), if !*listed => {
                *listed = true;
                Ok(Input::Listed)
            }
            Some(input) = next_of(in_flight) => Ok(input),
            // The task ends without a word only when it panicked or stopped: the controller
            // is told so, rather than the branch going quiet while a leader writes on with
            // nothing renewing its lease.
            said = async { match leadership.as_mut() {
                Some((rx, _)) => rx.recv().await,
                None => std::future::pending().await,
            } } => Ok(said.unwrap_or(Input::LeadershipEnded)),
            Ok(()) = kube_proxy.changed() => Ok(Input::KubeProxy(kube_proxy.borrow_and_update().clone())),
            _ = sleep => Ok(Input::Tick),
            served = async { match setup.webhook.as_mut() {
                Some(w) => w.await,
                None => std::future::pending().await,
            } } => Err(match served {
                Ok(Err(e)) => e,
                _ => "the webhook stopped".into(),
            }),
        }
    }

    /// Performs `effects` in order; the role's result once one ends it. `took`: how long the
    /// step that gave them ran.
    async fn perform(&mut self, effects: Vec<Effect>, took: Duration) -> Option<Result<(), String>> {
        for effect in effects {
            match effect {
                Effect::WriteServices(batch) => self.in_flight = Some(self.write_services(batch)),
                Effect::Report(report) => self.in_flight = Some(self.report(report)),
                Effect::Publish(p) => self.recorder.send(waiting(p)),
                Effect::SetCondition(key, c) => self.conditions.set(key, pending(c)),
                Effect::CancelCondition(key) => self.conditions.cancel(&key),
                Effect::Metric(m) => record(m, took),
                Effect::Log(l) => self.log(l),
                Effect::Lead => self.lead(),
                Effect::GiveBackMemory => crate::memory::give_back(),
                Effect::Terminating => crate::health::terminating(),
                Effect::ReleaseLease => self.release().await,
                Effect::Exit(result) => return Some(result),
            }
        }
        None
    }

    /// Writes go out concurrently: a thousand new Services are a thousand API calls.
    fn write_services(&self, batch: Vec<ServiceWrite>) -> BoxStream<'static, Input> {
        let held = self.gate.hold();
        let client = self.setup.client.clone();
        let stopping = self.stopping.clone();
        let written = futures::stream::iter(batch)
            .map(move |w| {
                let (client, stopping) = (client.clone(), stopping.clone());
                async move {
                    let result = unless_stopping(&stopping, writes::service(&client, &w.service, &w.change));
                    let error = match result.await {
                        Some(Ok(())) => None,
                        Some(Err(e)) => Some(e.to_string()),
                        None => Some("not written: the role is ending".into()),
                    };
                    Input::Written { change: w.change, error }
                }
            })
            .buffer_unordered(WRITERS);
        let done = futures::stream::once(async move {
            drop(held);
            Input::WritesDone
        });
        written.chain(done).boxed()
    }

    fn report(&self, report: Report) -> BoxStream<'static, Input> {
        let (client, ns) = (self.setup.client.clone(), self.setup.namespace.clone());
        let config_state = self.config_state.clone();
        let stopping = self.stopping.clone();
        futures::stream::once(async move {
            let written = async {
                writes::pool_counts(&client, &ns, &report.pools).await;
                if let Err(e) = config_state.lock().await.sync(report.errors, report.extra).await {
                    tracing::warn!(error = %e, "writing the ConfigurationState");
                }
            };
            unless_stopping(&stopping, written).await;
            Input::Reported
        })
        .boxed()
    }

    fn lead(&mut self) {
        let (client, ns) = (&self.setup.client, &self.setup.namespace);
        writes::keep_memberlist_key(client, ns, &self.setup.memberlist_secret);
    }

    /// Ends the role's writes, then gives the lease up.
    ///
    /// A signal may come mid-pass, with Service writes in flight. Released first, the lease
    /// would let a standby lead while they land, and one cut off may be half done (its status
    /// written, its annotation not). So, first: nothing new starts (writes of the pass not yet
    /// begun are not sent; Events and conditions waiting behind the gate stay there), the
    /// writes already sent get [`WRITES_GRACE`] to come back, whole, and whatever has not by
    /// then is dropped. Only then does the lease go: the standby takes over at most that much
    /// later, and decides again from what it sees. What is dropped is a request the API
    /// server has not answered in a second; that it lands later cannot be ruled out from
    /// here, only made as unlikely as a second's wait makes it.
    async fn release(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.gate.close();
        if let Some(writes) = self.in_flight.take()
            && !finish_or_drop(writes, WRITES_GRACE).await
        {
            tracing::warn!(grace = ?WRITES_GRACE, "writes in flight did not come back in time; dropped");
        }
        // No renewal may land after the release.
        if let Some((_, task)) = &self.leadership {
            task.abort();
        }
        if let Some(lock) = &self.setup.lock {
            lock.release().await;
        }
    }

    fn log(&self, log: Log) {
        match log {
            Log::Leading => tracing::info!(identity = %self.setup.identity, "leading"),
            Log::Listing => tracing::info!("waiting for the first full listing of the cluster"),
            Log::Listed => tracing::info!("cluster listed; allocating"),
            Log::Invalid { error, stale: true } => tracing::error!(
                %error,
                "configuration invalid; deciding with the last valid one, no IP held changes"
            ),
            Log::Invalid { error, stale: false } => tracing::error!(
                %error,
                "configuration invalid and none was valid before; nothing changes until it is fixed"
            ),
            Log::Written(change) => tracing::info!(?change, "written"),
            Log::WriteFailed(error) => tracing::warn!(%error, "write failed; retried in a second"),
            Log::Terminating => {
                tracing::info!("SIGTERM: releasing the lease so a standby takes over at once")
            }
        }
    }
}

/// `write`, unless the role began ending before it was begun (then it is never sent).
async fn unless_stopping<T>(stopping: &AtomicBool, write: impl Future<Output = T>) -> Option<T> {
    if stopping.load(Ordering::Acquire) {
        return None;
    }
    Some(write.await)
}

/// Lets `writes` run to their end for up to `grace`, then drops what is left; whether they
/// ended in time.
async fn finish_or_drop(writes: BoxStream<'static, Input>, grace: Duration) -> bool {
    tokio::time::timeout(grace, writes.for_each(|_| async {})).await.is_ok()
}

/// The next item of the stream in flight, if any; the stream is dropped once it ends.
async fn next_of(in_flight: &mut Option<BoxStream<'static, Input>>) -> Option<Input> {
    let stream = in_flight.as_mut()?;
    let next = stream.next().await;
    if next.is_none() {
        *in_flight = None;
    }
    next
}

fn waiting(p: Publish) -> Waiting {
    let type_ = match p.type_ {
        PlanEventType::Normal => EventType::Normal,
        PlanEventType::Warning => EventType::Warning,
    };
    Waiting { about: p.about, type_, reason: p.reason, note: p.note }
}

fn pending(c: ConditionWrite) -> background::Pending {
    background::Pending {
        ns: c.ns,
        name: c.name,
        want: c.want,
        since: c.since.unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
        generation: c.generation,
    }
}

fn record(metric: Metric, took: Duration) {
    match metric {
        Metric::FullPass => {
            METRICS.full_passes.inc();
        }
        Metric::Configuration { loaded, stale } => {
            METRICS.config_loaded.set(i64::from(loaded));
            METRICS.config_stale.set(i64::from(stale));
        }
        Metric::Pool(pool, s) => {
            let l = PoolLabels { pool };
            let v4 = s.assigned_ipv4.saturating_add(s.available_ipv4);
            let v6 = s.assigned_ipv6.saturating_add(s.available_ipv6);
            METRICS.ipv4_addresses_total.get_or_create(&l).set(v4);
            METRICS.ipv6_addresses_total.get_or_create(&l).set(v6);
            METRICS.addresses_total.get_or_create(&l).set(v4.saturating_add(v6));
            METRICS.ipv4_addresses_in_use_total.get_or_create(&l).set(s.assigned_ipv4);
            METRICS.ipv6_addresses_in_use_total.get_or_create(&l).set(s.assigned_ipv6);
            METRICS
                .addresses_in_use_total
                .get_or_create(&l)
                .set(s.assigned_ipv4.saturating_add(s.assigned_ipv6));
        }
        Metric::Decided => METRICS.plan_seconds.observe(took.as_secs_f64()),
        Metric::Updated => {
            METRICS.k8s_updates.inc();
        }
        Metric::UpdateFailed => {
            METRICS.k8s_update_errors.inc();
        }
        Metric::Allocated(d) => METRICS.allocation_seconds.observe(d.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use futures::StreamExt;

    use super::{Input, finish_or_drop, unless_stopping};

    #[tokio::test]
    async fn a_write_not_begun_when_the_role_ends_is_never_sent() {
        let (stopping, sent) = (AtomicBool::new(false), AtomicBool::new(false));
        let write = || async { sent.store(true, Ordering::SeqCst) };
        assert_eq!(unless_stopping(&stopping, write()).await, Some(()));
        assert!(sent.swap(false, Ordering::SeqCst));
        stopping.store(true, Ordering::SeqCst);
        assert_eq!(unless_stopping(&stopping, write()).await, None);
        assert!(!sent.load(Ordering::SeqCst), "not sent");
    }

    #[tokio::test]
    async fn writes_in_flight_get_a_grace_then_are_dropped() {
        let quick = futures::stream::iter([Input::WritesDone]).then(|i| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            i
        });
        assert!(finish_or_drop(quick.boxed(), Duration::from_secs(5)).await, "came back in time");
        let stuck = futures::stream::pending::<Input>().boxed();
        let t = std::time::Instant::now();
        assert!(!finish_or_drop(stuck, Duration::from_millis(50)).await, "dropped");
        assert!(t.elapsed() < Duration::from_secs(5), "bounded: {:?}", t.elapsed());
    }
}
