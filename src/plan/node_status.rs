//! What a speaker reports about its node (pure): one ServiceBGPStatus / ServiceL2Status per
//! Service it announces, and the state of each of its BGP sessions.
//!
//! The speaker hands in what its plan says and what the cluster holds; out comes the smallest
//! set of writes that makes the cluster say the same.

use std::collections::BTreeMap;

use serde::Serialize;

use super::PlannedAnnouncement;
use crate::service::ServiceKey;

/// One of this node's status objects as it exists in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusObject {
    pub name: String,
    pub service: ServiceKey,
    /// Peers (BGP) or interfaces (layer 2), sorted.
    pub items: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDiff {
    pub create: Vec<(ServiceKey, Vec<String>)>,
    /// (object name, its Service, new items)
    pub update: Vec<(String, ServiceKey, Vec<String>)>,
    /// Object names: Services no longer announced here, and duplicates (a create that was
    /// retried after its answer was lost).
    pub delete: Vec<String>,
}

impl StatusDiff {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Services this node sends over BGP, each with the peers its prefixes go to.
pub fn desired_bgp<'a>(
    announcements: impl IntoIterator<Item = &'a PlannedAnnouncement>,
) -> BTreeMap<ServiceKey, Vec<String>> {
    collect(announcements, "bgp", |a| a.peers.clone())
}

/// Services this node answers ARP/NDP for, each with its interfaces (empty: all of them, which
/// MetalLB's ServiceL2Status also leaves empty).
pub fn desired_l2<'a>(
    announcements: impl IntoIterator<Item = &'a PlannedAnnouncement>,
) -> BTreeMap<ServiceKey, Vec<String>> {
    collect(announcements, "layer2", |a| a.interfaces.clone().unwrap_or_default())
}

fn collect<'a>(
    announcements: impl IntoIterator<Item = &'a PlannedAnnouncement>,
    protocol: &str,
    items: impl Fn(&PlannedAnnouncement) -> Vec<String>,
) -> BTreeMap<ServiceKey, Vec<String>> {
    let mut out: BTreeMap<ServiceKey, Vec<String>> = BTreeMap::new();
    for a in announcements.into_iter().filter(|a| a.protocol == protocol) {
        out.entry(a.service.clone()).or_default().extend(items(a));
    }
    for items in out.values_mut() {
        items.sort();
        items.dedup();
    }
    out
}

pub fn diff(desired: &BTreeMap<ServiceKey, Vec<String>>, existing: &[StatusObject]) -> StatusDiff {
    let mut d = StatusDiff::default();
    let mut kept: BTreeMap<&ServiceKey, &StatusObject> = BTreeMap::new();
    let mut sorted: Vec<&StatusObject> = existing.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for o in sorted {
        if !desired.contains_key(&o.service) || kept.contains_key(&o.service) {
            d.delete.push(o.name.clone());
        } else {
            kept.insert(&o.service, o);
        }
    }
    for (service, items) in desired {
        match kept.get(service) {
            None => d.create.push((service.clone(), items.clone())),
            Some(o) if o.items != *items => d.update.push((o.name.clone(), service.clone(), items.clone())),
            Some(_) => {}
        }
    }
    d
}

/// A BGP session of this node as FRR reports it (through frr-agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFact {
    /// FRR's VRF name; "default" for the default one.
    pub vrf: String,
    /// The neighbor's address, or its interface for unnumbered sessions.
    pub neighbor: String,
    pub state: String,
    pub established: bool,
    pub last_reset: String,
    pub last_notification: String,
    pub bfd_status: String,
}

/// A session this node should have: one BGPPeer that selects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedSession {
    pub peer: String,
    pub vrf: Option<String>,
    /// The address, or the interface for unnumbered sessions, as FRR names the neighbor.
    pub neighbor: String,
}

/// How one of this node's sessions is doing, for the BGPPeer's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    pub peer: String,
    pub state: String,
    pub established: bool,
    /// Why it is not established (FRR's last reset and NOTIFICATION), empty when it is.
    pub reason: String,
    pub bfd_status: String,
}

/// Each planned session with FRR's view of it; `facts` None means frr-agent cannot be asked.
pub fn session_reports(planned: &[PlannedSession], facts: Option<&[SessionFact]>) -> Vec<SessionReport> {
    planned
        .iter()
        .map(|p| {
            let vrf = p.vrf.as_deref().unwrap_or("default");
            let fact = facts.and_then(|f| f.iter().find(|f| f.vrf == vrf && f.neighbor == p.neighbor));
            match (facts, fact) {
                (None, _) => SessionReport {
                    peer: p.peer.clone(),
                    state: "Unknown".into(),
                    established: false,
                    reason: "frr-agent is not reachable".into(),
                    bfd_status: String::new(),
                },
                (Some(_), None) => SessionReport {
                    peer: p.peer.clone(),
                    state: "NotConfigured".into(),
                    established: false,
                    reason: "FRR does not run this session yet".into(),
                    bfd_status: String::new(),
                },
                (Some(_), Some(f)) => SessionReport {
                    peer: p.peer.clone(),
                    state: f.state.clone(),
                    established: f.established,
                    reason: if f.established {
                        String::new()
                    } else {
                        [f.last_reset.as_str(), f.last_notification.as_str()]
                            .iter()
                            .filter(|s| !s.is_empty())
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("; ")
                    },
                    bfd_status: f.bfd_status.clone(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(
        service: &str,
        protocol: &'static str,
        peers: &[&str],
        interfaces: Option<&[&str]>,
    ) -> PlannedAnnouncement {
        PlannedAnnouncement {
            service: service.into(),
            ip: "192.0.2.1".into(),
            prefix: "192.0.2.1/32".into(),
            protocol,
            peers: peers.iter().map(|s| s.to_string()).collect(),
            communities: vec![],
            local_pref: None,
            interfaces: interfaces.map(|i| i.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn obj(name: &str, service: &str, items: &[&str]) -> StatusObject {
        StatusObject {
            name: name.into(),
            service: service.into(),
            items: items.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn peers_of_every_family_are_merged_per_service() {
        let a = [
            ann("shop/web", "bgp", &["tor-b"], None),
            ann("shop/web", "bgp", &["tor-a", "tor-b"], None),
            ann("shop/l2", "layer2", &[], Some(&["eth1"])),
        ];
        let bgp = desired_bgp(&a);
        assert_eq!(bgp.len(), 1);
        assert_eq!(bgp["shop/web"], ["tor-a", "tor-b"]);
        assert_eq!(desired_l2(&a)["shop/l2"], ["eth1"]);
    }

    #[test]
    fn the_diff_creates_updates_and_deletes_only_what_differs() {
        let desired = desired_bgp(&[
            ann("shop/a", "bgp", &["tor"], None),
            ann("shop/b", "bgp", &["tor", "rr"], None),
            ann("shop/c", "bgp", &["tor"], None),
        ]);
        let existing = [
            obj("bgp-1", "shop/a", &["tor"]),
            obj("bgp-2", "shop/b", &["tor"]),
            obj("bgp-3", "shop/gone", &["tor"]),
            obj("bgp-4", "shop/a", &["tor"]),
        ];
        let d = diff(&desired, &existing);
        assert_eq!(d.create, vec![("shop/c".to_string(), vec!["tor".to_string()])]);
        assert_eq!(
            d.update,
            vec![("bgp-2".to_string(), "shop/b".to_string(), vec!["rr".to_string(), "tor".to_string()])]
        );
        assert_eq!(d.delete, vec!["bgp-3".to_string(), "bgp-4".to_string()]);
        let settled = [
            obj("bgp-1", "shop/a", &["tor"]),
            obj("bgp-2", "shop/b", &["rr", "tor"]),
            obj("bgp-5", "shop/c", &["tor"]),
        ];
        assert!(diff(&desired, &settled).is_empty());
    }

    #[test]
    fn sessions_say_why_they_are_down() {
        let planned = [
            PlannedSession { peer: "tor".into(), vrf: None, neighbor: "192.0.2.1".into() },
            PlannedSession { peer: "red".into(), vrf: Some("red".into()), neighbor: "eth1".into() },
            PlannedSession { peer: "new".into(), vrf: None, neighbor: "192.0.2.9".into() },
        ];
        let facts = [
            SessionFact {
                vrf: "default".into(),
                neighbor: "192.0.2.1".into(),
                state: "Established".into(),
                established: true,
                last_reset: "old".into(),
                last_notification: String::new(),
                bfd_status: "Up".into(),
            },
            SessionFact {
                vrf: "red".into(),
                neighbor: "eth1".into(),
                state: "Active".into(),
                established: false,
                last_reset: "Waiting for peer OPEN".into(),
                last_notification: "OPEN Message Error/Bad Peer AS".into(),
                bfd_status: String::new(),
            },
        ];
        let r = session_reports(&planned, Some(&facts));
        assert!(r[0].established && r[0].reason.is_empty() && r[0].bfd_status == "Up");
        assert_eq!(r[1].state, "Active");
        assert_eq!(r[1].reason, "Waiting for peer OPEN; OPEN Message Error/Bad Peer AS");
        assert_eq!(r[2].state, "NotConfigured");
        assert!(session_reports(&planned, None).iter().all(|r| r.state == "Unknown" && !r.established));
    }
}
