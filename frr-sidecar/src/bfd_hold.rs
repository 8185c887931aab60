//! A neighbor's `bfd` lines wait until its BGP session is established.
//!
//! bgpd registers a neighbor's BFD session as soon as it is configured, before it knows the
//! connection's source address and interface, and registers it again once the connection is
//! up. bfdd answers the second registration by taking the first session down, and says Down to
//! the other side as it does (`pcn_free` in FRR's bfdd/ptm_adapter.c, 8.4 to 10.7), even when
//! the configuration holds the session too. A router that hears BFD go down resets the BGP
//! session it has just brought up, hard: after a speaker restarts with graceful restart, that
//! flushes the very routes the router kept for it. Configured once the session is established,
//! bgpd registers the session once, with its final key.
//!
//! Meanwhile BFD runs from the `bfd` block's own `peer` for the neighbor (ferrolb renders one
//! per directly connected eBGP peer with BFD), so a router that starts no BFD-protected session
//! before BFD is up (FRR 10.2 to 10.3.0) still starts this one, and bgpd's registration joins
//! that session when it comes: bfdd matches a session without local address and interface to
//! any. Only neighbors with such a `peer` wait: without one there would be no BFD at all until
//! the session is up.

use std::collections::BTreeSet;

use crate::tree::{ConfigTree, ContextPath};

/// A BGP session: its VRF (`default` for the default one) and neighbor, as FRR names them.
pub type Session = (String, String);

/// The VRF a `router bgp` context is in.
fn router_vrf(path: &[String]) -> Option<String> {
    let words: Vec<&str> = path.first()?.split_whitespace().collect();
    match words.as_slice() {
        ["router", "bgp", _] => Some("default".into()),
        ["router", "bgp", _, "vrf", vrf] => Some((*vrf).to_string()),
        _ => None,
    }
}

/// The neighbor of a `neighbor X bfd…` line.
fn bfd_line_neighbor(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("neighbor"), Some(neighbor), Some("bfd")) => Some(neighbor),
        _ => None,
    }
}

/// The sessions the `bfd` block configures a `peer` for.
fn configured_peers(tree: &ConfigTree) -> BTreeSet<Session> {
    tree.order
        .iter()
        .filter(|path| path.len() == 2 && path[0] == "bfd")
        .filter_map(|path| {
            let words: Vec<&str> = path[1].split_whitespace().collect();
            match words.as_slice() {
                ["peer", address] => Some(("default".to_string(), (*address).to_string())),
                ["peer", address, "vrf", vrf] => Some(((*vrf).to_string(), (*address).to_string())),
                _ => None,
            }
        })
        .collect()
}

/// The BFD-protected sessions `tree`'s routers configure.
fn with_bfd(tree: &ConfigTree, path: &ContextPath) -> BTreeSet<String> {
    tree.lines(path).iter().filter_map(|l| bfd_line_neighbor(l)).map(str::to_string).collect()
}

/// `desired` without the `neighbor X bfd…` lines FRR must not get yet, and the sessions they
/// belong to: a neighbor's lines wait while the `bfd` block has a `peer` for it, its session
/// is not `established`, and FRR (`running`) has no `bfd` line for it yet (once it has, taking
/// them away would deregister the session: what this avoids).
pub fn hold(
    desired: &ConfigTree,
    running: &ConfigTree,
    established: &BTreeSet<Session>,
) -> (ConfigTree, BTreeSet<Session>) {
    let peers = configured_peers(desired);
    let mut out = desired.clone();
    let mut held = BTreeSet::new();
    for path in &desired.order {
        let Some(vrf) = router_vrf(path).filter(|_| path.len() == 1) else { continue };
        let running_bfd = with_bfd(running, path);
        let mut kept = Vec::new();
        for line in desired.lines(path) {
            let session = bfd_line_neighbor(line).map(|n| (vrf.clone(), n.to_string()));
            match session {
                Some(s) if peers.contains(&s) && !established.contains(&s) && !running_bfd.contains(&s.1) => {
                    held.insert(s);
                }
                _ => kept.push(line.clone()),
            }
        }
        out.contexts.insert(path.clone(), kept);
    }
    (out, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIRED: &str = "router bgp 64512\n neighbor 192.0.2.1 remote-as 64500\n neighbor 192.0.2.1 bfd\n \
        neighbor 192.0.2.1 bfd profile fast\n neighbor 192.0.2.2 remote-as 64500\n neighbor 192.0.2.2 bfd\n\
        exit\nrouter bgp 64512 vrf red\n neighbor 192.0.2.1 remote-as 64500\n neighbor 192.0.2.1 bfd\nexit\n\
        bfd\n profile fast\n exit\n peer 192.0.2.1\n  profile fast\n exit\n peer 192.0.2.1 vrf red\n exit\nexit\n";

    fn tree(text: &str) -> ConfigTree {
        ConfigTree::parse(text).unwrap()
    }

    fn session(vrf: &str, n: &str) -> Session {
        (vrf.to_string(), n.to_string())
    }

    fn bfd_lines(t: &ConfigTree) -> Vec<String> {
        t.order
            .iter()
            .flat_map(|p| {
                t.lines(p).iter().filter(|l| l.contains(" bfd")).map(move |l| format!("{}: {l}", p[0]))
            })
            .collect()
    }

    #[test]
    fn a_neighbor_with_a_configured_bfd_peer_gets_bfd_once_established() {
        let desired = tree(DESIRED);
        let (out, held) = hold(&desired, &ConfigTree::default(), &BTreeSet::new());
        assert_eq!(held, BTreeSet::from([session("default", "192.0.2.1"), session("red", "192.0.2.1")]));
        // 192.0.2.2 has no configured peer: without its own lines it would have no BFD at all.
        assert_eq!(bfd_lines(&out), ["router bgp 64512: neighbor 192.0.2.2 bfd"]);
        // Everything else stays, the `bfd` block's peers too.
        assert_eq!(out.lines(&["bfd".into(), "peer 192.0.2.1".into()]), ["profile fast"]);

        let (out, held) =
            hold(&desired, &ConfigTree::default(), &BTreeSet::from([session("default", "192.0.2.1")]));
        assert_eq!(held, BTreeSet::from([session("red", "192.0.2.1")]));
        assert_eq!(bfd_lines(&out).len(), 3, "{:?}", bfd_lines(&out));
        let (out, held) = hold(
            &desired,
            &ConfigTree::default(),
            &BTreeSet::from([session("default", "192.0.2.1"), session("red", "192.0.2.1")]),
        );
        assert!(held.is_empty());
        assert_eq!(out, desired);
    }

    #[test]
    fn lines_frr_already_runs_stay_whatever_the_session_does() {
        let desired = tree(DESIRED);
        let running =
            tree("router bgp 64512\n neighbor 192.0.2.1 remote-as 64500\n neighbor 192.0.2.1 bfd\nexit\n");
        let (out, held) = hold(&desired, &running, &BTreeSet::new());
        assert_eq!(held, BTreeSet::from([session("red", "192.0.2.1")]));
        assert!(
            bfd_lines(&out).contains(&"router bgp 64512: neighbor 192.0.2.1 bfd profile fast".to_string())
        );
    }
}
