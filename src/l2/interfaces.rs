//! The host's interfaces as layer 2 mode sees them: which may answer ARP/NDP, read from sysfs,
//! and a netlink subscription that says when to look again (no polling).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket};
use regex::Regex;
use tokio::io::unix::AsyncFd;

use super::packet::Mac;

/// MetalLB's chart defaults: container, bridge and tunnel devices never answer for Services.
pub const DEFAULT_EXCLUDED: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^nodelocaldns.*",
    "^lxc.*",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
    /// Has an IPv6 link-local address: IPv6 runs there, so the solicited-node groups can be
    /// joined and NDP answered.
    pub ipv6: bool,
}

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_NOARP: u32 = 0x80;

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn parse_mac(text: &str) -> Option<Mac> {
    let bytes: Vec<u8> = text.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().ok()?;
    bytes.try_into().ok()
}

/// Interfaces that are up, broadcast-capable, ARP-speaking, not enslaved to a bridge or bond,
/// and not excluded by name.
pub fn eligible(excluded: &[Regex]) -> Vec<Interface> {
    let v6_link_local = read(Path::new("/proc/net/if_inet6")).unwrap_or_default();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else { return out };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let flags = read(&dir.join("flags"))
            .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let usable = flags & IFF_UP != 0 && flags & IFF_BROADCAST != 0 && flags & IFF_NOARP == 0;
        if !usable || dir.join("master").exists() || excluded.iter().any(|r| r.is_match(&name)) {
            continue;
        }
        let (Some(index), Some(mac)) = (
            read(&dir.join("ifindex")).and_then(|i| i.parse().ok()),
            read(&dir.join("address")).as_deref().and_then(parse_mac),
        ) else {
            continue;
        };
        // /proc/net/if_inet6: address, index, prefix length, scope (20 = link), flags, name.
        let ipv6 = v6_link_local.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 6 && f[3] == "20" && f[5] == name
        });
        out.push(Interface { name, index, mac, ipv6 });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Compiles exclusion patterns, naming the one that is not a valid regex.
pub fn exclusions(patterns: &[String]) -> Result<Vec<Regex>, String> {
    patterns.iter().map(|p| Regex::new(p).map_err(|e| format!("interface exclusion {p:?}: {e}"))).collect()
}

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Becomes readable whenever a link or an IPv6 address changes.
pub struct LinkEvents {
    fd: AsyncFd<OwnedFd>,
}

impl LinkEvents {
    pub fn subscribe() -> std::io::Result<LinkEvents> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK | RTMGRP_IPV6_IFADDR))?;
        Ok(LinkEvents { fd: super::socket::register(fd)? })
    }

    /// Waits for the next batch of changes. The messages are drained, not parsed: any change
    /// means "scan the interfaces again", which is cheap and always right.
    pub async fn changed(&self) -> std::io::Result<()> {
        let mut buf = [0u8; 8192];
        loop {
            let mut guard = self.fd.readable().await?;
            let mut got = false;
            loop {
                match nix::unistd::read(self.fd.get_ref().as_fd(), &mut buf) {
                    Ok(_) => got = true,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            guard.clear_ready();
            if got {
                return Ok(());
            }
        }
    }
}
