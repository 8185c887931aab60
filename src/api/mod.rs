//! The `metallb.io` API, field for field, so existing MetalLB manifests apply unchanged.
//!
//! Spec fields stay as the user wrote them (addresses and durations are strings): parsing and
//! every cross-object rule live in `crate::config`, which reports all problems at once instead of
//! the API server rejecting the first.

mod bfdprofile;
mod bgpadvertisement;
pub mod bgppeer;
mod community;
mod ipaddresspool;
mod l2advertisement;
mod status;

pub use bfdprofile::{BFDProfile, BFDProfileSpec};
pub use bgpadvertisement::{BGPAdvertisement, BGPAdvertisementSpec};
pub use bgppeer::v1beta2::{BGPPeer, BGPPeerSpec, DynamicASNMode, SecretReference};
pub use community::{Community, CommunityAlias, CommunitySpec};
pub use ipaddresspool::{IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation};
pub use l2advertisement::{L2Advertisement, L2AdvertisementSpec, PreferredNodeSelector};
pub use status::{
    AnnounceFailure, ConfigurationResult, ConfigurationState, ConfigurationStateStatus, InterfaceInfo,
    ServiceBGPStatus, ServiceBGPStatusStatus, ServiceL2Status, ServiceL2StatusStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;

/// The API group every ferrolb kind lives in (MetalLB's, so manifests are interchangeable).
pub const GROUP: &str = "metallb.io";

/// Namespace the config kinds must live in unless told otherwise (MetalLB's default).
pub const DEFAULT_NAMESPACE: &str = "metallb-system";

/// Schema of an optional string enum: the derive would add `null` to the enum values, which
/// readers of the CRD (and `kubectl explain`) show as a valid choice.
pub(crate) fn string_enum(values: &[&str]) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": values })
}

/// Kinds whose spec fields are all optional. MetalLB's docs apply them with no `spec` at all
/// (an L2Advertisement for every pool is just a name), so their CRDs default `spec` to `{}`
/// instead of requiring it, and offline decoding applies the same default.
pub const OPTIONAL_SPEC_KINDS: &[&str] = &[
    "BFDProfile",
    "BGPAdvertisement",
    "Community",
    "ConfigurationState",
    "L2Advertisement",
    "ServiceBGPStatus",
    "ServiceL2Status",
];

/// Every CRD ferrolb installs, in a stable order (file names in `crds/` follow it).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        BFDProfile::crd(),
        BGPAdvertisement::crd(),
        bgppeer::crd(),
        Community::crd(),
        ConfigurationState::crd(),
        IPAddressPool::crd(),
        L2Advertisement::crd(),
        ServiceBGPStatus::crd(),
        ServiceL2Status::crd(),
    ];
    for crd in &mut crds {
        if OPTIONAL_SPEC_KINDS.contains(&crd.spec.names.kind.as_str()) {
            default_empty_spec(crd);
        }
    }
    crds
}

/// kube's derive always requires `spec`; the API server's structural defaulting fills it in
/// when we say `default: {}`, so stored objects always carry one.
fn default_empty_spec(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else {
            continue;
        };
        if let Some(required) = root.required.as_mut() {
            required.retain(|r| r != "spec");
            if required.is_empty() {
                root.required = None;
            }
        }
        if let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                serde_json::json!({}),
            ));
        }
    }
}
