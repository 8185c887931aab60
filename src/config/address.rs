//! Pool entries: a CIDR or an inclusive `start-end` range, kept as one interval of a family.
//!
//! Addresses are held as `u128` so IPv4 and IPv6 share one code path, and an entry is never
//! expanded into its addresses: a v6 /64 costs the same as a v4 /30.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub fn from_u128(family: Family, value: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// An inclusive interval of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrRange {
    pub family: Family,
    pub first: u128,
    pub last: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is neither a CIDR nor a start-end range")]
    Syntax(String),
    #[error("{0:?} is not a valid CIDR: {1}")]
    Cidr(String, String),
    #[error("{0:?} is not an IP address")]
    Ip(String),
    #[error("range {0:?} mixes IPv4 and IPv6")]
    MixedFamilies(String),
    #[error("range {0:?} starts after it ends")]
    Reversed(String),
    #[error("{entry:?} includes {what} ({addr}), which can never be a service address")]
    Reserved { entry: String, what: &'static str, addr: String },
}

impl AddrRange {
    pub fn new(first: IpAddr, last: IpAddr) -> Option<AddrRange> {
        let family = Family::of(&first);
        (family == Family::of(&last) && to_u128(first) <= to_u128(last)).then(|| AddrRange {
            family,
            first: to_u128(first),
            last: to_u128(last),
        })
    }

    pub fn from_net(net: IpNet) -> AddrRange {
        let net = net.trunc();
        AddrRange::new(net.network(), net.broadcast()).expect("a network is ordered")
    }

    /// Parses one `spec.addresses` entry. Whitespace around the dash is tolerated, as in MetalLB.
    pub fn parse(entry: &str) -> Result<AddrRange, AddressError> {
        let text = entry.trim();
        let range = if let Some((a, b)) = text.split_once('-') {
            let first: IpAddr = a.trim().parse().map_err(|_| AddressError::Ip(a.trim().to_string()))?;
            let last: IpAddr = b.trim().parse().map_err(|_| AddressError::Ip(b.trim().to_string()))?;
            if Family::of(&first) != Family::of(&last) {
                return Err(AddressError::MixedFamilies(entry.to_string()));
            }
            AddrRange::new(first, last).ok_or_else(|| AddressError::Reversed(entry.to_string()))?
        } else if text.contains('/') {
            let net: IpNet = text
                .parse()
                .map_err(|e: ipnet::AddrParseError| AddressError::Cidr(entry.to_string(), e.to_string()))?;
            AddrRange::from_net(net)
        } else {
            return Err(AddressError::Syntax(entry.to_string()));
        };
        range.check_reserved(entry)?;
        Ok(range)
    }

    /// Rejects entries that reach addresses no client could ever be sent to. MetalLB accepts
    /// them (even `::/0`); we refuse, because handing out `::1` or a multicast group is never
    /// what the user meant.
    fn check_reserved(&self, entry: &str) -> Result<(), AddressError> {
        let reserved: &[(&str, &str)] = match self.family {
            Family::V4 => &[
                ("the unspecified address", "0.0.0.0/32"),
                ("loopback", "127.0.0.0/8"),
                ("multicast", "224.0.0.0/4"),
                ("the limited broadcast address", "255.255.255.255/32"),
            ],
            Family::V6 => {
                &[("the unspecified address", "::/128"), ("loopback", "::1/128"), ("multicast", "ff00::/8")]
            }
        };
        for (what, net) in reserved {
            let bad = AddrRange::from_net(net.parse().expect("static network"));
            if self.overlaps(&bad) {
                let addr = from_u128(self.family, self.first.max(bad.first)).to_string();
                return Err(AddressError::Reserved { entry: entry.to_string(), what, addr });
            }
        }
        Ok(())
    }

    pub fn overlaps(&self, other: &AddrRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(&ip) == self.family && (self.first..=self.last).contains(&to_u128(ip))
    }

    /// Number of addresses (saturating: a v6 /0 would not fit, but such a pool is rejected).
    pub fn size(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// The minimal list of CIDRs covering exactly this range, ascending.
    pub fn to_cidrs(&self) -> Vec<IpNet> {
        // Offset of the last address in a block of 2^host_bits addresses (128 bits would overflow
        // a shift).
        fn span(host_bits: u32) -> u128 {
            if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 }
        }
        let bits = self.family.bits() as u32;
        let mut out = Vec::new();
        let mut start = self.first;
        loop {
            // Largest block aligned at `start` that does not run past `last`.
            let mut host_bits = if start == 0 { bits } else { start.trailing_zeros().min(bits) };
            while host_bits > 0 && span(host_bits) > self.last - start {
                host_bits -= 1;
            }
            let ip = from_u128(self.family, start);
            out.push(IpNet::new(ip, (bits - host_bits) as u8).expect("prefix within family"));
            let end = start + span(host_bits);
            if end >= self.last {
                return out;
            }
            start = end + 1;
        }
    }

    /// The shortest prefix length among the CIDRs this entry stands for; an aggregation length
    /// shorter than this would announce addresses outside the pool.
    pub fn widest_prefix(&self) -> u8 {
        self.to_cidrs().iter().map(IpNet::prefix_len).min().unwrap_or(self.family.bits())
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", from_u128(self.family, self.first), from_u128(self.family, self.last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> AddrRange {
        AddrRange::parse(s).unwrap()
    }

    #[test]
    fn parses_cidrs_and_ranges() {
        assert_eq!(r("192.0.2.0/24").size(), 256);
        assert_eq!(r("192.0.2.10 - 192.0.2.20").size(), 11);
        assert_eq!(r("2001:db8::/64").size(), 1 << 64);
        // Host bits set in a CIDR are truncated, as the API has always accepted them.
        assert_eq!(r("192.0.2.7/30").to_string(), "192.0.2.4-192.0.2.7");
        assert_eq!(r("198.51.100.5-198.51.100.5").size(), 1);
    }

    #[test]
    fn rejects_bad_entries_with_a_reason() {
        let cases = [
            ("192.0.2.0", "neither a CIDR"),
            ("192.0.2.0/33", "not a valid CIDR"),
            ("192.0.2.300-192.0.2.301", "not an IP address"),
            ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
            ("192.0.2.9-192.0.2.1", "starts after it ends"),
            ("::/0", "the unspecified address"),
            ("0.0.0.0/0", "the unspecified address"),
            ("127.0.0.1/32", "loopback"),
            ("::1/128", "loopback"),
            ("224.0.0.0/24", "multicast"),
            ("ff02::/16", "multicast"),
            ("255.255.255.0/24", "limited broadcast"),
            ("", "neither a CIDR"),
        ];
        for (entry, want) in cases {
            let err = AddrRange::parse(entry).unwrap_err().to_string();
            assert!(err.contains(want), "{entry}: {err}");
        }
    }

    #[test]
    fn summarises_ranges_into_minimal_cidrs() {
        let cidrs: Vec<String> =
            r("192.168.9.1-192.168.9.5").to_cidrs().iter().map(|n| n.to_string()).collect();
        assert_eq!(cidrs, ["192.168.9.1/32", "192.168.9.2/31", "192.168.9.4/31"]);
        assert_eq!(r("192.0.2.0/24").to_cidrs().len(), 1);
        assert_eq!(r("2001:db8::/32").widest_prefix(), 32);
        assert_eq!(r("192.0.2.1-192.0.2.5").widest_prefix(), 31);
        let all_v6 = AddrRange { family: Family::V6, first: 0, last: u128::MAX };
        assert_eq!(all_v6.to_cidrs().len(), 1);
    }
}
