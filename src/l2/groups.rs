//! Which solicited-node multicast groups an interface's NDP socket must be in.
//!
//! IPv6 addresses that share their last 24 bits share a group (RFC 4291 2.7.1), and a socket's
//! membership is one per group: joining twice fails, leaving once leaves. So the group is
//! counted per IP needing it, joined when the first such IP comes and left only when the last
//! one goes; otherwise withdrawing one Service IP would silence another.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use super::packet::ndp::solicited_node_group;

/// How many of the answered IPs need each group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCounts(BTreeMap<Ipv6Addr, usize>);

/// What the socket must do to follow a change of the answered IPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    pub join: Vec<Ipv6Addr>,
    pub leave: Vec<Ipv6Addr>,
}

impl GroupCounts {
    /// Counts `ip` in (IPv4 needs no group): the group to join if it is the first.
    pub fn add(&mut self, ip: IpAddr) -> Option<Ipv6Addr> {
        let IpAddr::V6(v6) = ip else { return None };
        let group = solicited_node_group(v6);
        let n = self.0.entry(group).or_insert(0);
        *n += 1;
        (*n == 1).then_some(group)
    }

    /// Counts `ip` out: the group to leave if no other answered IP needs it.
    pub fn remove(&mut self, ip: IpAddr) -> Option<Ipv6Addr> {
        let IpAddr::V6(v6) = ip else { return None };
        let group = solicited_node_group(v6);
        let n = self.0.get_mut(&group)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        self.0.remove(&group);
        Some(group)
    }

    /// Follows the answered set from `gone` and `gained` IPs (removals first, so a group whose
    /// only IP is replaced by another of the same group is neither left nor joined).
    pub fn change(
        &mut self,
        gone: impl IntoIterator<Item = IpAddr>,
        gained: impl IntoIterator<Item = IpAddr>,
    ) -> GroupChanges {
        let mut out = GroupChanges::default();
        out.leave.extend(gone.into_iter().filter_map(|ip| self.remove(ip)));
        for group in gained.into_iter().filter_map(|ip| self.add(ip)) {
            match out.leave.iter().position(|g| *g == group) {
                Some(i) => {
                    out.leave.remove(i);
                }
                None => out.join.push(group),
            }
        }
        out
    }

    pub fn groups(&self) -> impl Iterator<Item = &Ipv6Addr> {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_shared_group_is_left_only_with_its_last_ip() {
        let group: Ipv6Addr = "ff02::1:ff01:5".parse().unwrap();
        let mut c = GroupCounts::default();
        assert_eq!(c.add(ip("2001:db8::1:5")), Some(group));
        // Same last 24 bits: same group, already joined.
        assert_eq!(c.add(ip("2001:db8:0:1::1:5")), None);
        assert_eq!(c.remove(ip("2001:db8::1:5")), None, "the other IP still needs the group");
        assert_eq!(c.groups().collect::<Vec<_>>(), [&group]);
        assert_eq!(c.remove(ip("2001:db8:0:1::1:5")), Some(group));
        assert_eq!(c.groups().count(), 0);
        assert_eq!(c.remove(ip("2001:db8:0:1::1:5")), None, "an IP never counted leaves nothing");
    }

    #[test]
    fn ipv4_needs_no_group() {
        let mut c = GroupCounts::default();
        assert_eq!(c.add(ip("192.0.2.1")), None);
        assert_eq!(c.remove(ip("192.0.2.1")), None);
    }

    #[test]
    fn a_change_joins_and_leaves_only_what_the_counts_say() {
        let mut c = GroupCounts::default();
        let first = c.change([], [ip("2001:db8::1:5"), ip("2001:db8::2:6"), ip("2001:db8:0:1::1:5")]);
        assert_eq!(
            first.join,
            ["ff02::1:ff01:5".parse::<Ipv6Addr>().unwrap(), "ff02::1:ff02:6".parse().unwrap()]
        );
        assert!(first.leave.is_empty());
        // One IP of the shared group replaced by another of the same group, one group gone.
        let next = c.change([ip("2001:db8::1:5"), ip("2001:db8::2:6")], [ip("2001:db8:0:2::1:5")]);
        assert_eq!(next, GroupChanges { join: vec![], leave: vec!["ff02::1:ff02:6".parse().unwrap()] });
        // The last IP of a group replaced by another of it: nothing to do.
        let mut c = GroupCounts::default();
        c.change([], [ip("2001:db8::1:5")]);
        assert_eq!(c.change([ip("2001:db8::1:5")], [ip("2001:db8:9::1:5")]), GroupChanges::default());
    }
}
