//! frr-agent's applier against real FRR: a ToR and a node in two namespaces, the node's FRR
//! driven only through diffs. The ToR must see every change and the session must never reset.

use std::time::Duration;

use ferrolb::plan::{self, Inputs, Options};
use frr_sidecar::apply::{Applied, Applier, ApplyError, Vtysh};
use frr_sidecar::{diff, tree::ConfigTree};

use crate::frr_lab::{self, Frr, wait_for};

const TOR: &str = "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.11 timers 3 9
 neighbor 192.0.2.11 timers connect 1
 address-family ipv4 unicast
  neighbor 192.0.2.11 activate
 exit-address-family
exit
";

/// The node's frr.conf for `services` Services from 198.18.0.0/15 carrying `community`.
pub fn node_config(services: usize, community: &str) -> String {
    let mut yaml = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bench}}\nspec: {{addresses: [198.18.0.0/15]}}\n\
         ---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: tor}}\nspec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s, routerID: 192.0.2.11}}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: ad}}\nspec: {{communities: ['{community}']}}\n"
    );
    for i in 0..services {
        yaml.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i:05}, namespace: bench}}\nspec: {{type: LoadBalancer}}\n"));
    }
    let mut inputs = Inputs::new("metallb-system");
    inputs.add_yaml("bench", &yaml).unwrap();
    let p = plan::plan(
        &inputs,
        &Options { node: Some("node1".into()), show_secrets: true, ..Default::default() },
    );
    assert!(p.errors.is_empty() && p.pending.is_empty(), "{:?} {:?}", p.errors, p.pending);
    p.frr_config.unwrap()
}

pub struct Lab {
    pub tor: Frr,
    pub node: Frr,
    pub applier: Applier,
}

impl Lab {
    pub fn start() -> Lab {
        let tor = Frr::start("tor").unwrap();
        let node = Frr::start("node1").unwrap();
        frr_lab::link(&tor, &node, &["192.0.2.1/24"], &["192.0.2.11/24"]);
        tor.configure(TOR);
        let vtysh = Vtysh { program: "vtysh".into(), args: node.vtysh_args() };
        let applier = Applier::new(vtysh, node.dir());
        Lab { tor, node, applier }
    }

    /// Prefixes the ToR has received from the node.
    pub fn received(&self) -> u64 {
        let v = self.tor.json("show bgp ipv4 unicast summary json");
        v["peers"]["192.0.2.11"]["pfxRcd"].as_u64().unwrap_or(0)
    }

    /// (connections established, connections dropped) as the ToR counts them.
    pub fn session_counters(&self) -> (u64, u64) {
        let v = self.tor.json("show bgp neighbors 192.0.2.11 json");
        let n = &v["192.0.2.11"];
        (n["connectionsEstablished"].as_u64().unwrap_or(0), n["connectionsDropped"].as_u64().unwrap_or(0))
    }

    pub fn community_at_tor(&self, prefix: &str) -> String {
        let v = self.tor.json(&format!("show bgp ipv4 unicast {prefix} json"));
        v["paths"][0]["community"]["string"].as_str().unwrap_or("").to_string()
    }

    pub fn node_matches(&self, config: &str) -> bool {
        self.node_drift(config).is_empty()
    }

    /// What it would take to bring the node's running config to `config` (empty: nothing).
    pub fn node_drift(&self, config: &str) -> String {
        let want = diff::owned(&ConfigTree::parse(config).unwrap());
        let running = self.applier.running().unwrap();
        diff::diff(&running, &want).text
    }
}

#[test]
fn a_thousand_prefixes_come_and_go_without_touching_the_session() {
    if let Some(why) = frr_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let mut lab = Lab::start();
    let first = node_config(1, "64500:100");
    assert!(matches!(lab.applier.apply(&first, 1), Ok(Applied::Changed { .. })));
    let up = wait_for(Duration::from_secs(30), || lab.received() == 1);
    assert!(
        up.is_some(),
        "session or first prefix never arrived: {:?}",
        lab.tor.json("show bgp summary json")
    );
    let counters = lab.session_counters();
    assert_eq!(counters, (1, 0));

    let steps =
        [(1000, "64500:100"), (1000, "64500:200"), (1, "64500:200"), (0, "64500:200"), (1000, "64500:300")];
    for (generation, (n, community)) in steps.iter().enumerate() {
        let conf = node_config(*n, community);
        let t = std::time::Instant::now();
        let applied = lab.applier.apply(&conf, generation as u64 + 2).unwrap();
        let apply_took = t.elapsed();
        let drift = lab.node_drift(&conf);
        assert!(
            drift.is_empty(),
            "step {generation}: node's running config differs from what was applied:\n{drift}"
        );
        let seen = wait_for(Duration::from_secs(20), || {
            lab.received() == *n as u64 && (*n == 0 || lab.community_at_tor("198.18.0.0/32") == *community)
        });
        assert!(
            seen.is_some(),
            "step {generation}: ToR has {} prefixes, community {:?}",
            lab.received(),
            lab.community_at_tor("198.18.0.0/32")
        );
        println!(
            "step {generation}: {n} prefixes, {community}: {applied:?} in {apply_took:?}, at the ToR after {:?}",
            seen.unwrap()
        );
        assert_eq!(lab.session_counters(), counters, "step {generation}: the session was reset");
    }
    // The same generation twice does nothing.
    assert_eq!(lab.applier.apply("garbage that is never read", 6), Ok(Applied::Unchanged));
}

#[test]
fn invalid_configuration_is_rejected_and_the_last_good_one_keeps_running() {
    if let Some(why) = frr_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let mut lab = Lab::start();
    let good = node_config(3, "64500:100");
    lab.applier.apply(&good, 1).unwrap();
    let bad = good.replace("remote-as 64500", "remote-as banana");
    match lab.applier.apply(&bad, 2) {
        Err(ApplyError::Rejected(text)) => assert!(!text.is_empty()),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(lab.node_matches(&good));
    assert_eq!(lab.applier.generation(), Some(1));
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 3).is_some());
}

#[test]
fn after_bgpd_restarts_reconcile_restores_the_desired_config() {
    if let Some(why) = frr_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let mut lab = Lab::start();
    let conf = node_config(5, "64500:100");
    lab.applier.apply(&conf, 1).unwrap();
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 5).is_some());
    lab.node.restart_daemon("bgpd").unwrap();
    assert!(!lab.node_matches(&conf), "a restarted bgpd should have lost its config");
    let outcome = lab.applier.reconcile();
    assert!(matches!(outcome, Ok(Applied::Changed { .. })), "{outcome:?}");
    let drift = lab.node_drift(&conf);
    assert!(drift.is_empty(), "after reconcile the node still differs:\n{drift}");
    assert!(
        wait_for(Duration::from_secs(30), || lab.received() == 5).is_some(),
        "ToR never got the prefixes back"
    );
}
