//! NDP at layer 2: an AF_PACKET socket on one interface that receives neighbor solicitations and
//! sends whole frames, beside a socket that only holds the solicited-node groups.
//!
//! A raw ICMPv6 socket would be simpler, but the kernel hands it only what the IPv6 stack
//! accepts: multicast solicitations for joined groups, never a unicast one whose destination is
//! a Service IP the node does not hold, so a router's reachability probes went unanswered. A
//! packet socket sees every frame, so a classic BPF filter keeps userspace to solicitations: the
//! parser still checks each one in full (hop limit, checksum, RFC 4861's rules).

use std::io;
use std::net::Ipv6Addr;

use socket2::{Domain, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

const ETH_P_IPV6: u16 = 0x86dd;

pub struct NdpSocket {
    fd: AsyncFd<Socket>,
    /// Group memberships make the kernel program the NIC's multicast filter and send MLD
    /// reports, so snooping switches forward the multicast solicitations here. A UDP socket bound
    /// to no port holds them and never receives anything.
    groups: Socket,
    ifindex: u32,
}

impl NdpSocket {
    pub fn open(ifindex: u32) -> io::Result<NdpSocket> {
        // Protocol 0 receives nothing until bound, so no frame slips in before the filter.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        let program: Vec<SockFilter> =
            filter(ifindex).iter().map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k)).collect();
        socket.attach_filter(&program)?;
        socket.bind(&super::link_address(ifindex, ETH_P_IPV6))?;
        socket.set_nonblocking(true)?;
        let groups = Socket::new(Domain::IPV6, Type::DGRAM, None)?;
        Ok(NdpSocket { fd: super::register(socket)?, groups, ifindex })
    }

    pub fn join(&self, group: Ipv6Addr) -> io::Result<()> {
        self.groups.join_multicast_v6(&group, self.ifindex)
    }

    pub fn leave(&self, group: Ipv6Addr) -> io::Result<()> {
        self.groups.leave_multicast_v6(&group, self.ifindex)
    }

    /// The next frame the filter let through.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        super::recv_frame(&self.fd, buf).await
    }

    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        super::send_frame(&self.fd, frame).await
    }
}

/// One classic BPF instruction, kept readable so the tests can run the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const PACKET_HOST: u32 = 0;
const PACKET_MULTICAST: u32 = 2;
const ICMPV6: u32 = 58;
const NEIGHBOR_SOLICITATION: u32 = 135;
const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn ancillary(field: i32) -> u32 {
    (libc::SKF_AD_OFF + field) as u32
}

/// Keeps frames that arrived for this host or a group (not ones it sent, nor other hosts'
/// seen in promiscuous mode), on this very interface (a packet socket bound to a parent also
/// gets what its VLAN or macvlan devices receive), that are ICMPv6 neighbor solicitations
/// straight behind the IPv6 header (Ethernet: type at 12; IPv6: next header at 20; ICMPv6:
/// type at 54). Each check loads a field and jumps to the next check on a match, to the drop
/// otherwise.
pub fn filter(ifindex: u32) -> Vec<Insn> {
    let size = |s: u32| s as u16;
    let checks: [(u16, u32, &[u32]); 5] = [
        (size(libc::BPF_W), ancillary(libc::SKF_AD_PKTTYPE), &[PACKET_HOST, PACKET_MULTICAST]),
        (size(libc::BPF_W), ancillary(libc::SKF_AD_IFINDEX), &[ifindex]),
        (size(libc::BPF_H), 12, &[u32::from(ETH_P_IPV6)]),
        (size(libc::BPF_B), 20, &[ICMPV6]),
        (size(libc::BPF_B), 54, &[NEIGHBOR_SOLICITATION]),
    ];
    let len = checks.iter().map(|(_, _, values)| 1 + values.len()).sum::<usize>() + 2;
    let drop = len - 1;
    let mut out = Vec::with_capacity(len);
    for (width, offset, values) in checks {
        out.push(Insn { code: LD_ABS | width, jt: 0, jf: 0, k: offset });
        let next_check = out.len() + values.len();
        for (n, value) in values.iter().enumerate() {
            let at = out.len();
            let last = n + 1 == values.len();
            let jt = (next_check - at - 1) as u8;
            let jf = if last { (drop - at - 1) as u8 } else { 0 };
            out.push(Insn { code: JEQ, jt, jf, k: *value });
        }
    }
    out.push(Insn { code: RET, jt: 0, jf: 0, k: 0x40000 });
    out.push(Insn { code: RET, jt: 0, jf: 0, k: 0 });
    out
}

#[cfg(test)]
mod tests;
