//! The filter run by a small interpreter of the instructions it uses, over frames the packet
//! module builds: it must keep exactly the solicitations that arrived on its own interface.

use etherparse::ArpOperation;

use super::*;
use crate::l2::packet::{arp, ndp};

const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const IFINDEX: u32 = 7;
const OUTGOING: u32 = 4;
const OTHERHOST: u32 = 3;

/// Whether the kernel would pass `frame`, received with `pkttype` on `ifindex`, to the socket.
fn passes(program: &[Insn], frame: &[u8], pkttype: u32, ifindex: u32) -> bool {
    let mut a = 0u32;
    let mut pc = 0;
    while let Some(i) = program.get(pc) {
        pc += 1;
        match i.code {
            RET => return i.k != 0,
            JEQ => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
            code => {
                let width = [(libc::BPF_W, 4), (libc::BPF_H, 2), (libc::BPF_B, 1)]
                    .into_iter()
                    .find(|(w, _)| code == LD_ABS | *w as u16)
                    .map(|(_, n)| n);
                let Some(width) = width else { panic!("instruction {i:?} not interpreted") };
                a = if i.k == ancillary(libc::SKF_AD_PKTTYPE) {
                    pkttype
                } else if i.k == ancillary(libc::SKF_AD_IFINDEX) {
                    ifindex
                } else {
                    // Loads past the end end the program with a drop, as in the kernel.
                    let Some(bytes) = frame.get(i.k as usize..i.k as usize + width) else { return false };
                    bytes.iter().fold(0, |acc, b| acc << 8 | u32::from(*b))
                };
            }
        }
    }
    false
}

fn solicitation() -> Vec<u8> {
    let mut frame = ndp::unsolicited("2001:db8:10::200".parse().unwrap(), OURS);
    frame[54] = 135;
    frame
}

#[test]
fn only_solicitations_received_on_the_interface_pass() {
    let program = filter(IFINDEX);
    let ns = solicitation();
    assert!(passes(&program, &ns, PACKET_HOST, IFINDEX));
    assert!(passes(&program, &ns, PACKET_MULTICAST, IFINDEX));
    assert!(!passes(&program, &ns, OUTGOING, IFINDEX), "our own kernel's solicitations");
    assert!(!passes(&program, &ns, OTHERHOST, IFINDEX), "another host's, seen in promiscuous mode");
    assert!(!passes(&program, &ns, PACKET_HOST, IFINDEX + 1), "received on a VLAN of this interface");
    let advertisement = ndp::unsolicited("2001:db8:10::200".parse().unwrap(), OURS);
    assert!(!passes(&program, &advertisement, PACKET_MULTICAST, IFINDEX));
    let gratuitous = arp::gratuitous("192.0.2.200".parse().unwrap(), OURS, ArpOperation::REQUEST);
    assert!(!passes(&program, &gratuitous, PACKET_HOST, IFINDEX));
    let mut behind_an_extension = ns.clone();
    behind_an_extension[20] = 0;
    assert!(!passes(&program, &behind_an_extension, PACKET_HOST, IFINDEX));
    assert!(!passes(&program, &ns[..40], PACKET_HOST, IFINDEX), "too short to hold a type");
}

#[test]
fn every_jump_lands_inside_the_program() {
    let program = filter(IFINDEX);
    for (at, i) in program.iter().enumerate().filter(|(_, i)| i.code == JEQ) {
        for off in [i.jt, i.jf] {
            assert!(at + 1 + usize::from(off) < program.len(), "{at}: {i:?}");
        }
    }
    assert_eq!(program.last().map(|i| (i.code, i.k)), Some((RET, 0)));
}
