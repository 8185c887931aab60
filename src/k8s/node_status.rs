//! A speaker's reports in the cluster: ServiceBGPStatus and ServiceL2Status for the Services
//! its node announces, its ConfigurationState, and its entry in each BGPPeer's session list.
//! What to write is decided by `plan::node_status`; this file only writes it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::config_state::ConfigStateReport;
use super::{K8sError, api_error};
use crate::api::{self, ServiceBGPStatus, ServiceL2Status};
use crate::plan::node_status::{self, SessionReport, StatusObject};
use crate::service::ServiceKey;

pub const NODE_LABEL: &str = "metallb.io/node";
pub const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
pub const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

pub struct NodeReporter {
    client: Client,
    ns: String,
    node: String,
    /// The speaker's pod, so its objects go when the pod goes.
    owner: Option<OwnerReference>,
    sessions: BTreeMap<String, (SessionReport, Time)>,
    config_state: ConfigStateReport,
}

/// What ServiceBGPStatus and ServiceL2Status have in common here.
trait NodeStatusKind:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
    const PREFIX: &'static str;
    fn identity(&self) -> Option<(String, ServiceKey)>;
    fn items(&self) -> Vec<String>;
    fn status(node: &str, service: &ServiceKey, items: &[String]) -> Value;
    fn empty(meta: kube::api::ObjectMeta) -> Self;
}

/// (node, "namespace/name") of a status object, when all three are written.
fn identity(
    node: &Option<String>,
    ns: &Option<String>,
    name: &Option<String>,
) -> Option<(String, ServiceKey)> {
    Some((node.clone()?, format!("{}/{}", ns.as_deref()?, name.as_deref()?)))
}

fn split(service: &ServiceKey) -> (&str, &str) {
    service.split_once('/').unwrap_or(("default", service.as_str()))
}

impl NodeStatusKind for ServiceBGPStatus {
    const PREFIX: &'static str = "bgp-";
    fn identity(&self) -> Option<(String, ServiceKey)> {
        let s = self.status.as_ref()?;
        identity(&s.node, &s.service_namespace, &s.service_name)
    }
    fn items(&self) -> Vec<String> {
        self.status.as_ref().map(|s| s.peers.clone()).unwrap_or_default()
    }
    fn status(node: &str, service: &ServiceKey, items: &[String]) -> Value {
        let (ns, name) = split(service);
        json!({"node": node, "serviceName": name, "serviceNamespace": ns, "peers": items})
    }
    fn empty(metadata: kube::api::ObjectMeta) -> Self {
        ServiceBGPStatus { metadata, spec: Default::default(), status: None }
    }
}

impl NodeStatusKind for ServiceL2Status {
    const PREFIX: &'static str = "l2-";
    fn identity(&self) -> Option<(String, ServiceKey)> {
        let s = self.status.as_ref()?;
        identity(&s.node, &s.service_namespace, &s.service_name)
    }
    fn items(&self) -> Vec<String> {
        self.status
            .as_ref()
            .map(|s| s.interfaces.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default()
    }
    fn status(node: &str, service: &ServiceKey, items: &[String]) -> Value {
        let (ns, name) = split(service);
        let interfaces: Vec<Value> = items.iter().map(|i| json!({"name": i})).collect();
        json!({"node": node, "serviceName": name, "serviceNamespace": ns, "interfaces": interfaces})
    }
    fn empty(metadata: kube::api::ObjectMeta) -> Self {
        ServiceL2Status { metadata, spec: Default::default(), status: None }
    }
}

impl NodeReporter {
    /// `pod` is (name, uid) of the speaker's pod, from the downward API, when it runs in one.
    pub fn new(client: Client, ns: &str, node: &str, pod: Option<(String, String)>) -> NodeReporter {
        let owner = pod.map(|(name, uid)| OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name,
            uid,
            ..Default::default()
        });
        let labels = [("metallb.io/component-type", "speaker"), ("metallb.io/node-name", node)];
        let config_state = ConfigStateReport::new(
            client.clone(),
            ns,
            &format!("speaker-{node}"),
            &labels,
            owner.clone(),
            "configReconcilerValid",
        );
        NodeReporter {
            client,
            ns: ns.into(),
            node: node.into(),
            owner,
            sessions: BTreeMap::new(),
            config_state,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Makes the Service status objects say what `bgp` and `l2` (from `plan::node_status`) say.
    pub async fn sync_services(
        &self,
        bgp: &BTreeMap<ServiceKey, Vec<String>>,
        l2: &BTreeMap<ServiceKey, Vec<String>>,
    ) -> Result<(), K8sError> {
        self.sync_kind::<ServiceBGPStatus>(bgp, false).await?;
        // Layer 2 has one owner per Service: the winner clears what a previous owner left behind.
        self.sync_kind::<ServiceL2Status>(l2, true).await
    }

    async fn sync_kind<K: NodeStatusKind>(
        &self,
        desired: &BTreeMap<ServiceKey, Vec<String>>,
        sole_owner: bool,
    ) -> Result<(), K8sError> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns);
        let kind = K::kind(&());
        let all = api
            .list(&ListParams::default())
            .await
            .map_err(api_error("listing", format!("{kind} in {}", self.ns)))?
            .items;
        let mut mine = Vec::new();
        for o in &all {
            match o.identity() {
                Some((node, service)) if node == self.node => {
                    mine.push(StatusObject { name: o.name_any(), service, items: o.items() })
                }
                Some((_, service)) if sole_owner && desired.contains_key(&service) => {
                    self.delete::<K>(&api, &o.name_any()).await?;
                }
                // Created by a speaker that died before writing the status: its own to finish.
                _ => {}
            }
        }
        let diff = node_status::diff(desired, &mine);
        for name in &diff.delete {
            self.delete::<K>(&api, name).await?;
        }
        for (name, service, items) in &diff.update {
            let status = json!({"status": K::status(&self.node, service, items)});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .map_err(api_error("updating", format!("{kind} {name}")))?;
        }
        for (service, items) in &diff.create {
            let (svc_ns, svc_name) = split(service);
            let labels = [
                (NODE_LABEL.to_string(), self.node.clone()),
                (SERVICE_NAME_LABEL.to_string(), svc_name.to_string()),
                (SERVICE_NAMESPACE_LABEL.to_string(), svc_ns.to_string()),
            ];
            let meta = kube::api::ObjectMeta {
                generate_name: Some(K::PREFIX.into()),
                namespace: Some(self.ns.clone()),
                labels: Some(labels.into_iter().collect()),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..Default::default()
            };
            // The status subresource ignores status on create: create, then write it.
            let created = api
                .create(&PostParams::default(), &K::empty(meta))
                .await
                .map_err(api_error("creating", format!("{kind} for {service}")))?;
            let name = created.name_any();
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": K::status(&self.node, service, items)})),
            )
            .await
            .map_err(api_error("writing the status of", format!("{kind} {name}")))?;
        }
        Ok(())
    }

    async fn delete<K: NodeStatusKind>(&self, api: &Api<K>, name: &str) -> Result<(), K8sError> {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error("deleting", format!("{} {name}", K::kind(&())))(e)),
        }
    }

    /// `speaker-<node>`: whether this node's speaker accepted the configuration (`errors` None).
    /// `fencing` adds the layer 2 fencing condition.
    pub async fn sync_config_state(
        &mut self,
        errors: Option<String>,
        extra: Vec<super::config_state::ExtraCondition>,
    ) -> Result<(), K8sError> {
        self.config_state.sync(errors, extra).await
    }

    /// The announcements this node cannot make, in its ConfigurationState.
    pub async fn sync_failures(&mut self, failures: &[crate::api::AnnounceFailure]) -> Result<(), K8sError> {
        self.config_state.sync_failures(failures).await
    }

    /// This node's entry in each BGPPeer's status; peers no longer reported lose the entry.
    pub async fn sync_sessions(&mut self, reports: Vec<SessionReport>) -> Result<(), K8sError> {
        let api: Api<api::BGPPeer> = Api::namespaced(self.client.clone(), &self.ns);
        let manager = format!("ferrolb-speaker-{}", self.node);
        let params = PatchParams::apply(&manager).force();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut next = BTreeMap::new();
        for r in reports {
            let since = match self.sessions.get(&r.peer) {
                Some((old, t)) if old.state == r.state => t.clone(),
                _ => now.clone(),
            };
            next.insert(r.peer.clone(), (r, since));
        }
        for (peer, (r, since)) in &next {
            if self.sessions.get(peer).map(|(old, _)| old) == Some(r) {
                continue;
            }
            let entry = api::bgppeer::v1beta2::PeerSession {
                node: self.node.clone(),
                state: r.state.clone(),
                established: r.established,
                reason: r.reason.clone(),
                bfd_status: r.bfd_status.clone(),
                last_transition_time: Some(since.clone()),
            };
            let body = json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": peer}, "status": {"sessions": [entry]}});
            apply_peer_status(&api, peer, &params, body).await?;
        }
        for peer in self.sessions.keys().filter(|p| !next.contains_key(*p)) {
            let body = json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": peer}, "status": {"sessions": []}});
            apply_peer_status(&api, peer, &params, body).await?;
        }
        self.sessions = next;
        Ok(())
    }
}

async fn apply_peer_status(
    api: &Api<api::BGPPeer>,
    peer: &str,
    params: &PatchParams,
    body: Value,
) -> Result<(), K8sError> {
    match api.patch_status(peer, params, &Patch::Apply(body)).await {
        Ok(_) => Ok(()),
        // The peer was deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_error("reporting sessions on", format!("BGPPeer {peer}"))(e)),
    }
}
