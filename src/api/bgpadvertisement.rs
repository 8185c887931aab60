use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Announce the addresses of some pools to BGP peers.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    namespaced,
    printcolumn = r#"{"name":"IPAddressPools","type":"string","jsonPath":".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name":"IPAddressPool Selectors","type":"string","jsonPath":".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name":"Peers","type":"string","jsonPath":".spec.peers"}"#,
    printcolumn = r#"{"name":"Node Selectors","type":"string","jsonPath":".spec.nodeSelectors","priority":10}"#
)]
#[x_kube(validation = Rule::new("!has(self.serviceSelectors) || size(self.serviceSelectors) == 0 || ((!has(self.aggregationLength) || self.aggregationLength == 32) && (!has(self.aggregationLengthV6) || self.aggregationLengthV6 == 128))").message("serviceSelectors cannot be combined with a non-default aggregationLength or aggregationLengthV6"))]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Announce one prefix of this length per IPv4 address instead of a /32. Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub aggregation_length: Option<i32>,
    /// Announce one prefix of this length per IPv6 address instead of a /128. Default 128.
    #[serde(default, rename = "aggregationLengthV6", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub aggregation_length_v6: Option<i32>,
    /// BGP LOCAL_PREF attached to the announcements (sent to iBGP peers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Communities: `A:B`, `large:A:B:C`, or the name of an alias from a Community object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    /// Pools to announce, by name. With no names and no selectors every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pools: Vec<String>,
    /// Pools to announce, by label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that announce (become next hops). Empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeer names to announce to. Empty means every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Only Services matching one of these selectors are announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}
