//! Where things are: which nodes may announce, and which nodes serve each Service.
//!
//! Pure views over Node and EndpointSlice objects, shared by the BGP and L2 announcement plans.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::config::Labels;
use crate::service::ServiceKey;

/// Nodes carrying this label never announce (unless the speaker ignores it).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    /// Why the node may not announce anything, if it may not.
    pub ineligible: Option<String>,
    /// The node's first IPv4 InternalIP: the BGP router ID when no BGPPeer sets one. Left to
    /// FRR, every node would pick the highest loopback address, which is the same Service IP
    /// on every node where kube-proxy or the user puts Service IPs on lo.
    pub router_id: Option<std::net::Ipv4Addr>,
}

impl NodeInfo {
    pub fn from_node(node: &Node, ignore_exclude_label: bool) -> NodeInfo {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut labels = node.metadata.labels.clone().unwrap_or_default();
        // The kubelet always sets it; manifests written by hand often leave it out.
        labels.entry("kubernetes.io/hostname".to_string()).or_insert_with(|| name.clone());
        let network_unavailable = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "NetworkUnavailable" && c.status == "True"));
        let ineligible = if network_unavailable {
            Some("the node's NetworkUnavailable condition is True".to_string())
        } else if !ignore_exclude_label && labels.contains_key(EXCLUDE_LABEL) {
            Some(format!("the node carries the {EXCLUDE_LABEL} label"))
        } else {
            None
        };
        let router_id = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse().ok());
        NodeInfo { name, labels, ineligible, router_id }
    }

    /// A node known only by name, as Kubernetes labels every node.
    pub fn named(name: &str) -> NodeInfo {
        let labels = [("kubernetes.io/hostname".to_string(), name.to_string())].into();
        NodeInfo { name: name.to_string(), labels, ineligible: None, router_id: None }
    }
}

/// What the announcement plans (BGP and L2) need to know about one Service holding IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub key: ServiceKey,
    /// In status order: the first one decides the L2 election.
    pub ips: Vec<std::net::IpAddr>,
    pub labels: Labels,
    /// externalTrafficPolicy: Local — only nodes with a local endpoint announce.
    pub local_traffic: bool,
    /// The Service carries `allow-shared-ip`.
    pub shares_ip: bool,
}

/// Which nodes host a serving endpoint of each Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    serving: BTreeMap<ServiceKey, BTreeSet<String>>,
    /// Endpoints without a node name still make a Service "served somewhere".
    served_somewhere: BTreeSet<ServiceKey>,
    /// When no EndpointSlice was seen at all (offline manifests), every Service counts as
    /// served on every node rather than as unserved.
    assume_everywhere: bool,
}

impl Endpoints {
    pub fn from_slices(slices: &[EndpointSlice]) -> Endpoints {
        let mut e = Endpoints::default();
        for slice in slices {
            let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
            let Some(svc) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
                continue;
            };
            let key = format!("{ns}/{svc}");
            for ep in &slice.endpoints {
                // MetalLB's rule: usable when ready is unset or true, or when still serving
                // while terminating.
                let c = ep.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(false);
                if !(ready || serving) || ep.addresses.is_empty() {
                    continue;
                }
                e.served_somewhere.insert(key.clone());
                if let Some(node) = &ep.node_name {
                    e.serving.entry(key.clone()).or_default().insert(node.clone());
                }
            }
        }
        e
    }

    pub fn assume_everywhere() -> Endpoints {
        Endpoints { assume_everywhere: true, ..Default::default() }
    }

    pub fn served_anywhere(&self, svc: &str) -> bool {
        self.assume_everywhere || self.served_somewhere.contains(svc)
    }

    pub fn served_on(&self, svc: &str, node: &str) -> bool {
        self.assume_everywhere || self.serving.get(svc).is_some_and(|n| n.contains(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(yaml: &str) -> EndpointSlice {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn reads_serving_endpoints_per_node() {
        let s = slice(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n\
             - {addresses: [10.0.0.1], nodeName: n1}\n\
             - {addresses: [10.0.0.2], nodeName: n2, conditions: {ready: false}}\n\
             - {addresses: [10.0.0.3], nodeName: n3, conditions: {ready: false, serving: true}}\n",
        );
        let e = Endpoints::from_slices(&[s]);
        assert!(e.served_anywhere("shop/web") && !e.served_anywhere("shop/db"));
        assert!(
            e.served_on("shop/web", "n1") && !e.served_on("shop/web", "n2") && e.served_on("shop/web", "n3")
        );
        assert!(Endpoints::assume_everywhere().served_on("x/y", "any"));
    }

    #[test]
    fn node_eligibility() {
        let mut node: Node = serde_saphyr::from_str(
            "metadata: {name: n1, labels: {node.kubernetes.io/exclude-from-external-load-balancers: ''}}\n",
        )
        .unwrap();
        assert!(NodeInfo::from_node(&node, false).ineligible.unwrap().contains("exclude"));
        assert!(NodeInfo::from_node(&node, true).ineligible.is_none());
        node.metadata.labels = None;
        node.status =
            serde_saphyr::from_str("conditions: [{type: NetworkUnavailable, status: 'True'}]").unwrap();
        assert!(NodeInfo::from_node(&node, false).ineligible.unwrap().contains("NetworkUnavailable"));
    }
}
