//! Where things are: which nodes may announce, and which nodes serve each Service.
//!
//! Pure views over Node and EndpointSlice objects, shared by the BGP and L2 announcement plans.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::config::Labels;
use crate::service::ServiceKey;

pub mod readiness;

/// Nodes carrying this label never announce (unless the speaker ignores it).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    /// Why the node may not announce anything, if it may not.
    pub ineligible: Option<String>,
    /// The BGP router ID when no BGPPeer sets one: the node's first IPv4 InternalIP, or on an
    /// IPv6-only node (no IPv4 InternalIP) one derived from its name (see
    /// [`router_id_from_name`]). Left to FRR, every node would pick the highest loopback
    /// address, which is the same Service IP on every node where Service IPs sit on lo, and
    /// an IPv6-only node has no IPv4 address to pick at all.
    pub router_id: Option<std::net::Ipv4Addr>,
    /// Why the node should not serve layer 2 traffic although its speaker runs (NotReady,
    /// out of service; see [`readiness`]): it wins an IP only where no other candidate is left.
    pub l2_unfit: Option<String>,
}

/// A router ID for a node with no IPv4 address: the first four bytes of
/// sha256("ferrolb/router-id/" + node name), with the first octet moved into 1-223 (not 127),
/// so it reads as a unicast address that every BGP implementation accepts in an OPEN.
/// From the name, not an address: it stays the same when the node is renumbered, and nodes
/// numbered alike in different racks (`…:1::5`, `…:2::5`) still differ. Two nodes collide
/// with odds of about n²/7.4e9 (100 nodes: 1 in 740,000); a BGPPeer's routerID overrides it.
pub fn router_id_from_name(node: &str) -> std::net::Ipv4Addr {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("ferrolb/router-id/{node}").as_bytes());
    // 222 usable first octets: 1..=223 without 127.
    let mut first = 1 + h[0] % 222;
    if first >= 127 {
        first += 1;
    }
    std::net::Ipv4Addr::new(first, h[1], h[2], h[3])
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
        let internal: Vec<std::net::IpAddr> = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        let v4 = internal.iter().find_map(|ip| match ip {
            std::net::IpAddr::V4(v4) => Some(*v4),
            std::net::IpAddr::V6(_) => None,
        });
        let router_id = match v4 {
            Some(v4) => Some(v4),
            None if internal.iter().any(std::net::IpAddr::is_ipv6) => Some(router_id_from_name(&name)),
            None => None,
        };
        NodeInfo { name, labels, ineligible, router_id, l2_unfit: None }
    }

    /// A node known only by name, as Kubernetes labels every node.
    pub fn named(name: &str) -> NodeInfo {
        let labels = [("kubernetes.io/hostname".to_string(), name.to_string())].into();
        NodeInfo { name: name.to_string(), labels, ineligible: None, router_id: None, l2_unfit: None }
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

/// What ferrolb reads of one EndpointSlice: the Service it belongs to and where its usable
/// endpoints run. The caches keep this instead of the slice (a tenth of its memory at 10,000
/// Services, benches/heap_profile); offline manifests go through it too, so both decide alike.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SliceEndpoints {
    pub namespace: String,
    /// The slice's own name (its identity in the cache).
    pub name: String,
    /// The `kubernetes.io/service-name` label; a slice without one belongs to no Service.
    pub service: Option<String>,
    /// Some endpoint can take traffic, with or without a node name.
    pub usable: bool,
    /// The nodes of the usable endpoints, sorted, each once.
    pub nodes: Vec<String>,
}

impl SliceEndpoints {
    pub fn of(slice: &EndpointSlice) -> SliceEndpoints {
        let mut nodes = BTreeSet::new();
        let mut usable = false;
        for ep in &slice.endpoints {
            // MetalLB's rule: usable when ready is unset or true, or when still serving
            // while terminating.
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(false);
            if !(ready || serving) || ep.addresses.is_empty() {
                continue;
            }
            usable = true;
            nodes.extend(ep.node_name.clone());
        }
        SliceEndpoints {
            namespace: slice.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: slice.metadata.name.clone().unwrap_or_default(),
            service: slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned(),
            usable,
            nodes: nodes.into_iter().collect(),
        }
    }

    /// The Service this slice is about, if it names one.
    pub fn service_key(&self) -> Option<ServiceKey> {
        self.service.as_ref().map(|s| format!("{}/{s}", self.namespace))
    }
}

impl Endpoints {
    pub fn from_slices<'a>(slices: impl IntoIterator<Item = &'a SliceEndpoints>) -> Endpoints {
        let mut e = Endpoints::default();
        for slice in slices {
            let Some(key) = slice.service_key() else { continue };
            if !slice.usable {
                continue;
            }
            e.served_somewhere.insert(key.clone());
            if !slice.nodes.is_empty() {
                e.serving.entry(key).or_default().extend(slice.nodes.iter().cloned());
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
        let e = Endpoints::from_slices(&[SliceEndpoints::of(&s)]);
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

    #[test]
    fn router_ids_on_ipv4_dual_stack_and_ipv6_only_nodes() {
        let node = |name: &str, addresses: &str| -> Node {
            serde_saphyr::from_str(&format!(
                "metadata: {{name: {name}}}\nstatus: {{addresses: [{addresses}]}}\n"
            ))
            .unwrap()
        };
        let id = |n: &Node| NodeInfo::from_node(n, false).router_id.map(|r| r.to_string());
        let dual = node(
            "n1",
            "{type: InternalIP, address: '2001:db8::11'}, {type: InternalIP, address: 192.0.2.11}",
        );
        assert_eq!(id(&dual).as_deref(), Some("192.0.2.11"), "IPv4 wins wherever the node has one");
        let v6 = node("n1", "{type: InternalIP, address: '2001:db8::11'}");
        let derived = id(&v6).expect("an IPv6-only node gets a router ID");
        assert_eq!(derived, router_id_from_name("n1").to_string());
        assert_eq!(
            id(&node("n1", "{type: InternalIP, address: '2001:db8:2::99'}")),
            Some(derived.clone()),
            "renumbering keeps it"
        );
        assert_eq!(id(&node("n1", "")), None, "no address at all: left to FRR, as before");
        // Unicast-looking and distinct across a large cluster.
        let ids: std::collections::BTreeSet<_> =
            (0..1000).map(|i| router_id_from_name(&format!("node{i}"))).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|ip| (1..=223).contains(&ip.octets()[0]) && ip.octets()[0] != 127));
    }
}
