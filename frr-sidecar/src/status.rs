//! Session and BFD state as FRR reports it, read from vtysh's JSON into the API's messages.
//! Pure: the agent runs the show commands, this only reads their output.

use serde_json::{Map, Value};

use crate::proto::{BfdCounters, BfdPeer, MessageCounters, Neighbor};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected output from `{command}`: {reason}")]
pub struct StatusError {
    pub command: String,
    pub reason: String,
}

pub const NEIGHBORS_COMMAND: &str = "show bgp vrf all neighbors json";

/// BFD sessions of one VRF. (FRR 8.4 answers `show bfd vrf all peers json` with an empty list,
/// so the agent asks VRF by VRF.)
pub fn bfd_command(vrf: &str) -> String {
    format!("show bfd vrf {vrf} peers json")
}

/// Packet and event counters of one VRF's BFD sessions (MetalLB's FRR mode exports them).
pub fn bfd_counters_command(vrf: &str) -> String {
    format!("show bfd vrf {vrf} peers counters json")
}

fn parse(command: &str, text: &str) -> Result<Value, StatusError> {
    // bgpd prints nothing at all when no router is configured.
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text)
        .map_err(|e| StatusError { command: command.to_string(), reason: e.to_string() })
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn number(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or_default()
}

/// `show bgp vrf all neighbors json`: an object per VRF, holding one object per neighbor (keyed by
/// address, or interface name for unnumbered sessions) beside scalar VRF facts.
pub fn neighbors(output: &str) -> Result<Vec<Neighbor>, StatusError> {
    let root = parse(NEIGHBORS_COMMAND, output)?;
    let Some(vrfs) = root.as_object() else {
        return match root {
            Value::Null => Ok(Vec::new()),
            _ => Err(StatusError { command: NEIGHBORS_COMMAND.into(), reason: "not an object".into() }),
        };
    };
    let mut out = Vec::new();
    for (vrf_key, vrf) in vrfs {
        let Some(entries) = vrf.as_object() else { continue };
        let vrf_name = entries.get("vrfName").and_then(Value::as_str).unwrap_or(vrf_key).to_string();
        for (peer, n) in entries {
            if n.is_object() {
                out.push(neighbor(&vrf_name, peer, n));
            }
        }
    }
    out.sort_by(|a, b| (&a.vrf, &a.peer).cmp(&(&b.vrf, &b.peer)));
    Ok(out)
}

fn neighbor(vrf: &str, peer: &str, n: &Value) -> Neighbor {
    let state = text(n, "bgpState");
    let established = state == "Established";
    let families = n.get("addressFamilyInfo").and_then(Value::as_object).cloned().unwrap_or_default();
    let sum = |key: &str| families.values().map(|f| number(f, key)).sum();
    Neighbor {
        vrf: vrf.to_string(),
        peer: peer.to_string(),
        remote_as: number(n, "remoteAs") as u32,
        local_as: number(n, "localAs") as u32,
        established,
        state_for_millis: number(n, if established { "bgpTimerUpMsec" } else { "lastResetTimerMsecs" }),
        state,
        connections_established: number(n, "connectionsEstablished"),
        connections_dropped: number(n, "connectionsDropped"),
        prefixes_sent: sum("sentPrefixCounter"),
        prefixes_received: sum("acceptedPrefixCounter"),
        last_reset: last_reset(n),
        last_notification: text(n, "lastNotificationReason"),
        bfd_status: n.get("peerBfdInfo").map(|b| text(b, "status")).unwrap_or_default(),
        remote_port: remote_port(n),
        messages: n.get("messageStats").map(message_counters),
    }
}

/// Why the session last went down. With no connection ever dropped, what bgpd records is a
/// placeholder, not a reset: "No AFI/SAFI activated for peer" from the neighbor's creation,
/// before the same configuration activates its address families (every first session showed
/// it), or "Waiting for peer OPEN" on an established session. Read as a reset it would send an
/// operator chasing a fault that never happened. A session that never came up keeps any other
/// reason (waiting for a route to the neighbor, say): it says why it is not up.
fn last_reset(n: &Value) -> String {
    let why = text(n, "lastResetDueTo");
    let placeholder = text(n, "bgpState") == "Established" || why == "No AFI/SAFI activated for peer";
    if number(n, "connectionsDropped") == 0 && placeholder { String::new() } else { why }
}

/// The neighbor's BGP port. On a connection the neighbor opened, FRR's `portForeign` is the
/// neighbor's ephemeral port and `portLocal` is 179: that says nothing of where the neighbor
/// listens, so it counts as unknown (0). FRR 8.4 says -1 while no connection exists, which
/// as_u64 reads as unknown too.
fn remote_port(n: &Value) -> u32 {
    let foreign = number(n, "portForeign").min(u64::from(u16::MAX)) as u32;
    if number(n, "portLocal") == 179 && foreign != 179 { 0 } else { foreign }
}

fn message_counters(m: &Value) -> MessageCounters {
    MessageCounters {
        opens_sent: number(m, "opensSent"),
        opens_received: number(m, "opensRecv"),
        notifications_sent: number(m, "notificationsSent"),
        notifications_received: number(m, "notificationsRecv"),
        updates_sent: number(m, "updatesSent"),
        updates_received: number(m, "updatesRecv"),
        keepalives_sent: number(m, "keepalivesSent"),
        keepalives_received: number(m, "keepalivesRecv"),
        route_refresh_sent: number(m, "routeRefreshSent"),
        route_refresh_received: number(m, "routeRefreshRecv"),
        total_sent: number(m, "totalSent"),
        total_received: number(m, "totalRecv"),
    }
}

/// `show bfd vrf NAME peers counters json` attached to the sessions `show bfd vrf NAME peers
/// json` listed; a session is the same one when peer, local address, interface and hop mode
/// agree. Sessions the counters do not mention keep none.
pub fn add_bfd_counters(peers: &mut [BfdPeer], output: &str) -> Result<(), StatusError> {
    let command = "show bfd peers counters json";
    let list = match parse(command, output)? {
        Value::Null => return Ok(()),
        Value::Array(list) => list,
        _ => return Err(StatusError { command: command.into(), reason: "not a list".into() }),
    };
    for c in &list {
        let multihop = c.get("multihop").and_then(Value::as_bool).unwrap_or(false);
        let same = |p: &&mut BfdPeer| {
            p.peer == text(c, "peer")
                && p.local == text(c, "local")
                && p.interface == text(c, "interface")
                && p.multihop == multihop
        };
        if let Some(p) = peers.iter_mut().find(same) {
            p.counters = Some(BfdCounters {
                control_packet_input: number(c, "control-packet-input"),
                control_packet_output: number(c, "control-packet-output"),
                echo_packet_input: number(c, "echo-packet-input"),
                echo_packet_output: number(c, "echo-packet-output"),
                session_up_events: number(c, "session-up"),
                session_down_events: number(c, "session-down"),
                zebra_notifications: number(c, "zebra-notifications"),
            });
        }
    }
    Ok(())
}

/// `show bfd vrf NAME peers json`: a list of sessions.
pub fn bfd_peers(output: &str) -> Result<Vec<BfdPeer>, StatusError> {
    let root = parse("show bfd peers json", output)?;
    let list = match root {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        _ => return Err(StatusError { command: "show bfd peers json".into(), reason: "not a list".into() }),
    };
    let empty = Map::new();
    let mut out: Vec<BfdPeer> = list
        .iter()
        .map(|p| {
            let o = p.as_object().unwrap_or(&empty);
            let up = o.get("status").and_then(Value::as_str) == Some("up");
            BfdPeer {
                vrf: text(p, "vrf"),
                peer: text(p, "peer"),
                local: text(p, "local"),
                interface: text(p, "interface"),
                multihop: o.get("multihop").and_then(Value::as_bool).unwrap_or(false),
                status: text(p, "status"),
                status_for_seconds: number(p, if up { "uptime" } else { "downtime" }),
                diagnostic: text(p, "diagnostic"),
                remote_diagnostic: text(p, "remote-diagnostic"),
                detect_multiplier: number(p, "detect-multiplier") as u32,
                receive_interval_millis: number(p, "receive-interval") as u32,
                transmit_interval_millis: number(p, "transmit-interval") as u32,
                counters: None,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.vrf, &a.peer, &a.local).cmp(&(&b.vrf, &b.peer, &b.local)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from FRR 8.4 (Debian bookworm) in the lab: node1 peering with a ToR over v4 and v6.
    const ESTABLISHED: &str = include_str!("../fixtures/neighbors-established.json");
    // The same node after a wrong password on the v4 session and an unreachable multihop peer.
    const CONNECT_IDLE: &str = include_str!("../fixtures/neighbors-connect-idle.json");
    // After a wrong remote-as: the ToR answered OPEN with a NOTIFICATION.
    const NOTIFICATION: &str = include_str!("../fixtures/neighbors-notification.json");
    const BFD: &str = include_str!("../fixtures/bfd-peers.json");

    #[test]
    fn established_sessions_with_counters_and_bfd() {
        let n = neighbors(ESTABLISHED).unwrap();
        assert_eq!(n.iter().map(|n| n.peer.as_str()).collect::<Vec<_>>(), ["192.0.2.1", "2001:db8:10::1"]);
        let v4 = &n[0];
        assert_eq!((v4.vrf.as_str(), v4.remote_as, v4.local_as), ("default", 64500, 64512));
        assert!(v4.established);
        assert_eq!(v4.state, "Established");
        assert_eq!((v4.prefixes_sent, v4.prefixes_received), (1, 0));
        assert_eq!((v4.connections_established, v4.connections_dropped), (1, 0));
        assert_eq!(v4.state_for_millis, 4000);
        assert_eq!(v4.bfd_status, "Up");
    }

    #[test]
    fn failing_sessions_say_why() {
        let n = neighbors(CONNECT_IDLE).unwrap();
        let by = |p: &str| n.iter().find(|n| n.peer == p).unwrap();
        let v4 = by("192.0.2.1");
        assert!(!v4.established);
        assert_eq!((v4.state.as_str(), v4.last_reset.as_str()), ("Connect", "BFD down received"));
        assert_eq!(v4.bfd_status, "Down");
        let far = by("203.0.113.9");
        assert_eq!(far.state, "Idle");
        // Never connected: FRR's placeholder from the neighbor's creation is no reset.
        assert_eq!(far.last_reset, "");
        // Established, never dropped: FRR's "Waiting for peer OPEN" is no reset either.
        let v6 = by("2001:db8:10::1");
        assert!(v6.established);
        assert_eq!((v6.connections_dropped, v6.last_reset.as_str()), (0, ""));
        assert_eq!(far.bfd_status, "");

        let n = neighbors(NOTIFICATION).unwrap();
        let v4 = n.iter().find(|n| n.peer == "192.0.2.1").unwrap();
        assert_eq!(v4.last_notification, "OPEN Message Error/Bad Peer AS");
        assert_eq!(v4.remote_as, 64501);
        assert_eq!(v4.state_for_millis, 24000);
    }

    #[test]
    fn bfd_sessions() {
        let p = bfd_peers(BFD).unwrap();
        assert_eq!(p.len(), 2);
        let v4 = p.iter().find(|p| p.peer == "192.0.2.1").unwrap();
        assert_eq!((v4.status.as_str(), v4.status_for_seconds), ("down", 2));
        assert_eq!(v4.diagnostic, "control detection time expired");
        assert_eq!((v4.detect_multiplier, v4.receive_interval_millis), (3, 300));
        assert_eq!(v4.interface, "eth0");
    }

    #[test]
    fn the_neighbors_port_is_its_listening_port_or_unknown() {
        let port = |json: &str| remote_port(&serde_json::from_str(json).unwrap());
        assert_eq!(port(r#"{"portLocal":40111,"portForeign":179}"#), 179);
        assert_eq!(port(r#"{"portLocal":40111,"portForeign":1179}"#), 1179);
        // The neighbor connected to us: its port is an ephemeral one.
        assert_eq!(port(r#"{"portLocal":179,"portForeign":57220}"#), 0);
        assert_eq!(port(r#"{"portForeign":-1}"#), 0);
        assert_eq!(port(r#"{}"#), 0);
    }

    #[test]
    fn counters_attach_only_to_the_same_session() {
        let mut p = bfd_peers(PER_VERSION[0].2).unwrap();
        let other = r#"[{"peer":"192.0.2.1","local":"192.0.2.12","interface":"eth0","multihop":false,"session-up":9}]"#;
        add_bfd_counters(&mut p, other).unwrap();
        assert_eq!(p[0].counters, None);
        assert!(add_bfd_counters(&mut p, "% Unknown command").is_err());
        add_bfd_counters(&mut p, "").unwrap();
    }

    #[test]
    fn no_router_no_sessions_and_garbage_is_an_error() {
        assert_eq!(neighbors("").unwrap(), vec![]);
        assert_eq!(neighbors("{}").unwrap(), vec![]);
        assert_eq!(bfd_peers("[]").unwrap(), vec![]);
        let e = neighbors("% Unknown command").unwrap_err();
        assert_eq!(e.command, NEIGHBORS_COMMAND);
        assert!(bfd_peers("{\"a\":1}").is_err());
        // Odd shapes inside are skipped, not fatal.
        assert_eq!(neighbors("{\"default\":{\"vrfId\":0,\"x\":[1]}}").unwrap(), vec![]);
        assert_eq!(bfd_peers("[1, {\"peer\":\"192.0.2.1\"}]").unwrap().len(), 2);
    }

    /// `show bgp vrf all neighbors json` and `show bfd vrf default peers json` from each supported
    /// FRR version (`FERROLB_CAPTURE_FIXTURES=1` with the integration test frr_status
    /// recaptures them): an established eBGP session with BFD, one that never answers.
    const PER_VERSION: &[(&str, &str, &str, &str)] = &[
        (
            "8.4",
            include_str!("../fixtures/frr-8.4/neighbors.json"),
            include_str!("../fixtures/frr-8.4/bfd-peers.json"),
            include_str!("../fixtures/frr-8.4/bfd-counters.json"),
        ),
        (
            "10.3",
            include_str!("../fixtures/frr-10.3/neighbors.json"),
            include_str!("../fixtures/frr-10.3/bfd-peers.json"),
            include_str!("../fixtures/frr-10.3/bfd-counters.json"),
        ),
        (
            "10.7",
            include_str!("../fixtures/frr-10.7/neighbors.json"),
            include_str!("../fixtures/frr-10.7/bfd-peers.json"),
            include_str!("../fixtures/frr-10.7/bfd-counters.json"),
        ),
    ];

    #[test]
    fn every_supported_versions_output_reads_the_same() {
        for (version, neighbors_json, bfd_json, counters_json) in PER_VERSION {
            let n = neighbors(neighbors_json).unwrap_or_else(|e| panic!("FRR {version}: {e}"));
            assert_eq!(n.len(), 2, "FRR {version}: {n:?}");
            let (tor, silent) = (&n[0], &n[1]);
            assert_eq!((tor.peer.as_str(), tor.vrf.as_str()), ("192.0.2.1", "default"), "FRR {version}");
            assert!(tor.established && tor.state == "Established", "FRR {version}: {tor:?}");
            assert_eq!((tor.remote_as, tor.local_as, tor.prefixes_sent), (64500, 64512, 1), "FRR {version}");
            assert_eq!(tor.bfd_status, "Up", "FRR {version}");
            assert!(tor.connections_established >= 1 && tor.state_for_millis > 0, "FRR {version}: {tor:?}");
            assert_eq!((silent.peer.as_str(), silent.remote_as), ("192.0.2.99", 64501), "FRR {version}");
            // Where in its connect cycle the capture caught it.
            let waiting = ["Active", "Connect", "Idle"].contains(&silent.state.as_str());
            assert!(!silent.established && waiting, "FRR {version}: {silent:?}");

            let m = tor.messages.unwrap_or_else(|| panic!("FRR {version}: no messageStats"));
            assert!(
                m.opens_sent >= 1 && m.opens_received >= 1 && m.updates_sent >= 1,
                "FRR {version}: {m:?}"
            );
            assert!(m.keepalives_received >= 1 && m.total_received >= 3, "FRR {version}: {m:?}");
            assert_eq!(tor.remote_port, 179, "FRR {version}");
            assert_eq!(silent.messages.as_ref().map(|m| m.total_sent), Some(0), "FRR {version}");

            let mut b = bfd_peers(bfd_json).unwrap_or_else(|e| panic!("FRR {version}: {e}"));
            add_bfd_counters(&mut b, counters_json).unwrap_or_else(|e| panic!("FRR {version}: {e}"));
            let c = b[0].counters.unwrap_or_else(|| panic!("FRR {version}: no BFD counters"));
            assert!(c.control_packet_input > 0 && c.control_packet_output > 0, "FRR {version}: {c:?}");
            assert_eq!((c.session_up_events, c.session_down_events), (1, 0), "FRR {version}: {c:?}");
            assert_eq!((c.echo_packet_input, c.echo_packet_output), (0, 0), "FRR {version}: {c:?}");
            assert_eq!(b.len(), 1, "FRR {version}: {b:?}");
            let p = &b[0];
            assert_eq!(
                (p.peer.as_str(), p.local.as_str(), p.interface.as_str()),
                ("192.0.2.1", "192.0.2.11", "eth0")
            );
            assert_eq!(
                (p.status.as_str(), p.vrf.as_str(), p.multihop),
                ("up", "default", false),
                "FRR {version}"
            );
            assert_eq!(
                (p.receive_interval_millis, p.transmit_interval_millis, p.detect_multiplier),
                (300, 300, 3)
            );
        }
    }
}
