//! MetalLB's FRR-mode BGP and BFD metrics, from frr-agent's status.
//!
//! Nothing here runs vtysh: the agent reads FRR on its own schedule (three commands a poll
//! plus one per extra VRF), the speaker keeps its latest status, and a scrape only formats
//! that copy. So a scrape costs the same with one peer or a hundred, and a scraper can never
//! make FRR busier.
//!
//! Names, types and labels are those of MetalLB's FRR exporter: labels `peer` (`address:port`)
//! and `vrf`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use frr_sidecar::proto::{AgentStatus, BfdCounters, BfdPeer, MessageCounters, Neighbor};

use super::exposition::{Family, labels};

/// The speaker's latest copy of the agent's status; None while it has none (no agent, or the
/// agent unreachable: absent series say "unknown", not "down").
static LATEST: Mutex<Option<AgentStatus>> = Mutex::new(None);

/// Whether this process exports the FRR families at all (a speaker with an agent).
static ENABLED: AtomicBool = AtomicBool::new(false);

pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn set(status: Option<AgentStatus>) {
    *LATEST.lock().unwrap_or_else(PoisonError::into_inner) = status;
}

/// The families for the last status, or nothing in a process that has no agent.
pub fn render(out: &mut String) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let latest = LATEST.lock().unwrap_or_else(PoisonError::into_inner);
    write(latest.as_ref(), out);
}

/// MetalLB labels a neighbor `ip:port`. FRR 8.4 gives no port while no connection exists, so
/// that falls back to BGP's own: a series keeps one name whether the session is up or down.
fn peer_label(peer: &str, port: u32) -> String {
    // MetalLB writes IPv6 neighbors the same way, without brackets.
    format!("{peer}:{}", if port == 0 { 179 } else { port })
}

type BgpValue = fn(&MessageCounters) -> u64;
type BfdValue = fn(&BfdCounters) -> u64;

const BGP_COUNTERS: &[(&str, &str, BgpValue)] = &[
    ("metallb_bgp_updates_total", "Number of BGP UPDATE messages sent", |m| m.updates_sent),
    ("metallb_bgp_opens_sent", "Number of BGP open messages sent", |m| m.opens_sent),
    ("metallb_bgp_opens_received", "Number of BGP open messages received", |m| m.opens_received),
    ("metallb_bgp_notifications_sent", "Number of BGP notification messages sent", |m| m.notifications_sent),
    ("metallb_bgp_updates_total_received", "Number of BGP UPDATE messages received", |m| m.updates_received),
    ("metallb_bgp_keepalives_sent", "Number of BGP keepalive messages sent", |m| m.keepalives_sent),
    ("metallb_bgp_keepalives_received", "Number of BGP keepalive messages received", |m| {
        m.keepalives_received
    }),
    ("metallb_bgp_route_refresh_sent", "Number of BGP route refresh messages sent", |m| m.route_refresh_sent),
    ("metallb_bgp_total_sent", "Number of total BGP messages sent", |m| m.total_sent),
    ("metallb_bgp_total_received", "Number of total BGP messages received", |m| m.total_received),
];

const BFD_COUNTERS: &[(&str, &str, BfdValue)] = &[
    ("metallb_bfd_control_packet_input", "Number of received BFD control packets", |c| {
        c.control_packet_input
    }),
    ("metallb_bfd_control_packet_output", "Number of sent BFD control packets", |c| c.control_packet_output),
    ("metallb_bfd_echo_packet_input", "Number of received BFD echo packets", |c| c.echo_packet_input),
    ("metallb_bfd_echo_packet_output", "Number of sent BFD echo packets", |c| c.echo_packet_output),
    ("metallb_bfd_session_up_events", "Number of BFD session up events", |c| c.session_up_events),
    ("metallb_bfd_session_down_events", "Number of BFD session down events", |c| c.session_down_events),
    ("metallb_bfd_zebra_notifications", "Number of BFD zebra notifications", |c| c.zebra_notifications),
    // The name MetalLB's documentation gives the same counter (its exporter uses the one above).
    ("metallb_bfd_session_zebra_notifications", "Number of BFD zebra notifications", |c| {
        c.zebra_notifications
    }),
];

/// Pure: the text of every FRR family for `status` (headers only without one).
pub fn write(status: Option<&AgentStatus>, out: &mut String) {
    let neighbors = status.map(|s| s.neighbors.as_slice()).unwrap_or_default();
    let bfd = status.map(|s| s.bfd_peers.as_slice()).unwrap_or_default();
    let bgp_series: Vec<String> = neighbors
        .iter()
        .map(|n| labels(&[("peer", &peer_label(&n.peer, n.remote_port)), ("vrf", &n.vrf)]))
        .collect();
    let bgp = |value: &dyn Fn(&Neighbor) -> Option<u64>| {
        neighbors
            .iter()
            .zip(&bgp_series)
            .filter_map(|(n, l)| Some((l.as_str(), value(n)?)))
            .collect::<Vec<_>>()
    };
    Family {
        name: "metallb_bgp_session_up",
        help: "BGP session state (1 is up, 0 is down)",
        kind: "gauge",
        samples: bgp(&|n| Some(u64::from(n.established))),
    }
    .write(out);
    Family {
        name: "metallb_bgp_announced_prefixes_total",
        help: "Number of prefixes currently being advertised on the BGP session",
        kind: "gauge",
        samples: bgp(&|n| Some(n.prefixes_sent)),
    }
    .write(out);
    for (name, help, value) in BGP_COUNTERS {
        Family { name, help, kind: "counter", samples: bgp(&|n| n.messages.as_ref().map(value)) }.write(out);
    }
    let bfd_series: Vec<String> = bfd.iter().map(|p| labels(&[("peer", &p.peer), ("vrf", &p.vrf)])).collect();
    let sessions = |value: &dyn Fn(&BfdPeer) -> Option<u64>| {
        bfd.iter().zip(&bfd_series).filter_map(|(p, l)| Some((l.as_str(), value(p)?))).collect::<Vec<_>>()
    };
    Family {
        name: "metallb_bfd_session_up",
        help: "BFD session state (1 is up, 0 is down)",
        kind: "gauge",
        samples: sessions(&|p| Some(u64::from(p.status == "up"))),
    }
    .write(out);
    for (name, help, value) in BFD_COUNTERS {
        Family { name, help, kind: "counter", samples: sessions(&|p| p.counters.as_ref().map(value)) }
            .write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> AgentStatus {
        AgentStatus {
            neighbors: vec![
                Neighbor {
                    vrf: "default".into(),
                    peer: "192.0.2.1".into(),
                    established: true,
                    prefixes_sent: 4,
                    remote_port: 179,
                    messages: Some(MessageCounters { opens_sent: 1, updates_sent: 5, ..Default::default() }),
                    ..Default::default()
                },
                Neighbor { vrf: "red".into(), peer: "2001:db8::1".into(), ..Default::default() },
            ],
            bfd_peers: vec![BfdPeer {
                vrf: "default".into(),
                peer: "192.0.2.1".into(),
                status: "down".into(),
                counters: Some(BfdCounters { session_down_events: 2, ..Default::default() }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_neighbor_and_bfd_session_with_metallbs_labels() {
        let mut out = String::new();
        write(Some(&status()), &mut out);
        for line in [
            "metallb_bgp_session_up{peer=\"192.0.2.1:179\",vrf=\"default\"} 1",
            // No port from FRR: BGP's, so the series is the same one when it comes up.
            "metallb_bgp_session_up{peer=\"2001:db8::1:179\",vrf=\"red\"} 0",
            "metallb_bgp_announced_prefixes_total{peer=\"192.0.2.1:179\",vrf=\"default\"} 4",
            "metallb_bgp_updates_total{peer=\"192.0.2.1:179\",vrf=\"default\"} 5",
            "metallb_bgp_opens_sent{peer=\"192.0.2.1:179\",vrf=\"default\"} 1",
            "# TYPE metallb_bgp_opens_sent counter",
            "metallb_bfd_session_up{peer=\"192.0.2.1\",vrf=\"default\"} 0",
            "metallb_bfd_session_down_events{peer=\"192.0.2.1\",vrf=\"default\"} 2",
            "# TYPE metallb_bfd_zebra_notifications counter",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        // A neighbor FRR gave no counters for has no counter samples (not zeros).
        assert!(!out.contains("metallb_bgp_opens_sent{peer=\"2001:db8::1:179\""), "{out}");
    }

    #[test]
    fn without_a_status_only_the_headers() {
        let mut out = String::new();
        write(None, &mut out);
        assert!(out.lines().all(|l| l.starts_with('#')), "{out}");
        assert_eq!(out.matches("# TYPE ").count(), 2 + BGP_COUNTERS.len() + 1 + BFD_COUNTERS.len());
    }
}
