//! The pool entry parser on arbitrary text: never panics, and what it accepts round-trips
//! through CIDR summarisation exactly.
#![no_main]

use ferrolb::config::AddrRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(range) = AddrRange::parse(text) else { return };
    let cidrs = range.to_cidrs();
    assert!(!cidrs.is_empty() && cidrs.len() <= 256, "{text:?}: {} CIDRs", cidrs.len());
    let mut next = range.first;
    for net in &cidrs {
        let part = AddrRange::from_net(*net);
        assert_eq!(part.first, next, "{text:?}: gap or overlap at {net}");
        next = part.last.wrapping_add(1);
    }
    assert_eq!(AddrRange::from_net(*cidrs.last().unwrap()).last, range.last, "{text:?}");
    assert!(range.widest_prefix() <= range.family.bits());
});
