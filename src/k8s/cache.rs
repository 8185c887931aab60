//! The objects the roles decide from, reflected from the API server and kept current; every
//! change wakes whoever waits on [`ClusterCache::changed`].

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::{K8sError, trim};
use crate::api;
use crate::config::ClusterObjects;
use crate::plan::Inputs;
use crate::plan::incremental::Dirty;
use crate::service::ServiceKey;
use crate::topology::SliceEndpoints;

use super::changes::{self, Marks, Tracker};

/// Keeps a store of `api`'s objects, each trimmed by `trim` before it is stored, notifying
/// `changed` on every event and saying in `dirty` what the event changed.
fn reflect<K>(
    api: Api<K>,
    shared: &Shared,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    trim: fn(&mut K),
    marks: Marks,
) -> (Store<K>, Arc<Mutex<Tracker>>)
where
    K: Resource + Lookup + Clone + DeserializeOwned + serde::Serialize + Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    <K as Resource>::DynamicType: Default + Eq + Hash + Clone,
{
    reflect_with(api, watcher::Config::default(), shared, tasks, trim, marks)
}

/// [`reflect`] with a watch of its own (a field selector).
fn reflect_with<K>(
    api: Api<K>,
    config: watcher::Config,
    shared: &Shared,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    trim: fn(&mut K),
    marks: Marks,
) -> (Store<K>, Arc<Mutex<Tracker>>)
where
    K: Resource + Lookup + Clone + DeserializeOwned + serde::Serialize + Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    <K as Resource>::DynamicType: Default + Eq + Hash + Clone,
{
    keep(watcher(api, config).default_backoff().modify(trim), shared, tasks, marks)
}

/// A store of what `project` reads of each of `api`'s objects instead of the objects.
fn reflect_projected<K, P>(
    api: Api<K>,
    shared: &Shared,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    project: fn(&K) -> P,
    marks: Marks,
) -> (Store<P>, Arc<Mutex<Tracker>>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    <K as Resource>::DynamicType: Default,
    P: Lookup<DynamicType = ()> + Clone + serde::Serialize + Send + Sync + 'static,
{
    let events = watcher(api, watcher::Config::default()).default_backoff();
    keep(events.map_ok(move |e| projected(e, project)), shared, tasks, marks)
}

fn projected<K, P>(e: watcher::Event<K>, project: fn(&K) -> P) -> watcher::Event<P> {
    use watcher::Event::*;
    match e {
        Apply(o) => Apply(project(&o)),
        Delete(o) => Delete(project(&o)),
        Init => Init,
        InitApply(o) => InitApply(project(&o)),
        InitDone => InitDone,
    }
}

/// Reflects `events` into a new store from a task of its own.
fn keep<P>(
    events: impl futures::Stream<Item = Result<watcher::Event<P>, watcher::Error>> + Send + 'static,
    shared: &Shared,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    marks: Marks,
) -> (Store<P>, Arc<Mutex<Tracker>>)
where
    P: Lookup + Clone + serde::Serialize + Send + Sync + 'static,
    P::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let (changed, dirty) = (shared.changed.clone(), shared.dirty.clone());
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let track = tracker.clone();
    let stream = reflector::reflector(writer, events);
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Err(e) => {
                    tracing::warn!(kind = %P::kind(&Default::default()), error = %e, "watch failed; retrying");
                }
                Ok(event) => {
                    let mark = lock(&track).note(&event, marks);
                    lock(&dirty).merge(mark);
                }
            }
            changed.notify_one();
        }
    }));
    (store, tracker)
}

/// A poisoned lock still holds consistent bookkeeping (every update is one statement).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What every watch task of one cache shares.
struct Shared {
    changed: Arc<Notify>,
    dirty: Arc<Mutex<Dirty>>,
}

fn owned<K>(store: &Store<K>) -> Vec<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// Whose decisions a cache serves: each watches and keeps only what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Controller,
    Speaker,
}

/// The speakers' reports: (ServiceL2Status, ServiceBGPStatus).
pub type Reports = (Vec<Arc<api::ServiceL2Status>>, Vec<Arc<api::ServiceBGPStatus>>);

pub struct ClusterCache {
    pub namespace: String,
    services: Store<Service>,
    endpoint_slices: Option<(Store<SliceEndpoints>, Arc<Mutex<Tracker>>)>,
    pools: Store<api::IPAddressPool>,
    l2_advertisements: Store<api::L2Advertisement>,
    bgp_advertisements: Store<api::BGPAdvertisement>,
    peers: Store<api::BGPPeer>,
    bfd_profiles: Store<api::BFDProfile>,
    communities: Store<api::Community>,
    secrets: Store<Secret>,
    namespaces: Store<Namespace>,
    nodes: Store<Node>,
    l2_statuses: Option<(Store<api::ServiceL2Status>, Arc<Mutex<Tracker>>)>,
    bgp_statuses: Option<(Store<api::ServiceBGPStatus>, Arc<Mutex<Tracker>>)>,
    /// The speakers' ConfigurationStates, for the announcements they cannot make.
    speaker_states: Option<Store<api::ConfigurationState>>,
    /// The speaker's `bgpextras` ConfigMap (that name only).
    bgp_extras: Option<Store<ConfigMap>>,
    changed: Arc<Notify>,
    dirty: Arc<Mutex<Dirty>>,
    listed: tokio::sync::watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ClusterCache {
    /// Starts watching what `role` decides with: for the controller also the speakers'
    /// ServiceL2Status and ServiceBGPStatus (it turns them into Service conditions), for the
    /// speaker the ConfigMap `bgpextras` (raw FRR additions; no other ConfigMap is ever read).
    pub fn start(client: &Client, namespace: &str, role: Role) -> ClusterCache {
        let with_reports = role == Role::Controller;
        let with_bgp_extras = role == Role::Speaker;
        let shared =
            Shared { changed: Arc::new(Notify::new()), dirty: Arc::new(Mutex::new(Dirty::everything())) };
        let mut tasks = Vec::new();
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        let everything = Marks::Everything(changes::whole);
        macro_rules! config {
            ($trim:expr) => {
                config!($trim, everything)
            };
            ($trim:expr, $marks:expr) => {
                reflect(Api::namespaced(client.clone(), namespace), &shared, &mut tasks, $trim, $marks).0
            };
        }
        let about = |about, indexed| Marks::Service { about, indexed };
        // The speakers' reports, each about one Service, indexed by it.
        macro_rules! reports {
            ($trim:expr, $about:expr) => {
                with_reports.then(|| {
                    let api = Api::namespaced(client.clone(), namespace);
                    reflect(api, &shared, &mut tasks, $trim, about($about, true))
                })
            };
        }
        let mut cache = ClusterCache {
            namespace: namespace.to_string(),
            services: reflect(
                Api::all(client.clone()),
                &shared,
                &mut tasks,
                if with_reports { trim::service } else { trim::service_for_speaker },
                about(changes::service_itself, false),
            )
            .0,
            endpoint_slices: Some(reflect_projected::<EndpointSlice, _>(
                Api::all(client.clone()),
                &shared,
                &mut tasks,
                SliceEndpoints::of,
                about(changes::slice_service, true),
            )),
            pools: config!(trim::meta, Marks::Everything(changes::without_status)),
            l2_advertisements: config!(trim::meta),
            bgp_advertisements: config!(trim::meta),
            // With their status: the sessions in it are what Service conditions say.
            peers: config!(trim::meta),
            bfd_profiles: config!(trim::meta),
            communities: config!(trim::meta),
            secrets: config!(trim::meta),
            namespaces: reflect(Api::all(client.clone()), &shared, &mut tasks, trim::meta, everything).0,
            nodes: reflect(Api::all(client.clone()), &shared, &mut tasks, trim::node, everything).0,
            l2_statuses: reports!(trim::l2_report, changes::l2_report_service),
            bgp_statuses: reports!(trim::bgp_report, changes::bgp_report_service),
            speaker_states: with_reports.then(|| {
                let config = watcher::Config::default().labels("metallb.io/component-type=speaker");
                let api = Api::namespaced(client.clone(), namespace);
                let marks = Marks::Everything(changes::announce_failures);
                reflect_with(api, config, &shared, &mut tasks, trim::speaker_state, marks).0
            }),
            bgp_extras: with_bgp_extras.then(|| {
                let only = format!("metadata.name={}", crate::bgp::extras::CONFIG_MAP);
                let config = watcher::Config::default().fields(&only);
                let api = Api::namespaced(client.clone(), namespace);
                reflect_with(api, config, &shared, &mut tasks, trim::meta, everything).0
            }),
            changed: shared.changed,
            dirty: shared.dirty,
            listed,
            tasks,
        };
        // One waiter per store: a store's readiness wakes only the last task that polled it.
        let stores = cache.readiness();
        cache.tasks.push(tokio::spawn(async move {
            for ready in stores {
                ready.await;
            }
            let _ = listed_tx.send(true);
        }));
        cache
    }

    fn readiness(&self) -> Vec<futures::future::BoxFuture<'static, ()>> {
        fn wait<K>(s: &Store<K>) -> futures::future::BoxFuture<'static, ()>
        where
            K: Lookup + Clone + Send + Sync + 'static,
            K::DynamicType: Eq + Hash + Clone + Send + Sync,
        {
            let s = s.clone();
            Box::pin(async move {
                let _ = s.wait_until_ready().await;
            })
        }
        let mut all = vec![
            wait(&self.services),
            wait(&self.pools),
            wait(&self.l2_advertisements),
            wait(&self.bgp_advertisements),
            wait(&self.peers),
            wait(&self.bfd_profiles),
            wait(&self.communities),
            wait(&self.secrets),
            wait(&self.namespaces),
            wait(&self.nodes),
        ];
        if let Some((e, _)) = &self.endpoint_slices {
            all.push(wait(e));
        }
        if let Some((e, _)) = &self.l2_statuses {
            all.push(wait(e));
        }
        if let Some((e, _)) = &self.bgp_statuses {
            all.push(wait(e));
        }
        if let Some(e) = &self.bgp_extras {
            all.push(wait(e));
        }
        if let Some(e) = &self.speaker_states {
            all.push(wait(e));
        }
        all
    }

    /// Waits until every watch has listed its objects once: deciding before that could take a
    /// half-listed cluster for the real one and move IPs.
    pub async fn ready(&self) {
        let mut listed = self.listed.clone();
        let _ = listed.wait_for(|l| *l).await;
    }

    /// Whether [`ClusterCache::ready`] has returned, without waiting.
    pub fn is_ready(&self) -> bool {
        *self.listed.borrow()
    }

    /// Wakes after the next change to any watched object.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The configuration objects and what they refer to, without Services.
    pub fn objects(&self) -> ClusterObjects {
        ClusterObjects {
            namespace: self.namespace.clone(),
            pools: owned(&self.pools),
            l2_advertisements: owned(&self.l2_advertisements),
            bgp_advertisements: owned(&self.bgp_advertisements),
            peers: owned(&self.peers),
            bfd_profiles: owned(&self.bfd_profiles),
            communities: owned(&self.communities),
            secrets: owned(&self.secrets),
            namespaces: owned(&self.namespaces),
            nodes: owned(&self.nodes),
        }
    }

    /// The speakers' ConfigurationStates, trimmed to the announcements they cannot make;
    /// empty for the speaker.
    pub fn speaker_states(&self) -> Vec<Arc<api::ConfigurationState>> {
        self.speaker_states.as_ref().map(Store::state).unwrap_or_default()
    }

    /// The speakers' reports (shared with the cache, not copied); empty for the speaker.
    pub fn reports(&self) -> Reports {
        (
            self.l2_statuses.as_ref().map(|(s, _)| s.state()).unwrap_or_default(),
            self.bgp_statuses.as_ref().map(|(s, _)| s.state()).unwrap_or_default(),
        )
    }

    /// The speakers' reports about `services` alone.
    pub fn reports_for(&self, services: &BTreeSet<ServiceKey>) -> Reports {
        (
            self.l2_statuses.as_ref().map(|s| about(s, services)).unwrap_or_default(),
            self.bgp_statuses.as_ref().map(|s| about(s, services)).unwrap_or_default(),
        )
    }

    /// A snapshot in the shape `plan` takes (shared with the cache, not copied).
    pub fn inputs(&self) -> Inputs {
        Inputs {
            objects: self.objects(),
            services: self.services.state(),
            endpoint_slices: self.endpoint_slices.as_ref().map(|(s, _)| s.state()).unwrap_or_default(),
            bgp_extras: self.bgp_extras(),
            ..Default::default()
        }
    }

    fn bgp_extras(&self) -> Option<String> {
        let name = crate::bgp::extras::CONFIG_MAP;
        self.bgp_extras.as_ref().and_then(|s| {
            s.state()
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(name))
                .and_then(|c| c.data.as_ref().and_then(|d| d.get(crate::bgp::extras::KEY)).cloned())
        })
    }

    /// [`ClusterCache::inputs`] with only `services` (those that exist) and their slices.
    pub fn inputs_for(&self, services: &BTreeSet<ServiceKey>) -> Inputs {
        let found = services.iter().filter_map(|key| {
            let (ns, name) = key.split_once('/')?;
            self.services.get(&reflector::ObjectRef::new(name).within(ns))
        });
        Inputs {
            objects: self.objects(),
            services: found.collect(),
            endpoint_slices: self.endpoint_slices.as_ref().map(|s| about(s, services)).unwrap_or_default(),
            bgp_extras: self.bgp_extras(),
            ..Default::default()
        }
    }

    /// Has the next [`ClusterCache::take_dirty`] name `services` again, without waking anyone.
    pub fn mark_dirty(&self, services: BTreeSet<ServiceKey>) {
        lock(&self.dirty).services.extend(services);
    }

    /// What changed since the last call (everything, the first time).
    pub fn take_dirty(&self) -> Dirty {
        std::mem::take(&mut *lock(&self.dirty))
    }
}

/// The objects of an indexed store that are about `services`.
fn about<K>(
    (store, tracker): &(Store<K>, Arc<Mutex<Tracker>>),
    services: &BTreeSet<ServiceKey>,
) -> Vec<Arc<K>>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    let t = lock(tracker);
    services
        .iter()
        .filter_map(|s| t.by_service.get(s))
        .flatten()
        .filter_map(|(ns, name)| {
            let r = reflector::ObjectRef::new(name);
            store.get(&if ns.is_empty() { r } else { r.within(ns) })
        })
        .collect()
}

/// The cache keeps slices as [`SliceEndpoints`], in kube's reflector stores like the objects.
impl Lookup for SliceEndpoints {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        <EndpointSlice as Resource>::kind(&())
    }

    fn group(_: &()) -> Cow<'_, str> {
        <EndpointSlice as Resource>::group(&())
    }

    fn version(_: &()) -> Cow<'_, str> {
        <EndpointSlice as Resource>::version(&())
    }

    fn plural(_: &()) -> Cow<'_, str> {
        <EndpointSlice as Resource>::plural(&())
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.namespace))
    }

    // Neither is read; without them the store's key holds only the name.
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

impl Drop for ClusterCache {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// The configuration kinds read straight from the API server, the rest from `cache`: admission
/// must see an object created a moment ago (`kubectl apply -f dir/` sends them back to back),
/// and a watch that is relisting after a CRD change can lag by a second.
pub async fn live_objects(client: &Client, cache: &ClusterCache) -> Result<ClusterObjects, K8sError> {
    async fn list<K>(client: &Client, ns: &str) -> Result<Vec<K>, K8sError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let what = format!("{} in {ns}", K::kind(&Default::default()));
        api.list(&Default::default()).await.map(|l| l.items).map_err(super::api_error("listing", what))
    }
    let ns = cache.namespace.as_str();
    let (pools, l2_advertisements, bgp_advertisements, peers, bfd_profiles, communities) = futures::try_join!(
        list(client, ns),
        list(client, ns),
        list(client, ns),
        list(client, ns),
        list(client, ns),
        list(client, ns)
    )?;
    Ok(ClusterObjects {
        pools,
        l2_advertisements,
        bgp_advertisements,
        peers,
        bfd_profiles,
        communities,
        ..cache.objects()
    })
}
