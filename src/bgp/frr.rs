//! One node's BGP state as FRR sees it: routers, neighbors, filters and BFD profiles, in a
//! serialisable view model that `templates/frr.conf.tera` lays out.
//!
//! Everything is sorted, so equal inputs render byte-identical files; names follow MetalLB's
//! (`<neighbor>-in`, `<neighbor>-out`, `<neighbor>-allowed-ipv4`, ...) so operators used to its
//! FRR mode find their way around.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::announce::{Announcement, node_peers};
use crate::config::{BfdProfile, CommunityValue, Config, Family, Peer, PeerAsn, PeerEndpoint};
use crate::topology::NodeInfo;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrrConfig {
    pub hostname: String,
    pub log_level: String,
    pub routers: Vec<Router>,
    pub bfd_profiles: Vec<BfdProfileView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Router {
    pub asn: u32,
    pub router_id: Option<String>,
    pub vrf: Option<String>,
    pub neighbors: Vec<Neighbor>,
    /// One `address-family` block per family in use, networks first, as FRR prints them.
    pub families: Vec<AddressFamily>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressFamily {
    /// `ipv4` or `ipv6`.
    pub name: &'static str,
    pub networks: Vec<String>,
    /// (target, id) of every neighbor activated in this family.
    pub neighbors: Vec<NeighborRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeighborRef {
    pub target: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbor {
    /// The BGPPeer this neighbor comes from.
    pub peer: String,
    /// Address or interface, as written after `neighbor`.
    pub target: String,
    /// Unique per node (target, suffixed with the VRF): names its filters.
    pub id: String,
    /// Everything after `neighbor <target> ` in the session block, in FRR's order.
    pub session: Vec<String>,
    pub prefix_lists: Vec<PrefixList>,
    pub route_map_out: Vec<RouteMapEntry>,
}

/// Whether rendered output may carry BGP passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// The real passwords: only for the config handed to FRR.
    Show,
    /// `password REDACTED`: for anything a person or a log will read.
    Hide,
}

pub const REDACTED: &str = "REDACTED";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixList {
    /// `ip` or `ipv6`.
    pub family: &'static str,
    pub name: String,
    /// `seq N permit PREFIX` or `seq 1 deny any`.
    pub entries: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteMapEntry {
    pub seq: u32,
    pub family: &'static str,
    pub list: String,
    /// A `set ...` line; entries with one continue to the next (`on-match next`).
    pub set: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BfdProfileView {
    pub name: String,
    pub lines: Vec<String>,
}

fn kw(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ipv6",
    }
}

fn afi(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ipv4",
        IpNet::V6(_) => "ipv6",
    }
}

/// Address families a session carries, by FRR's names.
fn families(peer: &Peer) -> BTreeSet<&'static str> {
    [(Family::V4, "ipv4"), (Family::V6, "ipv6")]
        .into_iter()
        .filter(|(f, _)| peer.carries(*f))
        .map(|(_, n)| n)
        .collect()
}

fn session_lines(peer: &Peer, secrets: Secrets) -> Vec<String> {
    let asn = match peer.asn {
        PeerAsn::Number(n) => n.to_string(),
        PeerAsn::Internal => "internal".into(),
        PeerAsn::External => "external".into(),
    };
    // The order `show running-config` prints them in (FRR 8.4), so a rendered file and the
    // running configuration compare line for line.
    let mut l = vec![match peer.endpoint {
        PeerEndpoint::Interface(_) => format!("interface remote-as {asn}"),
        PeerEndpoint::Address(_) => format!("remote-as {asn}"),
    }];
    if let Some(local) = peer.local_asn {
        l.push(format!("local-as {local} no-prepend replace-as"));
    }
    if let Some(b) = &peer.bfd_profile {
        // FRR prints both lines; writing only the second makes a reload diff remove BFD.
        l.push("bfd".into());
        l.push(format!("bfd profile {b}"));
    }
    if let Some(pw) = &peer.password {
        l.push(format!("password {}", if secrets == Secrets::Show { pw.as_str() } else { REDACTED }));
    }
    if peer.port != 179 {
        l.push(format!("port {}", peer.port));
    }
    if peer.ebgp_multihop {
        l.push("ebgp-multihop 255".into());
    }
    // FRR refuses single-hop eBGP to a numbered IPv6 peer whose address is not on a connected
    // network unless told not to check; MetalLB always disables the check there.
    let numbered_v6 = matches!(peer.endpoint, PeerEndpoint::Address(IpAddr::V6(_)));
    if numbered_v6 && !peer.ebgp_multihop && !peer.is_ibgp() {
        l.push("disable-connected-check".into());
    }
    if let Some(src) = peer.source_address {
        l.push(format!("update-source {src}"));
    }
    if let Some((ka, hold)) = peer.timers {
        l.push(format!("timers {ka} {hold}"));
    }
    if let Some(c) = peer.connect_time {
        l.push(format!("timers connect {c}"));
    }
    if peer.graceful_restart {
        l.push("graceful-restart".into());
    }
    l
}

/// Per-neighbor accumulation of what it is sent.
#[derive(Default)]
struct Sent {
    allowed: BTreeSet<IpNet>,
    communities: BTreeMap<CommunityValue, BTreeSet<IpNet>>,
    local_prefs: BTreeMap<u32, BTreeSet<IpNet>>,
}

fn build_neighbor(peer: &Peer, sent: &Sent, secrets: Secrets) -> Neighbor {
    let target = match &peer.endpoint {
        PeerEndpoint::Address(a) => a.to_string(),
        PeerEndpoint::Interface(i) => i.clone(),
    };
    let id = match &peer.vrf {
        Some(v) => format!("{target}-{v}"),
        None => target.clone(),
    };
    let fams = families(peer);
    let mut prefix_lists = Vec::new();
    let mut route_map_out = Vec::new();
    let mut seq = 0;
    let mut filtered =
        |name_part: String, set: String, prefixes: &BTreeSet<IpNet>, lists: &mut Vec<PrefixList>| {
            for (fam_kw, fam) in [("ip", "ipv4"), ("ipv6", "ipv6")] {
                let nets: Vec<&IpNet> = prefixes.iter().filter(|n| kw(n) == fam_kw).collect();
                if nets.is_empty() || !fams.contains(fam) {
                    continue;
                }
                let name = format!("{id}-{name_part}-{fam}");
                let entries =
                    nets.iter().enumerate().map(|(i, n)| format!("seq {} permit {n}", i + 1)).collect();
                lists.push(PrefixList { family: fam_kw, name: name.clone(), entries });
                seq += 1;
                route_map_out.push(RouteMapEntry { seq, family: fam_kw, list: name, set: Some(set.clone()) });
            }
        };
    for (pref, nets) in &sent.local_prefs {
        filtered(format!("{pref}"), format!("set local-preference {pref}"), nets, &mut prefix_lists);
    }
    for (c, nets) in &sent.communities {
        let (label, set) = match c {
            CommunityValue::Standard(..) => {
                (format!("{c}"), format!("set community {} additive", frr_community(c)))
            }
            CommunityValue::Large(a, b, x) => {
                (format!("{c}"), format!("set large-community {a}:{b}:{x} additive"))
            }
        };
        let suffix = if matches!(c, CommunityValue::Large(..)) { "large-community" } else { "community" };
        filtered(format!("{label}-{suffix}"), set, nets, &mut prefix_lists);
    }
    for (fam_kw, fam) in [("ip", "ipv4"), ("ipv6", "ipv6")] {
        let nets: Vec<&IpNet> = sent.allowed.iter().filter(|n| kw(n) == fam_kw).collect();
        let entries = if nets.is_empty() {
            vec!["seq 1 deny any".to_string()]
        } else {
            nets.iter().enumerate().map(|(i, n)| format!("seq {} permit {n}", i + 1)).collect()
        };
        let name = format!("{id}-allowed-{fam}");
        prefix_lists.push(PrefixList { family: fam_kw, name: name.clone(), entries });
        seq += 1;
        route_map_out.push(RouteMapEntry { seq, family: fam_kw, list: name, set: None });
    }
    Neighbor {
        peer: peer.name.clone(),
        target,
        id,
        session: session_lines(peer, secrets),
        prefix_lists,
        route_map_out,
    }
}

/// FRR prints RFC-reserved communities by name; writing them that way keeps the file canonical.
fn frr_community(c: &CommunityValue) -> String {
    let name = match c {
        CommunityValue::Standard(0xffff, 0) => "graceful-shutdown",
        CommunityValue::Standard(0xffff, 1) => "accept-own",
        CommunityValue::Standard(0xffff, 6) => "llgr-stale",
        CommunityValue::Standard(0xffff, 7) => "no-llgr",
        CommunityValue::Standard(0xffff, 666) => "blackhole",
        CommunityValue::Standard(0xffff, 0xff01) => "no-export",
        CommunityValue::Standard(0xffff, 0xff02) => "no-advertise",
        CommunityValue::Standard(0xffff, 0xff03) => "local-AS",
        CommunityValue::Standard(0xffff, 0xff04) => "no-peer",
        _ => return c.to_string(),
    };
    name.to_string()
}

/// MetalLB's mapping of its log levels onto FRR's.
pub fn frr_log_level(level: &str) -> &'static str {
    match level {
        "all" | "debug" => "debugging",
        "warn" => "warnings",
        "error" => "error",
        "none" => "emergencies",
        _ => "informational",
    }
}

pub fn build(
    config: &Config,
    node: &NodeInfo,
    announcements: &[Announcement],
    log_level: &str,
    secrets: Secrets,
) -> FrrConfig {
    let peers = node_peers(config, node);
    let mut sent: BTreeMap<&str, Sent> = peers.iter().map(|p| (p.name.as_str(), Sent::default())).collect();
    for a in announcements {
        for peer_name in &a.peers {
            let Some(peer) = config.peers.get(peer_name) else { continue };
            if !families(peer).contains(afi(&a.prefix)) {
                continue; // a v6 prefix cannot ride a v4-only session
            }
            let Some(s) = sent.get_mut(peer_name.as_str()) else { continue };
            s.allowed.insert(a.prefix);
            for c in &a.communities {
                s.communities.entry(*c).or_default().insert(a.prefix);
            }
            if let Some(p) = a.local_pref {
                s.local_prefs.entry(p).or_default().insert(a.prefix);
            }
        }
    }
    // One bgpd router per (VRF, ASN, router ID); the default VRF sorts first.
    let mut routers: BTreeMap<(String, u32, String), Router> = BTreeMap::new();
    for peer in &peers {
        let key = (
            peer.vrf_name().to_string(),
            peer.my_asn,
            peer.router_id.map(|r| r.to_string()).unwrap_or_default(),
        );
        let router = routers.entry(key).or_insert_with(|| Router {
            asn: peer.my_asn,
            router_id: peer.router_id.map(|r| r.to_string()),
            vrf: peer.vrf.clone(),
            neighbors: Vec::new(),
            families: Vec::new(),
        });
        router.neighbors.push(build_neighbor(peer, &sent[peer.name.as_str()], secrets));
    }
    for router in routers.values_mut() {
        // FRR's order: unnumbered sessions first, then by address (numerically).
        router.neighbors.sort_by_key(|n| (n.target.parse::<IpAddr>().ok(), n.target.clone(), n.id.clone()));
        for fam in ["ipv4", "ipv6"] {
            let neighbors: Vec<NeighborRef> = router
                .neighbors
                .iter()
                .filter(|n| families(&config.peers[&n.peer]).contains(fam))
                .map(|n| NeighborRef { target: n.target.clone(), id: n.id.clone() })
                .collect();
            let networks: BTreeSet<IpNet> = router
                .neighbors
                .iter()
                .flat_map(|n| sent[n.peer.as_str()].allowed.iter().copied())
                .filter(|p| afi(p) == fam)
                .collect();
            if !neighbors.is_empty() || !networks.is_empty() {
                let networks = networks.iter().map(ToString::to_string).collect();
                router.families.push(AddressFamily { name: fam, networks, neighbors });
            }
        }
    }
    FrrConfig {
        hostname: node.name.clone(),
        log_level: frr_log_level(log_level).to_string(),
        routers: routers.into_values().collect(),
        bfd_profiles: config.bfd_profiles.values().map(bfd_view).collect(),
    }
}

/// FRR hides values equal to its defaults in `show running-config`; so do we, so the two
/// compare equal.
fn bfd_view(p: &BfdProfile) -> BfdProfileView {
    let not_default = |v: Option<u32>, default: u32| v.filter(|v| *v != default);
    let mut lines = Vec::new();
    if let Some(v) = not_default(p.detect_multiplier, 3) {
        lines.push(format!("detect-multiplier {v}"));
    }
    if let Some(v) = not_default(p.transmit_interval, 300) {
        lines.push(format!("transmit-interval {v}"));
    }
    if let Some(v) = not_default(p.receive_interval, 300) {
        lines.push(format!("receive-interval {v}"));
    }
    if p.passive_mode {
        lines.push("passive-mode".into());
    }
    if p.echo_mode {
        lines.push("echo-mode".into());
    }
    if let Some(v) = not_default(p.echo_interval, 50) {
        lines.push(format!("echo transmit-interval {v}"));
        lines.push(format!("echo receive-interval {v}"));
    }
    if let Some(v) = not_default(p.minimum_ttl, 254) {
        lines.push(format!("minimum-ttl {v}"));
    }
    BfdProfileView { name: p.name.clone(), lines }
}
