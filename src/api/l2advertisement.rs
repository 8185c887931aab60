use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Announce the addresses of some pools with ARP (IPv4) and NDP (IPv6) from one elected node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    namespaced,
    printcolumn = r#"{"name":"IPAddressPools","type":"string","jsonPath":".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name":"IPAddressPool Selectors","type":"string","jsonPath":".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name":"Interfaces","type":"string","jsonPath":".spec.interfaces"}"#,
    printcolumn = r#"{"name":"Node Selectors","type":"string","jsonPath":".spec.nodeSelectors","priority":10}"#
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools to announce, by name. With no names and no selectors every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pools: Vec<String>,
    /// Pools to announce, by label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes allowed to announce. Empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// Host interfaces to answer on. Empty means every eligible interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Only Services matching one of these selectors are announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
    /// Soft preference among eligible nodes in the per-IP election; weights of matching
    /// selectors add up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferredNodeSelector {
    /// 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    pub preference: LabelSelector,
}
