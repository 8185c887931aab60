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

// NS for 2001:db8:10::200 with source link-layer option 02:00:00:00:00:64 (checksum not
// checked here: the kernel verifies it on raw ICMPv6 sockets).
const SOLICIT: &str = "87 00 0000 00000000  20010db8001000000000000000000200  01 01 020000000064";

#[test]
fn a_neighbor_solicitation_decodes_and_is_answered_byte_for_byte() {
    let s = ndp::parse_solicitation(&hex(SOLICIT), 255).unwrap();
    assert_eq!(s.target, "2001:db8:10::200".parse::<Ipv6Addr>().unwrap());
    assert_eq!(s.source_mac, CLIENT);
    // Solicited, not overriding: R=0 S=1 O=0.
    assert_eq!(
        ndp::advertisement(s.target, NODE, true, false),
        hex("88 00 0000 40000000  20010db8001000000000000000000200  02 01 020000000011")
    );
    // Unsolicited takeover: S=0 O=1.
    assert_eq!(
        ndp::advertisement(s.target, NODE, false, true),
        hex("88 00 0000 20000000  20010db8001000000000000000000200  02 01 020000000011")
    );
}

#[test]
fn solicitations_we_must_not_answer() {
    assert_eq!(ndp::parse_solicitation(&hex(SOLICIT), 64), Err(PacketError::HopLimit(64)));
    // Duplicate address detection carries no source link-layer option.
    let dad = &hex(SOLICIT)[..24];
    assert_eq!(ndp::parse_solicitation(dad, 255), Err(PacketError::NoSourceLinkLayer));
    let mut advert = hex(SOLICIT);
    advert[0] = 136;
    assert_eq!(ndp::parse_solicitation(&advert, 255), Err(PacketError::NotSolicitation));
    // An option claiming zero length would loop forever in a naive parser.
    let mut zero_len = hex(SOLICIT);
    zero_len[25] = 0;
    assert!(matches!(ndp::parse_solicitation(&zero_len, 255), Err(PacketError::Malformed(_))));
    assert!(ndp::parse_solicitation(&hex(SOLICIT)[..10], 255).is_err());
}

#[test]
fn solicited_node_groups() {
    let ip: Ipv6Addr = "2001:db8:10::1:2345".parse().unwrap();
    assert_eq!(ndp::solicited_node_group(ip), "ff02::1:ff01:2345".parse::<Ipv6Addr>().unwrap());
    assert_eq!(format_mac(&NODE), "02:00:00:00:00:11");
}
