//! The ARP and NDP decoders on arbitrary bytes: never panic, and whatever decodes as something
//! to answer yields an answer that decodes back to the same addresses.
#![no_main]

use etherparse::{Icmpv6Slice, Ipv6Slice};
use ferrolb::l2::packet::{arp, ndp};
use libfuzzer_sys::fuzz_target;

const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = arp::parse_request(data) {
        let reply = arp::reply(&req, OURS);
        assert_eq!(reply.len(), 42);
        assert_eq!(&reply[..6], &req.sender_mac);
        assert_eq!(&reply[28..32], &req.target_ip.octets());
    }
    if let Ok(s) = ndp::parse_solicitation(data) {
        // Only on-link messages decode at all.
        assert_eq!(data[21], 255);
        let na = ndp::answer(&s, OURS);
        assert_eq!(na.len(), 86);
        let to = match s.source.is_unspecified() {
            true => ndp::multicast_mac(ndp::ALL_NODES),
            false => s.source_link_layer.unwrap_or(s.eth_source),
        };
        assert_eq!((&na[..6], &na[6..12]), (&to[..], &OURS[..]));
        // A valid IPv6 packet from the target, whose ICMPv6 checksum holds.
        let ip = Ipv6Slice::from_slice(&na[14..]).expect("the answer is IPv6");
        assert_eq!(ip.header().source_addr(), s.target);
        let icmp = Icmpv6Slice::from_slice(ip.payload().payload).expect("the answer is ICMPv6");
        assert!(icmp.is_checksum_valid(ip.header().source(), ip.header().destination()));
        assert_eq!(&na[62..78], &s.target.octets());
    }
});
