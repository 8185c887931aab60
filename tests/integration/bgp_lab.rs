//! A ToR and one node, each a real FRR in its own namespace, joined by a veth; the node's FRR
//! is driven only through frr-agent's applier. Shared by the agent tests and the reload bench.

use ferrolb::plan::{self, Inputs, Options};
use frr_sidecar::apply::Applier;
use frr_sidecar::diff;

use crate::frr_lab::{self, Frr};

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
        let vtysh = node.agent_vtysh();
        let applier = Applier::new(vtysh, node.dir());
        Lab { tor, node, applier }
    }

    /// Prefixes the ToR has received from the node.
    pub fn received(&self) -> u64 {
        let v = self.tor.json("show bgp ipv4 unicast summary json");
        v["peers"]["192.0.2.11"]["pfxRcd"].as_u64().unwrap_or(0)
    }

    /// The IPv4 prefixes in the ToR's BGP table, sorted.
    pub fn tor_prefixes(&self) -> Vec<String> {
        let v = self.tor.json("show bgp ipv4 unicast json");
        let mut out: Vec<String> =
            v["routes"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        out.sort();
        out
    }

    /// (connections established, connections dropped) as the ToR counts them.
    pub fn session_counters(&self) -> (u64, u64) {
        let v = self.tor.json("show bgp neighbors 192.0.2.11 json");
        let n = &v["192.0.2.11"];
        (n["connectionsEstablished"].as_u64().unwrap_or(0), n["connectionsDropped"].as_u64().unwrap_or(0))
    }

    /// The session counters once they have held still for 3 s with the session Established: a
    /// session may reset once while it comes up, later on a slow machine than on a fast one.
    pub fn settled_session_counters(&self) -> (u64, u64) {
        let (mut last, mut since) = (self.session_counters(), std::time::Instant::now());
        let deadline = since + std::time::Duration::from_secs(60);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = self.session_counters();
            let up = self.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["bgpState"]
                == "Established";
            if now != last || !up {
                (last, since) = (now, std::time::Instant::now());
            } else if since.elapsed() >= std::time::Duration::from_secs(3) {
                return now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the session never settled: {}",
                self.session_story()
            );
        }
    }

    /// The ToR's words for node1's session, for a failed session check: state, the last reset
    /// and why, and the counters.
    pub fn session_story(&self) -> String {
        let v = self.tor.json("show bgp neighbors 192.0.2.11 json");
        let n = &v["192.0.2.11"];
        format!(
            "state {} up {} established {} dropped {} last reset {}s ago: {} / {}",
            n["bgpState"],
            n["bgpTimerUpString"],
            n["connectionsEstablished"],
            n["connectionsDropped"],
            n["lastResetTimerMsecs"].as_u64().unwrap_or(0) / 1000,
            n["lastResetDueTo"],
            n["lastNotificationReason"]
        )
    }

    pub fn community_at_tor(&self, prefix: &str) -> String {
        let v = self.tor.json(&format!("show bgp ipv4 unicast {prefix} json"));
        v["paths"][0]["community"]["string"].as_str().unwrap_or("").to_string()
    }

    pub fn node_matches(&self, config: &str) -> bool {
        self.node_drift(config).is_empty()
    }

    /// What it would take to bring the node's running config to `config` (empty: nothing).
    /// Both sides are read in the dialect of the node's FRR version, as the agent reads them.
    pub fn node_drift(&self, config: &str) -> String {
        let mut reader = Applier::new(self.node.agent_vtysh(), self.node.dir());
        let want = reader.desired(config).unwrap();
        let running = reader.running().unwrap();
        diff::diff(&running, &want).text
    }
}
