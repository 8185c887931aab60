//! One socket module per protocol, both AF_PACKET on one interface (whole frames in and out):
//! ARP, and NDP with the solicited-node groups it must be a member of. Both non-blocking, driven
//! by tokio's `AsyncFd`.

pub mod arp;
pub mod ndp;

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};

use socket2::{SockAddr, SockAddrStorage, Socket};
use tokio::io::unix::AsyncFd;

/// Types that own their file descriptor outright: it stays open, and the same, for as long
/// as the value lives.
pub trait OwnsFd: AsRawFd {}
impl OwnsFd for socket2::Socket {}
impl OwnsFd for OwnedFd {}

/// Hands a socket to tokio's reactor.
pub fn register<T: OwnsFd>(owner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `OwnsFd` types own their descriptor; the AsyncFd takes ownership of the value,
    // so nothing else can close or replace the descriptor while it is registered.
    unsafe { AsyncFd::register(owner) }.map_err(std::io::Error::from)
}

/// `sockaddr_ll` for `protocol` (host order) on `ifindex`: socket2 has no safe constructor for
/// link-layer addresses.
fn link_address(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types (what view_as requires);
    // the length handed to SockAddr::new is exactly sockaddr_ll's.
    unsafe {
        let ll = storage.view_as::<libc::sockaddr_ll>();
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = protocol.to_be();
        ll.sll_ifindex = ifindex as i32;
        SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    }
}

/// The next frame a packet socket lets through.
async fn recv_frame(fd: &AsyncFd<Socket>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|fd| {
            let mut socket: &Socket = fd.get_ref();
            io::Read::read(&mut socket, buf)
        }) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn send_frame(fd: &AsyncFd<Socket>, frame: &[u8]) -> io::Result<()> {
    loop {
        let mut guard = fd.writable().await?;
        match guard.try_io(|fd| fd.get_ref().send(frame)) {
            Ok(result) => return result.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}
