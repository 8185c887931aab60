//! One socket module per protocol: ARP over AF_PACKET, NDP over raw ICMPv6. Both non-blocking,
//! driven by tokio's `AsyncFd`.

pub mod arp;
pub mod ndp;

use std::os::fd::{AsRawFd, OwnedFd};

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
