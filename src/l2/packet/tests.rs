//! Byte-exact ARP and NDP messages, written out field by field from RFC 826 and RFC 4861 rather
//! than with the library the code uses, so the two check each other.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::ArpOperation;

use super::*;

const CLIENT: Mac = [0x02, 0, 0, 0, 0, 0x64];
const NODE: Mac = [0x02, 0, 0, 0, 0, 0x11];

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

// who-has 192.0.2.200 tell 192.0.2.100, broadcast.
const WHO_HAS: &str =
    "ffffffffffff 020000000064 0806  0001 0800 06 04 0001  020000000064 c0000264  000000000000 c00002c8";

#[test]
fn an_arp_request_decodes_and_is_answered_byte_for_byte() {
    let req = arp::parse_request(&hex(WHO_HAS)).unwrap();
    assert_eq!(req.sender_ip, Ipv4Addr::new(192, 0, 2, 100));
    assert_eq!(req.target_ip, Ipv4Addr::new(192, 0, 2, 200));
    assert_eq!(req.sender_mac, CLIENT);
    assert!(req.addressed_to(&NODE));
    assert_eq!(
        arp::reply(&req, NODE),
        hex(
            "020000000064 020000000011 0806  0001 0800 06 04 0002  020000000011 c00002c8  020000000064 c0000264"
        )
    );
}

#[test]
fn gratuitous_arp_in_both_forms() {
    let ip = Ipv4Addr::new(192, 0, 2, 200);
    assert_eq!(
        arp::gratuitous(ip, NODE, ArpOperation::REQUEST),
        hex(
            "ffffffffffff 020000000011 0806  0001 0800 06 04 0001  020000000011 c00002c8  000000000000 c00002c8"
        )
    );
    assert_eq!(
        arp::gratuitous(ip, NODE, ArpOperation::REPLY),
        hex(
            "ffffffffffff 020000000011 0806  0001 0800 06 04 0002  020000000011 c00002c8  ffffffffffff c00002c8"
        )
    );
}

#[test]
fn arp_that_is_not_a_request_for_us_is_refused_with_a_reason() {
    let mut unicast_elsewhere = hex(WHO_HAS);
    unicast_elsewhere[..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
    assert!(!arp::parse_request(&unicast_elsewhere).unwrap().addressed_to(&NODE));
    let mut reply = hex(WHO_HAS);
    reply[21] = 2;
    assert_eq!(arp::parse_request(&reply), Err(PacketError::NotRequest));
    let mut ipv6_arp = hex(WHO_HAS);
    ipv6_arp[16..18].copy_from_slice(&[0x86, 0xdd]);
    assert!(matches!(arp::parse_request(&ipv6_arp), Err(PacketError::NotEthernetIpv4(_))));
    assert!(matches!(arp::parse_request(&hex(WHO_HAS)[..30]), Err(PacketError::Malformed(_))));
    assert!(matches!(arp::parse_request(&[]), Err(PacketError::Malformed(_))));
}

// Neighbor solicitations for 2001:db8:10::200 as they arrive on the wire, from the client
// 2001:db8:10::100 (02:00:00:00:00:64): Ethernet, IPv6 (hop limit 255), ICMPv6 with its checksum
// over the pseudo-header, target, and the source link-layer address option when present.
const MULTICAST_NS: &str = "3333ff000200 020000000064 86dd  6000 0000 0020 3a ff  \
    20010db8001000000000000000000100 ff0200000000000000000001ff000200  \
    87 00 16a9 00000000  20010db8001000000000000000000200  0101 020000000064";
// The same sent to the node's MAC and the target itself, as neighbor unreachability detection
// probes are.
const UNICAST_NS: &str = "020000000011 020000000064 86dd  6000 0000 0020 3a ff  \
    20010db8001000000000000000000100 20010db8001000000000000000000200  \
    87 00 e6e4 00000000  20010db8001000000000000000000200  0101 020000000064";
// Unicast without the option (RFC 4861 §4.3: SHOULD, not MUST, for unicast).
const UNICAST_NS_BARE: &str = "020000000011 020000000064 86dd  6000 0000 0018 3a ff  \
    20010db8001000000000000000000100 20010db8001000000000000000000200  \
    87 00 ea51 00000000  20010db8001000000000000000000200";
// Duplicate address detection: from ::, to the solicited-node group, no option.
const DAD_NS: &str = "3333ff000200 020000000064 86dd  6000 0000 0018 3a ff  \
    00000000000000000000000000000000 ff0200000000000000000001ff000200  \
    87 00 48df 00000000  20010db8001000000000000000000200";
// The multicast one behind a hop-by-hop options header (a PadN option).
const HOP_BY_HOP_NS: &str = "3333ff000200 020000000064 86dd  6000 0000 0028 00 ff  \
    20010db8001000000000000000000100 ff0200000000000000000001ff000200  3a00 0104 00000000  \
    87 00 16a9 00000000  20010db8001000000000000000000200  0101 020000000064";

// Solicited (S=1) and overriding (O=1), from the target to the client at its MAC.
const SOLICITED_NA: &str = "020000000064 020000000011 86dd  6000 0000 0020 3a ff  \
    20010db8001000000000000000000200 20010db8001000000000000000000100  \
    88 00 8537 60000000  20010db8001000000000000000000200  0201 020000000011";
// Unsolicited (S=0, O=1), to all nodes (ff02::1 at 33:33:00:00:00:01).
const UNSOLICITED_NA: &str = "333300000001 020000000011 86dd  6000 0000 0020 3a ff  \
    20010db8001000000000000000000200 ff020000000000000000000000000001  \
    88 00 f4fc 20000000  20010db8001000000000000000000200  0201 020000000011";

fn target() -> Ipv6Addr {
    "2001:db8:10::200".parse().unwrap()
}

#[test]
fn multicast_and_unicast_solicitations_with_the_option_are_answered_at_it() {
    for frame in [MULTICAST_NS, UNICAST_NS] {
        let s = ndp::parse_solicitation(&hex(frame)).unwrap();
        assert_eq!(s.target, target());
        assert_eq!(s.source, "2001:db8:10::100".parse::<Ipv6Addr>().unwrap());
        assert_eq!(s.source_link_layer, Some(CLIENT));
        assert!(!s.is_duplicate_address_detection());
        assert!(s.addressed_to(&NODE));
        assert_eq!(ndp::answer(&s, NODE), hex(SOLICITED_NA));
    }
}

#[test]
fn a_unicast_solicitation_without_the_option_is_answered_at_the_frames_source() {
    let s = ndp::parse_solicitation(&hex(UNICAST_NS_BARE)).unwrap();
    assert_eq!((s.source_link_layer, s.eth_source), (None, CLIENT));
    assert!(s.addressed_to(&NODE));
    assert_eq!(ndp::answer(&s, NODE), hex(SOLICITED_NA));
    // Where the frame came from is where the answer goes, whatever sent it.
    let mut other = hex(UNICAST_NS_BARE);
    other[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x65]);
    assert_eq!(&ndp::answer(&ndp::parse_solicitation(&other).unwrap(), NODE)[..6], &[0x02, 0, 0, 0, 0, 0x65]);
}

#[test]
fn duplicate_address_detection_is_defended_to_all_nodes() {
    let s = ndp::parse_solicitation(&hex(DAD_NS)).unwrap();
    assert!(s.is_duplicate_address_detection());
    assert!(s.addressed_to(&NODE));
    assert_eq!(ndp::answer(&s, NODE), hex(UNSOLICITED_NA));
    assert_eq!(ndp::unsolicited(target(), NODE), hex(UNSOLICITED_NA));
    // From :: it may carry no option and must go to the target's group (RFC 4861 §7.1.1).
    let with_option = "3333ff000200 020000000064 86dd  6000 0000 0020 3a ff  \
        00000000000000000000000000000000 ff0200000000000000000001ff000200  \
        87 00 4572 00000000  20010db8001000000000000000000200  0101 020000000064";
    let to_all_nodes = "333300000001 020000000064 86dd  6000 0000 0018 3a ff  \
        00000000000000000000000000000000 ff020000000000000000000000000001  \
        87 00 49e0 00000000  20010db8001000000000000000000200";
    for frame in [with_option, to_all_nodes] {
        assert!(matches!(ndp::parse_solicitation(&hex(frame)), Err(PacketError::Invalid(_))), "{frame}");
    }
}

#[test]
fn solicitations_we_must_not_answer_are_refused_with_a_reason() {
    let mut routed = hex(MULTICAST_NS);
    routed[21] = 64;
    assert_eq!(ndp::parse_solicitation(&routed), Err(PacketError::HopLimit(64)));
    assert_eq!(ndp::parse_solicitation(&hex(HOP_BY_HOP_NS)), Err(PacketError::ExtensionHeaders));
    let mut corrupt = hex(UNICAST_NS);
    corrupt[70] ^= 1;
    assert_eq!(ndp::parse_solicitation(&corrupt), Err(PacketError::Checksum));
    let mut advert = hex(UNICAST_NS);
    advert[54] = 136;
    assert_eq!(ndp::parse_solicitation(&advert), Err(PacketError::NotSolicitation));
    let mut arp = hex(UNICAST_NS);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(ndp::parse_solicitation(&arp), Err(PacketError::NotSolicitation));
    // An option claiming zero length would loop forever in a naive parser.
    let mut zero_len = hex(UNICAST_NS);
    zero_len[79] = 0;
    // Add back to the same half of another 16-bit word what was taken, so the checksum holds.
    zero_len[85] += 1;
    assert!(matches!(ndp::parse_solicitation(&zero_len), Err(PacketError::Malformed(_))));
    for cut in [0, 13, 30, 60, 77, 85] {
        let frame = hex(MULTICAST_NS);
        assert!(
            matches!(ndp::parse_solicitation(&frame[..cut]), Err(PacketError::Malformed(_))),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_unicast_solicitation_for_another_mac_is_not_addressed_to_us() {
    let s = ndp::parse_solicitation(&hex(UNICAST_NS)).unwrap();
    assert!(!s.addressed_to(&[0x02, 0, 0, 0, 0, 0x12]));
    let multicast = ndp::parse_solicitation(&hex(MULTICAST_NS)).unwrap();
    assert!(multicast.addressed_to(&[0x02, 0, 0, 0, 0, 0x12]));
}

#[test]
fn solicited_node_groups() {
    let ip: Ipv6Addr = "2001:db8:10::1:2345".parse().unwrap();
    assert_eq!(ndp::solicited_node_group(ip), "ff02::1:ff01:2345".parse::<Ipv6Addr>().unwrap());
    assert_eq!(format_mac(&NODE), "02:00:00:00:00:11");
}
