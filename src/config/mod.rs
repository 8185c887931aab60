//! From the objects in a cluster (or in manifest files) to one validated [`Config`].
//!
//! [`parse`] is the single source of truth for what configuration is acceptable: `ferrolb plan`,
//! the controller, the speaker and the webhook all call it, so they can never disagree. It is
//! pure, and it reports every problem it finds, each naming kind, object, field and reason.

pub mod address;
mod advertisement;
pub mod community;
mod duration;
mod error;
pub mod frr_text;
mod node_rules;
mod peer;
mod pool;
pub mod selector;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::core::ObjectMeta;

pub use address::{AddrRange, Family};
pub use advertisement::{BgpAdvertisement, L2Advertisement};
pub use community::CommunityValue;
pub use error::{ConfigError, ConfigErrors};
pub use peer::{BfdProfile, Peer, PeerAsn, PeerEndpoint};
pub use pool::{Pool, PoolAllocation};
pub use selector::{Labels, Selector};

use crate::api;
use error::Report;

/// Everything the configuration depends on, as read from the API or from files.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    /// The namespace the config kinds must live in.
    pub namespace: String,
    pub pools: Vec<api::IPAddressPool>,
    pub l2_advertisements: Vec<api::L2Advertisement>,
    pub bgp_advertisements: Vec<api::BGPAdvertisement>,
    pub peers: Vec<api::BGPPeer>,
    pub bfd_profiles: Vec<api::BFDProfile>,
    pub communities: Vec<api::Community>,
    pub secrets: Vec<Secret>,
    pub namespaces: Vec<Namespace>,
    pub nodes: Vec<Node>,
}

impl ClusterObjects {
    pub fn new(namespace: impl Into<String>) -> Self {
        ClusterObjects { namespace: namespace.into(), ..Default::default() }
    }

    fn pool_names(&self) -> BTreeSet<String> {
        self.pools.iter().filter_map(|p| p.metadata.name.clone()).collect()
    }
}

/// A configuration that passed every rule. Maps are keyed by object name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub pools: BTreeMap<String, Pool>,
    pub peers: BTreeMap<String, Peer>,
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
    pub bgp_advertisements: Vec<BgpAdvertisement>,
    pub l2_advertisements: Vec<L2Advertisement>,
    pub community_aliases: BTreeMap<String, CommunityValue>,
}

impl Config {
    /// The pool an allocated IP came from, or why none is known.
    pub fn pool_of(&self, ip: std::net::IpAddr) -> Result<&Pool, String> {
        self.pools
            .values()
            .find(|p| p.ranges.iter().any(|r| r.contains(ip)))
            .ok_or_else(|| format!("{ip} is not in any IPAddressPool"))
    }
}

/// The outcome of [`parse`]: the config, or every error; warnings either way.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub result: Result<Config, ConfigErrors>,
    pub warnings: Vec<ConfigError>,
}

pub fn parse(objects: &ClusterObjects) -> Parsed {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut report = Report { errors: &mut errors, warnings: &mut warnings };

    check_metadata(objects, &mut report);
    let pools = pool::parse_pools(objects, &mut report);
    let bfd_profiles = peer::parse_bfd_profiles(objects, &mut report);
    let peers = peer::parse_peers(objects, &bfd_profiles, &mut report);
    let community_aliases = advertisement::parse_aliases(objects, &mut report);
    let bgp_advertisements =
        advertisement::parse_bgp_advertisements(objects, &pools, &community_aliases, &mut report);
    let l2_advertisements = advertisement::parse_l2_advertisements(objects, &pools, &mut report);
    node_rules::check(objects, &peers, &pools, &bgp_advertisements, &bfd_profiles, &mut report);

    errors.sort();
    errors.dedup();
    warnings.sort();
    let result = if errors.is_empty() {
        Ok(Config { pools, peers, bfd_profiles, bgp_advertisements, l2_advertisements, community_aliases })
    } else {
        Err(ConfigErrors(errors))
    };
    Parsed { result, warnings }
}

/// Names must be present and unique per kind, and config kinds live in one namespace.
fn check_metadata(objects: &ClusterObjects, report: &mut Report) {
    fn each<'a>(
        kind: &'static str,
        metas: impl Iterator<Item = &'a ObjectMeta>,
        namespace: &str,
        report: &mut Report,
    ) {
        let mut seen = BTreeSet::new();
        for meta in metas {
            let name = meta.name.as_deref().unwrap_or("");
            let mut r = report.on(kind, name);
            if name.is_empty() {
                r.error("metadata.name", "every object needs a name");
            } else if !seen.insert(name) {
                r.error("metadata.name", format!("more than one {kind} is named {name:?}"));
            }
            if let Some(ns) = meta.namespace.as_deref().filter(|ns| *ns != namespace) {
                r.error(
                    "metadata.namespace",
                    format!("must be {namespace:?} (the ferrolb namespace), not {ns:?}"),
                );
            }
        }
    }
    let ns = objects.namespace.as_str();
    each("IPAddressPool", objects.pools.iter().map(|o| &o.metadata), ns, report);
    each("L2Advertisement", objects.l2_advertisements.iter().map(|o| &o.metadata), ns, report);
    each("BGPAdvertisement", objects.bgp_advertisements.iter().map(|o| &o.metadata), ns, report);
    each("BGPPeer", objects.peers.iter().map(|o| &o.metadata), ns, report);
    each("BFDProfile", objects.bfd_profiles.iter().map(|o| &o.metadata), ns, report);
    each("Community", objects.communities.iter().map(|o| &o.metadata), ns, report);
}

#[cfg(test)]
mod tests;
