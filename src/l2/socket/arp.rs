//! An AF_PACKET socket bound to one interface that sees only ARP frames and sends whole frames.

use std::io;
use std::mem::size_of;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};
use tokio::io::unix::AsyncFd;

const ETH_P_ARP: u16 = 0x0806;

pub struct ArpSocket {
    fd: AsyncFd<Socket>,
}

/// `sockaddr_ll` for `ifindex`: socket2 has no safe constructor for link-layer addresses.
fn link_address(ifindex: u32) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types (what view_as requires);
    // the length handed to SockAddr::new is exactly sockaddr_ll's.
    unsafe {
        let ll = storage.view_as::<libc::sockaddr_ll>();
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = ETH_P_ARP.to_be();
        ll.sll_ifindex = ifindex as i32;
        SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    }
}

impl ArpSocket {
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        let socket =
            Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))))?;
        socket.bind(&link_address(ifindex))?;
        socket.set_nonblocking(true)?;
        Ok(ArpSocket { fd: super::register(socket)? })
    }

    /// The next frame received on the interface.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                let mut socket: &Socket = fd.get_ref();
                io::Read::read(&mut socket, buf)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send(frame)) {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}
