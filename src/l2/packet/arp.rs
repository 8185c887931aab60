//! ARP over Ethernet: the requests worth answering, the replies, and gratuitous announcements.

use std::net::Ipv4Addr;

use etherparse::{ArpEthIpv4Packet, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Ethernet2Slice};

use super::{BROADCAST, Mac, PacketError};

/// A who-has for `target`, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub eth_destination: Mac,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// Decodes an Ethernet frame carrying an ARP request.
pub fn parse_request(frame: &[u8]) -> Result<Request, PacketError> {
    let eth =
        Ethernet2Slice::from_slice_without_fcs(frame).map_err(|e| PacketError::Malformed(e.to_string()))?;
    if eth.ether_type() != EtherType::ARP {
        return Err(PacketError::Malformed(format!("ether type {:?} is not ARP", eth.ether_type())));
    }
    let arp =
        ArpPacket::from_slice(eth.payload_slice()).map_err(|e| PacketError::Malformed(e.to_string()))?;
    let arp = arp.try_eth_ipv4().map_err(|e| PacketError::NotEthernetIpv4(e.to_string()))?;
    if arp.operation != ArpOperation::REQUEST {
        return Err(PacketError::NotRequest);
    }
    Ok(Request {
        eth_destination: eth.destination(),
        sender_mac: arp.sender_mac,
        sender_ip: arp.sender_ipv4_addr(),
        target_ip: arp.target_ipv4_addr(),
    })
}

impl Request {
    /// Upstream's rule: answer only frames sent to everyone or to us.
    pub fn addressed_to(&self, ours: &Mac) -> bool {
        self.eth_destination == BROADCAST || self.eth_destination == *ours
    }
}

fn frame(destination: Mac, source: Mac, arp: ArpEthIpv4Packet) -> Vec<u8> {
    let eth = Ethernet2Header { source, destination, ether_type: EtherType::ARP };
    let mut out = Vec::with_capacity(Ethernet2Header::LEN + ArpEthIpv4Packet::LEN);
    out.extend_from_slice(&eth.to_bytes());
    out.extend_from_slice(&arp.to_bytes());
    out
}

/// "`request.target_ip` is at `ours`", sent straight back to the asker.
pub fn reply(request: &Request, ours: Mac) -> Vec<u8> {
    frame(
        request.sender_mac,
        ours,
        ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: ours,
            sender_ipv4: request.target_ip.octets(),
            target_mac: request.sender_mac,
            target_ipv4: request.sender_ip.octets(),
        },
    )
}

/// Gratuitous ARP for `ip` at `ours`, broadcast, in request or reply form (hosts differ in
/// which one updates their cache, so both are sent). Sender and target are both `ip`.
pub fn gratuitous(ip: Ipv4Addr, ours: Mac, operation: ArpOperation) -> Vec<u8> {
    let target_mac = if operation == ArpOperation::REPLY { BROADCAST } else { [0; 6] };
    frame(
        BROADCAST,
        ours,
        ArpEthIpv4Packet {
            operation,
            sender_mac: ours,
            sender_ipv4: ip.octets(),
            target_mac,
            target_ipv4: ip.octets(),
        },
    )
}
