//! A raw ICMPv6 socket bound to one interface: receives neighbor solicitations with their hop
//! limit, sends advertisements (the kernel adds the IPv6 header and checksum), and joins the
//! solicited-node groups of the addresses it answers for.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, sendmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

pub struct NdpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

/// One received ICMPv6 message.
pub struct Received {
    pub len: usize,
    pub source: Ipv6Addr,
    pub hop_limit: u8,
}

impl NdpSocket {
    pub fn open(ifname: &str, ifindex: u32) -> io::Result<NdpSocket> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        // RFC 4861: neighbor discovery is sent with, and only accepted at, hop limit 255.
        socket.set_multicast_hops_v6(255)?;
        socket.set_unicast_hops_v6(255)?;
        socket.set_multicast_loop_v6(false)?;
        // Advertisements go out from the Service IP itself, as the kernel's own do (some
        // clients, ndisc6 among them, accept an answer only from the address they asked about);
        // that address is not configured on the node, hence freebind.
        socket.set_freebind_v6(true)?;
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
        socket.set_nonblocking(true)?;
        Ok(NdpSocket { fd: super::register(socket)?, ifindex })
    }

    pub fn join(&self, group: Ipv6Addr) -> io::Result<()> {
        self.fd.get_ref().join_multicast_v6(&group, self.ifindex)
    }

    pub fn leave(&self, group: Ipv6Addr) -> io::Result<()> {
        self.fd.get_ref().leave_multicast_v6(&group, self.ifindex)
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|fd| {
                let mut iov = [IoSliceMut::new(buf)];
                let mut cmsg = nix::cmsg_space!(libc::c_int);
                let msg = recvmsg::<SockaddrIn6>(
                    fd.get_ref().as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                let hop_limit = msg
                    .cmsgs()
                    .map_err(io::Error::from)?
                    .find_map(|c| match c {
                        ControlMessageOwned::Ipv6HopLimit(h) => u8::try_from(h).ok(),
                        _ => None,
                    })
                    .unwrap_or(0);
                let source = msg.address.map_or(Ipv6Addr::UNSPECIFIED, |a| a.ip());
                Ok(Received { len: msg.bytes, source, hop_limit })
            });
            match got {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends `message` from `source` (an address this node answers for) to `destination`.
    pub async fn send(&self, message: &[u8], source: Ipv6Addr, destination: Ipv6Addr) -> io::Result<()> {
        // Link-local and multicast destinations need the interface as scope.
        let to = SockaddrIn6::from(SocketAddrV6::new(destination, 0, 0, self.ifindex));
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr { s6_addr: source.octets() },
            ipi6_ifindex: self.ifindex,
        };
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|fd| {
                sendmsg(
                    fd.get_ref().as_raw_fd(),
                    &[IoSlice::new(message)],
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
                .map_err(io::Error::from)
            });
            match sent {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}
