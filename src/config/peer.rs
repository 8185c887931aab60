use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::ClusterObjects;
use super::duration;
use super::error::{ObjectReport, Report};
use super::frr_text;
use super::selector::Selector;
use crate::api::{BFDProfile, BGPPeer, DynamicASNMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerAsn {
    Number(u32),
    Internal,
    External,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerEndpoint {
    Address(IpAddr),
    /// Unnumbered session over a host interface.
    Interface(String),
}

/// A validated BGPPeer with its password resolved and its timers in whole seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub my_asn: u32,
    pub asn: PeerAsn,
    pub local_asn: Option<u32>,
    pub endpoint: PeerEndpoint,
    pub source_address: Option<IpAddr>,
    pub port: u16,
    /// (keepalive, hold), derived from each other when only one is given.
    pub timers: Option<(u64, u64)>,
    pub connect_time: Option<u64>,
    pub router_id: Option<Ipv4Addr>,
    pub node_selectors: Vec<Selector>,
    pub password: Option<String>,
    pub bfd_profile: Option<String>,
    pub graceful_restart: bool,
    pub ebgp_multihop: bool,
    pub vrf: Option<String>,
    pub dual_stack_address_family: bool,
}

impl Peer {
    pub fn is_ibgp(&self) -> bool {
        match self.asn {
            PeerAsn::Number(n) => n == self.my_asn,
            PeerAsn::Internal => true,
            PeerAsn::External => false,
        }
    }

    /// Whether prefixes of `family` can be sent over this session: its own family, or both
    /// when unnumbered or with dualStackAddressFamily.
    pub fn carries(&self, family: super::Family) -> bool {
        match &self.endpoint {
            PeerEndpoint::Interface(_) => true,
            PeerEndpoint::Address(a) => self.dual_stack_address_family || super::Family::of(a) == family,
        }
    }

    pub fn vrf_name(&self) -> &str {
        self.vrf.as_deref().unwrap_or("")
    }
}

/// A validated BFDProfile; unset values keep FRR's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdProfile {
    pub name: String,
    pub receive_interval: Option<u32>,
    pub transmit_interval: Option<u32>,
    pub detect_multiplier: Option<u32>,
    pub echo_interval: Option<u32>,
    pub echo_mode: bool,
    pub passive_mode: bool,
    pub minimum_ttl: Option<u32>,
}

pub(super) fn parse_bfd_profiles(
    objects: &ClusterObjects,
    report: &mut Report,
) -> BTreeMap<String, BfdProfile> {
    let mut out = BTreeMap::new();
    for obj in &objects.bfd_profiles {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let mut r = report.on("BFDProfile", &name);
        if let Err(e) = frr_text::bfd_profile_name(&name) {
            r.error("metadata.name", format!("{e} (it becomes a BFD profile in FRR)"));
            continue;
        }
        if let Some(p) = parse_bfd_profile(obj, &name, &mut r) {
            out.insert(name, p);
        }
    }
    out
}

fn parse_bfd_profile(obj: &BFDProfile, name: &str, r: &mut ObjectReport) -> Option<BfdProfile> {
    let s = &obj.spec;
    let before = r.error_count();
    let mut check = |field: &str, value: Option<u32>, min: u32, max: u32, unit: &str| {
        if let Some(v) = value.filter(|v| !(min..=max).contains(v)) {
            r.error(format!("spec.{field}"), format!("{v} is outside {min} to {max}{unit}"));
        }
    };
    check("receiveInterval", s.receive_interval, 10, 60000, " ms");
    check("transmitInterval", s.transmit_interval, 10, 60000, " ms");
    check("detectMultiplier", s.detect_multiplier, 2, 255, "");
    check("echoInterval", s.echo_interval, 10, 60000, " ms");
    check("minimumTtl", s.minimum_ttl, 1, 254, "");
    (r.error_count() == before).then(|| BfdProfile {
        name: name.to_string(),
        receive_interval: s.receive_interval,
        transmit_interval: s.transmit_interval,
        detect_multiplier: s.detect_multiplier,
        echo_interval: s.echo_interval,
        echo_mode: s.echo_mode.unwrap_or(false),
        passive_mode: s.passive_mode.unwrap_or(false),
        minimum_ttl: s.minimum_ttl,
    })
}

pub(super) fn parse_peers(
    objects: &ClusterObjects,
    bfd: &BTreeMap<String, BfdProfile>,
    report: &mut Report,
) -> BTreeMap<String, Peer> {
    let mut out: BTreeMap<String, Peer> = BTreeMap::new();
    let mut specs_seen: Vec<(&str, &crate::api::BGPPeerSpec)> = Vec::new();
    for obj in &objects.peers {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let mut r = report.on("BGPPeer", &name);
        if let Some((other, _)) = specs_seen.iter().find(|(_, s)| **s == obj.spec) {
            r.error("spec", format!("identical to BGPPeer {other:?}"));
            continue;
        }
        specs_seen.push((obj.metadata.name.as_deref().unwrap_or(""), &obj.spec));
        if let Some(p) = parse_peer(obj, &name, objects, bfd, &mut r) {
            out.insert(name, p);
        }
    }
    out
}

fn parse_ip(r: &mut ObjectReport, field: &str, text: &Option<String>) -> Option<IpAddr> {
    let text = text.as_deref().filter(|t| !t.is_empty())?;
    match text.trim().parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            r.error(field, format!("{text:?} is not an IP address"));
            None
        }
    }
}

fn parse_peer(
    obj: &BGPPeer,
    name: &str,
    objects: &ClusterObjects,
    bfd: &BTreeMap<String, BfdProfile>,
    r: &mut ObjectReport,
) -> Option<Peer> {
    let s = &obj.spec;
    let before = r.error_count();
    if s.disable_mp {
        r.warn("spec.disableMP", "deprecated and ignored: IPv4 and IPv6 already use separate sessions");
    }
    if s.my_asn == 0 {
        r.error("spec.myASN", "missing local ASN (0 is not a valid AS number)");
    }
    let asn = match (s.peer_asn, s.dynamic_asn) {
        (Some(_), Some(_)) => {
            r.error("spec.peerASN", "set either peerASN or dynamicASN, not both");
            None
        }
        (None, None) => {
            r.error("spec.peerASN", "one of peerASN or dynamicASN is required");
            None
        }
        (Some(0), None) => {
            r.error("spec.peerASN", "0 is not a valid AS number");
            None
        }
        (Some(n), None) => Some(PeerAsn::Number(n)),
        (None, Some(DynamicASNMode::Internal)) => Some(PeerAsn::Internal),
        (None, Some(DynamicASNMode::External)) => Some(PeerAsn::External),
    };
    if s.local_asn == Some(0) {
        r.error("spec.localASN", "0 is not a valid AS number");
    }
    let address = parse_ip(r, "spec.peerAddress", &s.peer_address);
    let interface = s.interface.clone().filter(|i| !i.is_empty());
    if let Some(i) = &interface {
        checked(r, "spec.interface", frr_text::device_name(i));
    }
    let endpoint = match (address, interface, s.peer_address.as_deref().is_some_and(|a| !a.is_empty())) {
        (_, Some(_), true) => {
            r.error("spec.interface", "set either peerAddress or interface, not both");
            None
        }
        (_, Some(i), false) => Some(PeerEndpoint::Interface(i)),
        (Some(a), None, _) => Some(PeerEndpoint::Address(a)),
        (None, None, true) => None, // already reported as unparsable
        (None, None, false) => {
            r.error("spec.peerAddress", "one of peerAddress or interface is required");
            None
        }
    };
    let source_address = parse_ip(r, "spec.sourceAddress", &s.source_address);
    let router_id = match parse_ip(r, "spec.routerID", &s.router_id) {
        Some(IpAddr::V4(v4)) => Some(v4),
        Some(IpAddr::V6(_)) => {
            r.error("spec.routerID", "a BGP router ID is a 32-bit value written as an IPv4 address");
            None
        }
        None => None,
    };
    if s.peer_port == Some(0) {
        r.error("spec.peerPort", "port 0 is not valid (1 to 16384; omit for 179)");
    } else if let Some(p) = s.peer_port.filter(|p| *p > 16384) {
        r.error("spec.peerPort", format!("{p} is outside 1 to 16384"));
    }
    let timers = parse_timers(r, s.hold_time.as_deref(), s.keepalive_time.as_deref());
    let connect_time = s.connect_time.as_deref().and_then(|t| match duration::parse(t) {
        Ok(d) if d.subsec_nanos() != 0 => {
            r.error("spec.connectTime", format!("{t:?} must be whole seconds"));
            None
        }
        Ok(d) if !(1..=65535).contains(&d.as_secs()) => {
            r.error("spec.connectTime", format!("{t:?} is outside 1s to 65535s"));
            None
        }
        Ok(d) => Some(d.as_secs()),
        Err(e) => {
            r.error("spec.connectTime", e);
            None
        }
    });
    let node_selectors = Selector::parse_list(&s.node_selectors).unwrap_or_else(|(i, e)| {
        r.error(format!("spec.nodeSelectors[{i}]"), e);
        Vec::new()
    });
    let password = resolve_password(r, s, objects);
    let bfd_profile = s.bfd_profile.clone().filter(|b| !b.is_empty());
    let bfd_profile = bfd_profile.filter(|b| checked(r, "spec.bfdProfile", frr_text::bfd_profile_name(b)));
    let vrf = s.vrf.clone().filter(|v| !v.is_empty());
    let vrf = vrf.filter(|v| checked(r, "spec.vrf", frr_text::device_name(v)));
    if let Some(b) = bfd_profile.as_ref().filter(|b| !bfd.contains_key(*b)) {
        r.missing("spec.bfdProfile", format!("BFDProfile {b:?} does not exist"));
    }
    let peer = Peer {
        name: name.to_string(),
        my_asn: s.my_asn,
        asn: asn?,
        local_asn: s.local_asn,
        endpoint: endpoint?,
        source_address,
        port: s.peer_port.unwrap_or(179),
        timers,
        connect_time,
        router_id,
        node_selectors,
        password,
        bfd_profile,
        graceful_restart: s.enable_graceful_restart,
        ebgp_multihop: s.ebgp_multi_hop,
        vrf,
        dual_stack_address_family: s.dual_stack_address_family,
    };
    if peer.ebgp_multihop && peer.is_ibgp() {
        r.error("spec.ebgpMultiHop", "eBGP multihop cannot be set on an iBGP session (peer AS equals myASN)");
    }
    (r.error_count() == before).then_some(peer)
}

/// Hold and keepalive as FRR takes them: whole seconds, hold 0 or 3..=65535, keepalive <= hold.
fn parse_timers(r: &mut ObjectReport, hold: Option<&str>, keepalive: Option<&str>) -> Option<(u64, u64)> {
    let mut secs = |field: &str, t: Option<&str>| {
        t.and_then(|t| match duration::parse(t) {
            Ok(d) => Some((d.as_millis() as u64 + 500) / 1000),
            Err(e) => {
                r.error(field, e);
                None
            }
        })
    };
    let hold = secs("spec.holdTime", hold);
    let keepalive = secs("spec.keepaliveTime", keepalive);
    let (ka, hold) = match (keepalive, hold) {
        (None, None) => return None,
        (Some(ka), None) => (ka, ka.saturating_mul(3)),
        (None, Some(h)) => (h / 3, h),
        (Some(ka), Some(h)) => (ka, h),
    };
    if hold != 0 && hold < 3 {
        r.error("spec.holdTime", format!("{hold}s: the hold time must be 0 or at least 3s"));
    } else if hold > 65535 {
        r.error("spec.holdTime", format!("{hold}s: the hold time must be at most 65535s"));
    } else if ka > hold {
        r.error("spec.keepaliveTime", format!("{ka}s is longer than the hold time ({hold}s)"));
    } else {
        return Some((ka, hold));
    }
    None
}

/// Whether a field's text passed its check; a failure is reported on `field`.
fn checked(r: &mut ObjectReport, field: &str, check: Result<(), String>) -> bool {
    match check {
        Ok(()) => true,
        Err(e) => {
            r.error(field, e);
            false
        }
    }
}

fn resolve_password(
    r: &mut ObjectReport,
    s: &crate::api::BGPPeerSpec,
    objects: &ClusterObjects,
) -> Option<String> {
    let secret_ref = s.password_secret.as_ref();
    let inline = s.password.clone().filter(|p| !p.is_empty());
    let Some(secret_ref) = secret_ref else {
        return inline.filter(|p| checked(r, "spec.password", frr_text::password(p)));
    };
    if inline.is_some() {
        r.error("spec.passwordSecret", "set either password or passwordSecret, not both");
        return None;
    }
    let Some(secret_name) = secret_ref.name.as_deref().filter(|n| !n.is_empty()) else {
        r.error("spec.passwordSecret.name", "the Secret name is required");
        return None;
    };
    if let Some(ns) = secret_ref.namespace.as_deref().filter(|ns| *ns != objects.namespace) {
        r.error(
            "spec.passwordSecret.namespace",
            format!("the Secret must be in {:?}, not {ns:?}", objects.namespace),
        );
        return None;
    }
    let Some(secret) = objects.secrets.iter().find(|sec| {
        sec.metadata.name.as_deref() == Some(secret_name)
            && sec.metadata.namespace.as_deref().is_none_or(|ns| ns == objects.namespace)
    }) else {
        r.missing("spec.passwordSecret", format!("Secret {secret_name:?} does not exist"));
        return None;
    };
    if secret.type_.as_deref() != Some("kubernetes.io/basic-auth") {
        r.error(
            "spec.passwordSecret",
            format!(
                "Secret {secret_name:?} has type {:?}, it must be kubernetes.io/basic-auth",
                secret.type_.as_deref().unwrap_or("Opaque")
            ),
        );
        return None;
    }
    let from_data = secret.data.as_ref().and_then(|d| d.get("password")).map(|b| b.0.clone());
    let from_string =
        secret.string_data.as_ref().and_then(|d| d.get("password")).map(|s| s.clone().into_bytes());
    match from_string.or(from_data).map(String::from_utf8) {
        Some(Ok(pw)) => match frr_text::password(&pw) {
            Ok(()) => Some(pw),
            Err(e) => {
                r.error("spec.passwordSecret", format!("Secret {secret_name:?}, key \"password\": {e}"));
                None
            }
        },
        Some(Err(_)) => {
            r.error(
                "spec.passwordSecret",
                format!("the password in Secret {secret_name:?} is not UTF-8 text"),
            );
            None
        }
        None => {
            r.error("spec.passwordSecret", format!("Secret {secret_name:?} has no \"password\" key"));
            None
        }
    }
}
