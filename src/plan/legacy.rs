//! MetalLB's pre-0.13 configuration (the `config` key of the `config` ConfigMap), turned into
//! the CRs it stands for, so an old setup can be planned and migrated unchanged.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{
    BFDProfile, BFDProfileSpec, BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec, Community,
    CommunityAlias, CommunitySpec, IPAddressPool, IPAddressPoolSpec, L2Advertisement, L2AdvertisementSpec,
};
use crate::config::ClusterObjects;

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LegacyConfig {
    #[serde(default)]
    peers: Vec<LegacyPeer>,
    #[serde(default)]
    bgp_communities: BTreeMap<String, String>,
    #[serde(default)]
    address_pools: Vec<LegacyPool>,
    #[serde(default)]
    bfd_profiles: Vec<LegacyBfd>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LegacyPeer {
    peer_address: String,
    peer_asn: u32,
    my_asn: u32,
    peer_port: Option<u16>,
    hold_time: Option<String>,
    keepalive_time: Option<String>,
    router_id: Option<String>,
    source_address: Option<String>,
    password: Option<String>,
    bfd_profile: Option<String>,
    #[serde(default)]
    ebgp_multihop: bool,
    #[serde(default)]
    node_selectors: Vec<LegacySelector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LegacySelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LegacyExpression>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyExpression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LegacyPool {
    name: String,
    protocol: LegacyProtocol,
    addresses: Vec<String>,
    auto_assign: Option<bool>,
    #[serde(default)]
    avoid_buggy_ips: bool,
    #[serde(default)]
    bgp_advertisements: Vec<LegacyAdvertisement>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum LegacyProtocol {
    Layer2,
    Bgp,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LegacyAdvertisement {
    aggregation_length: Option<i32>,
    aggregation_length_v6: Option<i32>,
    localpref: Option<u32>,
    #[serde(default)]
    communities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LegacyBfd {
    name: String,
    receive_interval: Option<u32>,
    transmit_interval: Option<u32>,
    detect_multiplier: Option<u32>,
    echo_interval: Option<u32>,
    echo_mode: Option<bool>,
    passive_mode: Option<bool>,
    minimum_ttl: Option<u32>,
}

/// A document is legacy configuration when it has no `kind` and one of the old top-level keys.
pub fn looks_legacy(doc: &serde_json::Map<String, Value>) -> bool {
    !doc.contains_key("kind")
        && ["address-pools", "peers", "bgp-communities", "bfd-profiles"].iter().any(|k| doc.contains_key(*k))
}

/// Adds the CRs a legacy document stands for. Errors carry the field path.
pub fn convert(doc: Value, into: &mut ClusterObjects) -> Result<usize, String> {
    let cfg: LegacyConfig =
        serde_path_to_error::deserialize(doc).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    let before = count(into);
    let ns = Some(into.namespace.clone());
    let meta = |name: String| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name),
        namespace: ns.clone(),
        ..Default::default()
    };
    for (i, p) in cfg.peers.into_iter().enumerate() {
        let spec = BGPPeerSpec {
            my_asn: p.my_asn,
            peer_asn: Some(p.peer_asn),
            peer_address: Some(p.peer_address),
            peer_port: p.peer_port,
            hold_time: p.hold_time,
            keepalive_time: p.keepalive_time,
            router_id: p.router_id,
            source_address: p.source_address,
            password: p.password,
            bfd_profile: p.bfd_profile,
            ebgp_multi_hop: p.ebgp_multihop,
            node_selectors: p.node_selectors.into_iter().map(selector).collect(),
            ..Default::default()
        };
        into.peers.push(BGPPeer { metadata: meta(format!("peer{}", i + 1)), spec, status: None });
    }
    if !cfg.bgp_communities.is_empty() {
        let communities =
            cfg.bgp_communities.into_iter().map(|(name, value)| CommunityAlias { name, value }).collect();
        into.communities
            .push(Community { metadata: meta("communities".into()), spec: CommunitySpec { communities } });
    }
    for b in cfg.bfd_profiles {
        let spec = BFDProfileSpec {
            receive_interval: b.receive_interval,
            transmit_interval: b.transmit_interval,
            detect_multiplier: b.detect_multiplier,
            echo_interval: b.echo_interval,
            echo_mode: b.echo_mode,
            passive_mode: b.passive_mode,
            minimum_ttl: b.minimum_ttl,
        };
        into.bfd_profiles.push(BFDProfile { metadata: meta(b.name), spec });
    }
    for pool in cfg.address_pools {
        let name = pool.name.clone();
        into.pools.push(IPAddressPool {
            metadata: meta(name.clone()),
            spec: IPAddressPoolSpec {
                addresses: pool.addresses,
                auto_assign: pool.auto_assign,
                avoid_buggy_ips: pool.avoid_buggy_ips,
                service_allocation: None,
            },
            status: None,
        });
        if pool.protocol == LegacyProtocol::Layer2 {
            let spec = L2AdvertisementSpec { ip_address_pools: vec![name.clone()], ..Default::default() };
            into.l2_advertisements.push(L2Advertisement { metadata: meta(format!("{name}-l2")), spec });
            continue;
        }
        // A BGP pool without advertisements was announced with the defaults.
        let ads = if pool.bgp_advertisements.is_empty() {
            vec![LegacyAdvertisement {
                aggregation_length: None,
                aggregation_length_v6: None,
                localpref: None,
                communities: vec![],
            }]
        } else {
            pool.bgp_advertisements
        };
        for (i, ad) in ads.into_iter().enumerate() {
            let spec = BGPAdvertisementSpec {
                aggregation_length: ad.aggregation_length,
                aggregation_length_v6: ad.aggregation_length_v6,
                local_pref: ad.localpref,
                communities: ad.communities,
                ip_address_pools: vec![name.clone()],
                ..Default::default()
            };
            into.bgp_advertisements
                .push(BGPAdvertisement { metadata: meta(format!("{name}-bgp-{}", i + 1)), spec });
        }
    }
    Ok(count(into) - before)
}

fn count(o: &ClusterObjects) -> usize {
    o.pools.len()
        + o.peers.len()
        + o.communities.len()
        + o.bfd_profiles.len()
        + o.l2_advertisements.len()
        + o.bgp_advertisements.len()
}

fn selector(s: LegacySelector) -> LabelSelector {
    LabelSelector {
        match_labels: (!s.match_labels.is_empty()).then_some(s.match_labels),
        match_expressions: (!s.match_expressions.is_empty()).then(|| {
            s.match_expressions
                .into_iter()
                .map(|e| LabelSelectorRequirement {
                    key: e.key,
                    operator: e.operator,
                    values: Some(e.values),
                })
                .collect()
        }),
    }
}
