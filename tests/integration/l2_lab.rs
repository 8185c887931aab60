//! Layer 2 mode against the kernel's own ARP and NDP clients: two nodes and a client on one
//! switch, `ferrolb speaker --layer2` in each node's namespace, `arping` and `ndisc6` asking
//! from the client.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fabric::{Lan, Netns, Running, sh};
use crate::frr_lab::wait_for;

/// Why these tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if let Some(why) = crate::frr_lab::unavailable().filter(|w| w.contains("root")) {
        return Some(why);
    }
    for tool in ["arping", "ndisc6", "ping"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!("{tool} missing (apt-get install arping ndisc6 iputils-ping)"));
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
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}
";

const MACS: [&str; 5] =
    ["02:00:00:00:00:11", "02:00:00:00:00:12", "02:00:00:00:00:13", "02:00:00:00:00:14", "02:00:00:00:00:15"];

pub struct L2Lab {
    pub lan: Lan,
    pub client: Netns,
    pub nodes: Vec<Netns>,
    pub ports: Vec<String>,
    /// A separate switch the speakers gossip over (eth1, 203.0.113.0/24), when the test needs
    /// to partition the speakers without cutting the client off.
    pub cluster: Option<(Lan, Vec<String>)>,
    pub dir: std::path::PathBuf,
}

impl L2Lab {
    /// A switch with `count` nodes (node1 gets eth1 too when `second_link`) and a client.
    pub fn start(advertisement: &str, count: usize, second_link: bool) -> L2Lab {
        // Three Nodes at least: the election tests were written against three.
        L2Lab::start_with(&format!("{MANIFEST}---\n{advertisement}"), count.max(3), count, second_link)
    }

    /// Like [`L2Lab::start`] with the objects in `manifest` and Node objects node1..`nodes`.
    pub fn start_with(manifest: &str, nodes_listed: usize, count: usize, second_link: bool) -> L2Lab {
        let lan = Lan::new();
        let client = Netns::new("flbc");
        lan.attach(&client.0, "eth0", &["192.0.2.100/24", "2001:db8:10::100/64"]);
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for (i, mac) in MACS.iter().enumerate().take(count) {
            let node = Netns::new("flbn");
            ports.push(lan.attach(
                &node.0,
                "eth0",
                &[&format!("192.0.2.{}/24", 11 + i), &format!("2001:db8:10::{}/64", 11 + i)],
            ));
            sh(&format!("ip -n {} link set eth0 address {mac}", node.0));
            nodes.push(node);
        }
        if second_link {
            lan.attach(&nodes[0].0, "eth1", &[]);
            sh(&format!("ip -n {} link set eth1 address 02:00:00:00:01:11", nodes[0].0));
        }
        let dir = std::env::temp_dir().join(format!("ferrolb-l2-{}", client.0));
        std::fs::create_dir_all(&dir).unwrap();
        let nodes_yaml: String = (1..=nodes_listed)
            .map(|n| format!("---\napiVersion: v1\nkind: Node\nmetadata: {{name: node{n}}}\n"))
            .collect();
        std::fs::write(dir.join("m.yaml"), format!("{manifest}\n{nodes_yaml}")).unwrap();
        L2Lab { lan, client, nodes, ports, cluster: None, dir }
    }

    /// A speaker without membership: the lab's running nodes count as alive.
    fn speaker(&self, i: usize) -> Running {
        let live: Vec<String> = (1..=self.nodes.len()).map(|n| format!("node{n}")).collect();
        self.speaker_with(i, &["--live-nodes", &live.join(",")])
    }

    /// Gives every node an eth1 on a second switch for membership traffic.
    pub fn add_cluster_network(&mut self) {
        let lan = Lan::new();
        let ports = (0..self.nodes.len())
            .map(|i| lan.attach(&self.nodes[i].0, "eth1", &[&format!("203.0.113.{}/24", 11 + i)]))
            .collect();
        self.cluster = Some((lan, ports));
    }

    /// A speaker forming a membership with every node of the lab.
    pub fn member(&self, i: usize, extra: &[&str]) -> Running {
        let net = if self.cluster.is_some() { "203.0.113" } else { "192.0.2" };
        let members: Vec<String> =
            (0..self.nodes.len()).map(|j| format!("node{}={net}.{}:7946", j + 1, 11 + j)).collect();
        let mut args = vec!["--members".to_string(), members.join(","), "--membership-bind".into()];
        args.push(format!("{net}.{}:7946", 11 + i));
        args.extend(extra.iter().map(|s| s.to_string()));
        self.speaker_with(i, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn speaker_with(&self, i: usize, extra: &[&str]) -> Running {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{}.log", i + 1)))
            .unwrap();
        Running(
            Command::new("ip")
                .args(["netns", "exec", &self.nodes[i].0])
                .arg(crate::ferrolb_bin())
                .args(["speaker", "--node", &format!("node{}", i + 1), "--layer2", "-f"])
                .arg(self.dir.join("m.yaml"))
                .args(extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("node{}.log", i + 1))).unwrap_or_default()
    }

    /// The MAC the client's `arping` gets for `ip`, if any answer comes within a second.
    pub fn arping(&self, ip: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client.0, "arping", "-r", "-c", "1", "-w", "1", "-i", "eth0", ip])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_lowercase();
        (!text.is_empty()).then_some(text)
    }

    /// The MAC `ndisc6` learns for `ip`, if any.
    pub fn ndisc6(&self, ip: &str) -> Option<String> {
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

impl L2Lab {
    /// The MAC in the client's kernel neighbour entry for `ip`, if it has one.
    pub fn neighbour(&self, ip: &str) -> Option<String> {
        let out = Command::new("ip").args(["-n", &self.client.0, "neigh", "show", ip]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        words.find(|w| *w == "lladdr").and_then(|_| words.next()).map(str::to_lowercase)
    }

    /// Lets every node accept traffic for `ip` (on lo, with strict ARP as kube-proxy's IPVS mode
    /// sets it, so only the responder answers ARP for it).
    pub fn accept_on_nodes(&self, ip: &str) {
        for n in &self.nodes {
            sh(&format!(
                "ip netns exec {ns} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 && ip -n {ns} addr add {ip}/32 dev lo",
                ns = n.0
            ));
        }
    }

    /// Echo requests node `i`'s kernel has received.
    pub fn echoes_received(&self, i: usize) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.nodes[i].0, "cat", "/proc/net/snmp"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
        let (Some(names), Some(values)) = (icmp.next(), icmp.next()) else { return 0 };
        let at = names.split_whitespace().position(|n| n == "InEchos");
        at.and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Pings `ip` `count` times from the client; whether every echo was answered.
    pub fn ping(&self, ip: &str, count: u32) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client.0,
                "ping",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "1",
                ip,
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Makes the client's kernel resolve `ip` (the ping itself goes unanswered: no node owns it).
    pub fn resolve(&self, ip: &str) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.client.0, "ping", "-c", "1", "-W", "1", ip])
            .stdout(Stdio::null())
            .status();
    }
}

pub fn mac_index(mac: &str) -> Option<usize> {
    MACS.iter().position(|m| *m == mac)
}

impl Drop for L2Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which node the election picks, as `plan` computes it offline.
fn elected(manifest_dir: &std::path::Path) -> usize {
    let inputs = ferrolb::manifests::read(&[manifest_dir.join("m.yaml")], false, "metallb-system").unwrap();
    let options = ferrolb::plan::Options { node: Some("node1".into()), ..Default::default() };
    let p = ferrolb::plan::plan(&inputs, &options);
    let node1_announces = p.announcements.unwrap().iter().any(|a| a.protocol == "layer2");
    if node1_announces { 0 } else { 1 }
}

pub const ALL: &str = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: all}\n";

#[test]
fn arping_and_ndisc6_resolve_service_ips_to_the_elected_node_only() {
    require_l2_tools!();
    let lab = L2Lab::start(ALL, 2, false);
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
    let lab = L2Lab::start(ad, 2, true);
    let _speakers = [lab.speaker(0), lab.speaker(1)];
    let answer = wait_for(Duration::from_secs(15), || lab.arping("192.0.2.200").is_some());
    assert!(answer.is_some(), "no ARP answer\n{}", lab.log(0));
    for _ in 0..3 {
        assert_eq!(lab.arping("192.0.2.200").as_deref(), Some("02:00:00:00:01:11"));
    }
}

#[test]
fn killing_the_elected_speaker_moves_the_ip_to_the_next_node() {
    require_l2_tools!();
    let lab = L2Lab::start(ALL, 3, false);
    let ip = "192.0.2.200";
    lab.accept_on_nodes(ip);
    let mut speakers: Vec<Running> = (0..3).map(|i| lab.member(i, &[])).collect();
    // Everyone must see everyone before the election is the full one.
    let converged = wait_for(Duration::from_secs(20), || {
        (0..3).all(|i| lab.log(i).contains("live=Some({\"node1\", \"node2\", \"node3\"})"))
            && lab.arping(ip).is_some()
    });
    assert!(converged.is_some(), "{}\n{}\n{}", lab.log(0), lab.log(1), lab.log(2));
    let owner = mac_index(&lab.arping(ip).unwrap()).expect("a lab MAC");
    let before = lab.echoes_received(owner);
    assert!(lab.ping(ip, 3), "the owner does not answer pings");
    assert!(lab.echoes_received(owner) >= before + 3);
    assert_eq!(lab.neighbour(ip).as_deref(), Some(MACS[owner]));
    // The kernel ignores ARP updates within a second of the last one (locktime).
    std::thread::sleep(Duration::from_millis(1100));

    let killed = std::time::Instant::now();
    let _ = speakers[owner].0.kill();
    let _ = speakers[owner].0.wait();
    let moved = wait_for(Duration::from_secs(10), || lab.neighbour(ip).is_some_and(|m| m != MACS[owner]));
    let took = killed.elapsed();
    assert!(
        moved.is_some(),
        "client still has {:?}\n{}",
        lab.neighbour(ip),
        (0..3).map(|i| lab.log(i)).collect::<Vec<_>>().join("\n")
    );
    let next = mac_index(&lab.neighbour(ip).unwrap()).unwrap();
    assert_ne!(next, owner);
    // Traffic now reaches the new owner.
    let before = lab.echoes_received(next);
    assert!(lab.ping(ip, 3), "the new owner does not answer pings");
    assert!(lab.echoes_received(next) >= before + 3);
    // The new owner answers ARP too, and only it.
    for _ in 0..3 {
        let logs = (0..3).map(|i| lab.log(i)).collect::<Vec<_>>().join("\n");
        assert_eq!(lab.arping(ip).as_deref(), Some(MACS[next]), "{logs}");
    }
    println!("node{} killed: client's neighbour entry moved to node{} after {took:?}", owner + 1, next + 1);
    speakers.clear();
}

/// Every MAC that answers one ARP request for `ip` within a second.
pub fn answering(lab: &L2Lab, ip: &str) -> Vec<String> {
    let mut macs: Vec<String> =
        lab.arping(ip).map(|t| t.lines().map(String::from).collect()).unwrap_or_default();
    macs.sort();
    macs.dedup();
    macs
}

#[test]
fn a_partitioned_owner_fences_itself_and_no_two_nodes_ever_answer_together() {
    require_l2_tools!();
    let mut lab = L2Lab::start(ALL, 3, false);
    lab.add_cluster_network();
    let ip = "192.0.2.200";
    let _speakers: Vec<Running> =
        (0..3).map(|i| lab.member(i, &["--exclude-interfaces", "^eth1$,^lo$"])).collect();
    let converged = wait_for(Duration::from_secs(20), || {
        (0..3).all(|i| lab.log(i).contains("live=Some({\"node1\", \"node2\", \"node3\"})"))
            && answering(&lab, ip).len() == 1
    });
    assert!(converged.is_some(), "{}\n{}\n{}", lab.log(0), lab.log(1), lab.log(2));
    let owner = mac_index(&answering(&lab, ip)[0]).unwrap();

    // Cut the owner off from the other speakers; the client still reaches everyone.
    let (cluster, ports) = lab.cluster.as_ref().unwrap();
    cluster.set_port(&ports[owner], false);
    let settle = Duration::from_millis(1500);
    std::thread::sleep(settle);
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(answering(&lab, ip));
    }
    let logs = || (0..3).map(|i| lab.log(i)).collect::<Vec<_>>().join("\n");
    for s in &samples {
        assert_eq!(s.len(), 1, "samples {samples:?}\n{}", logs());
        assert_ne!(mac_index(&s[0]), Some(owner), "the cut-off owner still answers: {samples:?}");
    }
    assert!(lab.log(owner).contains("fenced=true"), "{}", lab.log(owner));

    // Healed: the membership merges again and exactly one node answers.
    cluster.set_port(&ports[owner], true);
    let merged = wait_for(Duration::from_secs(10), || {
        lab.log(owner).matches("live=Some({\"node1\", \"node2\", \"node3\"})").count() >= 2
    });
    assert!(merged.is_some(), "{}", logs());
    std::thread::sleep(settle);
    for _ in 0..5 {
        let s = answering(&lab, ip);
        assert_eq!(s.len(), 1, "after healing: {s:?}\n{}", logs());
    }
    println!(
        "partition: node{} fenced itself, one node answered at every sample before and after healing",
        owner + 1
    );
}

#[test]
fn cutting_the_elected_nodes_link_moves_the_ip_too() {
    require_l2_tools!();
    let lab = L2Lab::start(ALL, 3, false);
    let _speakers: Vec<Running> = (0..3).map(|i| lab.member(i, &[])).collect();
    let ip = "192.0.2.200";
    let converged = wait_for(Duration::from_secs(20), || {
        (0..3).all(|i| lab.log(i).contains("live=Some({\"node1\", \"node2\", \"node3\"})"))
            && lab.arping(ip).is_some()
    });
    assert!(converged.is_some());
    let owner = mac_index(&lab.arping(ip).unwrap()).unwrap();
    lab.resolve(ip);
    std::thread::sleep(Duration::from_millis(1100));
    let cut = std::time::Instant::now();
    lab.lan.set_port(&lab.ports[owner], false);
    let moved = wait_for(Duration::from_secs(10), || lab.neighbour(ip).is_some_and(|m| m != MACS[owner]));
    assert!(moved.is_some(), "client still has {:?}", lab.neighbour(ip));
    println!("node{}'s link cut: client's neighbour entry moved after {:?}", owner + 1, cut.elapsed());
    assert_eq!(lab.arping(ip).map(|m| m.lines().count()), Some(1));
}
