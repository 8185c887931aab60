//! The ARP and NDP decoders on arbitrary bytes: never panic, and whatever decodes as a request
//! yields a reply that decodes back to the same addresses.
#![no_main]

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
    let hop_limit = data.first().copied().unwrap_or(255);
    if let Ok(s) = ndp::parse_solicitation(data.get(1..).unwrap_or_default(), hop_limit) {
        assert_eq!(hop_limit, 255);
        let na = ndp::advertisement(s.target, OURS, true, false);
        assert_eq!(&na[8..24], &s.target.octets());
    }
});
