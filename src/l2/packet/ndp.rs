//! IPv6 neighbor discovery: solicitations worth answering and the advertisements that answer
//! them. Messages are ICMPv6 bodies as a raw ICMPv6 socket carries them (the kernel adds the IPv6
//! header and the checksum).

use std::net::Ipv6Addr;

use etherparse::icmpv6::{NdpOptionSlice, NeighborAdvertisementHeader};
use etherparse::{Icmpv6Slice, Icmpv6Type};

use super::{Mac, PacketError};

/// A neighbor solicitation for `target`, from a host that told us its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solicitation {
    pub target: Ipv6Addr,
    pub source_mac: Mac,
}

/// Decodes an ICMPv6 message received with `hop_limit`.
pub fn parse_solicitation(message: &[u8], hop_limit: u8) -> Result<Solicitation, PacketError> {
    // RFC 4861 7.1.1: anything not sent on-link (hop limit 255) is to be dropped.
    if hop_limit != 255 {
        return Err(PacketError::HopLimit(hop_limit));
    }
    let icmp = Icmpv6Slice::from_slice(message).map_err(|e| PacketError::Malformed(e.to_string()))?;
    if icmp.icmp_type() != Icmpv6Type::NeighborSolicitation || icmp.code_u8() != 0 {
        return Err(PacketError::NotSolicitation);
    }
    let payload = match icmp.payload_slice().map_err(|e| PacketError::Malformed(e.to_string()))? {
        etherparse::icmpv6::Icmpv6PayloadSlice::NeighborSolicitation(p) => p,
        _ => return Err(PacketError::NotSolicitation),
    };
    // Upstream answers only solicitations carrying the asker's MAC: without it the asker is
    // doing duplicate address detection (from ::), which must not be answered.
    let mut source_mac = None;
    for option in payload.options_iterator() {
        let option = option.map_err(|e| PacketError::Malformed(e.to_string()))?;
        if let NdpOptionSlice::SourceLinkLayerAddress(o) = option {
            source_mac = <Mac>::try_from(o.link_layer_address()).ok();
        }
    }
    let source_mac = source_mac.ok_or(PacketError::NoSourceLinkLayer)?;
    Ok(Solicitation { target: payload.target_address(), source_mac })
}

const TYPE_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const OPTION_TARGET_LINK_LAYER: u8 = 2;

/// A neighbor advertisement saying `target` is at `ours`: `solicited` when answering, with
/// `override_cache` for unsolicited takeovers (so neighbors replace a cached MAC at once).
pub fn advertisement(target: Ipv6Addr, ours: Mac, solicited: bool, override_cache: bool) -> Vec<u8> {
    let flags = NeighborAdvertisementHeader { router: false, solicited, r#override: override_cache };
    let mut out = Vec::with_capacity(32);
    // type, code, checksum (the kernel fills it in for raw ICMPv6 sockets), flags word
    out.extend_from_slice(&[TYPE_NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    out.extend_from_slice(&flags.to_bytes());
    out.extend_from_slice(&target.octets());
    // Target link-layer address option: type, length in units of 8 octets, MAC.
    out.extend_from_slice(&[OPTION_TARGET_LINK_LAYER, 1]);
    out.extend_from_slice(&ours);
    out
}

/// The solicited-node multicast group a host joins to hear solicitations for `ip`.
pub fn solicited_node_group(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}
