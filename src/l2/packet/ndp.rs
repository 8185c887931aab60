//! IPv6 neighbor discovery as whole Ethernet frames: the solicitations worth answering and the
//! advertisements that answer them. Frames, not ICMPv6 bodies, because the kernel never hands a
//! socket of its own a *unicast* solicitation for an address it does not hold, and those are
//! the ones routers confirm a neighbor with (RFC 4861 §7.2.2); and because an answer built to
//! the frame's source MAC needs no neighbor entry of the node's own.

use std::net::Ipv6Addr;

use etherparse::icmpv6::{Icmpv6PayloadSlice, NdpOptionSlice, NeighborAdvertisementHeader};
use etherparse::{EtherType, Ethernet2Slice, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv6Slice, PacketBuilder};

use super::{Mac, PacketError};

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbor solicitation as it arrived: the frame's addresses, the packet's, and the option
/// the asker may have put its MAC in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solicitation {
    pub eth_source: Mac,
    pub eth_destination: Mac,
    /// `::` when the asker is about to take `target` for itself (duplicate address detection).
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub target: Ipv6Addr,
    pub source_link_layer: Option<Mac>,
}

fn malformed(e: impl std::fmt::Display) -> PacketError {
    PacketError::Malformed(e.to_string())
}

/// Decodes an Ethernet frame carrying a neighbor solicitation, with RFC 4861 §7.1.1's checks
/// (the kernel made them for us when a raw ICMPv6 socket received; a packet socket does not).
pub fn parse_solicitation(frame: &[u8]) -> Result<Solicitation, PacketError> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).map_err(malformed)?;
    if eth.ether_type() != EtherType::IPV6 {
        return Err(PacketError::NotSolicitation);
    }
    let ip = Ipv6Slice::from_slice(eth.payload_slice()).map_err(malformed)?;
    let header = ip.header();
    if header.payload_length() == 0 {
        return Err(malformed("IPv6 payload length 0"));
    }
    // Solicitations carry none (RFC 4861 sends them bare); one that does is someone else's
    // business, and refusing it keeps this decoder to what the socket's filter lets through.
    if !ip.extensions().is_empty() {
        return Err(PacketError::ExtensionHeaders);
    }
    if ip.payload().ip_number != IpNumber::IPV6_ICMP {
        return Err(PacketError::NotSolicitation);
    }
    // Anything not sent on-link (hop limit 255) is to be dropped.
    if header.hop_limit() != 255 {
        return Err(PacketError::HopLimit(header.hop_limit()));
    }
    let icmp = Icmpv6Slice::from_slice(ip.payload().payload).map_err(malformed)?;
    if icmp.icmp_type() != Icmpv6Type::NeighborSolicitation || icmp.code_u8() != 0 {
        return Err(PacketError::NotSolicitation);
    }
    if !icmp.is_checksum_valid(header.source(), header.destination()) {
        return Err(PacketError::Checksum);
    }
    let Icmpv6PayloadSlice::NeighborSolicitation(body) = icmp.payload_slice().map_err(malformed)? else {
        return Err(PacketError::NotSolicitation);
    };
    let mut source_link_layer = None;
    for option in body.options_iterator() {
        if let NdpOptionSlice::SourceLinkLayerAddress(o) = option.map_err(malformed)? {
            source_link_layer = <Mac>::try_from(o.link_layer_address()).ok();
        }
    }
    let s = Solicitation {
        eth_source: eth.source(),
        eth_destination: eth.destination(),
        source: header.source_addr(),
        destination: header.destination_addr(),
        target: body.target_address(),
        source_link_layer,
    };
    s.validate()?;
    Ok(s)
}

impl Solicitation {
    fn validate(&self) -> Result<(), PacketError> {
        if self.target.is_multicast() {
            return Err(PacketError::Invalid("the target is a multicast address"));
        }
        if self.eth_source[0] & 1 == 1 {
            return Err(PacketError::Invalid("the frame comes from a multicast MAC"));
        }
        if self.is_duplicate_address_detection() {
            if self.destination != solicited_node_group(self.target) {
                return Err(PacketError::Invalid("from :: but not to the target's solicited-node group"));
            }
            if self.source_link_layer.is_some() {
                return Err(PacketError::Invalid("from :: with a source link-layer address"));
            }
        }
        Ok(())
    }

    /// The asker is checking that nobody holds `target` before taking it.
    pub fn is_duplicate_address_detection(&self) -> bool {
        self.source.is_unspecified()
    }

    /// Upstream's rule, as for ARP: answer frames sent to everyone asking for `target` (its
    /// solicited-node group) or to us; a unicast one for another MAC (seen when the interface is
    /// promiscuous) is that host's to answer.
    pub fn addressed_to(&self, ours: &Mac) -> bool {
        self.eth_destination == *ours
            || self.eth_destination == multicast_mac(solicited_node_group(self.target))
    }
}

/// The advertisement answering `s` for `ours` (RFC 4861 §7.2.4). A solicitation from `::` is
/// answered to all nodes, unsolicited: the asker has no address to be answered at. Otherwise the
/// answer goes to the asker's address at the MAC it gave, or, without the option, the MAC its
/// frame came from: that is the MAC its own neighbor cache would have us reach it at.
pub fn answer(s: &Solicitation, ours: Mac) -> Vec<u8> {
    if s.is_duplicate_address_detection() {
        return unsolicited(s.target, ours);
    }
    let to = s.source_link_layer.unwrap_or(s.eth_source);
    // Override set: the Service IP is ours as far as the link is concerned (not proxied, not
    // anycast), so an answer must replace a MAC the asker still holds from a previous owner.
    let flags = NeighborAdvertisementHeader { router: false, solicited: true, r#override: true };
    advertisement(ours, to, s.target, s.source, flags)
}

/// An unsolicited advertisement of `target` at `ours` to all nodes, overriding what they cache
/// (takeovers, periodic refreshes, and the defence of an address against duplicate detection).
pub fn unsolicited(target: Ipv6Addr, ours: Mac) -> Vec<u8> {
    let flags = NeighborAdvertisementHeader { router: false, solicited: false, r#override: true };
    advertisement(ours, multicast_mac(ALL_NODES), target, ALL_NODES, flags)
}

const OPTION_TARGET_LINK_LAYER: u8 = 2;

/// Sent from the Service IP itself, as the kernel's own are: some askers (ndisc6 among them)
/// accept an answer only from the address they asked about.
fn advertisement(
    ours: Mac,
    eth_destination: Mac,
    target: Ipv6Addr,
    destination: Ipv6Addr,
    flags: NeighborAdvertisementHeader,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&target.octets());
    // Target link-layer address option: type, length in units of 8 octets, MAC.
    body.extend_from_slice(&[OPTION_TARGET_LINK_LAYER, 1]);
    body.extend_from_slice(&ours);
    let builder = PacketBuilder::ethernet2(ours, eth_destination)
        .ipv6(target.octets(), destination.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(flags));
    let mut out = Vec::with_capacity(builder.size(body.len()));
    // Only a payload longer than IPv6 can carry fails, and this one is 24 bytes.
    builder.write(&mut out, &body).expect("a 24-byte advertisement body fits any IPv6 packet");
    out
}

/// The solicited-node multicast group a host joins to hear solicitations for `ip`.
pub fn solicited_node_group(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// The Ethernet address IPv6 multicast `group` is sent to (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}
