//! Whether each IP this node was elected for can be answered here (pure): an election decides
//! from the cluster's objects, but only the node knows which of its interfaces exist and
//! which sockets opened. An IP no interface can answer for is an announcement that failed,
//! and the speaker says so (an `announceFailed` Event, the Service's condition) instead of
//! reporting it announced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// IP -> interfaces it may be answered on (`None`: every eligible interface).
pub type Announced = BTreeMap<IpAddr, Option<BTreeSet<String>>>;

/// What one eligible interface (up, broadcast, ARP on, not enslaved, not excluded) can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceHealth {
    /// Which of the interface's answering workers this is about (the responder's bookkeeping).
    pub serial: u64,
    /// Why ARP is not answered here; None while it is.
    pub arp_error: Option<String>,
    /// Why NDP is not: no IPv6 on the interface, or its socket; None while it is.
    pub ndp_error: Option<String>,
}

/// Every eligible interface of the node, by name.
pub type Interfaces = BTreeMap<String, InterfaceHealth>;

/// The IPs of `announced` that no interface can answer for, each with why.
pub fn unanswerable(announced: &Announced, interfaces: &Interfaces) -> BTreeMap<IpAddr, String> {
    announced
        .iter()
        .filter_map(|(ip, only)| why_not(*ip, only.as_ref(), interfaces).map(|w| (*ip, w)))
        .collect()
}

fn why_not(ip: IpAddr, only: Option<&BTreeSet<String>>, interfaces: &Interfaces) -> Option<String> {
    let candidates: Vec<(&String, &InterfaceHealth)> =
        interfaces.iter().filter(|(name, _)| only.is_none_or(|set| set.contains(*name))).collect();
    let error = |h: &InterfaceHealth| match ip {
        IpAddr::V4(_) => h.arp_error.clone(),
        IpAddr::V6(_) => h.ndp_error.clone(),
    };
    if candidates.iter().any(|(_, h)| error(h).is_none()) {
        return None;
    }
    Some(match (only, candidates.is_empty()) {
        (Some(set), true) => format!(
            "none of the interfaces its L2Advertisements name ({}) is on this node and usable (up, \
             broadcast, ARP on, not a bond or bridge member, not excluded by --exclude-interfaces)",
            set.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        (None, true) => "this node has no interface layer 2 can answer on (up, broadcast, ARP on, not a \
                         bond or bridge member, not excluded by --exclude-interfaces)"
            .to_string(),
        (_, false) => {
            let each: Vec<String> =
                candidates.iter().filter_map(|(name, h)| error(h).map(|e| format!("{name}: {e}"))).collect();
            format!("no interface can answer for it ({})", each.join("; "))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(ndp: bool) -> InterfaceHealth {
        InterfaceHealth { serial: 0, arp_error: None, ndp_error: (!ndp).then(|| "no IPv6 on it".to_string()) }
    }

    fn only(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn an_ip_fails_only_when_no_interface_it_may_use_can_answer_its_family() {
        let v4: IpAddr = "192.0.2.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        let interfaces: Interfaces = [("eth0".to_string(), up(false)), ("eth1".to_string(), up(true))].into();
        let announced: Announced = [(v4, None), (v6, None)].into();
        assert!(unanswerable(&announced, &interfaces).is_empty());

        // Restricted to an interface the node does not have.
        let announced: Announced = [(v4, only(&["eth9"])), (v6, only(&["eth1"]))].into();
        let failed = unanswerable(&announced, &interfaces);
        assert_eq!(failed.keys().collect::<Vec<_>>(), [&v4]);
        assert!(failed[&v4].contains("(eth9) is on this node"), "{}", failed[&v4]);

        // IPv6 restricted to an interface without IPv6.
        let failed = unanswerable(&[(v6, only(&["eth0"]))].into(), &interfaces);
        assert_eq!(failed[&v6], "no interface can answer for it (eth0: no IPv6 on it)");

        // Nothing eligible at all.
        let failed = unanswerable(&[(v4, None)].into(), &Interfaces::new());
        assert!(failed[&v4].starts_with("this node has no interface"), "{}", failed[&v4]);

        // A socket that would not open on the only interface.
        let broken: Interfaces = [(
            "eth0".to_string(),
            InterfaceHealth { serial: 0, arp_error: Some("Operation not permitted".into()), ndp_error: None },
        )]
        .into();
        let failed = unanswerable(&[(v4, None), (v6, None)].into(), &broken);
        assert_eq!(failed.keys().collect::<Vec<_>>(), [&v4]);
        assert_eq!(failed[&v4], "no interface can answer for it (eth0: Operation not permitted)");
    }
}
