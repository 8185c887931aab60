//! A starting node's BGP sessions, from frr-agent's first Apply: up on the first try, BFD
//! included, against a ToR running the same FRR.

use std::time::{Duration, Instant};

use crate::agent_process::AgentProcess;
use crate::bgp_sessions::{BASE, BFD_FAST, TOR, TOR_BFD_FAST, apply, counters, peer};
use crate::fabric::{Lan, kernel_next_hops, plan_node};
use crate::frr_lab::{Frr, wait_for};

/// How long the sessions are watched once BFD is up: a reset it causes would follow at once.
const SETTLE: Duration = Duration::from_secs(2);

/// node1's first configuration: IPv4 and IPv6 sessions with BFD at 100 ms x 3, the ToR's
/// neighbors protected by BFD as well. FRR holds a neighbor that a configuration creates until
/// the route-map delay timer runs out (5 s by default; every first configuration changes
/// route-maps), which let BFD come up before BGP; the first connection then re-keyed BFD and both
/// sides reset with Cease/BFD Down (8.4 and 10.7: 7.5 s to the routes, one reset per session).
/// Now the routes are in the ToR's FIB long before that hold would have ended, and no session
/// drops afterwards.
#[test]
fn a_first_configuration_brings_its_sessions_up_at_once_and_keeps_them() {
    require_frr!();
    let lan = Lan::new();
    let tor = Frr::start("tor").unwrap();
    lan.attach(&tor.ns, "eth0", &["192.0.2.1/24", "2001:db8:10::1/64"]);
    tor.configure(&format!(
        "{TOR}router bgp 64500\n neighbor NODES bfd\n neighbor NODES bfd profile fast\nexit\n{TOR_BFD_FAST}"
    ));
    let node = Frr::start("node1").unwrap();
    lan.attach(&node.ns, "eth0", &["192.0.2.11/24", "2001:db8:10::11/64"]);
    let agent = AgentProcess::start(&node, "agent");
    let bfd = ", bfdProfile: fast";
    let manifest = format!(
        "{BASE}{BFD_FAST}{}{}",
        peer("tor4", 64500, "192.0.2.1", bfd),
        peer("tor6", 64500, "2001:db8:10::1", bfd)
    );
    let plan = plan_node(&manifest, "node1");
    let routes =
        [format!("{}/32", plan.ips_of("shop/api")[0]), format!("{}/128", plan.ips_of("shop/web")[1])];

    let applying = Instant::now();
    apply(&agent, &plan.frr, 1);
    let in_fib =
        wait_for(Duration::from_secs(20), || routes.iter().all(|r| !kernel_next_hops(&tor, r).is_empty()));
    let took = applying.elapsed();
    let version = &node.install().version;
    assert!(in_fib.is_some(), "FRR {version}: {routes:?} never reached the ToR: {:?}", counters(&tor));
    println!("FRR {version}: first Apply -> both families' routes in the ToR's FIB in {took:?}");
    if waits_for_bfd(version) {
        println!("FRR {version} starts no BFD-protected session before BFD is up: see waits_for_bfd");
        return;
    }
    // 5 s is FRR's hold with the default timer; anything near it means the hold is back.
    assert!(took < Duration::from_secs(4), "FRR {version}: the routes took {took:?}");

    // BFD up on both sides and protecting node1's sessions: bfdd runs them from the `bfd`
    // block at once, bgpd joins once frr-agent sees the sessions established, and the ToR's own
    // re-key at its first connection sets its side back (FRR 8.4: 4.7-4.8 s after the first
    // Apply, 2.3-2.8 s when bgpd registered at once; the routes come first either way).
    let protected = || {
        let bfd_up = tor
            .json("show bfd peers json")
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["status"] == "up").count());
        bfd_up == 2
            && ["192.0.2.1", "2001:db8:10::1"].iter().all(|n| {
                node.json(&format!("show bgp neighbors {n} json"))[n]["peerBfdInfo"]["status"] == "Up"
            })
    };
    let up = wait_for(Duration::from_secs(15), protected);
    assert!(
        up.is_some(),
        "FRR {version}: BFD not up and protecting node1's sessions: {:#}",
        tor.json("show bfd peers json")
    );
    println!("FRR {version}: BFD protects both sessions {:?} after the first Apply", applying.elapsed());
    // A reset BFD causes follows at once.
    std::thread::sleep(SETTLE);
    for (router, side) in [(&tor, "the ToR"), (&node, "node1")] {
        // The ToR also has node2's neighbors, which never connect here.
        let sessions: Vec<_> =
            counters(router).into_iter().filter(|(peer, ..)| !peer.ends_with("12")).collect();
        assert!(
            sessions.iter().all(|(_, up, dropped)| (*up, *dropped) == (1, 0)),
            "FRR {version}: {side}'s sessions (peer, established, dropped): {sessions:?}"
        );
    }
}

/// FRR 10.2 to 10.3.0 start no session whose neighbor has BFD until BFD is up (FRR commit
/// da4a7b0356, "Treat the peer as not active due to BFD down only if established", fixed it in
/// 10.3.1 and 10.4; Debian trixie's 10.3, the sidecar image's, is without it). BFD is then always
/// up before the connection, whose new source address and interface re-key the BFD session on
/// both sides; the new sessions take a detection time to meet, and until they do FRR holds the
/// routes: 2.4-6.1 s to the ToR's FIB over 5 runs (5.2-7.4 s with FRR's default route-map
/// timer), as the two BFD sessions happen to meet; 1.2-3.4 s (5 runs) once the node's bgpd
/// took BFD only after its sessions were up (the ToR's own re-key remains). Measured and
/// printed there, not held to the 4 s: the wait is the ToR's.
fn waits_for_bfd(version: &str) -> bool {
    version.starts_with("10.2") || version == "10.3" || version.starts_with("10.3.0")
}
