use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Names for BGP community values, usable in BGPAdvertisement `communities`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta1", kind = "Community", namespaced)]
#[serde(rename_all = "camelCase")]
pub struct CommunitySpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<CommunityAlias>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CommunityAlias {
    /// The alias, unique across all Community objects.
    pub name: String,
    /// `A:B` (16-bit values) or `large:A:B:C` (32-bit values).
    pub value: String,
}
