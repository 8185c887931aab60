//! What one node announces over BGP: (prefix, peers, communities, LOCAL_PREF) per Service IP,
//! and, for every Service it does not announce, why not.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::selector::any_matches;
use crate::config::{BgpAdvertisement, CommunityValue, Config, Family, Peer};
use crate::service::ServiceKey;
use crate::topology::{Endpoints, NodeInfo, ServiceState};

/// One prefix sent to some peers with the same attributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Announcement {
    pub service: ServiceKey,
    pub ip: IpAddr,
    pub prefix: IpNet,
    pub communities: BTreeSet<CommunityValue>,
    pub local_pref: Option<u32>,
    pub peers: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlan {
    pub announcements: Vec<Announcement>,
    /// Services with IPs this node does not announce over BGP, and why.
    pub withheld: BTreeMap<ServiceKey, String>,
}

/// Peers whose nodeSelectors pick this node.
pub fn node_peers<'c>(config: &'c Config, node: &NodeInfo) -> Vec<&'c Peer> {
    config.peers.values().filter(|p| any_matches(&p.node_selectors, &node.labels)).collect()
}

pub fn plan_node(
    config: &Config,
    node: &NodeInfo,
    services: &[ServiceState],
    endpoints: &Endpoints,
) -> NodePlan {
    let peers = node_peers(config, node);
    let mut plan = NodePlan::default();
    for svc in services.iter().filter(|s| !s.ips.is_empty()) {
        match announce_service(config, node, svc, endpoints, &peers) {
            Ok(mut a) => plan.announcements.append(&mut a),
            Err(reason) => {
                plan.withheld.insert(svc.key.clone(), reason);
            }
        }
    }
    plan.announcements.sort();
    plan
}

fn announce_service(
    config: &Config,
    node: &NodeInfo,
    svc: &ServiceState,
    endpoints: &Endpoints,
    node_peers: &[&Peer],
) -> Result<Vec<Announcement>, String> {
    let pool = config.pool_of(svc.ips[0])?;
    let ads: Vec<&BgpAdvertisement> =
        config.bgp_advertisements.iter().filter(|a| a.pools.contains(&pool.name)).collect();
    if ads.is_empty() {
        return Err(format!("no BGPAdvertisement covers pool {:?}", pool.name));
    }
    if let Some(why) = &node.ineligible {
        return Err(why.clone());
    }
    let ads: Vec<&BgpAdvertisement> =
        ads.into_iter().filter(|a| any_matches(&a.node_selectors, &node.labels)).collect();
    if ads.is_empty() {
        return Err(format!("no BGPAdvertisement of pool {:?} selects node {}", pool.name, node.name));
    }
    let ads: Vec<&BgpAdvertisement> =
        ads.into_iter().filter(|a| any_matches(&a.service_selectors, &svc.labels)).collect();
    if ads.is_empty() {
        return Err(format!("no BGPAdvertisement of pool {:?} selects this Service", pool.name));
    }
    if svc.local_traffic && !endpoints.served_on(&svc.key, &node.name) {
        return Err(format!("externalTrafficPolicy is Local and node {} has no serving endpoint", node.name));
    }
    if !svc.local_traffic && !endpoints.served_anywhere(&svc.key) {
        return Err("the Service has no serving endpoint".into());
    }
    if node_peers.is_empty() {
        return Err(format!("no BGPPeer selects node {}", node.name));
    }
    // (ip, prefix, peer) -> (communities, local prefs seen)
    type Attrs = (BTreeSet<CommunityValue>, BTreeSet<Option<u32>>);
    let mut per_peer: BTreeMap<(IpAddr, IpNet, String), Attrs> = BTreeMap::new();
    for ip in &svc.ips {
        for ad in &ads {
            let len = ad.aggregation(Family::of(ip));
            let prefix = IpNet::new(*ip, len).expect("aggregation length validated").trunc();
            let family = Family::of(ip);
            for peer in node_peers.iter().filter(|p| ad.sends_to(&p.name) && p.carries(family)) {
                let e = per_peer.entry((*ip, prefix, peer.name.clone())).or_default();
                e.0.extend(ad.communities.iter().copied());
                e.1.insert(ad.local_pref);
            }
        }
    }
    if per_peer.is_empty() {
        return Err(
            "no BGPPeer of this node both is named by its BGPAdvertisements and carries its IP family".into(),
        );
    }
    // Group peers that receive a prefix with identical attributes.
    type Route = (IpAddr, IpNet, BTreeSet<CommunityValue>, Option<u32>);
    let mut grouped: BTreeMap<Route, BTreeSet<String>> = BTreeMap::new();
    for ((ip, prefix, peer), (communities, prefs)) in per_peer {
        if prefs.len() > 1 {
            return Err(format!(
                "BGPAdvertisements set different localPref values ({}) for {prefix} to peer {peer}",
                prefs
                    .iter()
                    .map(|p| p.map_or("unset".into(), |v| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let pref = prefs.into_iter().next().flatten();
        grouped.entry((ip, prefix, communities, pref)).or_default().insert(peer);
    }
    Ok(grouped
        .into_iter()
        .map(|((ip, prefix, communities, local_pref), peers)| Announcement {
            service: svc.key.clone(),
            ip,
            prefix,
            communities,
            local_pref,
            peers,
        })
        .collect())
}
