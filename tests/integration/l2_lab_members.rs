//! Layer 2 membership that follows the cluster, with real speakers in network namespaces: the
//! quorum base is the set of speakers that should exist, so a cluster scaled down keeps
//! answering while the same loss without the scale-down fences; fencing can be turned off; and
//! IPv6 Service IPs sharing a solicited-node group are answered independently.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::l2_lab::{ALL, L2Lab, answering, mac_index};

fn skip() -> bool {
    match crate::l2_lab::unavailable() {
        Some(why) => {
            println!("skipped: {why}");
            true
        }
        None => false,
    }
}

/// The `NODE=IP:PORT` entries of nodes `1..=n` of the lab (membership on the lab's switch).
fn members(n: usize) -> String {
    (0..n).map(|j| format!("node{}=192.0.2.{}:7946", j + 1, 11 + j)).collect::<Vec<_>>().join("\n")
}

impl L2Lab {
    /// A speaker whose quorum base is the lab's members file, re-read as it changes.
    fn member_from_file(&self, i: usize, extra: &[&str]) -> Running {
        let file = self.dir.join("members");
        let bind = format!("192.0.2.{}:7946", 11 + i);
        let mut args = vec!["--members-file", file.to_str().unwrap(), "--membership-bind", &bind];
        args.extend_from_slice(extra);
        self.speaker_with(i, &args)
    }

    /// A sample of node `i`'s speaker's metrics (scraped inside its namespace).
    pub fn metric(&self, i: usize, series: &str) -> Option<f64> {
        let url = format!("http://192.0.2.{}:7472/metrics", 11 + i);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.nodes[i].0, "curl", "-sf", "--max-time", "1", &url])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
    }

    pub fn logs(&self) -> String {
        (0..self.nodes.len()).map(|i| format!("--- node{}\n{}", i + 1, self.log(i))).collect()
    }
}

/// After the expected set shrank to the first two speakers: how long until neither is fenced,
/// then how many ARP requests until one of them (only) answers, and which.
pub fn survivors_answer(lab: &L2Lab, ip: &str, since: Instant) -> (Duration, u32, usize) {
    let lifted = wait_for(Duration::from_secs(10), || {
        (0..2).all(|i| lab.metric(i, "ferrolb_layer2_fenced") == Some(0.0))
    });
    assert!(lifted.is_some(), "{}", lab.logs());
    let lifted_after = since.elapsed();
    // arping takes its whole 1 s deadline even when answered: count probes, not time.
    let mut probes = 0;
    let answered = wait_for(Duration::from_secs(10), || {
        probes += 1;
        answering(lab, ip).len() == 1
    });
    assert!(answered.is_some(), "{}", lab.logs());
    let owner = mac_index(&answering(lab, ip)[0]).unwrap();
    assert!(owner < 2, "answered by node{}", owner + 1);
    (lifted_after, probes, owner)
}

pub fn all_live(n: usize) -> String {
    let names: Vec<String> = (1..=n).map(|i| format!("\"node{i}\"")).collect();
    format!("live=Some({{{}}})", names.join(", "))
}

#[test]
fn a_cluster_scaled_from_five_nodes_to_two_keeps_answering() {
    if skip() {
        return;
    }
    let lab = L2Lab::start_with(&format!("{}---\n{ALL}", SERVICE_V4), 5, 5, false);
    std::fs::write(lab.dir.join("members"), members(5)).unwrap();
    let ip = "192.0.2.200";
    let mut speakers: Vec<Option<Running>> = (0..5).map(|i| Some(lab.member_from_file(i, &[]))).collect();
    let converged = wait_for(Duration::from_secs(30), || {
        (0..5).all(|i| lab.log(i).contains(&all_live(5))) && answering(&lab, ip).len() == 1
    });
    assert!(converged.is_some(), "{}", lab.logs());
    assert_eq!(lab.metric(0, "ferrolb_layer2_expected_speakers"), Some(5.0));

    // Three of five speakers gone while the cluster still expects them: the two left cannot
    // tell that from being cut off, so they fence.
    for s in speakers.iter_mut().skip(2) {
        drop(s.take());
    }
    let gone = Instant::now();
    let fenced = wait_for(Duration::from_secs(10), || {
        (0..2).all(|i| lab.metric(i, "ferrolb_layer2_fenced") == Some(1.0))
    });
    assert!(fenced.is_some(), "{}", lab.logs());
    let fenced_after = gone.elapsed();
    // Let the last gratuitous ARP and any in-flight answer pass, then nobody may answer.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        assert_eq!(answering(&lab, ip), Vec::<String>::new(), "a fenced node answers\n{}", lab.logs());
    }
    for i in 0..2 {
        assert!(lab.log(i).contains("sees 2 of 5 expected speakers"), "{}", lab.log(i));
        assert_eq!(lab.metric(i, "ferrolb_layer2_live_speakers"), Some(2.0));
    }

    // The DaemonSet shrank to the two nodes left: they are the whole cluster now.
    std::fs::write(lab.dir.join("members"), members(2)).unwrap();
    let (lifted_after, probes, owner) = survivors_answer(&lab, ip, Instant::now());
    for _ in 0..5 {
        assert_eq!(answering(&lab, ip).len(), 1, "{}", lab.logs());
    }
    for i in 0..2 {
        assert_eq!(lab.metric(i, "ferrolb_layer2_fenced"), Some(0.0));
        assert_eq!(lab.metric(i, "ferrolb_layer2_expected_speakers"), Some(2.0));
        assert!(lab.log(i).contains("layer 2 fencing lifted"), "{}", lab.log(i));
    }
    println!(
        "3 of 5 speakers killed: both survivors fenced after {fenced_after:?}; expected set shrunk to 2: \
         fencing lifted after {lifted_after:?} (the file is polled every 200 ms), node{} answered \
         ARP probe {probes} sent after that",
        owner + 1
    );
}

#[test]
fn with_fencing_off_a_minority_keeps_answering_and_says_so() {
    if skip() {
        return;
    }
    let lab = L2Lab::start(ALL, 3, false);
    std::fs::write(lab.dir.join("members"), members(3)).unwrap();
    let ip = "192.0.2.200";
    let mut speakers: Vec<Option<Running>> =
        (0..3).map(|i| Some(lab.member_from_file(i, &["--fence=false"]))).collect();
    let converged = wait_for(Duration::from_secs(30), || {
        (0..3).all(|i| lab.log(i).contains(&all_live(3))) && answering(&lab, ip).len() == 1
    });
    assert!(converged.is_some(), "{}", lab.logs());
    drop(speakers[1].take());
    drop(speakers[2].take());
    let alone = wait_for(Duration::from_secs(10), || {
        lab.log(0).contains(
            "sees 1 of 3 expected speakers (not seen: node2, node3); no majority, but fencing is off",
        )
    });
    assert!(alone.is_some(), "{}", lab.logs());
    let answered = wait_for(Duration::from_secs(10), || {
        answering(&lab, ip).iter().map(|m| mac_index(m)).collect::<Vec<_>>() == [Some(0)]
    });
    assert!(answered.is_some(), "{:?}\n{}", answering(&lab, ip), lab.logs());
    assert_eq!(lab.metric(0, "ferrolb_layer2_fenced"), Some(0.0));
    assert_eq!(lab.metric(0, "ferrolb_layer2_live_speakers"), Some(1.0));
    // The membership traffic is counted at the socket.
    for series in ["ferrolb_memberlist_packets_sent_total", "ferrolb_memberlist_bytes_received_total"] {
        assert!(lab.metric(0, series).is_some_and(|v| v > 0.0), "{series}\n{}", lab.logs());
    }
    println!("fencing off: node1 alone of 3 still answers ARP for {ip}");
}

const SERVICE_V4: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan}
spec: {addresses: [192.0.2.200-192.0.2.209]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer}
";

/// Two IPv6 Services whose IPs share their last 24 bits, so one solicited-node group.
const SHARED_GROUP: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: v6}
spec: {addresses: ['2001:db8::1:5/128', '2001:db8:0:1::1:5/128']}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: all}
---
apiVersion: v1
kind: Service
metadata: {name: one, namespace: shop, annotations: {metallb.io/loadBalancerIPs: '2001:db8::1:5'}}
spec: {type: LoadBalancer, ipFamilies: [IPv6]}
";

const SECOND: &str = "
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: shop, annotations: {metallb.io/loadBalancerIPs: '2001:db8:0:1::1:5'}}
spec: {type: LoadBalancer, ipFamilies: [IPv6]}
";

#[test]
fn withdrawing_one_ipv6_ip_leaves_another_of_its_solicited_node_group_answered() {
    if skip() {
        return;
    }
    let lab = L2Lab::start_with(&format!("{SHARED_GROUP}{SECOND}"), 1, 1, false);
    let _speaker = lab.speaker_with(0, &["--live-nodes", "node1"]);
    let (one, two) = ("2001:db8::1:5", "2001:db8:0:1::1:5");
    let both = wait_for(Duration::from_secs(15), || lab.ndisc6(one).is_some() && lab.ndisc6(two).is_some());
    assert!(both.is_some(), "{}", lab.log(0));
    // Service "two" goes: its IP is withdrawn, "one" (same group) must stay answered.
    let nodes_yaml = "---\napiVersion: v1\nkind: Node\nmetadata: {name: node1}\n";
    std::fs::write(lab.dir.join("m.yaml"), format!("{SHARED_GROUP}\n{nodes_yaml}")).unwrap();
    let withdrawn = wait_for(Duration::from_secs(10), || lab.ndisc6(two).is_none());
    assert!(withdrawn.is_some(), "{two} still answered\n{}", lab.log(0));
    for _ in 0..5 {
        assert_eq!(lab.ndisc6(one).as_deref(), Some("02:00:00:00:00:11"), "{one} silenced\n{}", lab.log(0));
    }
    println!("{two} withdrawn: {one} (same solicited-node group ff02::1:ff01:5) still answered by ndisc6");
}

/// Sniffs, inside node `i`'s namespace, one membership datagram sent to it, and returns its UDP
/// payload as hex (Python's AF_PACKET socket: nothing leaves the namespace).
fn capture_membership_datagram(lab: &L2Lab, i: usize) -> String {
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(0x0800))\n\
        s.settimeout(10)\n\
        while True:\n\
        \x20 p=s.recv(65535)[14:]\n\
        \x20 h=(p[0]&15)*4\n\
        \x20 if p[9]==17 and socket.inet_ntoa(p[16:20])==sys.argv[1] and int.from_bytes(p[h+2:h+4],'big')==7946:\n\
        \x20   print(p[h+8:].hex()); break\n";
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.nodes[i].0, "python3", "-c", script, &format!("192.0.2.{}", 11 + i)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sends each hex payload `times` times from the client (a stranger on the nodes' switch) to
/// node `i`'s membership port.
fn send_from_client(lab: &L2Lab, i: usize, payloads: &[String], times: usize) {
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
        for h in sys.argv[3:]:\n\
        \x20 for _ in range(int(sys.argv[2])): s.sendto(bytes.fromhex(h),(sys.argv[1],7946))\n";
    let status = Command::new("ip")
        .args(["netns", "exec", &lab.client.0, "python3", "-c", script])
        .arg(format!("192.0.2.{}", 11 + i))
        .arg(times.to_string())
        .args(payloads)
        .status()
        .unwrap();
    assert!(status.success());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stranger on the nodes' switch speaks membership to sealed speakers: plain datagrams, ones
/// sealed with another key, and a replay of a real one captured on the wire. Each is dropped
/// and counted by reason; nobody is suspected, fenced or moved.
#[test]
fn strangers_on_the_membership_port_are_dropped_and_change_no_election() {
    if skip() {
        return;
    }
    let lab = L2Lab::start_with(&format!("{}---\n{ALL}", SERVICE_V4), 3, 3, false);
    std::fs::write(lab.dir.join("members"), members(3)).unwrap();
    let key = lab.dir.join("secretkey");
    std::fs::write(&key, "the lab's membership key").unwrap();
    let ip = "192.0.2.200";
    let args = ["--membership-secret-file", key.to_str().unwrap()];
    let _speakers: Vec<Running> = (0..3).map(|i| lab.member_from_file(i, &args)).collect();
    let converged = wait_for(Duration::from_secs(30), || {
        (0..3).all(|i| lab.log(i).contains(&all_live(3))) && answering(&lab, ip).len() == 1
    });
    assert!(converged.is_some(), "{}", lab.logs());
    let owner = answering(&lab, ip);
    let downs = |i: usize| lab.log(i).matches("speaker down").count();
    let downs_before: Vec<usize> = (0..3).map(downs).collect();
    let dropped = |i: usize, reason: &str| {
        lab.metric(i, &format!("ferrolb_memberlist_packets_dropped_total{{reason=\"{reason}\"}}"))
            .unwrap_or(0.0)
    };

    let captured = capture_membership_datagram(&lab, 0);
    assert!(captured.starts_with("f1"), "not a sealed datagram: {captured}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut wrong = ferrolb::l2::membership::seal::Sealer::new(&[b"a stranger's key".to_vec()], now);
    let forged = hex(&wrong.seal(&[1, 0, 0, 0, 7], now).unwrap());
    // A plain ring ping and a plain foca-kind datagram, as an unkeyed speaker would send them.
    let plain = [hex(&[1, 0, 0, 0, 7]), hex(&[0, 1, 2, 3, 4, 5, 6, 7])];
    let attack = Instant::now();
    for _ in 0..10 {
        send_from_client(&lab, 0, &plain, 20);
        send_from_client(&lab, 0, std::slice::from_ref(&forged), 20);
        send_from_client(&lab, 0, std::slice::from_ref(&captured), 5);
        assert_eq!(answering(&lab, ip), owner, "the owner changed under attack\n{}", lab.logs());
    }
    let took = attack.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (unauthenticated, replayed) = (dropped(0, "unauthenticated"), dropped(0, "replayed"));
    assert!(unauthenticated >= 600.0, "unauthenticated {unauthenticated}\n{}", lab.logs());
    assert!(replayed >= 50.0, "replayed {replayed}\n{}", lab.logs());
    for (i, before) in downs_before.iter().enumerate() {
        assert_eq!(lab.metric(i, "ferrolb_layer2_fenced"), Some(0.0), "node{}", i + 1);
        assert_eq!(lab.metric(i, "ferrolb_layer2_live_speakers"), Some(3.0), "node{}", i + 1);
        assert_eq!(downs(i), *before, "node{} saw a speaker go\n{}", i + 1, lab.log(i));
    }
    assert_eq!(answering(&lab, ip), owner);
    println!(
        "membership attack on node1 for {took:?}: {unauthenticated} unauthenticated (plain, other key) and \
         {replayed} replayed datagrams dropped; no speaker suspected, fenced or moved"
    );
}
