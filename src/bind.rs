//! Listening addresses that work the same on IPv4, IPv6 and dual-stack nodes.
//!
//! The chart builds bind addresses from `status.hostIP`, which is `192.0.2.5` on one node and
//! `2001:db8::5` on another; `$(NODE_IP):7472` is then ambiguous for IPv6 (`2001:db8::5:7472`
//! is itself an address). So the chart always brackets (`[$(NODE_IP)]:7472`) and every
//! address flag accepts brackets around either family.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// `IP:PORT`, `[IPv6]:PORT` or `[IPv4]:PORT`.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| format!("{s:?}: {why} (expected IP:PORT, [IPv6]:PORT or [IPv4]:PORT)");
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or_else(|| bad("no closing \"]:\" before the port"))?;
        let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address inside the brackets"))?;
        let port: u16 = port.parse().map_err(|_| bad("not a port number"))?;
        return Ok(SocketAddr::new(ip, port));
    }
    s.parse().map_err(|_| bad("not an address and port"))
}

/// A TCP listener on `addr`. `[::]` listens on both families (v6-only off, whatever the
/// sysctl says); on a host without IPv6 it falls back to `0.0.0.0` on the same port.
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        match dual_stack(addr) {
            Ok(s) => s,
            Err(e)
                if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                    || e.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
            {
                tracing::info!(%addr, "no IPv6 on this host: listening on IPv4 only");
                plain(SocketAddr::from(([0, 0, 0, 0], addr.port())))?
            }
            Err(e) => return Err(e),
        }
    } else {
        plain(addr)?
    };
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

fn dual_stack(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
    s.set_only_v6(false)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s)
}

fn plain(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_with_or_without_brackets() {
        let ok = |s: &str| parse_socket_addr(s).unwrap().to_string();
        assert_eq!(ok("192.0.2.5:7472"), "192.0.2.5:7472");
        assert_eq!(ok("[192.0.2.5]:7472"), "192.0.2.5:7472");
        assert_eq!(ok("[2001:db8::5]:7472"), "[2001:db8::5]:7472");
        assert_eq!(ok("[::]:7472"), "[::]:7472");
        for bad in ["2001:db8::5:7472", "[2001:db8::5]", "[2001:db8::5]:x", "[nope]:1", "", "192.0.2.5"] {
            let e = parse_socket_addr(bad).unwrap_err();
            assert!(e.contains("expected IP:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_unspecified_v6_address_takes_ipv4_clients_too() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let l = tcp_listener("[::]:0".parse().unwrap()).unwrap();
            let port = l.local_addr().unwrap().port();
            let v4 = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
            assert!(v4.is_ok(), "IPv4 client refused: {v4:?}");
        });
    }
}
