//! BGPPeer is served in two versions: v1beta2 is stored, v1beta1 is kept for old manifests and
//! converted both ways by the webhook's `/convert` (`crate::webhook::conversion`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, ServiceReference, WebhookClientConfig,
    WebhookConversion,
};
use kube::core::CustomResourceExt;
use kube::core::crd::merge_crds;

pub mod v1beta2 {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::{CustomResource, KubeSchema};
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// A BGP router to open sessions to from the nodes it selects.
    #[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
    #[kube(
        group = "metallb.io",
        version = "v1beta2",
        kind = "BGPPeer",
        namespaced,
        status = "BGPPeerStatus",
        printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.peerAddress"}"#,
        printcolumn = r#"{"name":"ASN","type":"string","jsonPath":".spec.peerASN"}"#,
        printcolumn = r#"{"name":"BFD Profile","type":"string","jsonPath":".spec.bfdProfile"}"#,
        printcolumn = r#"{"name":"Multi Hops","type":"string","jsonPath":".spec.ebgpMultiHop"}"#
    )]
    #[serde(rename_all = "camelCase")]
    pub struct BGPPeerSpec {
        /// The AS number ferrolb speaks as.
        #[serde(rename = "myASN")]
        pub my_asn: u32,
        /// The peer's AS number (exactly one of peerASN and dynamicASN).
        #[serde(default, rename = "peerASN", skip_serializing_if = "Option::is_none")]
        pub peer_asn: Option<u32>,
        /// Accept whatever AS the peer announces, as long as it is internal or external.
        #[serde(default, rename = "dynamicASN", skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "dynamic_asn_schema")]
        pub dynamic_asn: Option<DynamicASNMode>,
        /// Present this AS to the peer instead of myASN (`local-as N no-prepend replace-as`).
        #[serde(default, rename = "localASN", skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        pub local_asn: Option<u32>,
        /// The peer's address (exactly one of peerAddress and interface).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub peer_address: Option<String>,
        /// Host interface for an unnumbered (link-local) session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 15), regex(pattern = r"^[!-.0-9;-~]*$"))]
        pub interface: Option<String>,
        /// Local address the session is sourced from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source_address: Option<String>,
        /// TCP port of the peer. Default 179.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 16384))]
        pub peer_port: Option<u16>,
        /// BGP hold time (a duration such as `90s`); 0 or at least 3s.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hold_time: Option<String>,
        /// BGP keepalive interval; at most the hold time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keepalive_time: Option<String>,
        /// How long to wait between connection attempts (whole seconds, 1s to 65535s).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[x_kube(validation = Rule::new("duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535 && duration(self).getMilliseconds() % 1000 == 0").message("connectTime must be whole seconds between 1s and 65535s"))]
        pub connect_time: Option<String>,
        /// BGP router ID; every peer on a node must agree on it.
        #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
        pub router_id: Option<String>,
        /// Nodes that open this session. Empty means every node.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub node_selectors: Vec<LabelSelector>,
        /// TCP MD5 password (or use passwordSecret): printable ASCII without spaces, at most
        /// 80 bytes (the kernel's TCP-MD5 key limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 80), regex(pattern = r"^[!-~]*$"))]
        pub password: Option<String>,
        /// A `kubernetes.io/basic-auth` Secret whose `password` key is the TCP MD5 password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub password_secret: Option<SecretReference>,
        /// Name of a BFDProfile to protect the session with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 63), regex(pattern = r"^[!-~]*$"))]
        pub bfd_profile: Option<String>,
        /// Enable BGP graceful restart (cannot be changed after creation).
        #[serde(default)]
        #[x_kube(validation = Rule::new("self == oldSelf").message("enableGracefulRestart cannot be changed after creation"))]
        pub enable_graceful_restart: bool,
        /// Allow an eBGP peer that is more than one hop away.
        #[serde(default)]
        pub ebgp_multi_hop: bool,
        /// Linux VRF the session runs in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 15), regex(pattern = r"^[!-.0-9;-~]*$"))]
        pub vrf: Option<String>,
        /// Deprecated and ignored: IPv4 and IPv6 already use separate sessions.
        #[serde(default, rename = "disableMP")]
        pub disable_mp: bool,
        /// Carry both address families over this session.
        #[serde(default)]
        pub dual_stack_address_family: bool,
    }

    fn dynamic_asn_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::api::string_enum(&["internal", "external"])
    }

    #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum DynamicASNMode {
        Internal,
        External,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    pub struct SecretReference {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub namespace: Option<String>,
    }

    /// How the sessions to this peer are doing: one entry per node, each written by that
    /// node's speaker (server-side apply, one field manager per node, so they never collide).
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    pub struct BGPPeerStatus {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
        pub sessions: Vec<PeerSession>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct PeerSession {
        pub node: String,
        /// FRR's state: Idle, Connect, Active, OpenSent, OpenConfirm, Established; Unknown when
        /// frr-agent cannot be asked, NotConfigured before FRR runs the session.
        pub state: String,
        pub established: bool,
        /// Why it is not established, in FRR's words (last reset, last NOTIFICATION).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub reason: String,
        /// Up, Down or Unknown when BFD protects the session.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub bfd_status: String,
        /// When `state` last changed, as seen by the speaker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_transition_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    }
}

pub mod v1beta1 {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// Deprecated version of BGPPeer, converted to v1beta2.
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    #[kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "BGPPeer",
        namespaced,
        status = "super::v1beta2::BGPPeerStatus",
        deprecated = "metallb.io/v1beta1 BGPPeer is deprecated, use metallb.io/v1beta2",
        printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.peerAddress"}"#,
        printcolumn = r#"{"name":"ASN","type":"string","jsonPath":".spec.peerASN"}"#,
        printcolumn = r#"{"name":"BFD Profile","type":"string","jsonPath":".spec.bfdProfile"}"#,
        printcolumn = r#"{"name":"Multi Hops","type":"string","jsonPath":".spec.ebgpMultiHop"}"#
    )]
    #[serde(rename_all = "camelCase")]
    pub struct BGPPeerSpec {
        #[serde(rename = "myASN")]
        pub my_asn: u32,
        #[serde(rename = "peerASN")]
        pub peer_asn: u32,
        pub peer_address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source_address: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 16384))]
        pub peer_port: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hold_time: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keepalive_time: Option<String>,
        #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
        pub router_id: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub node_selectors: Vec<NodeSelector>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 80), regex(pattern = r"^[!-~]*$"))]
        pub password: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 63), regex(pattern = r"^[!-~]*$"))]
        pub bfd_profile: Option<String>,
        #[serde(default)]
        pub ebgp_multi_hop: bool,
    }

    /// The pre-v1beta2 selector shape.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct NodeSelector {
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub match_labels: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub match_expressions: Vec<MatchExpression>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    pub struct MatchExpression {
        pub key: String,
        pub operator: String,
        #[serde(default)]
        pub values: Vec<String>,
    }

    impl BGPPeerSpec {
        /// The v1beta2 spec this v1beta1 spec stands for. Lossless: every v1beta1 field has a
        /// v1beta2 home; port 0 (allowed by v1beta1) means "default" and becomes unset.
        pub fn upgrade(&self) -> super::v1beta2::BGPPeerSpec {
            super::v1beta2::BGPPeerSpec {
                my_asn: self.my_asn,
                peer_asn: Some(self.peer_asn),
                peer_address: Some(self.peer_address.clone()),
                source_address: self.source_address.clone(),
                peer_port: self.peer_port.filter(|p| *p != 0),
                hold_time: self.hold_time.clone(),
                keepalive_time: self.keepalive_time.clone(),
                router_id: self.router_id.clone(),
                node_selectors: self.node_selectors.iter().map(NodeSelector::upgrade).collect(),
                password: self.password.clone(),
                bfd_profile: self.bfd_profile.clone(),
                ebgp_multi_hop: self.ebgp_multi_hop,
                ..Default::default()
            }
        }
    }

    impl BGPPeerSpec {
        /// The closest v1beta1 spelling of a v1beta2 spec. Fields v1beta1 has no place for are
        /// dropped (the conversion keeps them aside); a peer found by `dynamicASN` or by
        /// `interface` reads as peerASN 0 or an empty peerAddress, v1beta1's "unset".
        pub fn downgrade(spec: &super::v1beta2::BGPPeerSpec) -> BGPPeerSpec {
            BGPPeerSpec {
                my_asn: spec.my_asn,
                peer_asn: spec.peer_asn.unwrap_or(0),
                peer_address: spec.peer_address.clone().unwrap_or_default(),
                source_address: spec.source_address.clone(),
                peer_port: spec.peer_port,
                hold_time: spec.hold_time.clone(),
                keepalive_time: spec.keepalive_time.clone(),
                router_id: spec.router_id.clone(),
                node_selectors: spec.node_selectors.iter().map(NodeSelector::downgrade).collect(),
                password: spec.password.clone(),
                bfd_profile: spec.bfd_profile.clone(),
                ebgp_multi_hop: spec.ebgp_multi_hop,
            }
        }
    }

    impl NodeSelector {
        fn downgrade(s: &LabelSelector) -> NodeSelector {
            NodeSelector {
                match_labels: s.match_labels.clone().unwrap_or_default(),
                match_expressions: s
                    .match_expressions
                    .iter()
                    .flatten()
                    .map(|e| MatchExpression {
                        key: e.key.clone(),
                        operator: e.operator.clone(),
                        values: e.values.clone().unwrap_or_default(),
                    })
                    .collect(),
            }
        }

        fn upgrade(&self) -> LabelSelector {
            LabelSelector {
                match_labels: (!self.match_labels.is_empty()).then(|| self.match_labels.clone()),
                match_expressions: (!self.match_expressions.is_empty()).then(|| {
                    self.match_expressions
                        .iter()
                        .map(|e| LabelSelectorRequirement {
                            key: e.key.clone(),
                            operator: e.operator.clone(),
                            values: (!e.values.is_empty()).then(|| e.values.clone()),
                        })
                        .collect()
                }),
            }
        }
    }
}

/// The BGPPeer CRD with both versions, v1beta2 stored.
pub fn crd() -> CustomResourceDefinition {
    // Both inputs come from our own derives with the same group, kind and scope, which is all
    // merge_crds checks; a failure here is a programming error caught by the CRD tests.
    let mut crd = merge_crds(vec![v1beta1::BGPPeer::crd(), v1beta2::BGPPeer::crd()], "v1beta2")
        .expect("BGPPeer versions share group, kind and scope");
    // The API server asks the controller's webhook to convert; ferrolb patches the caBundle in.
    // The Service is the chart's; installs elsewhere point it at theirs (or at a URL).
    crd.spec.conversion = Some(CustomResourceConversion {
        strategy: "Webhook".into(),
        webhook: Some(WebhookConversion {
            client_config: Some(WebhookClientConfig {
                service: Some(ServiceReference {
                    name: "ferrolb-webhook-service".into(),
                    namespace: "metallb-system".into(),
                    path: Some("/convert".into()),
                    port: Some(443),
                }),
                ..Default::default()
            }),
            conversion_review_versions: vec!["v1".into()],
        }),
    });
    crd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1beta1_upgrades_field_for_field() {
        let old: v1beta1::BGPPeerSpec = serde_json::from_value(serde_json::json!({
            "myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "peerPort": 0,
            "sourceAddress": "192.0.2.2", "holdTime": "90s", "keepaliveTime": "30s",
            "routerID": "10.0.0.1", "password": "pw", "bfdProfile": "fast", "ebgpMultiHop": true,
            "nodeSelectors": [{"matchLabels": {"rack": "a"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]
        }))
        .unwrap();
        let new = old.upgrade();
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1",
                "sourceAddress": "192.0.2.2", "holdTime": "90s", "keepaliveTime": "30s",
                "routerID": "10.0.0.1", "password": "pw", "bfdProfile": "fast", "ebgpMultiHop": true,
                "enableGracefulRestart": false, "disableMP": false, "dualStackAddressFamily": false,
                "nodeSelectors": [{"matchLabels": {"rack": "a"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]
            })
        );
    }
}
