//! An AF_PACKET socket bound to one interface that sees only ARP frames and sends whole frames.

use std::io;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

const ETH_P_ARP: u16 = 0x0806;

pub struct ArpSocket {
    fd: AsyncFd<Socket>,
}

impl ArpSocket {
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        let socket =
            Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))))?;
        socket.bind(&super::link_address(ifindex, ETH_P_ARP))?;
        socket.set_nonblocking(true)?;
        Ok(ArpSocket { fd: super::register(socket)? })
    }

    /// The next frame received on the interface.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        super::recv_frame(&self.fd, buf).await
    }

    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        super::send_frame(&self.fd, frame).await
    }
}
