//! The JSON frr-agent reads for Status, from the FRR under test: an established session with
//! BFD, one that never comes up, the BFD sessions and their counters, parsed as the agent
//! parses them.
//! `FERROLB_CAPTURE_FIXTURES=1` also writes the raw output to
//! `frr-sidecar/fixtures/frr-<version>/`, where the parser's unit tests read it for every
//! supported version without FRR.

use std::time::Duration;

use frr_sidecar::status;

use crate::frr_lab::{self, Frr, wait_for};

const TOR: &str = "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.11 bfd
 neighbor 192.0.2.11 timers 3 9
 neighbor 192.0.2.11 timers connect 1
 address-family ipv4 unicast
  neighbor 192.0.2.11 activate
 exit-address-family
exit
";

const NODE: &str = "router bgp 64512
 bgp router-id 192.0.2.11
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.1 remote-as 64500
 neighbor 192.0.2.1 bfd
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
 neighbor 192.0.2.99 remote-as 64501
 neighbor 192.0.2.99 timers connect 1
 address-family ipv4 unicast
  network 198.51.100.10/32
  neighbor 192.0.2.1 activate
  neighbor 192.0.2.99 activate
 exit-address-family
exit
";

fn show(frr: &Frr, command: &str) -> String {
    String::from_utf8_lossy(&frr.vtysh(&["-c", command]).unwrap().stdout).into_owned()
}

#[test]
fn status_json_of_this_frr_parses_as_the_agent_reads_it() {
    require_frr!();
    let tor = Frr::start("tor").unwrap();
    let node = Frr::start("node1").unwrap();
    frr_lab::link(&tor, &node, &["192.0.2.1/24"], &["192.0.2.11/24"]);
    tor.configure(TOR);
    node.configure(NODE);
    let bfd = status::bfd_command("default");
    let up = wait_for(Duration::from_secs(30), || {
        let n = status::neighbors(&show(&node, status::NEIGHBORS_COMMAND)).unwrap_or_default();
        let b = status::bfd_peers(&show(&node, &bfd)).unwrap_or_default();
        n.iter().any(|n| n.established && n.prefixes_sent == 1 && n.bfd_status == "Up")
            && b.iter().any(|p| p.status == "up")
    });
    let (neighbors_text, bfd_text) = (show(&node, status::NEIGHBORS_COMMAND), show(&node, &bfd));
    assert!(up.is_some(), "never up: {neighbors_text}\n{bfd_text}");
    let counters_text = show(&node, &status::bfd_counters_command("default"));

    let neighbors = status::neighbors(&neighbors_text).unwrap();
    assert_eq!(neighbors.len(), 2, "{neighbors:?}");
    let (tor_n, silent) = (&neighbors[0], &neighbors[1]);
    assert_eq!((tor_n.peer.as_str(), tor_n.vrf.as_str()), ("192.0.2.1", "default"));
    assert_eq!((tor_n.remote_as, tor_n.local_as, tor_n.state.as_str()), (64500, 64512, "Established"));
    // BFD coming up after BGP may reset the first session once; either way it is up now.
    assert_eq!(tor_n.connections_established, tor_n.connections_dropped + 1, "{tor_n:?}");
    assert!(tor_n.state_for_millis > 0, "{tor_n:?}");
    assert_eq!((silent.peer.as_str(), silent.remote_as, silent.established), ("192.0.2.99", 64501, false));
    assert!(["Active", "Connect", "Idle"].contains(&silent.state.as_str()), "{silent:?}");

    let peers = status::bfd_peers(&bfd_text).unwrap();
    let p = peers.iter().find(|p| p.peer == "192.0.2.1").expect("the ToR's BFD session");
    assert_eq!((p.status.as_str(), p.vrf.as_str(), p.multihop), ("up", "default", false));
    assert_eq!((p.receive_interval_millis, p.transmit_interval_millis, p.detect_multiplier), (300, 300, 3));

    // MetalLB's FRR-mode counters: the session's messages, BFD's packets and events.
    let m = tor_n.messages.expect("messageStats");
    assert!(m.opens_sent >= 1 && m.opens_received >= 1 && m.updates_sent >= 1, "{m:?}");
    assert!(m.total_sent >= m.opens_sent + m.updates_sent + m.keepalives_sent, "{m:?}");
    // 179, or unknown when the ToR happened to open the connection (both sides listen here).
    assert!([0, 179].contains(&tor_n.remote_port), "{tor_n:?}");
    let mut with_counters = peers.clone();
    status::add_bfd_counters(&mut with_counters, &counters_text).unwrap();
    let c = with_counters.iter().find(|p| p.peer == "192.0.2.1").and_then(|p| p.counters);
    let c = c.unwrap_or_else(|| panic!("no counters for the ToR's BFD session: {counters_text}"));
    assert!(c.control_packet_input > 0 && c.control_packet_output > 0, "{c:?}");
    assert!(c.session_up_events >= 1, "{c:?}");

    if std::env::var_os("FERROLB_CAPTURE_FIXTURES").is_some() {
        let label = node.install().label();
        let dir = crate::repo_root().join(format!("frr-sidecar/fixtures/frr-{label}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("neighbors.json"), &neighbors_text).unwrap();
        std::fs::write(dir.join("bfd-peers.json"), &bfd_text).unwrap();
        std::fs::write(dir.join("bfd-counters.json"), &counters_text).unwrap();
        println!("captured FRR {label}'s output in {}", dir.display());
    }
}
