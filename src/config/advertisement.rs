use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::ClusterObjects;
use super::address::Family;
use super::community::CommunityValue;
use super::error::{ObjectReport, Report};
use super::pool::Pool;
use super::selector::{Labels, Selector, any_matches};

/// Upstream's limit per advertisement, enforced so FRR never sees a longer list.
const MAX_COMMUNITIES: usize = 63;

#[derive(Debug, Clone, PartialEq)]
pub struct BgpAdvertisement {
    pub name: String,
    pub aggregation_length: u8,
    pub aggregation_length_v6: u8,
    pub local_pref: Option<u32>,
    /// Aliases resolved, sorted in MetalLB's community order.
    pub communities: BTreeSet<CommunityValue>,
    /// Names of the pools this advertisement applies to.
    pub pools: BTreeSet<String>,
    pub node_selectors: Vec<Selector>,
    /// BGPPeer names; empty means every peer.
    pub peers: Vec<String>,
    pub service_selectors: Vec<Selector>,
}

impl BgpAdvertisement {
    pub fn aggregation(&self, family: Family) -> u8 {
        match family {
            Family::V4 => self.aggregation_length,
            Family::V6 => self.aggregation_length_v6,
        }
    }

    pub fn sends_to(&self, peer: &str) -> bool {
        self.peers.is_empty() || self.peers.iter().any(|p| p == peer)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct L2Advertisement {
    pub name: String,
    pub pools: BTreeSet<String>,
    pub node_selectors: Vec<Selector>,
    /// Empty means every eligible interface.
    pub interfaces: Vec<String>,
    pub service_selectors: Vec<Selector>,
    pub preferred_nodes: Vec<(i32, Selector)>,
}

pub(super) fn parse_aliases(
    objects: &ClusterObjects,
    report: &mut Report,
) -> BTreeMap<String, CommunityValue> {
    let mut aliases: BTreeMap<String, (CommunityValue, String)> = BTreeMap::new();
    for obj in &objects.communities {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let mut r = report.on("Community", &name);
        for (i, alias) in obj.spec.communities.iter().enumerate() {
            let field = format!("spec.communities[{i}]");
            if alias.name.is_empty() {
                r.error(format!("{field}.name"), "an alias needs a name");
                continue;
            }
            match CommunityValue::parse(&alias.value) {
                Err(e) => r.error(format!("{field}.value"), e),
                Ok(v) => {
                    if let Some((_, owner)) = aliases.get(&alias.name) {
                        r.error(
                            format!("{field}.name"),
                            format!("alias {:?} is already defined in Community {owner:?}", alias.name),
                        );
                    } else {
                        aliases.insert(alias.name.clone(), (v, name.clone()));
                    }
                }
            }
        }
    }
    aliases.into_iter().map(|(k, (v, _))| (k, v)).collect()
}

/// Pools named or selected; neither given means every pool. Unknown names are reported as
/// warnings: upstream ignores them silently, and creation order must stay free.
fn select_pools(
    r: &mut ObjectReport,
    names: &[String],
    selectors: &[LabelSelector],
    pools: &BTreeMap<String, Pool>,
    all_pool_names: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        if !seen.insert(n) {
            r.error(format!("spec.ipAddressPools[{i}]"), format!("pool {n:?} is listed twice"));
        } else if pools.contains_key(n) {
            out.insert(n.clone());
        } else if !all_pool_names.contains(n) {
            r.warn(format!("spec.ipAddressPools[{i}]"), format!("IPAddressPool {n:?} does not exist"));
        }
    }
    let parsed = Selector::parse_list(selectors).unwrap_or_else(|(i, e)| {
        r.error(format!("spec.ipAddressPoolSelectors[{i}]"), e);
        Vec::new()
    });
    for pool in pools.values() {
        if parsed.iter().any(|s| s.matches(&pool.labels)) {
            out.insert(pool.name.clone());
        }
    }
    if names.is_empty() && selectors.is_empty() {
        out.extend(pools.keys().cloned());
    }
    out
}

fn selectors(r: &mut ObjectReport, field: &str, list: &[LabelSelector]) -> Vec<Selector> {
    Selector::parse_list(list).unwrap_or_else(|(i, e)| {
        r.error(format!("spec.{field}[{i}]"), e);
        Vec::new()
    })
}

pub(super) fn parse_bgp_advertisements(
    objects: &ClusterObjects,
    pools: &BTreeMap<String, Pool>,
    aliases: &BTreeMap<String, CommunityValue>,
    report: &mut Report,
) -> Vec<BgpAdvertisement> {
    let all_pool_names = objects.pool_names();
    let mut out: Vec<BgpAdvertisement> = Vec::new();
    let mut specs_seen: Vec<(String, &crate::api::BGPAdvertisementSpec)> = Vec::new();
    for obj in &objects.bgp_advertisements {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let s = &obj.spec;
        let mut r = report.on("BGPAdvertisement", &name);
        if let Some((other, _)) = specs_seen.iter().find(|(_, o)| **o == *s) {
            r.error("spec", format!("identical to BGPAdvertisement {other:?}"));
            continue;
        }
        specs_seen.push((name.clone(), s));
        let before = r.error_count();
        let agg4 = s.aggregation_length.unwrap_or(32);
        let agg6 = s.aggregation_length_v6.unwrap_or(128);
        if !(1..=32).contains(&agg4) {
            r.error("spec.aggregationLength", format!("{agg4} is outside 1 to 32"));
        }
        if !(1..=128).contains(&agg6) {
            r.error("spec.aggregationLengthV6", format!("{agg6} is outside 1 to 128"));
        }
        if !s.service_selectors.is_empty() && (agg4 != 32 || agg6 != 128) {
            r.error(
                "spec.serviceSelectors",
                "serviceSelectors cannot be combined with a non-default aggregationLength or aggregationLengthV6",
            );
        }
        let mut communities = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for (i, c) in s.communities.iter().enumerate() {
            let field = format!("spec.communities[{i}]");
            if !seen.insert(c) {
                r.error(field, format!("community {c:?} is listed twice"));
                continue;
            }
            if CommunityValue::looks_literal(c) {
                match CommunityValue::parse(c) {
                    Ok(v) => {
                        communities.insert(v);
                    }
                    Err(e) => r.error(field, e),
                }
            } else if let Some(v) = aliases.get(c) {
                communities.insert(*v);
            } else {
                r.missing(field, format!("no Community object defines the alias {c:?}"));
            }
        }
        if communities.len() > MAX_COMMUNITIES {
            r.error(
                "spec.communities",
                format!("{} communities, at most {MAX_COMMUNITIES} are allowed", communities.len()),
            );
        }
        let mut peers_seen = BTreeSet::new();
        for (i, p) in s.peers.iter().enumerate() {
            if !peers_seen.insert(p) {
                r.error(format!("spec.peers[{i}]"), format!("peer {p:?} is listed twice"));
            }
        }
        let selected =
            select_pools(&mut r, &s.ip_address_pools, &s.ip_address_pool_selectors, pools, &all_pool_names);
        for pool in selected.iter().filter_map(|p| pools.get(p)) {
            for (i, range) in pool.ranges.iter().enumerate() {
                let (len, field) = match range.family {
                    Family::V4 => (agg4, "spec.aggregationLength"),
                    Family::V6 => (agg6, "spec.aggregationLengthV6"),
                };
                let widest = range.widest_prefix() as i32;
                if len < widest {
                    r.error(
                        field,
                        format!(
                            "/{len} is wider than IPAddressPool {:?} spec.addresses[{i}] ({range}, widest prefix /{widest}): it would announce addresses outside the pool",
                            pool.name
                        ),
                    );
                }
            }
        }
        let node_selectors = selectors(&mut r, "nodeSelectors", &s.node_selectors);
        let service_selectors = selectors(&mut r, "serviceSelectors", &s.service_selectors);
        if r.error_count() == before {
            out.push(BgpAdvertisement {
                name,
                aggregation_length: agg4 as u8,
                aggregation_length_v6: agg6 as u8,
                local_pref: s.local_pref,
                communities,
                pools: selected,
                node_selectors,
                peers: s.peers.clone(),
                service_selectors,
            });
        }
    }
    check_local_pref_conflicts(&out, pools, objects, report);
    out
}

/// Two advertisements of one pool, both for every Service, may only disagree on LOCAL_PREF if
/// they can never announce the same prefix to the same peer from the same node.
fn check_local_pref_conflicts(
    ads: &[BgpAdvertisement],
    pools: &BTreeMap<String, Pool>,
    objects: &ClusterObjects,
    report: &mut Report,
) {
    let node_labels: Vec<Labels> =
        objects.nodes.iter().map(|n| n.metadata.labels.clone().unwrap_or_default()).collect();
    let nodes_of = |ad: &BgpAdvertisement| -> Option<BTreeSet<usize>> {
        (!ad.node_selectors.is_empty() && !node_labels.is_empty()).then(|| {
            node_labels
                .iter()
                .enumerate()
                .filter(|(_, l)| any_matches(&ad.node_selectors, l))
                .map(|(i, _)| i)
                .collect()
        })
    };
    for (i, a) in ads.iter().enumerate() {
        for b in &ads[i + 1..] {
            if a.local_pref == b.local_pref
                || !a.service_selectors.is_empty()
                || !b.service_selectors.is_empty()
            {
                continue;
            }
            for pool_name in a.pools.intersection(&b.pools) {
                let pool = &pools[pool_name];
                let same_prefixes = pool.families().iter().any(|f| a.aggregation(*f) == b.aggregation(*f));
                let disjoint_peers = !a.peers.is_empty()
                    && !b.peers.is_empty()
                    && a.peers.iter().all(|p| !b.peers.contains(p));
                let disjoint_nodes = match (nodes_of(a), nodes_of(b)) {
                    (Some(x), Some(y)) => x.is_disjoint(&y),
                    _ => false,
                };
                if same_prefixes && !disjoint_peers && !disjoint_nodes {
                    report.on("BGPAdvertisement", &b.name).error(
                        "spec.localPref",
                        format!(
                            "localPref {:?} conflicts with BGPAdvertisement {:?} (localPref {:?}) for IPAddressPool {pool_name:?}: same prefixes, peers and nodes",
                            b.local_pref, a.name, a.local_pref
                        ),
                    );
                    break;
                }
            }
        }
    }
}

pub(super) fn parse_l2_advertisements(
    objects: &ClusterObjects,
    pools: &BTreeMap<String, Pool>,
    report: &mut Report,
) -> Vec<L2Advertisement> {
    let all_pool_names = objects.pool_names();
    let mut out = Vec::new();
    for obj in &objects.l2_advertisements {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let s = &obj.spec;
        let mut r = report.on("L2Advertisement", &name);
        let before = r.error_count();
        let pools_selected =
            select_pools(&mut r, &s.ip_address_pools, &s.ip_address_pool_selectors, pools, &all_pool_names);
        let node_selectors = selectors(&mut r, "nodeSelectors", &s.node_selectors);
        let service_selectors = selectors(&mut r, "serviceSelectors", &s.service_selectors);
        let mut seen = BTreeSet::new();
        for (i, ifname) in s.interfaces.iter().enumerate() {
            if ifname.is_empty() {
                r.error(format!("spec.interfaces[{i}]"), "empty interface name");
            } else if !seen.insert(ifname) {
                r.error(format!("spec.interfaces[{i}]"), format!("interface {ifname:?} is listed twice"));
            }
        }
        let mut preferred_nodes = Vec::new();
        for (i, p) in s.preferred_node_selectors.iter().enumerate() {
            if !(1..=100).contains(&p.weight) {
                r.error(
                    format!("spec.preferredNodeSelectors[{i}].weight"),
                    format!("{} is outside 1 to 100", p.weight),
                );
            }
            match Selector::parse(&p.preference) {
                Ok(sel) => preferred_nodes.push((p.weight, sel)),
                Err(e) => r.error(format!("spec.preferredNodeSelectors[{i}].preference"), e),
            }
        }
        if r.error_count() == before {
            out.push(L2Advertisement {
                name,
                pools: pools_selected,
                node_selectors,
                interfaces: s.interfaces.clone(),
                service_selectors,
                preferred_nodes,
            });
        }
    }
    out
}
