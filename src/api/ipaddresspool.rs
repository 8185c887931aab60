use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A set of addresses ferrolb may hand out to LoadBalancer Services.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    namespaced,
    status = "IPAddressPoolStatus",
    printcolumn = r#"{"name":"Auto Assign","type":"boolean","jsonPath":".spec.autoAssign"}"#,
    printcolumn = r#"{"name":"Avoid Buggy IPs","type":"boolean","jsonPath":".spec.avoidBuggyIPs"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.0.2.0/24`, `2001:db8::/120`) or inclusive ranges (`192.0.2.10-192.0.2.20`);
    /// IPv4 and IPv6 entries may be mixed for dual-stack Services.
    pub addresses: Vec<String>,
    /// When false the pool is used only for Services that ask for it by annotation or request
    /// one of its addresses. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,
    /// Never hand out IPv4 addresses ending in .0 or .255 (some old client stacks drop them).
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Restricts which Services may take addresses from this pool and in what order pools are
    /// tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower numbers are tried first; 0 (the default) means after every prioritised pool.
    #[serde(default)]
    pub priority: i32,
    /// Namespaces whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces, chosen by label, whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Services, chosen by label, that may use the pool (any selector matching is enough).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// Address counts written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    #[serde(default, rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    #[serde(default, rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    #[serde(default, rename = "availableIPv4")]
    pub available_ipv4: i64,
    #[serde(default, rename = "availableIPv6")]
    pub available_ipv6: i64,
}
