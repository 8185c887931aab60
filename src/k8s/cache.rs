//! The objects the roles decide from, reflected from the API server and kept current; every
//! change wakes whoever waits on [`ClusterCache::changed`].

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
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

pub struct ClusterCache {
    pub namespace: String,
    services: Store<Service>,
    endpoint_slices: Option<Store<EndpointSlice>>,
    pools: Store<api::IPAddressPool>,
    l2_advertisements: Store<api::L2Advertisement>,
    bgp_advertisements: Store<api::BGPAdvertisement>,
    peers: Store<api::BGPPeer>,
    bfd_profiles: Store<api::BFDProfile>,
    communities: Store<api::Community>,
    secrets: Store<Secret>,
    namespaces: Store<Namespace>,
    nodes: Store<Node>,
    l2_statuses: Option<Store<api::ServiceL2Status>>,
    bgp_statuses: Option<Store<api::ServiceBGPStatus>>,
    /// The speaker's `bgpextras` ConfigMap (that name only).
    bgp_extras: Option<Store<ConfigMap>>,
    changed: Arc<Notify>,
    listed: tokio::sync::watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Keeps a store of `api`'s objects, each trimmed by `trim` before it is stored, notifying
/// `changed` on every event.
fn reflect<K>(
    api: Api<K>,
    changed: &Arc<Notify>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Lookup + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    <K as Resource>::DynamicType: Default + Eq + Hash + Clone,
{
    reflect_with(api, watcher::Config::default(), changed, tasks, trim)
}

fn reflect_with<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Lookup + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    <K as Resource>::DynamicType: Default + Eq + Hash + Clone,
{
    let (store, writer) = reflector::store();
    let changed = changed.clone();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff().modify(trim));
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(kind = %<K as Resource>::kind(&Default::default()), error = %e, "watch failed; retrying");
            }
            changed.notify_one();
        }
    }));
    store
}

fn owned<K>(store: &Store<K>) -> Vec<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

impl ClusterCache {
    /// Starts watching. `with_reports` adds the speakers' ServiceL2Status and ServiceBGPStatus
    /// (the controller turns them into Service conditions), `with_bgp_extras` the ConfigMap
    /// `bgpextras` (the speaker's raw FRR additions; no other ConfigMap is ever read).
    pub fn start(
        client: &Client,
        namespace: &str,
        with_reports: bool,
        with_bgp_extras: bool,
    ) -> ClusterCache {
        let changed = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        let ns = |c: &Client| c.clone();
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        let mut cache = ClusterCache {
            namespace: namespace.to_string(),
            services: reflect(Api::all(ns(client)), &changed, &mut tasks, trim::service),
            endpoint_slices: Some(reflect(Api::all(ns(client)), &changed, &mut tasks, trim::endpoint_slice)),
            pools: reflect(Api::namespaced(ns(client), namespace), &changed, &mut tasks, trim::meta),
            l2_advertisements: reflect(
                Api::namespaced(ns(client), namespace),
                &changed,
                &mut tasks,
                trim::meta,
            ),
            bgp_advertisements: reflect(
                Api::namespaced(ns(client), namespace),
                &changed,
                &mut tasks,
                trim::meta,
            ),
            peers: reflect(Api::namespaced(ns(client), namespace), &changed, &mut tasks, trim::meta),
            bfd_profiles: reflect(Api::namespaced(ns(client), namespace), &changed, &mut tasks, trim::meta),
            communities: reflect(Api::namespaced(ns(client), namespace), &changed, &mut tasks, trim::meta),
            secrets: reflect(Api::namespaced(ns(client), namespace), &changed, &mut tasks, trim::meta),
            namespaces: reflect(Api::all(ns(client)), &changed, &mut tasks, trim::meta),
            nodes: reflect(Api::all(ns(client)), &changed, &mut tasks, trim::node),
            l2_statuses: with_reports
                .then(|| reflect(Api::namespaced(ns(client), namespace), &changed, &mut tasks, trim::meta)),
            bgp_statuses: with_reports
                .then(|| reflect(Api::namespaced(ns(client), namespace), &changed, &mut tasks, trim::meta)),
            bgp_extras: with_bgp_extras.then(|| {
                let only = format!("metadata.name={}", crate::bgp::extras::CONFIG_MAP);
                let config = watcher::Config::default().fields(&only);
                reflect_with(Api::namespaced(ns(client), namespace), config, &changed, &mut tasks, trim::meta)
            }),
            changed,
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
        if let Some(e) = &self.endpoint_slices {
            all.push(wait(e));
        }
        if let Some(e) = &self.l2_statuses {
            all.push(wait(e));
        }
        if let Some(e) = &self.bgp_statuses {
            all.push(wait(e));
        }
        if let Some(e) = &self.bgp_extras {
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

    /// The speakers' reports: (ServiceL2Status, ServiceBGPStatus); empty without `with_reports`.
    pub fn reports(&self) -> (Vec<api::ServiceL2Status>, Vec<api::ServiceBGPStatus>) {
        (
            self.l2_statuses.as_ref().map(owned).unwrap_or_default(),
            self.bgp_statuses.as_ref().map(owned).unwrap_or_default(),
        )
    }

    /// A snapshot in the shape `plan` takes.
    pub fn inputs(&self) -> Inputs {
        Inputs {
            objects: self.objects(),
            services: owned(&self.services),
            endpoint_slices: self.endpoint_slices.as_ref().map(owned).unwrap_or_default(),
            bgp_extras: self.bgp_extras.as_ref().and_then(|s| {
                let name = crate::bgp::extras::CONFIG_MAP;
                s.state()
                    .iter()
                    .find(|c| c.metadata.name.as_deref() == Some(name))
                    .and_then(|c| c.data.as_ref().and_then(|d| d.get(crate::bgp::extras::KEY)).cloned())
            }),
            ..Default::default()
        }
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
