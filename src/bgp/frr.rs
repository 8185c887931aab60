//! One node's BGP state as FRR sees it: routers, neighbors, filters and BFD profiles, in a
//! serialisable view model that `templates/frr.conf.tera` lays out.
//!
//! Everything is sorted, so equal inputs render byte-identical files.
//!
//! Unlike MetalLB, whose filters list every prefix in per-neighbor prefix lists, prefixes are
//! grouped into *classes*: all prefixes that go to the same peers with the same communities and
//! LOCAL_PREF share a class. Each `network` line names its class's route-map, which sets a local
//! tag (tags never leave the router); each neighbor's outbound route-map has one entry per class
//! it receives, matching the tag and setting that neighbor's attributes; everything else is
//! denied. FRR 8.4 spends time proportional to a prefix list's length on every entry added, so
//! 1,000 prefixes in prefix lists took 22 s to apply; as `network` lines they take 0.12 s.

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
    /// What follows `log stdout`; empty for FRR's default level.
    pub log_level: String,
    pub routers: Vec<Router>,
    /// Origination route-maps, one per class: `route-map ferrolb-class-<tag>` sets the tag.
    pub classes: Vec<u32>,
    pub bfd_profiles: Vec<BfdProfileView>,
    /// Sessions bfdd runs from the configuration itself, not only for bgpd: see [`bfd_peer`].
    pub bfd_peers: Vec<BfdPeerView>,
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
    /// The BGPPeer this neighbor comes from (never laid out: the file names peers by address).
    #[serde(skip)]
    pub peer: String,
    /// Address or interface, as written after `neighbor`.
    pub target: String,
    /// Unique per node (target, suffixed with the VRF): names its filters.
    pub id: String,
    /// Everything after `neighbor <target> ` in the session block, in FRR's order.
    pub session: Vec<String>,
    /// One entry per class this neighbor receives; its sequence number is the class tag.
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
pub struct RouteMapEntry {
    /// The class tag, also the entry's sequence number.
    pub tag: u32,
    /// `set ...` lines, in the order FRR prints them.
    pub sets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BfdProfileView {
    pub name: String,
    pub lines: Vec<String>,
}

/// A `peer` in the `bfd` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BfdPeerView {
    pub address: String,
    pub vrf: Option<String>,
    pub profile: String,
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
    if let Some((ka, hold)) = session_timers(peer) {
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

/// FRR's own keepalive and hold time under `frr defaults traditional`, which the template sets.
const FRR_DEFAULT_TIMERS: (u64, u64) = (60, 180);

/// The `timers` a session is rendered with. A BFD-protected peer always gets explicit ones,
/// FRR's defaults when the BGPPeer sets none: FRR 10.4 and 10.5 keep a session up for 30 s
/// after BFD goes down unless the neighbor has explicit timers (FRR #20215, #22097), and a user
/// may run either in the sidecar. The values are the ones FRR would use anyway, so nothing
/// else about the session changes.
fn session_timers(peer: &Peer) -> Option<(u64, u64)> {
    peer.timers.or(peer.bfd_profile.as_ref().map(|_| FRR_DEFAULT_TIMERS))
}

/// What one peer receives for a prefix.
type PeerAttrs = (BTreeSet<CommunityValue>, Option<u32>);
/// A class: every peer that receives its prefixes, with what each receives.
type Class = BTreeMap<String, PeerAttrs>;

/// Tags double as route-map sequence numbers, so they stay in 1..=65534; derived from the
/// class's content so a class keeps its tag whatever other classes come and go.
fn assign_tags(classes: &BTreeSet<Class>) -> BTreeMap<Class, u32> {
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for class in classes {
        let text = format!("{class:?}");
        // FNV-1a: small, stable across Rust versions (unlike the std hasher).
        let mut h: u64 = 0xcbf29ce484222325;
        for b in text.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        let mut tag = (h % 65534) as u32 + 1;
        while !taken.insert(tag) {
            tag = tag % 65534 + 1;
        }
        out.insert(class.clone(), tag);
    }
    out
}

fn set_lines((communities, local_pref): &PeerAttrs) -> Vec<String> {
    let mut sets = Vec::new();
    let standard: Vec<String> =
        communities.iter().filter(|c| matches!(c, CommunityValue::Standard(..))).map(frr_community).collect();
    if !standard.is_empty() {
        sets.push(format!("set community {} additive", standard.join(" ")));
    }
    let large: Vec<String> = communities
        .iter()
        .filter_map(|c| match c {
            CommunityValue::Large(a, b, x) => Some(format!("{a}:{b}:{x}")),
            CommunityValue::Standard(..) => None,
        })
        .collect();
    if !large.is_empty() {
        sets.push(format!("set large-community {} additive", large.join(" ")));
    }
    if let Some(p) = local_pref {
        sets.push(format!("set local-preference {p}"));
    }
    sets
}

fn build_neighbor(peer: &Peer, tags: &BTreeMap<Class, u32>, secrets: Secrets) -> Neighbor {
    let target = match &peer.endpoint {
        PeerEndpoint::Address(a) => a.to_string(),
        PeerEndpoint::Interface(i) => i.clone(),
    };
    let id = match &peer.vrf {
        Some(v) => format!("{target}-{v}"),
        None => target.clone(),
    };
    let mut route_map_out: Vec<RouteMapEntry> = tags
        .iter()
        .filter_map(|(class, tag)| {
            class.get(&peer.name).map(|attrs| RouteMapEntry { tag: *tag, sets: set_lines(attrs) })
        })
        .collect();
    route_map_out.sort_by_key(|e| e.tag);
    Neighbor { peer: peer.name.clone(), target, id, session: session_lines(peer, secrets), route_map_out }
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

/// FRR's own `log` levels, most severe first.
pub const FRR_LOG_LEVELS: [&str; 8] = [
    "emergencies",
    "alerts",
    "critical",
    "errors",
    "warnings",
    "notifications",
    "informational",
    "debugging",
];

/// MetalLB's log levels and the FRR level MetalLB gives each.
pub const METALLB_LOG_LEVELS: [(&str, &str); 6] = [
    ("all", "debugging"),
    ("debug", "debugging"),
    ("info", "informational"),
    ("warn", "warnings"),
    ("error", "errors"),
    ("none", "emergencies"),
];

/// FRR's `log` level for one of MetalLB's log levels or one of FRR's own names; None for
/// anything else.
pub fn frr_log_level(level: &str) -> Option<&'static str> {
    let metallb = METALLB_LOG_LEVELS.into_iter().find(|(m, _)| *m == level).map(|(_, f)| f);
    metallb.or_else(|| FRR_LOG_LEVELS.into_iter().find(|l| *l == level))
}

/// [`frr_log_level`] for a command-line flag: the level as given, or an error naming the valid ones.
pub fn parse_log_level(level: &str) -> Result<String, String> {
    match frr_log_level(level) {
        Some(_) => Ok(level.to_string()),
        None => Err(format!(
            "{level:?} is not a log level: use all, debug, info, warn, error, none or one of FRR's ({})",
            FRR_LOG_LEVELS.join(", ")
        )),
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
    // prefix -> class (what each peer that carries its family receives).
    let mut classes: BTreeMap<IpNet, Class> = BTreeMap::new();
    for a in announcements {
        for peer_name in &a.peers {
            let Some(peer) = config.peers.get(peer_name) else { continue };
            if !families(peer).contains(afi(&a.prefix)) {
                continue; // a v6 prefix cannot ride a v4-only session
            }
            let attrs = classes.entry(a.prefix).or_default().entry(peer_name.clone()).or_default();
            attrs.0.extend(a.communities.iter().copied());
            attrs.1 = attrs.1.or(a.local_pref);
        }
    }
    let tags = assign_tags(&classes.values().cloned().collect());
    // One bgpd router per (VRF, ASN, router ID); the default VRF sorts first.
    let mut routers: BTreeMap<(String, u32, String), Router> = BTreeMap::new();
    for peer in &peers {
        let router_id = peer.router_id.or(node.router_id);
        let key =
            (peer.vrf_name().to_string(), peer.my_asn, router_id.map(|r| r.to_string()).unwrap_or_default());
        let router = routers.entry(key).or_insert_with(|| Router {
            asn: peer.my_asn,
            router_id: router_id.map(|r| r.to_string()),
            vrf: peer.vrf.clone(),
            neighbors: Vec::new(),
            families: Vec::new(),
        });
        router.neighbors.push(build_neighbor(peer, &tags, secrets));
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
            // A prefix is originated by the router whose neighbors receive it.
            let peers_here: BTreeSet<&str> = router.neighbors.iter().map(|n| n.peer.as_str()).collect();
            let networks: Vec<String> = classes
                .iter()
                .filter(|(prefix, class)| {
                    afi(prefix) == fam && class.keys().any(|p| peers_here.contains(p.as_str()))
                })
                .map(|(prefix, class)| format!("{prefix} route-map ferrolb-class-{}", tags[class]))
                .collect();
            if !neighbors.is_empty() || !networks.is_empty() {
                router.families.push(AddressFamily { name: fam, networks, neighbors });
            }
        }
    }
    FrrConfig {
        hostname: crate::config::frr_text::hostname(&node.name),
        // debugging is a log target's default, which FRR prints as a bare `log stdout`.
        log_level: match frr_log_level(log_level).unwrap_or("informational") {
            "debugging" => String::new(),
            level => level.to_string(),
        },
        routers: routers.into_values().collect(),
        classes: tags.values().copied().collect::<BTreeSet<u32>>().into_iter().collect(),
        bfd_profiles: config.bfd_profiles.values().map(bfd_view).collect(),
        bfd_peers: {
            let mut peers: Vec<BfdPeerView> = peers.iter().filter_map(|p| bfd_peer(p)).collect();
            peers.sort_by_key(|p| (p.vrf.clone(), p.address.parse::<IpAddr>().ok()));
            // bfdd has one session per address and VRF, whichever bgpd router uses it.
            peers.dedup_by(|a, b| (&a.vrf, &a.address) == (&b.vrf, &b.address));
            peers
        },
    }
}

/// The configured BFD session of a directly connected eBGP peer with BFD. FRR's bgpd registers
/// its BFD session before the connection is up, without source address and interface, and
/// registers it again once they are known; bfdd tears down the first (sending Down to the
/// other side, even when someone else holds the session: `pcn_free` in FRR's
/// bfdd/ptm_adapter.c, 8.4 to 10.7), and the router that hears BFD go down resets the fresh
/// BGP session hard, flushing the routes graceful restart kept. frr-agent therefore writes a
/// neighbor's `bfd` lines only once its session is established (its key is final then), and
/// this session, which bfdd keeps whoever registers, keeps BFD running meanwhile, so a router
/// that starts no BFD-protected session before BFD is up (FRR 10.2 to 10.3.0) still does.
/// bgpd's registration joins it: bfdd matches a session whose local address and interface
/// are unset with any. Multi-hop, iBGP (hop count known only once connected) and unnumbered
/// sessions keep bgpd's own registration.
fn bfd_peer(peer: &Peer) -> Option<BfdPeerView> {
    let (PeerEndpoint::Address(address), Some(profile)) = (&peer.endpoint, &peer.bfd_profile) else {
        return None;
    };
    if peer.ebgp_multihop || peer.is_ibgp() {
        return None;
    }
    Some(BfdPeerView { address: address.to_string(), vrf: peer.vrf.clone(), profile: profile.clone() })
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
