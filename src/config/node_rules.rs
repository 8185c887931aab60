//! Rules that hold per node because FRR runs one bgpd per node: every peer a node opens must
//! agree on the router ID, on myASN within a VRF, and no two may target one address in a VRF.
//! BFD echo mode is checked here too because it depends on what the advertisements send.

use std::collections::BTreeMap;

use super::ClusterObjects;
use super::address::Family;
use super::advertisement::BgpAdvertisement;
use super::error::Report;
use super::peer::{BfdProfile, Peer};
use super::pool::Pool;
use super::selector::{Labels, any_matches};

pub(super) fn check(
    objects: &ClusterObjects,
    peers: &BTreeMap<String, Peer>,
    pools: &BTreeMap<String, Pool>,
    ads: &[BgpAdvertisement],
    bfd: &BTreeMap<String, BfdProfile>,
    report: &mut Report,
) {
    let nodes: Vec<Labels> =
        objects.nodes.iter().map(|n| n.metadata.labels.clone().unwrap_or_default()).collect();
    // Without any Node we cannot tell which peers meet, so assume they all do (as upstream).
    let share_a_node = |a: &Peer, b: &Peer| {
        nodes.is_empty()
            || nodes.iter().any(|l| any_matches(&a.node_selectors, l) && any_matches(&b.node_selectors, l))
    };
    let list: Vec<&Peer> = peers.values().collect();
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            if !share_a_node(a, b) {
                continue;
            }
            let mut r = report.on("BGPPeer", &b.name);
            if a.router_id != b.router_id {
                r.error(
                    "spec.routerID",
                    format!(
                        "{} differs from BGPPeer {:?} ({}) on a node both select: a node has one router ID",
                        show(b.router_id),
                        a.name,
                        show(a.router_id)
                    ),
                );
            }
            if a.vrf == b.vrf {
                if a.endpoint == b.endpoint {
                    r.error(
                        if matches!(b.endpoint, super::peer::PeerEndpoint::Interface(_)) { "spec.interface" } else { "spec.peerAddress" },
                        format!("BGPPeer {:?} already peers with the same address in VRF {:?} on a node both select", a.name, b.vrf_name()),
                    );
                }
                if a.my_asn != b.my_asn {
                    r.error(
                        "spec.myASN",
                        format!(
                            "{} differs from BGPPeer {:?} ({}) in VRF {:?} on a node both select",
                            b.my_asn,
                            a.name,
                            a.my_asn,
                            b.vrf_name()
                        ),
                    );
                }
            }
        }
    }
    for peer in peers.values() {
        let Some(profile) = peer.bfd_profile.as_ref().and_then(|p| bfd.get(p)) else { continue };
        if !profile.echo_mode || !peer.carries(Family::V6) {
            continue;
        }
        let sends_v6 = ads
            .iter()
            .filter(|ad| ad.sends_to(&peer.name))
            .any(|ad| ad.pools.iter().filter_map(|p| pools.get(p)).any(|p| p.has_family(Family::V6)));
        if sends_v6 {
            report.on("BGPPeer", &peer.name).error(
                "spec.bfdProfile",
                format!("BFDProfile {:?} enables echo mode, which FRR supports only for IPv4, but this peer receives IPv6 announcements", profile.name),
            );
        }
    }
}

fn show(id: Option<std::net::Ipv4Addr>) -> String {
    id.map_or_else(|| "unset".to_string(), |i| i.to_string())
}
