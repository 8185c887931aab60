//! Layer 2 mode against the kernel's own ARP and NDP clients: two nodes and a client on one
//! switch, `ferrolb speaker --layer2` in each node's namespace, `arping` and `ndisc6` asking
//! from the client.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fabric::{Lan, Netns, sh};
use crate::frr_lab::wait_for;

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = crate::frr_lab::unavailable().filter(|w| w.contains("root")) {
        return Some(why);
    }
    for tool in ["arping", "ndisc6"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!("{tool} missing (apt-get install arping ndisc6)"));
        }
    }
    None
}

macro_rules! require_l2_tools {
    () => {
        if let Some(why) = unavailable() {
            println!("skipped: {why}");
            return;
        }
    };
}

const MANIFEST: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan}
spec: {addresses: [192.0.2.200-192.0.2.209, '2001:db8:10::200-2001:db8:10::209']}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}
";

const MACS: [&str; 2] = ["02:00:00:00:00:11", "02:00:00:00:00:12"];

struct Speaker(Child);

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct L2Lab {
    _lan: Lan,
    client: Netns,
    nodes: Vec<Netns>,
    dir: std::path::PathBuf,
}

impl L2Lab {
    /// A switch with node1 (eth0, and eth1 too when `second_link`), node2 and a client.
    fn start(advertisement: &str, second_link: bool) -> L2Lab {
        let lan = Lan::new();
        let client = Netns::new("flbc");
        lan.attach(&client.0, "eth0", &["192.0.2.100/24", "2001:db8:10::100/64"]);
        let mut nodes = Vec::new();
        for (i, mac) in MACS.iter().enumerate() {
            let node = Netns::new("flbn");
            lan.attach(
                &node.0,
                "eth0",
                &[&format!("192.0.2.{}/24", 11 + i), &format!("2001:db8:10::{}/64", 11 + i)],
            );
            sh(&format!("ip -n {} link set eth0 address {mac}", node.0));
            nodes.push(node);
        }
        if second_link {
            lan.attach(&nodes[0].0, "eth1", &[]);
            sh(&format!("ip -n {} link set eth1 address 02:00:00:00:01:11", nodes[0].0));
        }
        let dir = std::env::temp_dir().join(format!("ferrolb-l2-{}", client.0));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.yaml"), format!("{MANIFEST}---\n{advertisement}")).unwrap();
        L2Lab { _lan: lan, client, nodes, dir }
    }

    fn speaker(&self, i: usize) -> Speaker {
        let log = std::fs::File::create(self.dir.join(format!("node{}.log", i + 1))).unwrap();
        Speaker(
            Command::new("ip")
                .args(["netns", "exec", &self.nodes[i].0])
                .arg(crate::ferrolb_bin())
                .args(["speaker", "--node", &format!("node{}", i + 1), "--layer2", "-f"])
                .arg(self.dir.join("m.yaml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("node{}.log", i + 1))).unwrap_or_default()
    }

    /// The MAC the client's `arping` gets for `ip`, if any answer comes within a second.
    fn arping(&self, ip: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client.0, "arping", "-r", "-c", "1", "-w", "1", "-i", "eth0", ip])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_lowercase();
        (!text.is_empty()).then_some(text)
    }

    /// The MAC `ndisc6` learns for `ip`, if any.
    fn ndisc6(&self, ip: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client.0, "ndisc6", "-1", "-r", "1", "-w", "1000", ip, "eth0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Target link-layer address: "))
            .map(|m| m.trim().to_lowercase())
    }
}

impl Drop for L2Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which node the election picks, as `plan` computes it offline.
fn elected(manifest_dir: &std::path::Path) -> usize {
    let inputs =
        ferrolb::cli::read_manifests(&[manifest_dir.join("m.yaml")], false, "metallb-system").unwrap();
    let options = ferrolb::plan::Options { node: Some("node1".into()), ..Default::default() };
    let p = ferrolb::plan::plan(&inputs, &options);
    let node1_announces = p.announcements.unwrap().iter().any(|a| a.protocol == "layer2");
    if node1_announces { 0 } else { 1 }
}

const ALL: &str = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: all}\n";

#[test]
fn arping_and_ndisc6_resolve_service_ips_to_the_elected_node_only() {
    require_l2_tools!();
    let lab = L2Lab::start(ALL, false);
    let _speakers = [lab.speaker(0), lab.speaker(1)];
    let winner = elected(&lab.dir);
    let answer = wait_for(Duration::from_secs(15), || lab.arping("192.0.2.200").is_some());
    assert!(answer.is_some(), "no ARP answer\nnode1:\n{}\nnode2:\n{}", lab.log(0), lab.log(1));
    for _ in 0..3 {
        assert_eq!(lab.arping("192.0.2.200").as_deref(), Some(MACS[winner]));
    }
    assert_eq!(lab.ndisc6("2001:db8:10::200").as_deref(), Some(MACS[winner]), "{}", lab.log(winner));
    // An address of the pool that no Service holds gets no answer from anyone.
    assert_eq!(lab.arping("192.0.2.201"), None);
    assert_eq!(lab.ndisc6("2001:db8:10::201"), None);
    println!("192.0.2.200 and 2001:db8:10::200 answered by node{} ({})", winner + 1, MACS[winner]);
}

#[test]
fn replies_come_only_from_the_selected_interface() {
    require_l2_tools!();
    // Only node1 may announce, and only on eth1 (its second link to the same switch).
    let ad = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: eth1-only}\n\
              spec: {interfaces: [eth1], nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node1}}]}\n";
    let lab = L2Lab::start(ad, true);
    let _speakers = [lab.speaker(0), lab.speaker(1)];
    let answer = wait_for(Duration::from_secs(15), || lab.arping("192.0.2.200").is_some());
    assert!(answer.is_some(), "no ARP answer\n{}", lab.log(0));
    for _ in 0..3 {
        assert_eq!(lab.arping("192.0.2.200").as_deref(), Some("02:00:00:00:01:11"));
    }
}
