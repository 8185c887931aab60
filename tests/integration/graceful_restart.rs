//! A speaker pod replaced in a rollout: its FRR container stops FRR's daemons with SIGTERM (the
//! entrypoint's `frrinit.sh stop`) while the speaker and frr-agent leave the configuration
//! alone. With `enableGracefulRestart` on the BGPPeer, the configuration ferrolb renders lets
//! bgpd go without a NOTIFICATION, so the ToR keeps the node's routes (stale, for the restart
//! time) until the successor's FRR is back; without it, the routes go at once. Real FRR on both
//! sides, on every supported version.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::agent_process::AgentProcess;
use crate::bgp_sessions::apply;
use crate::fabric::{plan_node, sh};
use crate::frr_lab::{Frr, link, wait_for};

pub const TOR: &str = "router bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n \
                   neighbor 192.0.2.11 remote-as 64512\n neighbor 192.0.2.11 timers 3 9\n";

pub fn manifest(graceful: bool, bfd: bool) -> String {
    let (profile, peer_bfd) = if bfd {
        (
            "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\n\
             spec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}\n---\n",
            ", bfdProfile: fast",
        )
    } else {
        ("", "")
    };
    format!(
        "{profile}apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: lab, namespace: metallb-system}}\n\
         spec: {{addresses: [198.51.100.0/24]}}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: lab, namespace: metallb-system}}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: tor, namespace: metallb-system}}\n\
         spec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, \
         connectTime: 1s, routerID: 192.0.2.11, enableGracefulRestart: {graceful}{peer_bfd}}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

pub fn at_tor(tor: &Frr, prefix: &str) -> bool {
    let out = Command::new("ip").args(["-n", &tor.ns, "route", "show", prefix]).output().unwrap();
    !out.stdout.is_empty()
}

/// Announces web's IP from a node with or without graceful restart, stops the node's FRR with
/// SIGTERM, and returns when the ToR lost the route (None: kept for `watch`) and why the ToR
/// says the session ended.
fn stop_frr_and_watch(graceful: bool, watch: Duration) -> (Option<Duration>, String) {
    let tor = Frr::start("tor").unwrap();
    let node = Frr::start("node1").unwrap();
    link(&tor, &node, &["192.0.2.1/24"], &["192.0.2.11/24"]);
    tor.configure(TOR);
    let plan = plan_node(&manifest(graceful, false), "node1");
    let prefix = format!("{}/32", plan.ips_of("shop/web")[0]);
    let agent = AgentProcess::start(&node, "agent");
    apply(&agent, &plan.frr, 1);
    let up = wait_for(Duration::from_secs(30), || at_tor(&tor, &prefix));
    assert!(up.is_some(), "{prefix} never reached the ToR:\n{}", plan.frr);
    drop(agent);
    // What frrinit.sh stop does: SIGTERM to each daemon, bgpd among the first.
    let t = Instant::now();
    for daemon in ["bgpd", "staticd", "bfdd", "zebra", "mgmtd"] {
        if let Ok(pid) = std::fs::read_to_string(node.dir().join(format!("run/{daemon}.pid"))) {
            sh(&format!("kill -TERM {} 2>/dev/null || true", pid.trim()));
        }
    }
    let mut lost = None;
    while t.elapsed() < watch && lost.is_none() {
        if !at_tor(&tor, &prefix) {
            lost = Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = String::from_utf8_lossy(&tor.vtysh(&["-c", "show bgp neighbors 192.0.2.11"]).unwrap().stdout)
        .lines()
        .filter(|l| l.contains("Last reset"))
        .collect::<Vec<_>>()
        .join("; ");
    if graceful {
        let stale = tor.json(&format!("show bgp ipv4 unicast {prefix} json"))["paths"][0]["stale"].clone();
        assert_eq!(stale, true, "the kept route is not marked stale");
    }
    (lost, said)
}

#[test]
fn sigterm_keeps_the_routes_at_the_peer_with_graceful_restart_only() {
    require_frr!();
    let (lost, said) = stop_frr_and_watch(true, Duration::from_secs(3));
    assert_eq!(lost, None, "with graceful restart the ToR withdrew the route ({said})");
    assert!(!said.contains("Notification"), "bgpd sent a NOTIFICATION on SIGTERM: {said}");
    println!("graceful restart: route kept (stale) at the ToR for the 3 s watched; {said}");
    let (lost, said) = stop_frr_and_watch(false, Duration::from_secs(3));
    assert!(
        lost.is_some_and(|l| l < Duration::from_secs(1)),
        "without graceful restart: lost {lost:?} ({said})"
    );
    println!("without graceful restart: route gone {lost:?} after SIGTERM; {said}");
}
