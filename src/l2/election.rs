//! Which node announces a Service's IPs in layer 2 mode, and on which interfaces.
//!
//! Every speaker computes the same ordering from the same inputs, so they agree without talking
//! (MetalLB's scheme, kept for drop-in behaviour): candidates are the live, eligible nodes an
//! L2Advertisement of the Service's pool selects (for externalTrafficPolicy Local, only those
//! with a serving endpoint); they sort by the summed weight of the preferredNodeSelectors they
//! match, highest first, then by sha256("node#ip") of the Service's first IP, so every IP of a
//! dual-stack Service, and every Service sharing an IP, lands on the same node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::config::selector::any_matches;
use crate::config::{Config, L2Advertisement};
use crate::service::ServiceKey;
use crate::topology::{Endpoints, NodeInfo, ServiceState};

/// One IP this node answers for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct L2Announcement {
    pub service: ServiceKey,
    pub ip: IpAddr,
    /// Interfaces to answer on; `None` means every eligible interface.
    pub interfaces: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2NodePlan {
    pub announcements: Vec<L2Announcement>,
    /// Services this node does not announce in layer 2, and why (who does, if anyone).
    pub withheld: BTreeMap<ServiceKey, String>,
}

/// The L2Advertisements that apply to `svc`, or why none does.
fn advertisements<'c>(config: &'c Config, svc: &ServiceState) -> Result<Vec<&'c L2Advertisement>, String> {
    let pool = config.pool_of(svc.ips[0])?;
    let ads: Vec<&L2Advertisement> =
        config.l2_advertisements.iter().filter(|a| a.pools.contains(&pool.name)).collect();
    if ads.is_empty() {
        return Err(format!("no L2Advertisement covers pool {:?}", pool.name));
    }
    // Upstream rule: a Service sharing its IP is never announced through an advertisement that
    // selects Services, since the sharers could disagree about it.
    if svc.shares_ip && ads.iter().any(|a| !a.service_selectors.is_empty()) {
        return Err(
            "the Service shares its IP and an L2Advertisement of its pool has serviceSelectors".into()
        );
    }
    let ads: Vec<&L2Advertisement> =
        ads.into_iter().filter(|a| any_matches(&a.service_selectors, &svc.labels)).collect();
    if ads.is_empty() {
        return Err(format!("no L2Advertisement of pool {:?} selects this Service", pool.name));
    }
    Ok(ads)
}

/// The candidates for `svc`, best first, or why there are none. `live` holds the nodes whose
/// speakers are up and part of the membership.
pub fn elect(
    config: &Config,
    svc: &ServiceState,
    nodes: &[NodeInfo],
    live: &BTreeSet<String>,
    endpoints: &Endpoints,
) -> Result<Vec<String>, String> {
    let mut scored = scored(config, svc, nodes, live, endpoints)?;
    scored.sort();
    Ok(scored.into_iter().map(|(_, _, _, n)| n.to_string()).collect())
}

/// The first of [`elect`]'s order alone: a speaker only needs to know whether it is the
/// winner, and at 10,000 Services and 100 nodes ranking everyone was most of its pass.
pub fn winner<'n>(
    config: &Config,
    svc: &ServiceState,
    nodes: &'n [NodeInfo],
    live: &BTreeSet<String>,
    endpoints: &Endpoints,
) -> Result<&'n str, String> {
    let scored = scored(config, svc, nodes, live, endpoints)?;
    Ok(scored.into_iter().min().map(|(_, _, _, n)| n).unwrap_or_default())
}

type Score<'n> = (bool, i64, [u8; 32], &'n str);

/// Every candidate with its sort key (unfit nodes last, then preference weight, then
/// sha256("node#ip")), unordered.
fn scored<'n>(
    config: &Config,
    svc: &ServiceState,
    nodes: &'n [NodeInfo],
    live: &BTreeSet<String>,
    endpoints: &Endpoints,
) -> Result<Vec<Score<'n>>, String> {
    if svc.ips.is_empty() {
        return Err("the Service has no IP".into());
    }
    if !endpoints.served_anywhere(&svc.key) {
        return Err("the Service has no serving endpoint".into());
    }
    let ads = advertisements(config, svc)?;
    let ip = svc.ips[0].to_string();
    let scored: Vec<Score<'n>> = nodes
        .iter()
        .filter(|n| live.contains(&n.name) && n.ineligible.is_none())
        .filter(|n| ads.iter().any(|a| any_matches(&a.node_selectors, &n.labels)))
        .filter(|n| !svc.local_traffic || endpoints.served_on(&svc.key, &n.name))
        .map(|n| {
            let score: i64 = ads
                .iter()
                .flat_map(|a| &a.preferred_nodes)
                .filter(|(_, selector)| selector.matches(&n.labels))
                .map(|(weight, _)| i64::from(*weight))
                .sum();
            // The bytes of format!("{node}#{ip}"), hashed without building the string.
            let digest: [u8; 32] =
                Sha256::new().chain_update(&n.name).chain_update("#").chain_update(&ip).finalize().into();
            (n.l2_unfit.is_some(), -score, digest, n.name.as_str())
        })
        .collect();
    if scored.is_empty() {
        return Err(if svc.local_traffic {
            "no live, eligible node selected by an L2Advertisement has a serving endpoint".into()
        } else {
            "no live, eligible node is selected by an L2Advertisement".into()
        });
    }
    Ok(scored)
}

/// What `node` announces in layer 2.
pub fn plan_node(
    config: &Config,
    node: &str,
    services: &[ServiceState],
    nodes: &[NodeInfo],
    live: &BTreeSet<String>,
    endpoints: &Endpoints,
) -> L2NodePlan {
    let mut plan = L2NodePlan::default();
    let this = nodes.iter().find(|n| n.name == node);
    for svc in services.iter().filter(|s| !s.ips.is_empty()) {
        let winner = match winner(config, svc, nodes, live, endpoints) {
            Ok(w) => w,
            Err(why) => {
                // A pool without L2Advertisements is simply not layer 2: say nothing.
                if !why.starts_with("no L2Advertisement covers") {
                    plan.withheld.insert(svc.key.clone(), why);
                }
                continue;
            }
        };
        if winner != node {
            plan.withheld.insert(svc.key.clone(), format!("node {winner} announces it"));
            continue;
        }
        let Some(this) = this else { continue };
        let ads = advertisements(config, svc).unwrap_or_default();
        let mine: Vec<_> = ads.iter().filter(|a| any_matches(&a.node_selectors, &this.labels)).collect();
        // The union of the interfaces this node's advertisements name; any advertisement
        // without a list means every interface.
        let interfaces = if mine.iter().any(|a| a.interfaces.is_empty()) {
            None
        } else {
            Some(mine.iter().flat_map(|a| a.interfaces.iter().cloned()).collect())
        };
        for ip in &svc.ips {
            plan.announcements.push(L2Announcement {
                service: svc.key.clone(),
                ip: *ip,
                interfaces: interfaces.clone(),
            });
        }
    }
    plan.announcements.sort();
    plan
}
