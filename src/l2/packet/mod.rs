//! ARP and NDP messages, decoded and built apart from any socket (pure, fuzzed). Frames are read
//! and written with etherparse; nothing here counts offsets by hand.

pub mod arp;
pub mod ndp;

#[cfg(test)]
mod tests;

pub type Mac = [u8; 6];

pub const BROADCAST: Mac = [0xff; 6];

/// Why a received frame was not something to answer. Never fatal: the responder drops it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("frame too short or malformed: {0}")]
    Malformed(String),
    #[error("not an Ethernet/IPv4 ARP packet: {0}")]
    NotEthernetIpv4(String),
    #[error("not an ARP request")]
    NotRequest,
    #[error("not a neighbor solicitation")]
    NotSolicitation,
    #[error("hop limit {0}, not 255: the message was routed, so it is not for us")]
    HopLimit(u8),
    #[error("IPv6 extension headers before the solicitation")]
    ExtensionHeaders,
    #[error("ICMPv6 checksum does not match")]
    Checksum,
    #[error("invalid neighbor solicitation: {0}")]
    Invalid(&'static str),
}

pub fn format_mac(mac: &Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
