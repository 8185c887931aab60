//! IPv6-only nodes: speakers started with the chart's own arguments on an IPv6 node address
//! (`[$(NODE_IP)]:…`), BGP over IPv6 to a real FRR ToR with a router ID the node derived
//! itself (it has no IPv4 address), membership over IPv6 and layer 2 answered over NDP.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_process::AgentProcess;
use crate::fabric::{Lan, Netns, Running};
use crate::frr_lab::{Frr, wait_for};

const TOR: &str = "router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 2001:db8:1::11 remote-as 64512
 neighbor 2001:db8:1::11 timers 3 9
 neighbor 2001:db8:1::11 timers connect 1
 address-family ipv6 unicast
  neighbor 2001:db8:1::11 activate
 exit-address-family
exit
";

const MANIFESTS: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: routed}
spec: {addresses: ['2001:db8:20::/124']}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan}
spec: {addresses: ['2001:db8:1::200-2001:db8:1::20f']}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor}
spec: {myASN: 64512, peerASN: 64500, peerAddress: '2001:db8:1::1', holdTime: 9s, keepaliveTime: 3s, connectTime: 1s}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: routed}
spec: {ipAddressPools: [routed], nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node1}}]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan}
spec: {ipAddressPools: [lan]}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
status: {addresses: [{type: InternalIP, address: '2001:db8:1::11'}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
status: {addresses: [{type: InternalIP, address: '2001:db8:1::12'}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, annotations: {metallb.io/address-pool: routed}}
spec: {type: LoadBalancer, ipFamilies: [IPv6]}
---
apiVersion: v1
kind: Service
metadata: {name: lan, namespace: shop, annotations: {metallb.io/address-pool: lan}}
spec: {type: LoadBalancer, ipFamilies: [IPv6]}
";

const MEMBERS: &str = "node1=[2001:db8:1::11]:7946,node2=[2001:db8:1::12]:7946";

/// The chart's speaker arguments (layer 2 and FRR on, plain metrics: offline there is no API
/// server to authorize scrapers) for a node whose hostIP is `ip`, as the
/// kubelet would expand them; the cluster-only selector gives way to a fixed member list.
fn chart_args(ip: &str, frr_socket: Option<&std::path::Path>, key: &std::path::Path) -> Vec<String> {
    let rendered = crate::chart::speaker_args(
        r#"{"frr": {"enabled": true}, "speaker": {"layer2": true}, "metrics": {"secure": false}}"#,
    );
    // The chart seals membership with a mounted Secret's key: here `key`, a file both share.
    let mut args: Vec<String> = rendered
        .iter()
        .filter(|a| !a.starts_with("--speaker-selector") && !a.starts_with("--frr-agent-socket"))
        .map(|a| a.replace("$(NODE_IP)", ip))
        .map(|a| match a.strip_prefix("--membership-secret-file=") {
            Some(_) => format!("--membership-secret-file={}", key.display()),
            None => a,
        })
        .collect();
    assert!(args.iter().any(|a| a.starts_with("--membership-secret-file=")), "{rendered:?}");
    assert!(args.iter().any(|a| a == &format!("--metrics-bind=[{ip}]:7472")), "{rendered:?}");
    assert!(args.iter().any(|a| a == &format!("--membership-bind=[{ip}]:7946")), "{rendered:?}");
    if let Some(s) = frr_socket {
        args.push(format!("--frr-agent-socket={}", s.display()));
    } else {
        args.retain(|a| !a.starts_with("--coalesce-ms"));
    }
    args
}

fn mac(ns: &str) -> String {
    let out = Command::new("ip").args(["-n", ns, "-j", "link", "show", "eth0"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

/// The MAC `ndisc6` (from the ToR's namespace) learns for `ip`, if any.
fn ndisc6(ns: &str, ip: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ndisc6", "-1", "-r", "1", "-w", "500", ip, "eth0"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Target link-layer address:"))
        .map(|m| m.trim().to_lowercase())
}

#[test]
fn ipv6_only_nodes_announce_over_bgp_and_ndp_with_the_charts_arguments() {
    require_frr!();
    if crate::chart::unavailable().is_some()
        || Command::new("sh").args(["-c", "command -v ndisc6"]).output().map_or(true, |o| !o.status.success())
    {
        println!("skipped: needs helm-python-sdk (the chart's arguments) and ndisc6");
        return;
    }
    let lan = Lan::new();
    let tor = Frr::start("tor").unwrap();
    let node1 = Frr::start("node1").unwrap();
    let node2 = Netns::new("flbn");
    lan.attach(&tor.ns, "eth0", &["2001:db8:1::1/64"]);
    lan.attach(&node1.ns, "eth0", &["2001:db8:1::11/64"]);
    lan.attach(&node2.0, "eth0", &["2001:db8:1::12/64"]);
    for ns in [&tor.ns, &node1.ns, &node2.0] {
        // IPv6 only: no IPv4 address anywhere on the nodes.
        let out = Command::new("ip").args(["-n", ns, "-4", "-o", "addr", "show", "eth0"]).output().unwrap();
        assert!(out.stdout.is_empty(), "{ns} has IPv4");
    }
    tor.configure(TOR);
    let agent = AgentProcess::start(&node1, "agent");
    let dir = node1.dir().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("all.yaml"), MANIFESTS).unwrap();
    let speaker = |ns: &str, node: &str, args: Vec<String>| {
        let log = node1.dir().join(format!("speaker-{node}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(crate::ferrolb_bin())
            .args(&args)
            .args(["--node", node, "-f"])
            .arg(&dir)
            .args(["--members", MEMBERS, "--membership-probe-ms", "100", "--rescan-ms", "50"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (Running(child), log)
    };
    let key = node1.dir().join("secretkey");
    std::fs::write(&key, "the lab's membership key").unwrap();
    let (s1, log1) = speaker(&node1.ns, "node1", chart_args("2001:db8:1::11", Some(&agent.socket), &key));
    let (s2, log2) = speaker(&node2.0, "node2", chart_args("2001:db8:1::12", None, &key));
    let logs = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(&log1).unwrap_or_default(),
            std::fs::read_to_string(&log2).unwrap_or_default()
        )
    };

    // BGP over IPv6, with the router ID node1 derived from its name.
    let plan = crate::fabric::plan_node(MANIFESTS, "node1");
    let web = plan.ips_of("shop/web")[0].clone();
    let learned = wait_for(Duration::from_secs(30), || {
        tor.json("show bgp ipv6 unicast json")["routes"]
            .as_object()
            .is_some_and(|r| r.contains_key(&format!("{web}/128")))
    });
    assert!(learned.is_some(), "the ToR never learned {web}/128\n{}", logs());
    let id = ferrolb::topology::router_id_from_name("node1").to_string();
    assert!(node1.running_config().contains(&format!("bgp router-id {id}")), "{}", node1.running_config());
    let seen_id = tor.json("show bgp ipv6 unicast summary json")["peers"]["2001:db8:1::11"]["remoteRouterId"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            tor.json("show bgp neighbors 2001:db8:1::11 json")["2001:db8:1::11"]["remoteRouterId"]
                .as_str()
                .map(str::to_string)
        });
    assert_eq!(seen_id.as_deref(), Some(id.as_str()), "the ToR sees another router ID");
    println!("BGP over IPv6: {web}/128 at the ToR {:?} after start, from router ID {id}", learned.unwrap());

    // Metrics on the bracketed IPv6 node address.
    let scraped = Command::new("ip")
        .args(["netns", "exec", &node1.ns, "curl", "-sf", "http://[2001:db8:1::11]:7472/metrics"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&scraped.stdout).contains("metallb_speaker_announced"), "{}", logs());

    // Layer 2 over NDP, elected between the two speakers (membership over IPv6): the winner
    // answers; once it stops, the other one does.
    let lan_ip = crate::fabric::plan_node(MANIFESTS, "node1").ips_of("shop/lan")[0].clone();
    let macs = [mac(&node1.ns), mac(&node2.0)];
    let mut first = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            first = ndisc6(&tor.ns, &lan_ip);
            first.is_some()
        })
        .is_some(),
        "nobody answers NDP for {lan_ip}\n{}",
        logs()
    );
    let first = first.unwrap();
    let winner = macs.iter().position(|m| *m == first).expect("answered by a node");
    let mut speakers = [Some(s1), Some(s2)];
    let stopped = Instant::now();
    drop(speakers[winner].take());
    let moved = wait_for(Duration::from_secs(10), || {
        ndisc6(&tor.ns, &lan_ip).as_deref() == Some(macs[1 - winner].as_str())
    });
    assert!(moved.is_some(), "{lan_ip} never moved to node{}\n{}", 2 - winner, logs());
    println!(
        "layer 2 over NDP: {lan_ip} answered by node{}, then by node{} {:?} after it stopped",
        winner + 1,
        2 - winner,
        stopped.elapsed()
    );
    drop(speakers);
    drop(agent);
}
