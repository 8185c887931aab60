//! Status-only kinds written by ferrolb itself, so users can see what happens and why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which node answers ARP/NDP for a Service, and on which interfaces.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    namespaced,
    status = "ServiceL2StatusStatus",
    printcolumn = r#"{"name":"Allocated Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Service Name","type":"string","jsonPath":".status.serviceName"}"#,
    printcolumn = r#"{"name":"Service Namespace","type":"string","jsonPath":".status.serviceNamespace"}"#
)]
pub struct ServiceL2StatusSpec {}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceL2StatusStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("node is immutable"))]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("serviceName is immutable"))]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("serviceNamespace is immutable"))]
    pub service_namespace: Option<String>,
    /// Filled only when the announcement is restricted to some interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct InterfaceInfo {
    pub name: String,
}

/// Which BGPPeers a node sends a Service's prefixes to.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceBGPStatus",
    namespaced,
    status = "ServiceBGPStatusStatus",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Service Name","type":"string","jsonPath":".status.serviceName"}"#,
    printcolumn = r#"{"name":"Service Namespace","type":"string","jsonPath":".status.serviceNamespace"}"#
)]
pub struct ServiceBGPStatusSpec {}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBGPStatusStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("node is immutable"))]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("serviceName is immutable"))]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("serviceNamespace is immutable"))]
    pub service_namespace: Option<String>,
    /// Sorted BGPPeer names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

/// Whether a component (`controller`, `speaker-<node>`) accepted the current configuration.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ConfigurationState",
    namespaced,
    status = "ConfigurationStateStatus",
    printcolumn = r#"{"name":"Result","type":"string","jsonPath":".status.result"}"#,
    printcolumn = r#"{"name":"ErrorSummary","type":"string","jsonPath":".status.errorSummary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ConfigurationStateSpec {}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationStateStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "result_schema")]
    pub result: Option<ConfigurationResult>,
    /// Newline-separated messages of the failing conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// A speaker's only (ferrolb's addition; MetalLB says this in Events alone): the
    /// announcements this node was chosen for and cannot make, each with why. The controller
    /// reads them into the Services' `ferrolb.io/Announced` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announce_failures: Vec<AnnounceFailure>,
}

/// One announcement a speaker cannot make.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnnounceFailure {
    /// `namespace/name` of the Service.
    pub service: String,
    /// `layer2` or `bgp`.
    pub protocol: String,
    pub reason: String,
}

impl AnnounceFailure {
    /// The protocol as people read it: "layer 2" or "BGP".
    pub fn over(&self) -> &'static str {
        if self.protocol == "layer2" { "layer 2" } else { "BGP" }
    }
}

fn result_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::api::string_enum(&["Valid", "Invalid", "Unknown"])
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConfigurationResult {
    Valid,
    Invalid,
    Unknown,
}
