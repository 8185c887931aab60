//! BGP sessions of every shape against real FRR routers on a switched LAN: two nodes (each an FRR
//! driven by frr-agent from `plan`'s output) peering with a ToR over eBGP and with a route
//! reflector over iBGP; BFD; unnumbered, multihop and MD5 sessions.

use std::time::{Duration, Instant};

use frr_sidecar::proto::{AgentStatus, ApplyRequest, StatusRequest, apply_reply::Outcome};

use crate::agent_process::AgentProcess;
use crate::fabric::{Lan, Netns, kernel_next_hops, plan_node, sh, wire};
use crate::frr_lab::{Frr, wait_for};
use crate::runtime;

pub const BASE: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool}
spec: {addresses: [198.51.100.0/28, '2001:db8:20::/124']}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: aliases}
spec: {communities: [{name: tor-only, value: '64500:100'}]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: ad}
spec: {communities: [tor-only, 'large:64512:1:100'], localPref: 150}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {type: LoadBalancer}
";

pub fn peer(name: &str, asn: u32, address: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}}}\n\
         spec: {{myASN: 64512, peerASN: {asn}, peerAddress: '{address}', holdTime: 9s, keepaliveTime: 3s, connectTime: 1s{extra}}}\n"
    )
}

pub fn apply(agent: &AgentProcess, config: &str, generation: u64) {
    let rt = runtime();
    let _context = rt.enter();
    let reply = rt
        .block_on(agent.client().apply(ApplyRequest { config: config.to_string(), generation }))
        .unwrap()
        .into_inner();
    assert_eq!(reply.outcome(), Outcome::Applied, "{}", reply.error);
}

fn status(agent: &AgentProcess) -> AgentStatus {
    let rt = runtime();
    let _context = rt.enter();
    rt.block_on(agent.client().status(StatusRequest {})).unwrap().into_inner()
}

/// (established, dropped) connection counts of every session `router` has.
pub fn counters(router: &Frr) -> Vec<(String, u64, u64)> {
    let v = router.json("show bgp vrf all neighbors json");
    let mut out = Vec::new();
    for (_, vrf) in v.as_object().into_iter().flatten() {
        for (peer, n) in vrf.as_object().into_iter().flatten().filter(|(_, n)| n.is_object()) {
            let c = |k: &str| n[k].as_u64().unwrap_or(0);
            out.push((peer.clone(), c("connectionsEstablished"), c("connectionsDropped")));
        }
    }
    out.sort();
    out
}

fn established(router: &Frr, peer: &str) -> bool {
    let v = router.json(&format!("show bgp neighbors {peer} json"));
    v[peer]["bgpState"] == "Established"
}

fn path_attrs(router: &Frr, prefix: &str) -> serde_json::Value {
    let afi = if prefix.contains(':') { "ipv6" } else { "ipv4" };
    router.json(&format!("show bgp {afi} unicast {prefix} json"))
}

pub const TOR: &str = "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 bgp bestpath as-path multipath-relax
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES timers 3 9
 neighbor NODES timers connect 1
 neighbor 192.0.2.11 peer-group NODES
 neighbor 192.0.2.12 peer-group NODES
 neighbor 2001:db8:10::11 peer-group NODES
 neighbor 2001:db8:10::12 peer-group NODES
 address-family ipv4 unicast
  neighbor 192.0.2.11 activate
  neighbor 192.0.2.12 activate
  no neighbor 2001:db8:10::11 activate
  no neighbor 2001:db8:10::12 activate
  maximum-paths 8
 exit-address-family
 address-family ipv6 unicast
  neighbor 2001:db8:10::11 activate
  neighbor 2001:db8:10::12 activate
  maximum-paths 8
 exit-address-family
exit
";

const REFLECTOR: &str = "router bgp 64512
 bgp router-id 192.0.2.2
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.12 remote-as 64512
 neighbor 192.0.2.11 timers connect 1
 neighbor 192.0.2.12 timers connect 1
 address-family ipv4 unicast
  neighbor 192.0.2.11 route-reflector-client
  neighbor 192.0.2.12 route-reflector-client
 exit-address-family
exit
";

struct TwoNodes {
    tor: Frr,
    reflector: Frr,
    nodes: Vec<(Frr, AgentProcess, String)>,
    lan: Lan,
    ports: Vec<String>,
}

fn two_nodes(extra_peer_fields: &str, extra_objects: &str, tor_extra: &str) -> TwoNodes {
    let lan = Lan::new();
    let tor = Frr::start("tor").unwrap();
    let reflector = Frr::start("rr").unwrap();
    lan.attach(&tor.ns, "eth0", &["192.0.2.1/24", "2001:db8:10::1/64"]);
    lan.attach(&reflector.ns, "eth0", &["192.0.2.2/24"]);
    tor.configure(&format!("{TOR}{tor_extra}"));
    reflector.configure(REFLECTOR);
    let manifest = format!(
        "{BASE}{extra_objects}{}{}{}",
        peer("tor4", 64500, "192.0.2.1", extra_peer_fields),
        peer("tor6", 64500, "2001:db8:10::1", extra_peer_fields),
        peer("rr", 64512, "192.0.2.2", "")
    );
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for (i, name) in ["node1", "node2"].iter().enumerate() {
        let frr = Frr::start(name).unwrap();
        let (v4, v6) = (format!("192.0.2.{}/24", 11 + i), format!("2001:db8:10::{}/64", 11 + i));
        ports.push(lan.attach(&frr.ns, "eth0", &[&v4, &v6]));
        let agent = AgentProcess::start(&frr, "agent");
        let plan = plan_node(&manifest, name);
        apply(&agent, &plan.frr, 1);
        nodes.push((frr, agent, manifest.clone()));
    }
    TwoNodes { tor, reflector, nodes, lan, ports }
}

#[test]
fn two_nodes_announce_dual_stack_services_with_ecmp_communities_and_local_pref() {
    require_frr!();
    let lab = two_nodes("", "", "");
    let plan = plan_node(&lab.nodes[0].2, "node1");
    let web = plan.ips_of("shop/web");
    let api = plan.ips_of("shop/api");
    assert_eq!(web.len(), 2, "{web:?}");
    let (web4, web6) = (format!("{}/32", web[0]), format!("{}/128", web[1]));
    let api4 = format!("{}/32", api[0]);

    let ecmp = wait_for(Duration::from_secs(30), || {
        [&web4, &web6, &api4].iter().all(|p| kernel_next_hops(&lab.tor, p).len() == 2)
    });
    assert!(
        ecmp.is_some(),
        "ToR FIB: {web4} {:?} {web6} {:?} {api4} {:?}; sessions {:?}",
        kernel_next_hops(&lab.tor, &web4),
        kernel_next_hops(&lab.tor, &web6),
        kernel_next_hops(&lab.tor, &api4),
        counters(&lab.tor)
    );
    assert_eq!(kernel_next_hops(&lab.tor, &web4), ["192.0.2.11", "192.0.2.12"]);
    assert_eq!(kernel_next_hops(&lab.tor, &web6).len(), 2);

    for prefix in [&web4, &web6, &api4] {
        let v = path_attrs(&lab.tor, prefix);
        let paths = v["paths"].as_array().cloned().unwrap_or_default();
        assert_eq!(paths.len(), 2, "{prefix}: {v:#}");
        for p in &paths {
            assert_eq!(p["community"]["string"], "64500:100", "{prefix}: {p:#}");
            assert_eq!(p["largeCommunity"]["string"], "64512:1:100", "{prefix}: {p:#}");
            assert_eq!(p["aspath"]["string"], "64512", "{prefix}: {p:#}");
        }
    }
    // Local preference only travels inside the AS: the reflector sees it, from both nodes.
    let rr = wait_for(Duration::from_secs(30), || {
        path_attrs(&lab.reflector, &api4)["paths"].as_array().is_some_and(|p| p.len() == 2)
    });
    assert!(rr.is_some(), "{:#}", path_attrs(&lab.reflector, &api4));
    for p in path_attrs(&lab.reflector, &api4)["paths"].as_array().unwrap() {
        assert_eq!(p["locPrf"], 150, "{p:#}");
        assert_eq!(p["community"]["string"], "64500:100");
    }
    // Every node session is up on the agent's side too. The agent polls FRR, so its status may
    // trail what the reflector already holds by one poll (FRR 10.7 sends to the iBGP
    // reflector 50-60 ms after the eBGP ToR): wait for it rather than read one snapshot.
    for (_, agent, _) in &lab.nodes {
        let complete = |s: &AgentStatus| {
            s.neighbors.len() == 3 && s.neighbors.iter().all(|n| n.established && n.prefixes_sent >= 1)
        };
        let seen = wait_for(Duration::from_secs(5), || complete(&status(agent)));
        assert!(seen.is_some(), "{:?}", status(agent));
    }
    println!("ECMP over both nodes for v4 and v6 after {ecmp:?}");
}

/// BFD at 100 ms x 3: the BFDProfile the nodes get and the ToR's own profile of the same name.
pub const BFD_FAST: &str = "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\n\
                        spec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}\n";
pub const TOR_BFD_FAST: &str = "bfd
 profile fast
  receive-interval 100
  transmit-interval 100
 exit
exit
";

#[test]
fn bfd_takes_a_cut_off_node_out_of_ecmp_within_the_detection_time() {
    require_frr!();
    let tor_bfd = format!(
        "router bgp 64500\n neighbor NODES bfd\n neighbor NODES bfd profile fast\nexit\n{TOR_BFD_FAST}"
    );
    let lab = two_nodes(", bfdProfile: fast", BFD_FAST, &tor_bfd);
    let api4 = format!("{}/32", plan_node(&lab.nodes[0].2, "node1").ips_of("shop/api")[0]);
    let bfd_up = |router: &Frr| {
        let v = router.json("show bfd peers json");
        v.as_array().map_or(0, |l| l.iter().filter(|p| p["status"] == "up").count())
    };
    let ready = wait_for(Duration::from_secs(30), || {
        bfd_up(&lab.tor) == 4 && kernel_next_hops(&lab.tor, &api4).len() == 2
    });
    assert!(
        ready.is_some(),
        "BFD {:#} FIB {:?}; node1's BFD {:#}",
        lab.tor.json("show bfd peers json"),
        kernel_next_hops(&lab.tor, &api4),
        lab.nodes[0].0.json("show bfd peers json"),
    );
    let v = lab.tor.json("show bfd peers json");
    let node1 = v.as_array().unwrap().iter().find(|p| p["peer"] == "192.0.2.11").unwrap().clone();
    assert_eq!(
        (node1["receive-interval"].as_u64(), node1["detect-multiplier"].as_u64()),
        (Some(100), Some(3))
    );

    // The agent reads the same BFD sessions from bfdd.
    let agent_sees = wait_for(Duration::from_secs(10), || {
        let s = status(&lab.nodes[0].1);
        let tor4 = s.bfd_peers.iter().find(|p| p.peer == "192.0.2.1");
        tor4.is_some_and(|p| {
            (p.status.as_str(), p.receive_interval_millis, p.detect_multiplier) == ("up", 100, 3)
        }) && s.neighbors.iter().filter(|n| n.peer != "192.0.2.2").all(|n| n.bfd_status == "Up")
    });
    assert!(agent_sees.is_some(), "{:?}", status(&lab.nodes[0].1));

    // node1's switch port dies: no carrier change on the ToR, so only BFD can tell.
    let cut = Instant::now();
    lab.lan.set_port(&lab.ports[0], false);
    let gone = wait_for(Duration::from_secs(20), || kernel_next_hops(&lab.tor, &api4) == ["192.0.2.12"]);
    let took = cut.elapsed();
    assert!(gone.is_some(), "ToR still routes {api4} via {:?}", kernel_next_hops(&lab.tor, &api4));
    println!("BFD 100ms x3: node1 out of ECMP at the ToR {took:?} after its port went down");
    // The hold time is 9 s: anything near it means BFD did not do the job.
    assert!(took < Duration::from_secs(3), "withdrawn after {took:?}");
    let v = lab.tor.json("show bfd peers json");
    let node1 = v.as_array().unwrap().iter().find(|p| p["peer"] == "192.0.2.11").unwrap().clone();
    assert_eq!(node1["status"], "down");
    assert_eq!(node1["diagnostic"], "control detection time expired");

    // node1 lost its carrier: its agent reports the sessions down.
    let seen = wait_for(Duration::from_secs(10), || {
        let s = status(&lab.nodes[0].1);
        s.neighbors.iter().any(|n| n.peer == "192.0.2.1" && !n.established && n.bfd_status == "Down")
    });
    assert!(seen.is_some(), "{:?}", status(&lab.nodes[0].1));

    // The port comes back: node1 rejoins ECMP.
    lab.lan.set_port(&lab.ports[0], true);
    let back = wait_for(Duration::from_secs(30), || kernel_next_hops(&lab.tor, &api4).len() == 2);
    assert!(back.is_some());
}

/// A BFD-protected session whose BGPPeer sets no timers goes down on the node within BFD's
/// detection time, not the hold time's 180 s or the 30 s FRR 10.4/10.5 wait when the neighbor
/// has no explicit timers (FRR #22097): node1 stops hearing BFD while BGP's TCP still works,
/// so only BFD can end the session.
#[test]
fn bfd_ends_a_session_without_bgpeer_timers_within_the_detection_time() {
    require_frr!();
    let (_lan, tor, node) = tor_and_node1();
    tor.configure(&format!(
        "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.11 bfd
 neighbor 192.0.2.11 bfd profile fast
 neighbor 192.0.2.11 timers connect 1
exit
{TOR_BFD_FAST}"
    ));
    let manifest = format!(
        "{BASE}{BFD_FAST}---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: tor}}\n\
         spec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, bfdProfile: fast, connectTime: 1s}}\n"
    );
    let plan = plan_node(&manifest, "node1");
    assert!(plan.frr.contains("\n neighbor 192.0.2.1 timers 60 180\n"), "{}", plan.frr);
    // First the configuration the build before this one rendered (no timers line), then this
    // one's: an upgrade adds the line to a running session without resetting it.
    let agent = AgentProcess::start(&node, "agent");
    apply(&agent, &plan.frr.replace(" neighbor 192.0.2.1 timers 60 180\n", ""), 1);
    let up = wait_for(Duration::from_secs(40), || established(&node, "192.0.2.1"));
    assert!(up.is_some(), "{:#}", node.json("show bgp neighbors json"));
    let before = counters(&node);
    apply(&agent, &plan.frr, 2);
    let bfd_up =
        || node.json("show bfd peers json").as_array().is_some_and(|l| l.iter().any(|p| p["status"] == "up"));
    let ready = wait_for(Duration::from_secs(40), || established(&node, "192.0.2.1") && bfd_up());
    assert!(
        ready.is_some(),
        "{:#}\n{:#}",
        node.json("show bgp neighbors json"),
        node.json("show bfd peers json")
    );

    // FRR took the line and a second later the session has still been established once only.
    let running = node.running_config();
    assert!(running.contains(" neighbor 192.0.2.1 timers 60 180\n"), "{running}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(counters(&node), before, "adding the timers line reset the session");
    sh(&format!(
        "ip netns exec {} nft 'add table inet cut; add chain inet cut input {{ type filter hook input priority 0; }}; \
         add rule inet cut input udp dport {{ 3784, 4784 }} drop'",
        node.ns
    ));
    let cut = Instant::now();
    let down = wait_for(Duration::from_secs(60), || !established(&node, "192.0.2.1"));
    let took = cut.elapsed();
    let version = &node.install().version;
    assert!(down.is_some(), "FRR {version}: still established 60 s after BFD stopped");
    println!(
        "FRR {version}: BFD 100ms x3, no BGPPeer timers: the node's session down {took:?} after BFD stopped"
    );
    assert!(took < Duration::from_secs(3), "FRR {version}: session down only after {took:?}");
    let v = node.json("show bgp neighbors 192.0.2.1 json");
    // BFD ended it, not a hold timer: FRR 8.4/10.3 record the Cease it sent (subcode 10, BFD
    // Down), 10.7 the reset's cause.
    let n = &v["192.0.2.1"];
    let by_bfd = n["lastErrorCodeSubcode"] == "060A"
        || n["lastResetDueTo"].as_str().is_some_and(|r| r.contains("BFD"));
    assert!(by_bfd, "FRR {version}: {v:#}");
}

/// A ToR (192.0.2.1) and node1 (192.0.2.11) on one LAN, FRR in each.
fn tor_and_node1() -> (Lan, Frr, Frr) {
    let lan = Lan::new();
    let tor = Frr::start("tor").unwrap();
    let node = Frr::start("node1").unwrap();
    lan.attach(&tor.ns, "eth0", &["192.0.2.1/24"]);
    lan.attach(&node.ns, "eth0", &["192.0.2.11/24"]);
    (lan, tor, node)
}

#[test]
fn unnumbered_multihop_and_md5_sessions_and_a_wrong_password_shows_in_status() {
    require_frr!();
    let (_lan, tor, node) = tor_and_node1();
    // Unnumbered: a second link with IPv6 link-local addresses only.
    wire(&tor.ns, "eth1", &[], &node.ns, "eth1", &[]);
    // Multihop: loopback addresses routed over the LAN.
    sh(&format!(
        "ip -n {} addr add 203.0.113.1/32 dev lo && ip -n {} route add 203.0.113.11/32 via 192.0.2.11",
        tor.ns, tor.ns
    ));
    sh(&format!(
        "ip -n {} addr add 203.0.113.11/32 dev lo && ip -n {} route add 203.0.113.1/32 via 192.0.2.1",
        node.ns, node.ns
    ));
    tor.configure(
        "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.11 password right-one
 neighbor 192.0.2.11 timers connect 1
 neighbor 203.0.113.11 remote-as 64512
 neighbor 203.0.113.11 ebgp-multihop 255
 neighbor 203.0.113.11 update-source 203.0.113.1
 neighbor 203.0.113.11 timers connect 1
 neighbor eth1 interface remote-as 64512
 neighbor eth1 timers connect 1
exit
",
    );
    let manifest = |password: &str| {
        format!(
            "{BASE}{}{}---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: link}}\n\
             spec: {{myASN: 64512, peerASN: 64500, interface: eth1, connectTime: 1s}}\n",
            peer("md5", 64500, "192.0.2.1", &format!(", password: {password}")),
            peer("far", 64500, "203.0.113.1", ", ebgpMultiHop: true, sourceAddress: 203.0.113.11"),
        )
    };
    let agent = AgentProcess::start(&node, "agent");
    let plan = plan_node(&manifest("right-one"), "node1");
    apply(&agent, &plan.frr, 1);
    let api4 = format!("{}/32", plan.ips_of("shop/api")[0]);
    let sessions = ["192.0.2.11", "203.0.113.11", "eth1"];
    let up = wait_for(Duration::from_secs(40), || sessions.iter().all(|p| established(&tor, p)));
    assert!(up.is_some(), "{:?}\n{:#}", counters(&tor), tor.json("show bgp summary json"));
    // The ToR learns the service from all three sessions.
    let three = wait_for(Duration::from_secs(20), || {
        path_attrs(&tor, &api4)["paths"].as_array().is_some_and(|p| p.len() == 3)
    });
    assert!(three.is_some(), "{:#}", path_attrs(&tor, &api4));
    let agent_view = status(&agent);
    assert!(agent_view.neighbors.iter().all(|n| n.established), "{agent_view:?}");
    assert_eq!(
        agent_view.neighbors.iter().map(|n| n.peer.as_str()).collect::<Vec<_>>(),
        ["192.0.2.1", "203.0.113.1", "eth1"]
    );

    // A wrong password: that session fails (and says so in Status); the others never notice.
    let before: Vec<_> = counters(&tor).into_iter().filter(|(p, ..)| p != "192.0.2.11").collect();
    let plan = plan_node(&manifest("wrong-one"), "node1");
    apply(&agent, &plan.frr, 2);
    let failed = wait_for(Duration::from_secs(20), || {
        let s = status(&agent);
        s.neighbors.iter().any(|n| n.peer == "192.0.2.1" && !n.established && n.connections_dropped >= 1)
    });
    assert!(failed.is_some(), "{:?}", status(&agent));
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&agent);
    let md5 = s.neighbors.iter().find(|n| n.peer == "192.0.2.1").unwrap();
    assert!(!md5.established && md5.state != "Established", "{md5:?}");
    assert!(!md5.last_reset.is_empty(), "{md5:?}");
    assert!(!established(&tor, "192.0.2.11"));
    let after: Vec<_> = counters(&tor).into_iter().filter(|(p, ..)| p != "192.0.2.11").collect();
    assert_eq!(before, after, "a password change on one session disturbed the others");
    println!("wrong password: agent reports {} ({}), other sessions untouched", md5.state, md5.last_reset);
}

/// The widest password validation lets through (80 bytes, every kind of punctuation FRR could
/// read specially: `!`, `#`, `?`, quotes, backslash) reaches FRR as written: the running
/// configuration shows it byte for byte and the ToR, holding the same key, establishes the
/// session. A node whose name starts with a digit (FRR refuses such a `hostname`) still gets
/// its configuration, under a derived hostname.
#[test]
fn the_longest_password_of_every_punctuation_reaches_frr_as_written() {
    require_frr!();
    let (_lan, tor, node) = tor_and_node1();
    let punctuation: String =
        (0x21u8..=0x7e).filter(|b| !b.is_ascii_alphanumeric()).map(char::from).collect();
    let password = format!("{punctuation}{}", "Zz9".repeat(30))[..80].to_string();
    assert_eq!(password.len(), ferrolb::config::frr_text::MAX_PASSWORD);
    tor.configure(&format!(
        "router bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n neighbor 192.0.2.11 remote-as 64512\n \
         neighbor 192.0.2.11 password {password}\n neighbor 192.0.2.11 timers connect 1\nexit\n"
    ));
    let quoted = serde_json::to_string(&password).unwrap();
    let manifest = format!("{BASE}{}", peer("md5", 64500, "192.0.2.1", &format!(", password: {quoted}")));
    let plan = plan_node(&manifest, "7-rack1");
    assert!(plan.frr.contains("\nhostname node-7-rack1\n"), "{}", plan.frr);
    let agent = AgentProcess::start(&node, "agent");
    apply(&agent, &plan.frr, 1);
    let running = node.running_config();
    assert!(running.contains(&format!(" neighbor 192.0.2.1 password {password}\n")), "{running}");
    let up = wait_for(Duration::from_secs(40), || established(&tor, "192.0.2.11"));
    assert!(up.is_some(), "{:?}\n{running}", counters(&tor));
    println!(
        "an 80-byte password of {} punctuation characters: applied as written, session up",
        punctuation.len()
    );
}

#[test]
fn a_vrf_peer_gets_its_session_and_the_services() {
    require_frr!();
    // This kernel may have no VRF devices; FRR's netns-backed VRFs exercise the same
    // `router bgp ASN vrf NAME` configuration.
    let tor = Frr::start("tor").unwrap();
    let node = Frr::start_with_netns_vrfs("node1").unwrap();
    let vrf = Netns::new("flbv");
    wire(&tor.ns, "eth1", &["198.51.100.129/25"], &vrf.0, "eth1", &["198.51.100.139/25"]);
    tor.configure(
        "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 198.51.100.139 remote-as 64512
 neighbor 198.51.100.139 timers connect 1
exit
",
    );
    let manifest = format!(
        "{BASE}{}",
        peer("tor-red", 64500, "198.51.100.129", &format!(", vrf: {}, routerID: 192.0.2.11", vrf.0))
    );
    let agent = AgentProcess::start(&node, "agent");
    let plan = plan_node(&manifest, "node1");
    assert!(plan.frr.contains(&format!("router bgp 64512 vrf {}", vrf.0)), "{}", plan.frr);
    apply(&agent, &plan.frr, 1);
    let api4 = format!("{}/32", plan.ips_of("shop/api")[0]);
    let up = wait_for(Duration::from_secs(40), || {
        established(&tor, "198.51.100.139")
            && path_attrs(&tor, &api4)["paths"].as_array().is_some_and(|p| p.len() == 1)
    });
    assert!(up.is_some(), "{:#}\n{}", tor.json("show bgp summary json"), node.running_config());
    // The agent reports the session under its VRF.
    let reported = wait_for(Duration::from_secs(10), || {
        status(&agent)
            .neighbors
            .iter()
            .any(|n| n.peer == "198.51.100.129" && n.vrf == vrf.0 && n.established && n.prefixes_sent >= 1)
    });
    assert!(reported.is_some(), "{:?}", status(&agent));
}

/// A single-hop eBGP peer at an IPv6 address on no network the node is connected to (the
/// ToR's loopback, routed over the LAN): FRR would not even try to connect without
/// `disable-connected-check`, which ferrolb renders for such peers as MetalLB does. The same
/// configuration without that line first, as the control: no session.
#[test]
fn an_ipv6_peer_off_the_connected_networks_gets_its_session_only_with_the_check_disabled() {
    require_frr!();
    let lan = Lan::new();
    let tor = Frr::start("tor").unwrap();
    let node = Frr::start("node1").unwrap();
    lan.attach(&tor.ns, "eth0", &["2001:db8:10::1/64"]);
    lan.attach(&node.ns, "eth0", &["2001:db8:10::11/64"]);
    sh(&format!(
        "ip -n {} addr add 2001:db8:99::1/128 dev lo && ip -n {} route add 2001:db8:99::1/128 via 2001:db8:10::1",
        tor.ns, node.ns
    ));
    tor.configure(
        "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 2001:db8:10::11 remote-as 64512
 neighbor 2001:db8:10::11 timers connect 1
 address-family ipv6 unicast
  neighbor 2001:db8:10::11 activate
 exit-address-family
exit
",
    );
    let manifest = format!(
        "{BASE}---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: tor}}\n\
         spec: {{myASN: 64512, peerASN: 64500, peerAddress: '2001:db8:99::1', routerID: 192.0.2.11, connectTime: 1s}}\n"
    );
    let plan = plan_node(&manifest, "node1");
    let line = " neighbor 2001:db8:99::1 disable-connected-check\n";
    assert!(plan.frr.contains(line), "{}", plan.frr);
    let agent = AgentProcess::start(&node, "agent");
    apply(&agent, &plan.frr.replace(line, ""), 1);
    let without = wait_for(Duration::from_secs(8), || established(&tor, "2001:db8:10::11"));
    assert!(without.is_none(), "established without the line: the test would show nothing");
    apply(&agent, &plan.frr, 2);
    let with = wait_for(Duration::from_secs(30), || established(&tor, "2001:db8:10::11"));
    assert!(with.is_some(), "{:#}", node.json("show bgp neighbors json"));
    println!(
        "IPv6 peer off the connected networks: no session in 8 s without the line, up {with:?} after it"
    );
}
